"""What tasks may touch (enclave.tasks.safety) through the real step kinds and tools:
paths under configured roots only, byte and file budgets, named commands only, URLs on
the allowlist only — every refusal names its setting."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from enclave.errors import EnclaveError, Forbidden, PayloadTooLarge, UpstreamTimeout
from enclave.taskconfig import TaskLimits, TasksSettings
from enclave.tasks import registry, safety
from tests.taskctx import RecordingContext, run_step

pytestmark = pytest.mark.anyio


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    (folder / "app").mkdir(parents=True)
    (folder / "app" / "web.log").write_text(
        "boot\nINFO ready\nERROR db down\nretry\nINFO a\nINFO b\nERROR disk full\n"
    )
    (folder / "worker.log").write_text("INFO start\nINFO done\n")
    (tmp_path / "secret.txt").write_text("the admin password")
    return folder


def context(tmp_path: Path, **tasks: Any) -> RecordingContext:
    limits = tasks.pop("limits", {})
    settings = TasksSettings(
        file_roots={"logs": tmp_path / "logs"}, limits=TaskLimits(**limits), **tasks
    )
    return RecordingContext(tmp_path / "home", settings)


async def refused(kind: str, ctx: RecordingContext, **options: Any) -> EnclaveError:
    with pytest.raises(EnclaveError) as caught:
        await run_step(ctx, kind, **options)
    return caught.value


async def call_tool(ctx: RecordingContext, tool_name: str, **arguments: Any) -> str:
    tool = registry.tool(tool_name)
    assert tool is not None
    return await tool.run(ctx, tool.parameters.model_validate(arguments))


# --- paths -------------------------------------------------------------------------------


def test_resolve_under_refuses_absolute_dotdot_and_symlinks_out(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_text("a")
    (root / "link-in").symlink_to(root / "sub")
    (root / "link-out").symlink_to(tmp_path)
    (root / "file-out").symlink_to(tmp_path / "elsewhere.txt")

    assert safety.resolve_under(root, "sub/a.txt") == (root / "sub" / "a.txt").resolve()
    assert safety.resolve_under(root, "link-in/a.txt") == (root / "sub" / "a.txt").resolve()
    for bad, says in [
        ("/etc/passwd", "absolute"),
        ("C:\\x", "absolute"),
        ("sub/../../x", "'..'"),
        ("..", "'..'"),
        ("sub\\..\\..\\x", "'..'"),
        ("link-out/secret.txt", "symbolic link"),
        ("file-out", "symbolic link"),
    ]:
        with pytest.raises(Forbidden) as caught:
            safety.resolve_under(root, bad)
        assert says in caught.value.message, bad
        assert "tasks.file_roots" in caught.value.message


def test_globs_match_like_pathlib_without_walking_symlinks(tmp_path: Path) -> None:
    cases = {"*.log": ["a.log"], "**/*.log": ["a.log", "d/b.log", "d/e/c.log"],
             "d/*": ["d/b.log", "d/x.txt"], "d/**": ["d/b.log", "d/e/c.log", "d/x.txt"],
             "?.log": ["a.log"], "[!a].log": [], "d/[bc].log": ["d/b.log"]}  # fmt: skip
    root = tmp_path / "root"
    (root / "d" / "e").mkdir(parents=True)
    for name in ["a.log", "d/b.log", "d/e/c.log", "d/x.txt"]:
        (root / name).write_text(name)
    (root / "d" / "up").symlink_to(tmp_path)  # never walked: it would loop
    for pattern, expected in cases.items():
        found = [p.relative_to(root).as_posix() for p in safety.find_files(root, pattern, 10)]
        assert found == expected, pattern
    with pytest.raises(PayloadTooLarge, match=re.escape("tasks.limits.max_files (2)")):
        safety.find_files(root, "**", 2)
    for bad in ["", "/", "."]:
        with pytest.raises(EnclaveError):
            safety.glob_regex(bad)


async def test_read_files_keeps_matching_lines_with_context(logs: Path, tmp_path: Path) -> None:
    ctx = context(tmp_path)
    out = await run_step(ctx, "read_files", root="logs", glob="**/*.log", match="ERROR",
                         context=1)  # fmt: skip
    assert out["files"] == [{"path": "app/web.log", "bytes": 66, "lines": 5}]
    assert out["text"] == (
        "## app/web.log\n2: INFO ready\n3: ERROR db down\n4: retry\n--\n6: INFO b\n"
        "7: ERROR disk full"
    )
    everything = await run_step(ctx, "read_files", root="logs", glob="*.log")
    assert everything["text"] == "## worker.log\nINFO start\nINFO done"


async def test_read_files_since_hours_skips_old_files(logs: Path, tmp_path: Path) -> None:
    old = time.time() - 3 * 3600
    os.utime(logs / "worker.log", (old, old))
    out = await run_step(context(tmp_path), "read_files", root="logs", glob="**/*.log",
                         since_hours=2)  # fmt: skip
    assert [f["path"] for f in out["files"]] == ["app/web.log"]


async def test_read_refusals_name_their_setting(logs: Path, tmp_path: Path) -> None:
    ctx = context(tmp_path)
    (logs / "out").symlink_to(tmp_path)  # a symlink out: never read through
    out = await run_step(ctx, "read_files", root="logs", glob="out/*.txt")
    assert out["files"] == []

    error = await refused("read_files", ctx, root="etc", glob="*")
    assert isinstance(error, Forbidden)
    assert "tasks.file_roots" in error.message
    assert error.param == "root"
    error = await refused("read_files", ctx, root="logs", glob="../*.txt")
    assert "'..'" in error.message
    assert error.param == "glob"
    error = await refused("read_files", ctx, root="logs", glob="/etc/*")
    assert "absolute" in error.message


async def test_budgets_max_files_and_max_read_bytes(logs: Path, tmp_path: Path) -> None:
    error = await refused("read_files", context(tmp_path, limits={"max_files": 1}),
                          root="logs", glob="**/*.log")  # fmt: skip
    assert isinstance(error, PayloadTooLarge)
    assert "tasks.limits.max_files" in error.message

    ctx = context(tmp_path, limits={"max_read_bytes": 80})
    await run_step(ctx, "read_files", root="logs", glob="app/*.log")  # 66 bytes
    error = await refused("read_files", ctx, root="logs", glob="*.log")  # 21 more: over
    assert isinstance(error, PayloadTooLarge)
    assert "tasks.limits.max_read_bytes" in error.message
    # the same budget for the tools of the run
    with pytest.raises(PayloadTooLarge, match=re.escape("tasks.limits.max_read_bytes")):
        await call_tool(ctx, "read_file", root="logs", path="app/web.log")
    error = await refused("read_files", context(tmp_path), root="logs", glob="**/*.log",
                          max_bytes=10)  # fmt: skip
    assert "max_bytes" in error.message


async def test_read_file_and_list_files_tools(logs: Path, tmp_path: Path) -> None:
    ctx = context(tmp_path)
    listing = await call_tool(ctx, "list_files", root="logs", glob="**/*.log")
    assert listing == "app/web.log\t66 bytes\nworker.log\t21 bytes"
    assert "ERROR db down" in await call_tool(ctx, "read_file", root="logs", path="app/web.log")
    (logs / "leak").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(Forbidden, match="symbolic link"):
        await call_tool(ctx, "read_file", root="logs", path="leak")
    with pytest.raises(Forbidden, match=re.escape("'..'")):
        await call_tool(ctx, "read_file", root="logs", path="../secret.txt")


async def test_write_file_stays_in_the_output_folder_within_its_budget(tmp_path: Path) -> None:
    ctx = context(tmp_path, limits={"max_write_bytes": 20})
    out = await run_step(ctx, "write_file", path="reports/a.md", content="hello")
    assert out == {"path": "reports/a.md", "bytes": 5}
    assert (ctx.output_dir / "reports" / "a.md").read_text() == "hello"
    assert ctx.outputs == [(ctx.output_dir / "reports" / "a.md").resolve()]
    await run_step(ctx, "write_file", path="reports/a.md", content="x" * 20)  # replaced: fits

    for path, says in [("../escape.md", "'..'"), ("/tmp/x.md", "absolute")]:
        error = await refused("write_file", ctx, path=path, content="x")
        assert isinstance(error, Forbidden)
        assert says in error.message
        assert "tasks.output_dir" in error.message
    (ctx.output_dir / "link").symlink_to(tmp_path)
    error = await refused("write_file", ctx, path="link/x.md", content="x")
    assert "symbolic link" in error.message
    assert not (tmp_path / "x.md").exists()
    error = await refused("write_file", ctx, path="b.md", content="y")
    assert isinstance(error, PayloadTooLarge)
    assert "tasks.limits.max_write_bytes" in error.message
    assert await call_tool(ctx, "write_file", path="a.md", content="") == "wrote 0 bytes to a.md"


# --- commands ----------------------------------------------------------------------------


async def test_commands_only_by_name_without_a_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENCLAVE_SECRET_KEY", "do-not-leak")
    ctx = context(tmp_path, commands={"echo": ["echo", "-n"], "env": ["env"]})
    out = await run_step(ctx, "command", name="echo", args=["$HOME", ";", "rm -rf /"])
    assert out == {"exit_code": 0, "stdout": "$HOME ; rm -rf /", "stderr": ""}
    env = await run_step(ctx, "command", name="env")
    assert "do-not-leak" not in env["stdout"]
    assert sorted(line.split("=")[0] for line in env["stdout"].split()) == ["LANG", "PATH"]

    error = await refused("command", ctx, name="sh", args=["-c", "id"])
    assert isinstance(error, Forbidden)
    assert "tasks.commands" in error.message
    assert "echo, env" in error.message
    with pytest.raises(Forbidden, match=re.escape("tasks.commands")):
        await call_tool(ctx, "run_command", name="rm", args=["-rf", "/"])
    assert "exit code 0" in await call_tool(ctx, "run_command", name="echo", args=["hi"])


async def test_command_failure_timeout_and_bounded_output(tmp_path: Path) -> None:
    ctx = context(tmp_path, commands={"false": ["false"], "sleep": ["sleep", "30"],
                                      "yes": ["head", "-c", "5000", "/dev/zero"]},
                  command_timeout_s=0.5, command_output_bytes=1000)  # fmt: skip
    assert (await run_step(ctx, "command", name="false", check=False))["exit_code"] == 1
    error = await refused("command", ctx, name="false")
    assert "exited with 1" in error.message
    error = await refused("command", ctx, name="sleep")
    assert isinstance(error, UpstreamTimeout)
    assert "tasks.command_timeout_s" in error.message
    out = await run_step(ctx, "command", name="yes")
    assert len(out["stdout"].split("\n")[0]) == 1000
    assert "4000 more bytes dropped: tasks.command_output_bytes" in out["stdout"]


async def test_a_cancelled_command_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"echo $$ > {pid_file}; exec sleep 60"
    ctx = context(tmp_path, commands={"hold": ["sh", "-c", script]})
    task = asyncio.ensure_future(run_step(ctx, "command", name="hold"))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the command did not start"
        await asyncio.sleep(0.02)
    pid = int(pid_file.read_text())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped before the cancellation finished


# --- URLs --------------------------------------------------------------------------------


def test_allowed_url_compares_parsed_prefixes() -> None:
    allow = ["http://wiki.corp/api/", "https://tickets.corp", "http://10.0.0.5:8080/x?team=a"]
    good = [
        "http://wiki.corp/api/pages?id=1",
        "HTTP://WIKI.CORP:80/api/",
        "https://tickets.corp",
        "https://tickets.corp/a/b",
        "https://tickets.corp:443/",
        "http://10.0.0.5:8080/x?team=ab",
    ]
    bad = ["http://wiki.corp/apix", "http://wiki.corp/api", "http://wiki.corp/api/../admin",
           "http://wiki.corp.evil.example/api/", "http://wiki.corp@evil.example/api/",
           "http://user:pw@wiki.corp/api/", "https://wiki.corp/api/", "http://wiki.corp:81/api/",
           "https://tickets.corporate", "ftp://tickets.corp/", "file:///etc/passwd",
           "http://10.0.0.5:8080/x?team=b", "http://10.0.0.5:8080/y", "not a url", ""]  # fmt: skip
    assert [u for u in good if not safety.allowed_url(u, allow)] == []
    assert [u for u in bad if safety.allowed_url(u, allow)] == []
    assert not safety.allowed_url("http://wiki.corp/api/", [])  # default: none


async def test_urls_off_the_allowlist_are_refused(tmp_path: Path) -> None:
    ctx = context(tmp_path, http_allowlist=["http://127.0.0.1:9/api/"])
    error = await refused("http", ctx, url="http://127.0.0.1:9/admin")
    assert isinstance(error, Forbidden)
    assert "tasks.http_allowlist" in error.message
    with pytest.raises(Forbidden, match=re.escape("tasks.http_allowlist")):
        await call_tool(ctx, "http_get", url="http://example.com/")
