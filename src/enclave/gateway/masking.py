"""The effective settings as JSON for the admin console, every secret ``"***"``.

A value is masked when it is a pydantic ``SecretStr``/``SecretBytes``, or a text whose
field (or mapping key) is named like a secret (``password``, ``bind_password``,
``api_key``, ``secret``, ``token``, ``key``, ``credentials``...), so a secret added
later is masked without a change here. Names ending ``_env`` or ``_file`` hold where
a secret is read from (a variable's name, a path) and stay visible. In every text that
is a URL, the password of its user part and query parameters named like a secret are
masked (database and Redis URLs, an upstream's base URL).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, SecretBytes, SecretStr
from pydantic_core import to_jsonable_python

MASK = "***"
_SECRET_NAME = re.compile(
    r"(^|[_-])(pass(word|wd|phrase)?|secrets?|token|key|api[_-]?key|apikey|credentials?|"
    r"(access|private|signing|encryption|session)[_-]?key|authorization|dsn|cookie)([_-]|$)",
    re.IGNORECASE,
)
_WHERE_FROM = re.compile(r"[_-](env|file|path|dir)$", re.IGNORECASE)
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def secret_name(name: str) -> bool:
    """Whether a field or key of this name holds a secret."""
    return bool(_SECRET_NAME.search(name)) and not _WHERE_FROM.search(name)


def masked(model: BaseModel) -> dict[str, Any]:
    """``model`` (the settings) as plain JSON data, secrets masked."""
    return {name: _value(name, getattr(model, name)) for name in type(model).model_fields}


def _value(name: str, value: Any) -> Any:
    if isinstance(value, BaseModel):
        return masked(value)
    if isinstance(value, dict):
        return {str(k): _value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_value(name, item) for item in value]
    return _leaf(name, value)


def _leaf(name: str, value: Any) -> Any:
    secret = isinstance(value, SecretStr | SecretBytes)
    if secret or (secret_name(name) and isinstance(value, str | bytes)):
        return MASK
    return mask_url(value) if isinstance(value, str) else to_jsonable_python(value)


def mask_url(text: str) -> str:
    """A URL's password and secret-named query values ``***``; other text unchanged."""
    if not _URL.match(text):
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return MASK  # not parseable: it may hold anything
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
