"""The web console's refresh token in a cookie, guarded by a custom header.

Only ``/api/auth/login``, ``/api/auth/refresh`` and ``/api/auth/logout`` look at it, and
only when the request carries ``X-Enclave-CSRF: 1``: a cross-site form, link or image
cannot add a custom header, and the gateway answers no CORS preflight, so a request with
the header came from a page of the gateway's own origin. The cookie is HttpOnly (page
scripts never read it), ``SameSite=Strict``, scoped to ``Path=/api/auth`` and ``Secure``
when the request came over https (TLS here, or ``X-Forwarded-Proto: https`` from a proxy
of ``auth.trusted_proxies``). Nothing else reads cookies: ``/v1`` and ``/api`` calls
authenticate by the ``Authorization`` header alone, so the cookie gives a forged
request nothing (docs/security.md, "The console's session cookie").
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from enclave.auth.network import Allowlist, parse_ip
from enclave.errors import AuthenticationFailed

CSRF_HEADER = "X-Enclave-CSRF"
COOKIE = "enclave_refresh"
PATH = "/api/auth"


def wanted(request: Request) -> bool:
    """The console asks for the cookie (the header's value is ``1``)."""
    return request.headers.get(CSRF_HEADER) == "1"


def https(request: Request, trusted: Allowlist) -> bool:
    """The browser reached us over https: TLS here, or a trusted proxy says so."""
    if request.url.scheme == "https":
        return True
    peer = parse_ip(request.client.host) if request.client else None
    if peer is None or not trusted.has(peer):
        return False
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1]
    return proto.strip().lower() == "https"


def store(response: Response, token: str, max_age: int, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, path=PATH, secure=secure, httponly=True,
        samesite="strict",
    )  # fmt: skip


def clear(response: Response, *, secure: bool) -> None:
    response.delete_cookie(COOKIE, path=PATH, secure=secure, httponly=True, samesite="strict")


def refresh_token(request: Request) -> str:
    """The cookie's refresh token (asked for with the header and no token in the body);
    without one, 401: the console shows its sign-in form."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise AuthenticationFailed(f"no refresh token: no {COOKIE} cookie and none in the body")
    return token
