"""``/api/tasks/ws`` and the SSE stream within bounds: a deeply nested message is an
error answer (the socket lives on), live followers per user are capped
(``tasks.max_followers_per_user``), and a socket whose key was revoked is closed (1008)
before it may start or cancel a run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fakes.procs import FakeUpstream
from tests.gateway import cli
from tests.live.test_tasks_ws import bearer, receive
from tests.tasks_site import Site, tasks_site

TASKS = {"concurrency": 8, "per_user_running": 8, "poll_interval_s": 0.2,
         "max_followers_per_user": 2}  # fmt: skip


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with tasks_site(tmp_path_factory.mktemp("tasks-ws-limits"), fake, tasks=TASKS) as made:
        yield made


def test_a_deeply_nested_message_is_answered_and_the_socket_stays(site: Site) -> None:
    async def scenario() -> list[dict[str, object]]:
        async with connect(site.ws, additional_headers=bearer(site.keys["bob"]),
                           max_size=None) as socket:  # fmt: skip
            deep = '{"type": "subscribe", "run": ' + "[" * 200_000 + "]" * 200_000 + "}"
            await socket.send(deep)
            first = await receive(socket)
            await socket.send(json.dumps({"type": "dance"}))
            return [first, await receive(socket)]

    deep, after = asyncio.run(scenario())
    assert deep["type"] == "error"
    assert "limits.max_json_depth" in str(deep["message"])
    assert after["param"] == "type"


def test_live_followers_per_user_are_capped(site: Site) -> None:
    runs = [site.start("alice", {"task": "long"})["id"] for _ in range(3)]

    async def scenario() -> tuple[dict[str, object], str]:
        async with connect(site.ws, additional_headers=bearer(site.keys["alice"])) as socket:
            for run in runs[:2]:
                await socket.send(json.dumps({"type": "subscribe", "run": run}))
                assert "id" in await receive(socket)  # an event: the follower is live
            await socket.send(json.dumps({"type": "subscribe", "run": runs[2]}))
            while (answer := await receive(socket)).get("type") != "error":
                pass
            stream = site.call("GET", f"/api/runs/{runs[2]}/stream", "alice", 429)
            return answer, stream["error"]["message"]

    try:
        refused, streamed = asyncio.run(scenario())
        assert "tasks.max_followers_per_user" in str(refused["message"])
        assert "tasks.max_followers_per_user" in streamed
    finally:
        for run in runs:
            site.call("POST", f"/api/runs/{run}/cancel", "alice")
            site.wait(run, "alice")


def test_a_revoked_key_closes_the_socket_before_it_starts_anything(site: Site) -> None:
    made = cli(site.gateway, "keys", "create", "--user", "alice", "--name", "soon-revoked")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[0].strip()

    async def scenario() -> int:
        async with connect(site.ws, additional_headers=bearer(key)) as socket:
            await socket.send(json.dumps({"type": "dance"}))
            assert (await receive(socket))["type"] == "error"  # the socket works
            revoked = cli(site.gateway, "keys", "revoke", key.split("-")[2])
            assert revoked.returncode == 0, revoked.stderr
            await socket.send(json.dumps({"type": "start", "task": "nap"}))
            with pytest.raises(ConnectionClosed) as closed:
                await receive(socket)
            assert closed.value.rcvd is not None
            return closed.value.rcvd.code

    assert asyncio.run(scenario()) == 1008
    runs = site.call("GET", "/api/runs?task=nap&owner=alice", "root")["data"]
    assert all(run["status"] != "queued" for run in runs)
