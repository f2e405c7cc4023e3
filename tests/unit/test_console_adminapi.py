"""The admin console API's pure parts: the masked configuration (every secret, including
ones added later, by type or by name), the stats window and bucket checks, the audit
filters' parsing, and the dashboard's time buckets."""

from __future__ import annotations

import itertools
import json
import typing
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from enclave.audit.stats import Window, percentile
from enclave.config import Settings
from enclave.errors import InvalidRequest
from enclave.gateway.admin_audit import _moment
from enclave.gateway.admin_console import _window
from enclave.gateway.masking import MASK, mask_url, masked, secret_name

_counter = itertools.count()


def sentinel() -> str:
    return f"SeCrEt-{next(_counter):04d}-value"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _secret_type(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_secret_type(arg) for arg in typing.get_args(annotation))


def _is_text(annotation: Any) -> bool:
    return str in (annotation, *typing.get_args(annotation))


def filled(model: type[BaseModel], planted: list[str]) -> BaseModel:
    """An instance of ``model`` (built without validation) whose every secret field, at
    every depth, holds a new sentinel: SecretStr fields, and text fields named like a
    secret; nested sections, optional ones and lists of them, are filled the same way."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        nested = _models_in(annotation)
        if _secret_type(annotation):
            planted.append(value := sentinel())
            values[name] = SecretStr(value)
        elif secret_name(name) and _is_text(annotation):
            planted.append(value := sentinel())
            values[name] = value
        elif nested:
            built = filled(nested[0], planted)
            origin = typing.get_origin(annotation)
            values[name] = [built] if origin is list else built
        elif info.is_required():
            values[name] = None
    return model.model_construct(**values)


def test_no_secret_of_the_settings_reaches_the_masked_config() -> None:
    planted: list[str] = []
    settings = filled(Settings, planted)
    assert len(planted) >= 2  # at least the upstream's and the embedder's api_key
    text = json.dumps(masked(settings))
    for value in planted:
        assert value not in text
    assert MASK in text


def test_a_realistic_config_with_every_known_secret_set() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://enclave:pg-pass-1@db:5432/enclave?sslmode=require",
        auth={"redis_url": "redis://:redis-pass-2@cache:6379/0"},
        knowledge={"embedder_api_key": "embed-key-3"},
        memory={"s3": {"bucket": "b", "endpoint_url": "http://minio-user:s3-pass-4@minio:9000"}},
        upstreams=[{"name": "gpu", "base_url": "https://u:up-pass-5@gpu/v1?api_key=qk-6",
                    "api_key": "up-key-7", "api_key_env": "GPU_KEY", "models": ["m"]}],
    )  # fmt: skip
    data = masked(settings)
    text = json.dumps(data)
    for secret in ("pg-pass-1", "redis-pass-2", "embed-key-3", "s3-pass-4", "up-pass-5",
                   "qk-6", "up-key-7"):  # fmt: skip
        assert secret not in text
    assert (
        data["database_url"] == "postgresql+asyncpg://enclave:***@db:5432/enclave?sslmode=require"
    )
    upstream = data["upstreams"][0]
    assert upstream["api_key"] == MASK
    assert upstream["api_key_env"] == "GPU_KEY"  # where it comes from stays visible
    assert upstream["base_url"] == "https://u:***@gpu/v1?api_key=***"
    assert data["limits"]["max_embedding_input_tokens"] == 8192  # a limit, not a secret
    assert data["home"] == str(settings.home)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://gpu:8000/v1", "http://gpu:8000/v1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("ldap://cn=admin:pw@dir", "ldap://cn=admin:***@dir"),
        ("postgresql://u@h/db?password=x&application_name=e",
         "postgresql://u@h/db?password=***&application_name=e"),
        ("not a url: password=x", "not a url: password=x"),
    ],
)  # fmt: skip
def test_urls_lose_their_passwords(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_secret_names() -> None:
    for name in ("password", "bind_password", "api_key", "apikey", "secret", "jwt_secret",
                 "token", "access_token", "secret_access_key", "Authorization", "key"):  # fmt: skip
        assert secret_name(name), name
    for name in ("api_key_env", "secret_key_env", "api_key_file", "max_tokens",
                 "max_embedding_input_tokens", "session_ttl_s", "keep_jobs", "monkey"):  # fmt: skip
        assert not secret_name(name), name


def test_window_and_bucket_are_checked_naming_the_limit() -> None:
    assert _window("24h", "1h", 500) == (86400, 3600)
    assert _window("24h", None, 500) == (86400, 900)  # a round step, at most 100 buckets
    assert _window("7d", None, 500) == (7 * 86400, 3 * 3600)
    with pytest.raises(InvalidRequest, match=r"audit\.stats_max_buckets"):
        _window("30d", "1m", 500)
    with pytest.raises(InvalidRequest, match="longer than window"):
        _window("1h", "1d", 500)
    for bad in ("0s", "-1h", "abc", "1y", "9999999d", "1e300s"):
        with pytest.raises(InvalidRequest):
            _window(bad, None, 500)
    # the step chosen without bucket= passes the check that follows, however few allowed
    for window, most in (("100m", 100), ("7d", 30), ("30d", 10), ("365d", 2)):
        window_s, bucket_s = _window(window, None, most)
        assert -(-window_s // bucket_s) + 1 <= most, (window, most)


def test_dates_past_what_a_datetime_holds_are_a_400() -> None:
    from enclave.gateway.admin_audit import _moment

    assert _moment("2026-01-02", "since") == "2026-01-02T00:00:00.000000Z"
    for text in ("0001-01-01T00:00+05:00", "9999-12-31T23:59-05:00", "yesterday"):
        with pytest.raises(InvalidRequest, match="since"):
            _moment(text, "since")


def test_buckets_are_aligned_and_cover_now() -> None:
    now = datetime(2025, 3, 1, 12, 34, 56, tzinfo=UTC)
    window = Window.ending(now, 3600, 600)
    assert window.start == datetime(2025, 3, 1, 11, 30, tzinfo=UTC)
    assert window.end > now
    assert window.at(0) == "2025-03-01T11:30:00Z"
    assert window.buckets == 7


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5], 99) == 5
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50, 95, 99)


def test_moments_are_utc_texts() -> None:
    assert _moment("2025-01-02", "since") == "2025-01-02T00:00:00.000000Z"
    assert _moment("2025-01-02T03:00:00+02:00", "until") == "2025-01-02T01:00:00.000000Z"
    with pytest.raises(InvalidRequest, match="since"):
        _moment("yesterday", "since")


def test_a_members_last_error_does_not_carry_its_urls_password() -> None:
    """The HTTP client's errors quote the member's URL ("cannot connect to URL: ..."); the
    upstreams view masks its password there as in ``url``."""
    from types import SimpleNamespace

    from enclave.gateway.admin_console import _masked_error

    url = "https://svc:hunter2-secret@gpu1.corp:8000/v1"
    member = SimpleNamespace(
        last_error=f"cannot connect to {url}: connection refused",
        options=SimpleNamespace(base_url=url),
    )
    shown = _masked_error(member)  # type: ignore[arg-type]
    assert shown is not None
    assert "hunter2-secret" not in shown
    assert "gpu1.corp:8000" in shown
