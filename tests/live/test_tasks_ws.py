"""``/api/tasks/ws`` against a real gateway (authentication on, SQLite): a real
``websockets`` client follows a run to its result, reconnects mid-run and resumes from
the last event id without losing or repeating one; the three ways to authenticate and
every refusal (none, wrong, a token in the URL, a used or expired ticket, an address
outside the allowlist); another user's run; bad messages; cancel."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from enclave.gateway.tasks_tickets import sign
from tests.fakes.procs import FakeUpstream
from tests.tasks_site import Site, tasks_site

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with tasks_site(tmp_path_factory.mktemp("tasks-ws"), fake) as made:
        yield made


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def receive(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
    return message


async def until_end(socket: ClientConnection, run: str) -> list[dict[str, Any]]:
    """What the socket receives until ``run``'s final status event (events carry an
    ``id``; answers such as ``cancelling`` do not)."""
    messages = []
    while True:
        message = await receive(socket)
        assert message.get("type") != "error" or "id" in message, message
        messages.append(message)
        if (
            message.get("run") == run
            and message.get("type") == "status"
            and message.get("status") in ("succeeded", "failed", "cancelled")
        ):
            return messages


def refused(site: Site, url: str, status: int, **kw: Any) -> str:
    """The handshake is refused with ``status``; the body's message."""

    async def attempt() -> str:
        with pytest.raises(InvalidStatus) as caught:
            async with connect(url, **kw):
                pass
        response = caught.value.response
        assert response.status_code == status, response.body
        message: str = json.loads(response.body or b"{}")["error"]["message"]
        return message

    return asyncio.run(attempt())


def test_a_client_follows_a_run_reconnects_mid_run_and_misses_nothing(site: Site) -> None:
    async def scenario() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        async with connect(site.ws, additional_headers=bearer(site.keys["alice"])) as socket:
            await socket.send(json.dumps({"type": "start", "task": "nap"}))
            started = await receive(socket)
            assert started["type"] == "started", started
            run = started["run"]["id"]
            assert started["run"]["owner"] == "alice"
            first: list[dict[str, Any]] = []
            while not any(e["type"] == "progress" for e in first):  # mid-run: cut here
                message = await receive(socket)
                if message.get("run") == run and "id" in message:
                    first.append(message)
        async with connect(site.ws, additional_headers=bearer(site.keys["alice"])) as socket:
            after = first[-1]["id"]
            await socket.send(json.dumps({"type": "subscribe", "run": run, "after": after}))
            rest = [m for m in await until_end(socket, run) if "id" in m]
        return run, first, rest

    run, first, rest = asyncio.run(scenario())
    seen = [e["id"] for e in first + rest]
    assert seen == list(range(1, len(seen) + 1)), seen  # none lost, none twice
    logged = site.call("GET", f"/api/runs/{run}/events?limit=1000", "alice")["data"]
    assert [e["id"] for e in logged] == seen
    types = [e["type"] for e in first + rest]
    assert "progress" in types, types
    assert types[-2:] == ["result", "status"], types
    assert rest[-1]["status"] == "succeeded"
    assert site.call("GET", f"/api/runs/{run}", "alice")["result"] == {"slept": 3}


def test_the_subprotocol_carries_the_token_and_is_answered(site: Site) -> None:
    run = site.start("alice", {"task": "nap"})["id"]

    async def scenario() -> tuple[str | None, list[dict[str, Any]]]:
        protocols = ["enclave.tasks.v1", "bearer." + site.keys["alice"]]
        async with connect(site.ws, subprotocols=protocols) as socket:  # type: ignore[arg-type]
            await socket.send(json.dumps({"type": "subscribe", "run": run}))
            return socket.subprotocol, await until_end(socket, run)

    chosen, events = asyncio.run(scenario())
    assert chosen == "enclave.tasks.v1"
    assert events[0]["id"] == 1
    assert events[-1]["status"] == "succeeded"


def test_a_ticket_opens_one_socket_once(site: Site) -> None:
    token = site.login("alice")  # a browser's session
    made = site.call("POST", "/api/tasks/ws/ticket", None, headers=bearer(token))
    assert made["expires_in"] > 0
    assert made["ticket"]
    url = f"{site.ws}?ticket={made['ticket']}"

    async def opened() -> dict[str, Any]:
        async with connect(url) as socket:
            await socket.send(json.dumps({"type": "subscribe", "run": "run_0000000000000000"}))
            return await receive(socket)

    answer = asyncio.run(opened())
    assert answer["type"] == "error"
    assert answer["code"] in ("not_found", "not_found_error")
    assert "ticket" in refused(site, url, 401)  # spent


def test_refused_handshakes(site: Site) -> None:
    assert "authentication required" in refused(site, site.ws, 401)
    refused(site, site.ws, 401, additional_headers=bearer("sk-enc-wrongwrongwrongwrong"))
    refused(site, site.ws, 401, subprotocols=["enclave.tasks.v1", "bearer.nonsense"])
    key = site.keys["alice"]
    assert "URL" in refused(site, f"{site.ws}?token={key}", 401)
    assert "URL" in refused(site, f"{site.ws}?access_token={site.login('alice')}", 401)
    refused(site, f"{site.ws}?ticket={key}", 401)  # a long-lived token is no ticket
    refused(site, f"{site.ws}?ticket={site.login('alice')}", 401)
    secret = (site.gateway.home / "secret.key").read_bytes()
    old = sign(secret, user="alice", via="key:x", ttl_s=30, now=time.time() - 60)
    refused(site, f"{site.ws}?ticket={old}", 401)  # expired
    outside = {"X-Forwarded-For": "192.0.2.7"} | bearer(key)
    assert "192.0.2.7" in refused(site, site.ws, 403, additional_headers=outside)


def test_another_users_run_is_not_found_and_bad_messages_keep_the_socket(site: Site) -> None:
    theirs = site.start("alice", {"task": "nap"})["id"]

    async def scenario() -> list[dict[str, Any]]:
        answers = []
        async with connect(site.ws, additional_headers=bearer(site.keys["bob"])) as socket:
            for message in (
                {"type": "subscribe", "run": theirs},
                {"type": "cancel", "run": theirs},
                {"type": "dance"},
                {"type": "subscribe"},
                {"type": "subscribe", "run": theirs, "after": "x"},
                {"type": "start", "task": "nap", "surprise": 1},
                {"type": "start", "task": "no-such-task"},
                [1, 2],
            ):
                await socket.send(json.dumps(message))
                answers.append(await receive(socket))
            await socket.send("not json")
            answers.append(await receive(socket))
        return answers

    answers = asyncio.run(scenario())
    assert all(a["type"] == "error" for a in answers), answers
    assert [a["param"] for a in answers[2:6]] == ["type", "run", "after", "surprise"]
    assert answers[0]["run"] == theirs
    assert answers[0]["code"] in ("not_found", "not_found_error"), answers[0]
    assert answers[6]["code"] in ("not_found", "not_found_error")
    site.wait(theirs, "alice")


def test_cancel_over_the_socket_ends_the_run(site: Site) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with connect(site.ws, additional_headers=bearer(site.keys["bob"])) as socket:
            await socket.send(json.dumps({"type": "start", "task": "long"}))
            run = (await receive(socket))["run"]["id"]
            events: list[dict[str, Any]] = []
            while not any(e["type"] == "progress" for e in events):
                events.append(await receive(socket))
            await socket.send(json.dumps({"type": "cancel", "run": run}))
            return events + await until_end(socket, run)

    events = asyncio.run(scenario())
    cancelling = [e for e in events if e["type"] == "cancelling"]
    assert cancelling
    assert cancelling[0]["run"]["cancel_requested"] is True
    assert events[-1]["type"] == "status"
    assert events[-1]["status"] == "cancelled"
