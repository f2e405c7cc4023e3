"""The web console's files: its pages and assets ship inside the package, served from memory.

Every file is listed in ``static/manifest.json`` with its origin (an npm package and
version, or enclave) and SHA-256 (``tools/web_assets.py`` writes it). :class:`Assets`
loads the listed files once, checks each digest and keeps a gzip copy of the text ones;
a file that is not listed, or whose digest differs, is not served. Responses carry a
``Content-Security-Policy`` whose only source is the gateway itself, so a page can load
nothing from elsewhere (no CDN, font, analytics or update check), plus an ``ETag`` so a
browser revalidates cheaply.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response

STATIC = Path(__file__).parent / "static"
log = logging.getLogger(__name__)

# data: and blob: images are the user's own (pasted or picked images, previews).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none';"
    " frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidate with the ETag: a new version shows at once
}
PAGES = {"chat": "chat.html", "admin": "admin.html"}
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
         ".html": "text/html", ".json": "application/json", ".svg": "image/svg+xml"}  # fmt: skip
COMPRESS_AT = 512  # bytes: below this gzip saves less than its header costs


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes | None
    etag: str
    media_type: str


class Assets:
    """The manifest's files, verified, in memory (the whole console is well under 1 MB)."""

    def __init__(self, root: Path = STATIC) -> None:
        self.files: dict[str, Asset] = {}
        listed = json.loads((root / "manifest.json").read_text())["files"]
        for name, about in listed.items():
            body = (root / name).read_bytes()
            digest = hashlib.sha256(body).hexdigest()
            if digest != about["sha256"]:
                log.error("web asset %s does not match its manifest digest: not served", name)
                continue
            self.files[name] = _asset(name, body, digest)

    def response(self, name: str, accept_encoding: str, if_none_match: str | None) -> Response:
        asset = self.files.get(name)
        if asset is None:
            return Response("not found\n", status_code=404, headers=SECURITY_HEADERS)
        headers = SECURITY_HEADERS | {"ETag": asset.etag, "Vary": "Accept-Encoding"}
        if if_none_match == asset.etag:
            return Response(status_code=304, headers=headers)
        body = asset.body
        if asset.gzipped is not None and "gzip" in accept_encoding:
            body, headers["Content-Encoding"] = asset.gzipped, "gzip"
        return Response(body, media_type=asset.media_type, headers=headers)

    def page(self, which: str, accept_encoding: str, if_none_match: str | None) -> Response:
        return self.response(PAGES[which], accept_encoding, if_none_match)


def _asset(name: str, body: bytes, digest: str) -> Asset:
    suffix = Path(name).suffix
    media = TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    text = media.startswith("text/") or media in ("application/json", "image/svg+xml")
    packed = gzip.compress(body, 9, mtime=0) if text and len(body) >= COMPRESS_AT else None
    return Asset(body, packed, f'"{digest[:20]}"', media)
