"""``enclave users add|list|disable|enable|passwd``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from enclave.cli.accounts import read_password, show, with_identity
from enclave.config import Settings

if TYPE_CHECKING:
    from enclave.identity import Identity


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("users", help="people who may log in or own API keys")
    commands = parser.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    add = commands.add_parser("add", help="add a user (the first admin comes from here)")
    add.add_argument("name")
    add.add_argument("--role", choices=("admin", "user"), default="user")
    add.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    add.set_defaults(handler=_add)
    listing = commands.add_parser("list", help="list users")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    for name, disabled in (("disable", True), ("enable", False)):
        sub = commands.add_parser(name, help=f"{name} a user (their keys and sessions too)")
        sub.add_argument("name")
        sub.set_defaults(handler=_toggle, disabled=disabled)
    passwd = commands.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(handler=_passwd)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    password = read_password(args.password_stdin)

    async def work(identity: Identity) -> None:
        await identity.add_user(CLI, args.name, args.role, password)

    with_identity(settings, work)
    print(f"user {args.name} added ({args.role})")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(identity: Identity) -> list[dict[str, Any]]:
        from enclave.gateway.schemas.admin import UserPublic

        return [UserPublic.of(user).model_dump() for user in await identity.list_users()]

    show(with_identity(settings, work), ["name", "role", "disabled", "created_at"], args.json)
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
