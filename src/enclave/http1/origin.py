"""Where a client connects, and the bytes of one request."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit

P = TypeVar("P", bound=asyncio.Protocol)


@dataclass(frozen=True, slots=True)
class Origin:
    """A server: ``host``/``port`` to connect to, TLS or not, the URL's path as ``prefix``
    (no trailing ``/``) and ``authority`` for the ``Host`` header."""

    host: str
    port: int
    tls: ssl.SSLContext | None = None
    prefix: str = ""
    authority: str = ""

    @classmethod
    def parse(cls, url: str, *, insecure: bool = False) -> Origin:
        """An ``http://`` or ``https://`` URL; ``insecure`` skips certificate checks.
        Raises ``ValueError`` for anything else."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"not a URL: {url!r} ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        tls = None
        if parts.scheme == "https":
            tls = ssl.create_default_context()
            if insecure:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        authority = parts.netloc.rsplit("@", 1)[-1]
        default = 443 if tls else 80
        return cls(parts.hostname, port or default, tls, parts.path.rstrip("/"), authority)

    @classmethod
    def plain(cls, host: str, port: int) -> Origin:
        """``http://host:port`` with no path."""
        name = f"[{host}]" if ":" in host else host
        return cls(host, port, authority=f"{name}:{port}")

    def head(self, *, user_agent: str, headers: dict[str, str] | None = None) -> str:
        """The header lines every request to this origin carries (each ends in CRLF)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        return f"Host: {self.authority}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n{extra}"

    async def connect(self, factory: Callable[[], P]) -> P:
        """A new connection; raises ``OSError``."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            factory, self.host, self.port, ssl=self.tls,
            server_hostname=self.host if self.tls else None,
        )  # fmt: skip
        return protocol


def message(method: str, target: str, head: str, body: bytes | None = None) -> bytes:
    """The bytes of one request: ``head`` from :meth:`Origin.head`, ``body`` JSON."""
    start = f"{method} {target} HTTP/1.1\r\n{head}"
    if body is None:
        return (start + "\r\n").encode("latin-1")
    start += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return start.encode("latin-1") + body
