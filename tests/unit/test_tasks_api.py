"""The control channel's own parts (issue 15, part D), without a gateway: how a
POST /api/runs body becomes a submission, the WebSocket tickets' signature and expiry,
``id:`` in the SSE encoder and decoder, and the CLI's params and schedule options."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from enclave import sse
from enclave.cli.schedules import trigger_of
from enclave.cli.tasks import convert
from enclave.errors import AuthenticationFailed, InvalidRequest
from enclave.gateway.tasks_api import submission
from enclave.gateway.tasks_tickets import read, sign

SECRET = b"s" * 32


def test_a_run_body_names_a_task_a_definition_or_a_command() -> None:
    assert submission({"task": "log-digest", "params": {"since_hours": 2}}) == {
        "task": "log-digest", "params": {"since_hours": 2}
    }  # fmt: skip
    assert submission({"definition": {"name": "x", "steps": []}}) == {
        "definition": {"name": "x", "steps": []}, "params": {}
    }  # fmt: skip
    # The reference design's shape: every field beside "command" is a param.
    given = {"command": "search", "query": "vpn", "output_path": "/data/results"}
    assert submission(given) == {
        "task": "search", "params": {"query": "vpn", "output_path": "/data/results"}
    }  # fmt: skip


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "task"),
        ({"task": "a", "definition": {}}, "task"),
        ({"task": "a", "query": "x"}, "query"),
        ({"command": "a", "task": "b"}, "task"),
        ({"task": 3}, "task"),
        ({"task": "a", "params": []}, "params"),
        ({"definition": "x"}, "definition"),
    ],
)
def test_a_bad_run_body_is_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        submission(body)
    assert refused.value.param == param


def test_a_ticket_is_good_until_it_expires_and_only_with_the_secret() -> None:
    ticket = sign(SECRET, user="alice", via="key:abc", ttl_s=30, now=1000.0, tid="t1")
    claims = read(SECRET, ticket, now=1029.0)
    assert (claims["sub"], claims["via"], claims["tid"]) == ("alice", "key:abc", "t1")
    with pytest.raises(AuthenticationFailed):
        read(SECRET, ticket, now=1030.0)
    with pytest.raises(AuthenticationFailed):
        read(b"o" * 32, ticket, now=1001.0)


def test_an_access_token_or_a_key_is_no_ticket() -> None:
    from enclave.auth.tokens import issue

    access = issue(SECRET, user="alice", role="user", ttl_s=60, kind="access", session="s")
    for token in (access, "sk-enc-abcdef0123456789", "garbage"):
        with pytest.raises(AuthenticationFailed):
            read(SECRET, token)


def test_sse_events_carry_their_id_both_ways() -> None:
    raw = sse.encode('{"a":1}', event="progress", id=17)
    assert raw == b'id: 17\nevent: progress\ndata: {"a":1}\n\n'
    (event,) = list(sse.decode([raw]))
    assert (event.id, event.event, event.json()) == ("17", "progress", {"a": 1})


def test_cli_params_take_their_declared_types() -> None:
    assert convert("24", "integer") == 24
    assert convert("0.5", "number") == 0.5
    assert convert("yes", "boolean") is True
    assert convert('["a", 1]', "array") == ["a", 1]
    assert convert("24", "string") == "24"
    assert convert("many", "integer") == "many"  # left for the service's 400


def _args(**given: Any) -> argparse.Namespace:
    fields = {"cron": None, "every": None, "at": None, "delay": None, "tz": None}
    return argparse.Namespace(**(fields | given))


def test_schedule_options_become_the_body_trigger() -> None:
    assert trigger_of(_args(cron="0 7 * * *", tz="Asia/Shanghai")) == {
        "cron": "0 7 * * *", "timezone": "Asia/Shanghai"
    }  # fmt: skip
    assert trigger_of(_args(every="10m")) == {"every_s": 600.0}
    assert trigger_of(_args(delay="5m")) == {"delay_s": 300.0}
    assert trigger_of(_args(at="2026-12-07T07:00:00+08:00")) == {"at": "2026-12-07T07:00:00+08:00"}
    with pytest.raises(InvalidRequest) as refused:
        trigger_of(_args(every="soon"))
    assert refused.value.param == "every"
    with pytest.raises(InvalidRequest):
        trigger_of(_args(every="10m", tz="UTC"))
