"""``/api/tasks``, ``/api/runs``, ``/api/schedules`` against a real gateway (authentication
on, SQLite): start, list, follow over SSE (resuming from Last-Event-ID or ?after=),
cancel, retry; owners see their own runs and schedules (another user's: 404), the
administrator all; every bad input a 400 naming its field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from enclave import sse
from tests.fakes.procs import FakeUpstream
from tests.tasks_site import Site, tasks_site


@pytest.fixture(scope="module")
def site(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with tasks_site(tmp_path_factory.mktemp("tasks-api"), fake) as made:
        yield made


@pytest.fixture(scope="module")
def done(site: Site) -> dict[str, Any]:
    """A run of alice's, finished."""
    run = site.start("alice", {"task": "nap", "params": {"note": "first"}})
    return site.wait(run["id"], "alice")


def stream(site: Site, path: str, who: str, headers: dict[str, str] | None = None
           ) -> list[sse.Event]:  # fmt: skip
    """The SSE stream at ``path`` read to its end."""
    auth = {"Authorization": f"Bearer {site.keys[who]}"} | (headers or {})
    with httpx.stream("GET", site.url + path, headers=auth, trust_env=False, timeout=60) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        return list(sse.decode(reply.iter_raw()))


def test_a_run_starts_with_its_location_and_finishes_with_its_result(
    site: Site, done: dict[str, Any]
) -> None:
    reply = httpx.post(site.url + "/api/runs", json={"task": "nap"}, trust_env=False,
                       headers={"Authorization": f"Bearer {site.keys['alice']}"})  # fmt: skip
    assert reply.status_code == 202, reply.text
    run = reply.json()
    assert reply.headers["location"] == f"/api/runs/{run['id']}"
    assert run["object"] == "task.run"
    assert run["status"] in ("queued", "running")
    assert done["status"] == "succeeded"
    assert done["result"] == {"slept": 3}
    assert done["params"] == {"note": "first"}
    assert done["owner"] == "alice"
    assert done["progress"]["percent"] == 100
    assert done["finished_at"]
    site.wait(run["id"], "alice")


def test_the_reference_shape_command_and_params_at_the_top(site: Site) -> None:
    run = site.start("alice", {"command": "nap", "note": "from the reference"})
    assert (run["task"], run["params"]) == ("nap", {"note": "from the reference"})
    site.wait(run["id"], "alice")


def test_sse_replays_then_resumes_from_last_event_id_or_after(
    site: Site, done: dict[str, Any]
) -> None:
    path = f"/api/runs/{done['id']}/stream"
    events = stream(site, path, "alice")
    ids = [int(e.id or 0) for e in events]
    assert ids == list(range(1, done["last_event"] + 1))
    assert [e.event for e in events][-2:] == ["result", "status"]
    assert all(e.json()["type"] == e.event and e.json()["run"] == done["id"] for e in events)
    resumed = stream(site, path, "alice", {"Last-Event-ID": "3"})
    assert [int(e.id or 0) for e in resumed] == ids[3:]
    after = stream(site, path + "?after=5", "alice")
    assert [int(e.id or 0) for e in after] == ids[5:]
    live = site.start("alice", {"task": "nap"})
    followed = stream(site, f"/api/runs/{live['id']}/stream", "alice")
    assert followed[-1].json()["status"] == "succeeded"
    assert [int(e.id or 0) for e in followed] == list(range(1, len(followed) + 1))


def test_owners_see_their_own_runs_and_the_administrator_all(
    site: Site, done: dict[str, Any]
) -> None:
    run = done["id"]
    for method, path in (("GET", f"/api/runs/{run}"), ("GET", f"/api/runs/{run}/events"),
                         ("GET", f"/api/runs/{run}/stream"), ("POST", f"/api/runs/{run}/cancel"),
                         ("POST", f"/api/runs/{run}/retry"),
                         ("GET", f"/api/runs/{run}/files/x.md")):  # fmt: skip
        site.call(method, path, "bob", 404)
    assert run not in [r["id"] for r in site.call("GET", "/api/runs?limit=500", "bob")["data"]]
    mine = site.call("GET", "/api/runs?limit=500", "alice")["data"]
    assert run in [r["id"] for r in mine]
    assert {r["owner"] for r in mine} == {"alice"}
    assert site.call("GET", f"/api/runs/{run}", "root")["owner"] == "alice"
    everyone = site.call("GET", "/api/runs?limit=500&owner=alice", "root")["data"]
    assert run in [r["id"] for r in everyone]
    site.call("GET", "/api/runs", None, 401)
    site.call("GET", "/api/tasks", None, 401)


def test_listing_pages_with_a_cursor(site: Site, done: dict[str, Any]) -> None:
    first = site.call("GET", "/api/runs?limit=1", "alice")
    assert len(first["data"]) == 1
    assert first["next"]
    second = site.call("GET", f"/api/runs?limit=1&before={first['next']}", "alice")
    assert second["data"]
    assert second["data"][0]["id"] != first["data"][0]["id"]
    finished = site.call("GET", "/api/runs?status=succeeded&task=nap", "alice")["data"]
    assert finished
    assert all(r["status"] == "succeeded" for r in finished)


def test_cancel_and_retry(site: Site) -> None:
    run = site.start("bob", {"task": "long"})
    site.wait(run["id"], "bob", until=("running",))
    asked = site.call("POST", f"/api/runs/{run['id']}/cancel", "bob")
    assert asked["cancel_requested"] is True
    assert site.wait(run["id"], "bob")["status"] == "cancelled"
    again = site.call("POST", f"/api/runs/{run['id']}/retry", "bob", 202)
    assert again["retry_of"] == run["id"]
    assert again["id"] != run["id"]
    site.call("POST", f"/api/runs/{again['id']}/cancel", "bob")
    site.wait(again["id"], "bob")


def test_tasks_are_listed_defined_and_removed(site: Site) -> None:
    names = [t["name"] for t in site.call("GET", "/api/tasks", "bob")["data"]]
    assert {"nap", "long"} <= set(names)
    assert site.call("GET", "/api/tasks/nap", "bob")["steps"][0]["kind"] == "sleep"
    mine = {"name": "bobs-nap", "steps": [{"id": "a", "kind": "noop"}]}
    made = site.call("POST", "/api/tasks", "bob", 201, json=mine)
    assert (made["object"], made["builtin"], made["owner"]) == ("task", False, "bob")
    site.call("POST", "/api/tasks", "bob", 409, json=mine)
    site.call("DELETE", "/api/tasks/bobs-nap", "alice", 403)
    assert site.call("DELETE", "/api/tasks/bobs-nap", "bob") == {"name": "bobs-nap",
                                                                 "deleted": True}  # fmt: skip
    site.call("GET", "/api/tasks/bobs-nap", "bob", 404)


def test_schedules_belong_to_their_owner(site: Site) -> None:
    body = {"task": "nap", "every_s": 3600, "name": "hourly", "params": {"note": "s"}}
    made = site.call("POST", "/api/schedules", "alice", 201, json=body)
    sid = made["id"]
    assert made["object"] == "task.schedule"
    assert made["trigger"] == {"kind": "interval", "every_s": 3600}
    assert made["owner"] == "alice"
    assert made["next_run_at"]
    assert not made["paused"]
    cron = {"task": "nap", "cron": "0 7 * * *", "timezone": "Asia/Shanghai"}
    daily = site.call("POST", "/api/schedules", "alice", 201, json=cron)
    assert daily["trigger"] == {"kind": "cron", "cron": "0 7 * * *", "timezone": "Asia/Shanghai"}
    assert sid not in [s["id"] for s in site.call("GET", "/api/schedules", "bob")["data"]]
    for method, path in (("GET", f"/api/schedules/{sid}"), ("DELETE", f"/api/schedules/{sid}"),
                         ("POST", f"/api/schedules/{sid}/pause")):  # fmt: skip
        site.call(method, path, "bob", 404)
    assert site.call("POST", f"/api/schedules/{sid}/pause", "alice")["paused"] is True
    assert site.call("POST", f"/api/schedules/{sid}/resume", "alice")["paused"] is False
    assert sid in [s["id"] for s in site.call("GET", "/api/schedules", "root")["data"]]
    for gone in (sid, daily["id"]):
        site.call("DELETE", f"/api/schedules/{gone}", "alice")
        site.call("GET", f"/api/schedules/{gone}", "alice", 404)


BAD_RUNS = [
    ({}, "task"),
    ({"task": "nap", "definition": {"name": "x", "steps": []}}, "task"),
    ({"task": "nap", "surprise": 1}, "surprise"),
    ({"task": ["nap"]}, "task"),
    ({"task": "nap", "params": {"note": 5}}, "params.note"),
    ({"task": "nap", "params": {"nope": "x"}}, "params.nope"),
    ({"definition": {"name": "adhoc", "steps": [{"id": "a", "kind": "teleport"}]}},
     "steps[0].kind"),
    ({"definition": {"name": "adhoc", "steps": [{"id": "a", "kind": "sleep"}]}},
     "steps[0].seconds"),
]  # fmt: skip

BAD_SCHEDULES = [
    ({"every_s": 60}, "task"),
    ({"task": "nap"}, "cron"),
    ({"task": "nap", "cron": "0 7 * * *", "every_s": 60}, "every_s"),
    ({"task": "nap", "cron": "every morning"}, "cron"),
    ({"task": "nap", "cron": "0 7 * * *", "timezone": "Mars/Olympus"}, "timezone"),
    ({"task": "nap", "every_s": "often"}, "every_s"),
    ({"task": "nap", "every_s": -5}, "every_s"),
    ({"task": "nap", "at": "tomorrow"}, "at"),
    ({"task": "nap", "delay_s": 60, "missed": "sometimes"}, "missed"),
    ({"task": "nap", "delay_s": 60, "params": {"note": 1}}, "params.note"),
    ({"task": "nap", "delay_s": 60, "colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("body", "param"), BAD_RUNS)
def test_a_bad_run_is_a_400_naming_the_field(site: Site, body: dict[str, Any], param: str) -> None:
    error = site.call("POST", "/api/runs", "alice", 400, json=body)["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(("body", "param"), BAD_SCHEDULES)
def test_a_bad_schedule_is_a_400_naming_the_field(
    site: Site, body: dict[str, Any], param: str
) -> None:
    error = site.call("POST", "/api/schedules", "alice", 400, json=body)["error"]
    assert error["param"] == param, error


def test_other_bad_inputs(site: Site, done: dict[str, Any]) -> None:
    site.call("POST", "/api/runs", "alice", 404, json={"task": "no-such-task"})
    site.call("POST", "/api/runs", "alice", 400, content=b"[1]",
              headers={"Content-Type": "application/json"})  # fmt: skip
    # A query parameter is named as the gateway names them everywhere: query.NAME
    for query, param in (("limit=0", "query.limit"), ("limit=x", "query.limit"),
                         ("after=-1", "after")):  # fmt: skip
        path = "/api/runs" if "limit" in query else f"/api/runs/{done['id']}/stream"
        assert site.call("GET", f"{path}?{query}", "alice", 400)["error"]["param"] == param
    bad_id = {"Last-Event-ID": "soon"}
    error = site.call("GET", f"/api/runs/{done['id']}/stream", "alice", 400, headers=bad_id)
    assert error["error"]["param"] == "Last-Event-ID"
    bad = {"name": "x", "steps": [{"id": "a", "kind": "noop"}], "limits": {"timeout_s": 1e9}}
    assert site.call("POST", "/api/tasks", "alice", 400, json=bad)["error"]["param"] == (
        "limits.timeout_s"
    )
    assert site.call("POST", "/api/tasks", "alice", 400, json={"name": "x"})["error"][
        "param"] == "steps"  # fmt: skip
    site.call("GET", f"/api/runs/{done['id']}/files/a/%2E%2E/%2E%2E/secret.key", "alice", 404)
