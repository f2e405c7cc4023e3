"""``enclave users add|set|list|disable|enable|passwd``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from enclave.cli.accounts import read_password, show, with_identity
from enclave.config import Settings

if TYPE_CHECKING:
    from enclave.identity import Identity, UserPolicy

COLUMNS = ["name", "role", "disabled", "models", "rpm", "tpm", "max_concurrency", "created_at"]


def _policy_options(parser: argparse.ArgumentParser, unset: str) -> None:
    """The options of a user's policy: the same as a key's, both apply (the stricter wins)."""
    parser.add_argument("--models", action="append", help=f"glob, e.g. 'qwen*' ({unset})")
    parser.add_argument(
        "--rpm", type=int, help=f"requests per minute, all keys and sessions ({unset})"
    )
    parser.add_argument("--tpm", type=int, help=f"tokens per minute ({unset})")
    parser.add_argument("--max-concurrency", type=int, help=f"requests at once ({unset})")


def _policy(args: argparse.Namespace) -> UserPolicy:
    from enclave.identity import UserPolicy

    models = None if args.models is None else [m for m in args.models if m]
    return UserPolicy(models=models, rpm=args.rpm, tpm=args.tpm,
                      max_concurrency=args.max_concurrency)  # fmt: skip


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="people who may log in or own API keys")
    commands = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="add a user (the first admin comes from here)")
    add.add_argument("name")
    add.add_argument("--role", choices=("admin", "user"), default="user")
    add.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    _policy_options(add, "default: no limit")
    add.set_defaults(handler=_add)
    change = commands.add_parser(
        "set", help="change a user's role or policy (a new role ends their web sessions)"
    )
    change.add_argument("name")
    change.add_argument("--role", choices=("admin", "user"))
    _policy_options(change, "0 or '' removes it")
    change.set_defaults(handler=_set)
    listing = commands.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    for name, disabled in (("disable", True), ("enable", False)):
        sub = commands.add_parser(name, help=f"{name} a user (their keys and web sessions too)")
        sub.add_argument("name")
        sub.set_defaults(handler=_toggle, disabled=disabled)
    passwd = commands.add_parser(
        "passwd", help="set a user's password (ends their web sessions; keys are kept)"
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=_passwd)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    password = read_password(args.password_stdin)

    async def work(identity: Identity) -> None:
        await identity.add_user(CLI, args.name, args.role, password, _policy(args))

    with_identity(settings, work)
    print(f"user {args.name} added ({args.role})")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(identity: Identity) -> list[dict[str, Any]]:
        from enclave.gateway.schemas.admin import UserPublic

        return [UserPublic.of(user).model_dump() for user in await identity.list_users()]

    show(with_identity(settings, work), COLUMNS, args.json)
    return 0


def _set(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(identity: Identity) -> None:
        await identity.set_user(CLI, args.name, role=args.role, policy=_policy(args))

    with_identity(settings, work)
    print(f"user {args.name} changed")
    return 0


def _toggle(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(identity: Identity) -> None:
        await identity.set_disabled(CLI, args.name, args.disabled)

    with_identity(settings, work)
    print(f"user {args.name} {'disabled' if args.disabled else 'enabled'}")
    return 0


def _passwd(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    password = read_password(args.password_stdin)

    async def work(identity: Identity) -> None:
        await identity.set_password(CLI, args.name, password)

    with_identity(settings, work)
    print(f"password of {args.name} changed")
    return 0
