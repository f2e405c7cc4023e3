"""The web console's refresh token in a cookie, guarded by a custom header.

Only ``/api/auth/login``, ``/api/auth/refresh`` and ``/api/auth/logout`` look at it, and
only when the request carries ``X-Enclave-CSRF: 1``: a cross-site form, link or image
cannot add a custom header, and the gateway answers no CORS preflight, so a request with
the header came from a page of the gateway's own origin. The cookie is HttpOnly (page
scripts never read it), ``SameSite=Strict``, scoped to ``Path=/api/auth`` and ``Secure``
when the request came over https. Nothing else reads cookies: ``/v1`` and ``/api`` calls
authenticate by the ``Authorization`` header alone, so the cookie gives a forged
request nothing (docs/security.md, "The console's session cookie").
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from enclave.errors import AuthenticationFailed

CSRF_HEADER = "X-Enclave-CSRF"
COOKIE = "enclave_refresh"
PATH = "/api/auth"


def wanted(request: Request) -> bool:
    """The console asks for the cookie (the header's value is ``1``)."""
    return request.headers.get(CSRF_HEADER) == "1"


def store(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE, token, max_age=max_age, path=PATH, secure=request.url.scheme == "https",
        httponly=True, samesite="strict",
    )  # fmt: skip


def clear(request: Request, response: Response) -> None:
    response.delete_cookie(
        COOKIE, path=PATH, secure=request.url.scheme == "https", httponly=True,
        samesite="strict",
    )  # fmt: skip


def refresh_token(request: Request) -> str:
    """The cookie's refresh token (asked for with the header and no token in the body);
    without one, 401: the console shows its sign-in form."""
    token = request.cookies.get(COOKIE, "")
    if not token:
        raise AuthenticationFailed(f"no refresh token: no {COOKIE} cookie and none in the body")
    return token
