"""``enclave upstreams``: the state of every upstream member of a running gateway.

Reads the gateway's ``GET /health`` (a 503 still carries the body) and prints one row per
member plus a line for the pools. Exit codes: 0 status ok, 2 degraded, 1 anything else
or no answer. Keys missing from an older gateway's answer show as ``?``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from enclave.config import Settings

TIMEOUT_S = 5.0
ERROR_WIDTH = 60
EXIT_CODES = {"ok": 0, "degraded": 2}
COLUMNS = ("NAME", "STATE", "BREAKER", "IN FLIGHT", "WEIGHT", "MODELS", "LAST ERROR")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "upstreams",
        help="show the upstream members of a running gateway",
        description="Show every upstream member of a running enclave gateway, from its "
        "/health. Exit 0 if its status is ok, 2 if degraded, 1 otherwise.",
    )
    parser.add_argument(
        "--url", help="the gateway (default: $ENCLAVE_URL, else host and port of the settings)"
    )
    parser.add_argument(
        "--api-key", help="a key of the gateway, which shows the members to authenticated "
        "callers only (default: $ENCLAVE_API_KEY)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print /health's JSON body")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.url or os.environ.get("ENCLAVE_URL") or local_url(settings)).rstrip("/")
    body = fetch_health(url, args.api_key or os.environ.get("ENCLAVE_API_KEY") or None)
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(render(body, url))
    return exit_code(body)


def local_url(settings: Settings) -> str:
    """Where ``enclave serve`` with these settings listens, seen from this host."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard bind, reached via loopback
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def fetch_health(url: str, api_key: str | None = None) -> dict[str, Any]:
    """The JSON body of ``url``/health, whatever its HTTP status."""
    import httpx

    from enclave.errors import ClientError, InvalidRequest

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(trust_env=False, timeout=TIMEOUT_S, headers=headers) as client:
            response = client.get(url + "/health")
    except httpx.InvalidURL as exc:
        raise InvalidRequest(f"not a URL: {url} ({exc})") from None
    except httpx.TransportError:
        raise ClientError(f"cannot reach enclave at {url} — is `enclave serve` running?") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        raise ClientError(
            f"{url}/health answered HTTP {response.status_code} without a health report"
            " — is this an enclave gateway?"
        )
    return body


def exit_code(body: dict[str, Any]) -> int:
    return EXIT_CODES.get(str(body.get("status")), 1)


def render(body: dict[str, Any], url: str) -> str:
    """The report: a status line, a table of members and a line for the pools."""
    version = body.get("version")
    head = f"enclave {version} at {url}" if version else f"enclave at {url}"
    lines = [f"{head}: {_text(body.get('status'))}", ""]
    if set(body) == {"status"}:  # what the gateway tells callers without a key
        lines.append("the members are shown to authenticated callers: --api-key KEY")
        return "\n".join(lines)
    upstreams = [u for u in _list(body.get("upstreams")) if isinstance(u, dict)]
    lines.append(_table([_row(u) for u in upstreams]) if upstreams else "no upstream members")
    lines.extend(["", "pools: " + _pools(_list(body.get("pools")))])
    return "\n".join(lines)


def _row(upstream: dict[str, Any]) -> tuple[str, ...]:
    cap = upstream.get("max_concurrency")
    limit = "∞" if cap == 0 else _text(cap)
    problem = "; ".join(
        str(upstream[key]).strip() for key in ("last_error", "detail") if upstream.get(key)
    )
    return (
        _text(upstream.get("name")) + (" (standby)" if upstream.get("standby") else ""),
        _text(upstream.get("state")),
        _text(upstream.get("breaker")),
        f"{_text(upstream.get('outstanding'))}/{limit}",
        _text(upstream.get("weight")),
        ",".join(str(m) for m in _list(upstream.get("models"))) or "-",
        _shorten(problem),
    )


def _table(rows: list[tuple[str, ...]]) -> str:
    table = [COLUMNS, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _pools(pools: list[Any]) -> str:
    parts = []
    for pool in pools:
        if not isinstance(pool, dict):
            continue
        members = _list(pool.get("members"))
        kind = f" ({pool['kind']})" if pool.get("kind") else ""
        parts.append(
            f"{_text(pool.get('model'))}{kind} {_text(pool.get('available'))}/{len(members)}"
            f" available, {_text(pool.get('queued'))} queued"
        )
    return " · ".join(parts) if parts else "none"


def _text(value: Any) -> str:
    if value is None or value == "":
        return "?"
    if isinstance(value, float):
        return f"{value:g}"
    return " ".join(str(value).split())


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_WIDTH else text[: ERROR_WIDTH - 1] + "…"
