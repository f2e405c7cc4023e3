"""``enclave schedules add|list|rm|pause|resume``: when tasks run by themselves, straight
on the database (the gateway's scheduler, or ``enclave tasks worker``, fires them)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from enclave.cli.tasks import add_params, cli_caller, typed_params, with_tasks
from enclave.config import Settings
from enclave.durations import parse_duration
from enclave.errors import InvalidRequest

if TYPE_CHECKING:
    from enclave.tasks.service import TaskService


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schedules", help="run tasks on a schedule: cron, interval, once"
    )
    commands = parser.add_subparsers(dest="schedules_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="schedule a task")
    add.add_argument("task")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a cron expression: '0 7 * * *'")
    when.add_argument("--every", metavar="DURATION", help="an interval: 90s, 10m, 2h, 1d")
    when.add_argument("--at", metavar="ISO", help="once, at this time (with its zone)")
    when.add_argument("--in", dest="delay", metavar="DURATION", help="once, this long from now")
    add.add_argument("--tz", help="the cron expression's time zone (default UTC)")
    add.add_argument("--missed", choices=("skip", "once", "all"),
                     help="fire times missed while down: skip (default), once, all")  # fmt: skip
    add.add_argument("--name", help="a name to tell it by")
    add_params(add)
    add.set_defaults(handler=_add)
    listing = commands.add_parser("list", help="schedules and when they fire next")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    for verb, text, handler in (("rm", "remove a schedule", _remove),
                                ("pause", "stop firing a schedule", _pause),
                                ("resume", "fire a paused schedule again", _resume)):  # fmt: skip
        command = commands.add_parser(verb, help=text)
        command.add_argument("id", help="the schedule's id (sch_...)")
        command.set_defaults(handler=handler)


def trigger_of(args: argparse.Namespace) -> dict[str, Any]:
    """The schedule body's trigger fields from the options."""
    if args.tz and not args.cron:
        raise InvalidRequest("--tz goes with --cron", param="timezone")
    if args.cron:
        return {"cron": args.cron, **({"timezone": args.tz} if args.tz else {})}
    if args.at:
        return {"at": args.at}
    option, text = ("--every", args.every) if args.every else ("--in", args.delay)
    try:
        seconds = parse_duration(text, units="smhd").total_seconds()
    except ValueError as exc:
        raise InvalidRequest(f"{option}: {exc}", param=option.strip("-")) from None
    return {"every_s": seconds} if args.every else {"delay_s": seconds}


def _add(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> dict[str, Any]:
        caller = cli_caller()
        data: dict[str, Any] = {"task": args.task, **trigger_of(args)}
        data["params"] = await typed_params(service, caller, args.task, args.param)
        if args.missed:
            data["missed"] = args.missed
        if args.name:
            data["name"] = args.name
        return dict((await service.add_schedule(caller, data)).public())

    schedule = with_tasks(settings, work)
    print(f"schedule {schedule['id']} of {schedule['task']}: next run at "
          f"{schedule.get('next_run_at') or 'never'}")  # fmt: skip
    return 0


def describe(trigger: dict[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "cron":
        return f"cron {trigger.get('cron')} {trigger.get('timezone') or 'UTC'}"
    if kind == "interval":
        return f"every {float(trigger.get('every_s') or 0):g}s"
    return f"once at {trigger.get('at')}"


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.cli.accounts import show

    async def work(service: TaskService) -> list[dict[str, Any]]:
        return [dict(s.public()) for s in await service.list_schedules(cli_caller())]

    rows = with_tasks(settings, work)
    if not args.json:
        for row in rows:
            row["when"] = describe(row.get("trigger") or {})
            row["next_run_at"] = _short_time(row.get("next_run_at"))
    columns = ["id", "name", "task", "when", "missed", "paused", "next_run_at", "owner"]
    show(rows, columns, args.json)
    return 0


def _short_time(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat(timespec="seconds")
    except ValueError:
        return value


def _remove(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> None:
        await service.remove_schedule(cli_caller(), args.id)

    with_tasks(settings, work)
    print(f"schedule {args.id} removed")
    return 0


def _pause(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> None:
        await service.pause(cli_caller(), args.id)

    with_tasks(settings, work)
    print(f"schedule {args.id} paused")
    return 0


def _resume(args: argparse.Namespace, settings: Settings) -> int:
    async def work(service: TaskService) -> dict[str, Any]:
        return dict((await service.resume(cli_caller(), args.id)).public())

    schedule = with_tasks(settings, work)
    print(f"schedule {args.id} resumed: next run at {schedule.get('next_run_at') or 'never'}")
    return 0
