"""``enclave keys create|list|revoke|rotate``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from enclave.cli.accounts import show, with_identity
from enclave.config import Settings

if TYPE_CHECKING:
    from enclave.identity import Identity
    from enclave.store.models import ApiKey

COLUMNS = ["prefix", "name", "user", "models", "expires_at", "revoked_at", "last_used_at"]


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("keys", help="API keys: scopes, limits, expiry")
    commands = parser.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    create = commands.add_parser("create", help="make a key; its secret is shown once")
    create.add_argument("--user", required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--expires", default="30d", help="30d, 12h, 90m or never")
    create.add_argument("--models", action="append", default=[], help="glob, e.g. 'qwen*'")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--max-concurrency", type=int, help="requests at once")
    create.add_argument("--allow", action="append", default=[], help="CIDR it may come from")
    create.set_defaults(handler=_create)
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)
    for name, what in (("revoke", "revoke a key now"), ("rotate", "new secret, same key")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("prefix")
        sub.set_defaults(handler=_revoke if name == "revoke" else _rotate)


def _announce(secret: str, key: dict[str, Any]) -> None:
    print(secret)
    expires = key["expires_at"] or "never"
    print(f"key {key['prefix']} for {key['user']}, expires {expires}. "
          "Store the secret now: it is not kept and cannot be shown again.",
          file=sys.stderr)  # fmt: skip


def _create(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI, KeySpec

    spec = KeySpec(
        user=args.user, name=args.name, expires=args.expires, models=args.models,
        rpm=args.rpm, tpm=args.tpm, max_concurrency=args.max_concurrency, allow=args.allow,
    )  # fmt: skip

    async def work(identity: Identity) -> tuple[str, dict[str, Any]]:
        secret, key = await identity.create_key(CLI, spec)
        return secret, _public(key)

    _announce(*with_identity(settings, work))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    async def work(identity: Identity) -> list[dict[str, Any]]:
        return [_public(key) for key in await identity.list_keys(args.user)]

    show(with_identity(settings, work), COLUMNS, args.json)
    return 0


def _revoke(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(identity: Identity) -> None:
        await identity.revoke_key(CLI, args.prefix)

    with_identity(settings, work)
    print(f"key {args.prefix} revoked")
    return 0


def _rotate(args: argparse.Namespace, settings: Settings) -> int:
    from enclave.identity import CLI

    async def work(identity: Identity) -> tuple[str, dict[str, Any]]:
        secret, key = await identity.rotate_key(CLI, args.prefix)
        return secret, _public(key)

    _announce(*with_identity(settings, work))
    return 0


def _public(key: ApiKey) -> dict[str, Any]:
    from enclave.gateway.schemas.admin import KeyPublic

    return KeyPublic.of(key).model_dump()
