"""Which image formats enclave accepts, told from their first bytes.

Standard library only and nothing else imported, so ``ask`` can check a file without
loading the gateway's schema.
"""

from __future__ import annotations

ACCEPTED = "PNG/JPEG/WebP/GIF/BMP"
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


def sniff_mime(data: bytes) -> str | None:
    """The image type from its magic bytes, or None when it is none we accept."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    # "BM" alone is too weak (plenty of text starts with it): check the DIB header size.
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_DIB_SIZES:
        return "image/bmp"
    return None
