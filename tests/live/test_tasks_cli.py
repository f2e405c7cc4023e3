"""``enclave tasks`` and ``enclave schedules`` as subprocesses, on the database of a real
gateway whose worker executes the runs: define, run --follow (progress on stderr, the
result on stdout), run --detach then logs --follow, list, show, cancel; schedules
add/list/pause/resume/rm; errors as one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.fakes.procs import FakeUpstream, run_process
from tests.gateway import ENCLAVE, Gateway, cli, run_gateway
from tests.tasks_site import nap


@pytest.fixture(scope="module")
def gateway(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
        "tasks": {"concurrency": 4, "per_user_running": 4, "poll_interval_s": 0.2},
    }
    home = tmp_path_factory.mktemp("tasks-cli")
    with run_gateway(home, config) as gw:
        definition = home / "nap.yaml"
        definition.write_text(yaml.safe_dump(nap(2)))
        defined = cli(gw, "tasks", "define", str(definition))
        assert defined.returncode == 0, defined.stderr
        assert "task nap defined" in defined.stdout
        long = home / "long.json"
        long.write_text(json.dumps(nap(60, "long")))
        assert cli(gw, "tasks", "define", str(long)).returncode == 0
        yield gw


def on_home(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``enclave --config HOME/enclave.yaml ARGS`` with ENCLAVE_HOME=home (no gateway)."""
    env = {**os.environ, "ENCLAVE_HOME": str(home)}
    return subprocess.run([ENCLAVE, "--config", str(home / "enclave.yaml"), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("enclave: "), done.stderr
    return lines[0]


def test_run_follow_shows_progress_and_prints_the_result(gateway: Gateway) -> None:
    done = cli(gateway, "tasks", "run", "nap", "-p", "note=hello", "--follow", timeout=120)
    assert json.loads(ok(done)) == {"slept": 2}
    assert "queued" in done.stderr
    assert "%" in done.stderr


def test_run_detach_then_logs_follow_list_and_show(gateway: Gateway) -> None:
    run = ok(cli(gateway, "tasks", "run", "nap", "--detach")).strip()
    assert run.startswith("run_")
    lines = ok(cli(gateway, "tasks", "logs", run, "--follow", timeout=120)).splitlines()
    assert lines[0].split()[0] == "1"
    assert "status" in lines[-1]
    assert "succeeded" in lines[-1]
    again = ok(cli(gateway, "tasks", "logs", run, "--json")).splitlines()
    assert [json.loads(line)["id"] for line in again] == list(range(1, len(lines) + 1))
    shown = json.loads(ok(cli(gateway, "tasks", "show", run)))
    assert shown["id"] == run
    assert shown["status"] == "succeeded"
    listed = json.loads(ok(cli(gateway, "tasks", "list", "--json")))
    assert run in [r["id"] for r in listed]
    assert "nap" in ok(cli(gateway, "tasks", "templates"))


def test_cancel_a_running_run(gateway: Gateway) -> None:
    run = ok(cli(gateway, "tasks", "run", "long", "--detach")).strip()
    assert "cancel" in ok(cli(gateway, "tasks", "cancel", run))
    followed = cli(gateway, "tasks", "run", "nap", "--detach")  # the worker keeps working
    logs = cli(gateway, "tasks", "logs", run, "--follow", timeout=120)
    assert logs.returncode == 1, logs.stderr  # followed to an end that is not a success
    assert "cancelled" in logs.stdout.splitlines()[-1]
    ok(cli(gateway, "tasks", "logs", ok(followed).strip(), "--follow", timeout=120))


def test_schedules_add_list_pause_resume_rm(gateway: Gateway) -> None:
    added = ok(cli(gateway, "schedules", "add", "nap", "--every", "1h", "-p", "note=x",
                   "--name", "hourly"))  # fmt: skip
    sid = added.split()[1]
    assert sid.startswith("sch_")
    daily = ok(cli(gateway, "schedules", "add", "nap", "--cron", "0 7 * * *", "--tz",
                   "Asia/Shanghai", "--missed", "once")).split()[1]  # fmt: skip
    table = ok(cli(gateway, "schedules", "list"))
    assert sid in table
    assert "every 3600s" in table
    assert "Asia/Shanghai" in table
    assert "paused" in ok(cli(gateway, "schedules", "pause", sid))
    listed = json.loads(ok(cli(gateway, "schedules", "list", "--json")))
    assert {s["id"]: s["paused"] for s in listed}[sid] is True
    assert "resumed" in ok(cli(gateway, "schedules", "resume", sid))
    for gone in (sid, daily):
        assert "removed" in ok(cli(gateway, "schedules", "rm", gone))
    assert sid not in ok(cli(gateway, "schedules", "list"))


def test_errors_are_one_line(gateway: Gateway, tmp_path: Path) -> None:
    one_line_error(cli(gateway, "tasks", "run", "no-such-task", "--detach"))
    one_line_error(cli(gateway, "tasks", "run", "nap", "-p", "oops", "--detach"))
    one_line_error(cli(gateway, "tasks", "show", "run_0000000000000000"))
    assert "cron" in one_line_error(cli(gateway, "schedules", "add", "nap", "--cron", "nope"))
    assert "every" in one_line_error(cli(gateway, "schedules", "add", "nap", "--every", "soon"))
    one_line_error(cli(gateway, "schedules", "rm", "sch_0000000000000000"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps: [{id: a, kind: teleport}]\n")
    assert "steps[0].kind" in one_line_error(cli(gateway, "tasks", "define", str(bad)))


def test_a_standalone_worker_runs_what_the_command_line_queued(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    """No gateway at all: ``tasks run --detach`` queues on the database, ``tasks worker``
    executes it, ``logs --follow`` sees it end; SIGTERM stops the worker cleanly."""
    config = {
        "engine": {"enabled": False, "embeddings": False, "ocr": False},
        "upstreams": [{"name": "fake", "base_url": fake.base_url, "models": ["fake-model"]}],
        "tasks": {"poll_interval_s": 0.2},
    }
    (tmp_path / "enclave.yaml").write_text(yaml.safe_dump(config))
    definition = tmp_path / "nap.json"
    definition.write_text(json.dumps(nap(1)))
    ok(on_home(tmp_path, "tasks", "define", str(definition)))
    run = ok(on_home(tmp_path, "tasks", "run", "nap", "--detach")).strip()
    command = [ENCLAVE, "--config", str(tmp_path / "enclave.yaml"), "tasks", "worker"]
    with run_process(command, {"ENCLAVE_HOME": str(tmp_path)}) as worker:
        lines = ok(on_home(tmp_path, "tasks", "logs", run, "--follow")).splitlines()
        assert "succeeded" in lines[-1]
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=30) == 0, worker.log.read_text()
