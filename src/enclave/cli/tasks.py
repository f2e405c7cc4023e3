"""``enclave tasks run|list|show|cancel|logs|templates|define|worker``: agent tasks,
straight on the database like ``enclave kb``.

The command line only records: a run it starts is queued, and a worker executes it (the
gateway's own, or ``enclave tasks worker``); ``run`` (unless ``--detach``) and
``logs --follow`` then follow its events from the database, with a progress bar on
stderr. The command line acts as an administrator (it sees every run), audited as
``cli``. A failed or cancelled run exits 1 with one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from enclave.config import Settings
from enclave.errors import InvalidRequest, ServiceUnavailable
from enclave.progress import ProgressBar

if TYPE_CHECKING:
    from enclave.tasks.service import Caller, TaskService

T = TypeVar("T")
TERMINAL = ("succeeded", "failed", "cancelled")
PAGE = 500


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("tasks", help="agent tasks: start, follow and cancel runs")
    commands = parser.add_subparsers(dest="tasks_command", metavar="COMMAND", required=True)
    run = commands.add_parser("run", help="start a run of a task (and follow it)")
    run.add_argument("name", help="a task or template (see: enclave tasks templates)")
    add_params(run)
    how = run.add_mutually_exclusive_group()
    how.add_argument("--follow", action="store_true", help="follow it to its end (default)")
    how.add_argument("--detach", action="store_true", help="print the run's id and return")
    run.set_defaults(handler=_run)
    listing = commands.add_parser("list", help="runs, newest first")
    listing.add_argument("--status", choices=("queued", "running", *TERMINAL))
    listing.add_argument("--task")
    listing.add_argument("--owner")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    show = commands.add_parser("show", help="one run, as JSON")
    show.add_argument("run")
    show.set_defaults(handler=_show)
    cancel = commands.add_parser("cancel", help="cancel a run (the call in flight too)")
    cancel.add_argument("run")
    cancel.set_defaults(handler=_cancel)
    logs = commands.add_parser("logs", help="a run's events")
    logs.add_argument("run")
    logs.add_argument("--follow", "-f", action="store_true", help="and the next ones, live")
    logs.add_argument("--json", action="store_true", help="one JSON event a line")
    logs.set_defaults(handler=_logs)
    templates = commands.add_parser("templates", help="the tasks there are, with their params")
    templates.add_argument("--json", action="store_true")
    templates.set_defaults(handler=_templates)
    define = commands.add_parser("define", help="store a task definition (JSON or YAML file)")
    define.add_argument("file", type=Path)
    define.set_defaults(handler=_define)
    worker = commands.add_parser("worker", help="execute queued runs and fire schedules "
                                 "here, without serving HTTP, until stopped")  # fmt: skip
    worker.set_defaults(handler=_worker)


def add_params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter of the task (repeatable)")  # fmt: skip


def cli_caller() -> Caller:
    from enclave.identity import CLI
    from enclave.tasks.service import Caller

    return Caller(user=None, admin=True, actor=CLI)


def with_tasks(settings: Settings, work: Callable[[TaskService], Awaitable[T]]) -> T:
    """Open the store (migrating it) and the task service on it, without its worker; run
    ``work``; close everything."""

    async def run() -> T:
        from enclave.cli.accounts import opened
        from enclave.tasks.service import TaskService

        async with opened(settings) as (store, audit):
            service = TaskService(store, lambda: settings, chat=_no_chat,
                                  knowledge=_no_knowledge, audit=audit,
                                  home=settings.home)  # fmt: skip
            try:
                return await work(service)
            except InvalidRequest as exc:
                if exc.param and exc.param not in exc.message:  # which field, on one line
                    exc.message = f"{exc.message} ({exc.param})"
                raise
            finally:
                await service.aclose()

    return asyncio.run(run())


async def _no_chat(body: dict[str, Any]) -> dict[str, Any]:
    raise ServiceUnavailable("the command line calls no model: a worker runs the steps")


def _no_knowledge() -> Any:
    raise ServiceUnavailable("the command line opens no knowledge base: a worker runs the steps")


async def typed_params(service: TaskService, caller: Caller, task: str, given: list[str]
                       ) -> dict[str, Any]:  # fmt: skip
    """``KEY=VALUE`` pairs as the task's params: each value converted to its param's type
    (a wrong one is left as text, for the service's 400 naming it)."""
    types: dict[str, Any] = {}
    if given:
        info = (await service.get_task(caller, task)).public()
        types = {k: (v or {}).get("type") for k, v in (info.get("params") or {}).items()}
    params: dict[str, Any] = {}
    for pair in given:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"a parameter is KEY=VALUE, not {pair!r}", param="params")
        params[key] = convert(value, types.get(key))
    return params


def convert(value: str, kind: Any) -> Any:
    """``value`` as a param of type ``kind`` (string, integer, number, boolean, array,
    object); as it is when it does not read as one."""
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean" and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if kind in ("array", "object"):
            return json.loads(value)
    except ValueError:
        return value
    return value


def _run(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> int:
        caller = cli_caller()
        params = await typed_params(service, caller, args.name, args.param)
        run = (await service.submit(caller, task=args.name, params=params)).public()
        if args.detach:
            print(run["id"])
            return 0
        print(f"run {run['id']} of {run['task']} queued", file=sys.stderr)
        return await follow(service, caller, run["id"], quiet=True)

    return with_tasks(settings, work)


class TaskBar(ProgressBar):
    """A run's progress on stderr: percent and the last message."""

    message = ""

    def line(self, done: int, total: int) -> str:
        return f"{self.label} {done:3d}% {self.message}".rstrip()


async def follow(service: TaskService, caller: Caller, run_id: str, *, quiet: bool,
                 after: int = 0, as_json: bool = False) -> int:  # fmt: skip
    """Print the run's events from ``after`` until its end; 0 when it succeeded.
    ``quiet``: progress on the bar, logs on stderr, the result on stdout; else one line
    per event on stdout."""
    final: dict[str, Any] = {}
    bar = TaskBar(run_id)
    with bar:
        async for event in service.follow(caller, run_id, after=after):
            data = event.public()
            if as_json:
                print(json.dumps(data, ensure_ascii=False), flush=True)
            elif quiet:
                _show_quietly(data, bar)
            else:
                print(event_line(data), flush=True)
            final = data if data.get("type") == "status" else final
    if quiet:
        run = (await service.get_run(caller, run_id)).public()
        return finish(run)
    return 0 if final.get("status") == "succeeded" else 1


def _show_quietly(data: dict[str, Any], bar: TaskBar) -> None:
    kind = data.get("type")
    if kind == "progress":
        bar.message = str(data.get("message") or bar.message)
        if data.get("percent") is not None:
            bar(int(float(data["percent"])), 100)
    elif kind in ("log", "step", "error") or (kind == "status" and data.get("reason")):
        bar.close()
        print(event_line(data), file=sys.stderr, flush=True)


def finish(run: dict[str, Any]) -> int:
    """The end of a followed run: its result on stdout, or its error as one line."""
    status = run.get("status")
    if status == "succeeded":
        result = run.get("result")
        text = result.get("text") if isinstance(result, dict) else None
        print(text if isinstance(text, str) else json.dumps(result, indent=2, ensure_ascii=False))
        for file in run.get("files") or []:
            print(f"enclave: wrote {file['path']} ({file['bytes']} bytes)", file=sys.stderr)
        return 0
    error = run.get("error") or {}
    why = error.get("message") or status
    print(f"enclave: run {run.get('id')} {status}: {why}", file=sys.stderr)
    return 1


def event_line(data: dict[str, Any]) -> str:
    """One event as a line of ``enclave tasks logs``."""
    at = str(data.get("at") or "")[11:19]
    kind = str(data.get("type"))
    return f"{data.get('id', ''):>4} {at} {kind:<9} {_describe(kind, data)}".rstrip()


def _describe(kind: str, data: dict[str, Any]) -> str:
    describe = _DESCRIBE.get(kind)
    if describe is not None:
        return describe(data)
    return _short({k: v for k, v in data.items() if k not in ("id", "run", "type", "at")})


def _status(data: dict[str, Any]) -> str:
    reason = f" ({data['reason']})" if data.get("reason") else ""
    return f"{data.get('status')} attempt {data.get('attempt')}{reason}"


def _progress(data: dict[str, Any]) -> str:
    percent = data.get("percent")
    head = f"{float(percent):.0f}% " if percent is not None else ""
    return head + str(data.get("message") or "")


def _step(data: dict[str, Any]) -> str:
    error = f": {data['error']}" if data.get("error") else ""
    where = f"{int(data.get('index', 0)) + 1}/{data.get('count')}"
    return f"{data.get('step')} ({data.get('kind')}) {where} {data.get('status')}{error}"


def _tool_call(data: dict[str, Any]) -> str:
    outcome = _short(data.get("error") or data.get("result"))
    return f"{data.get('step')}: {data.get('name')}({_short(data.get('arguments'))}) → {outcome}"


_DESCRIBE: dict[str, Callable[[dict[str, Any]], str]] = {
    "status": _status,
    "progress": _progress,
    "log": lambda data: f"[{data.get('level', 'info')}] {data.get('message', '')}",
    "step": _step,
    "tool_call": _tool_call,
    "error": lambda data: str(data.get("message") or ""),
    "result": lambda data: _short(data.get("result")),
}


def _short(value: Any, width: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.cli.accounts import show

    async def work(service: TaskService) -> list[dict[str, Any]]:
        runs, _ = await service.list_runs(cli_caller(), status=args.status, task=args.task,
                                          owner=args.owner, limit=args.limit)  # fmt: skip
        return [run.public() for run in runs]

    rows = with_tasks(settings, work)
    for row in rows:
        row["percent"] = (row.get("progress") or {}).get("percent")
    show(rows, ["id", "task", "owner", "status", "percent", "created_at"], args.json)
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> dict[str, Any]:
        return dict((await service.get_run(cli_caller(), args.run)).public())

    print(json.dumps(with_tasks(settings, work), indent=2, ensure_ascii=False))
    return 0


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> dict[str, Any]:
        return dict((await service.cancel(cli_caller(), args.run)).public())

    run = with_tasks(settings, work)
    print(f"run {run['id']} {'cancelled' if run['status'] == 'cancelled' else 'cancelling'}")
    return 0


def _logs(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> int:
        caller = cli_caller()
        if args.follow:
            return await follow(service, caller, args.run, quiet=False, as_json=args.json)
        after = 0
        while True:
            events = await service.events(caller, args.run, after=after, limit=PAGE)
            for event in events:
                data = event.public()
                print(json.dumps(data, ensure_ascii=False) if args.json else event_line(data))
                after = int(data["id"])
            if len(events) < PAGE:
                return 0

    return with_tasks(settings, work)


def _templates(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.cli.accounts import show

    async def work(service: TaskService) -> list[dict[str, Any]]:
        return [dict(task.public()) for task in await service.list_tasks(cli_caller())]

    tasks = with_tasks(settings, work)
    if args.json:
        print(json.dumps(tasks, indent=2, ensure_ascii=False))
        return 0
    for task in tasks:
        task["params"] = ", ".join(_param(n, p) for n, p in (task.get("params") or {}).items())
    show(tasks, ["name", "builtin", "owner", "params", "description"], False)
    return 0


def _param(name: str, spec: Any) -> str:
    spec = spec if isinstance(spec, dict) else {}
    default = f"={json.dumps(spec['default'])}" if "default" in spec else ""
    return f"{name}:{spec.get('type', '?')}{default}"


def _define(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    try:
        data = yaml.safe_load(args.file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{args.file} is not JSON or YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{args.file}: a task definition is a mapping (name, steps...)")

    async def work(service: TaskService) -> dict[str, Any]:
        return dict((await service.define(cli_caller(), data)).public())

    task = with_tasks(settings, work)
    print(f"task {task['name']} defined ({len(task.get('steps') or [])} steps)")
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.gateway.tasks_worker import run_worker

    asyncio.run(run_worker(settings))
    return 0
