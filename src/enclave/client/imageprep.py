"""Images made small before ``ask`` sends them: downscaled and re-encoded with Pillow.

A vision model sees at most about 1568 px on the longest side, so a 12 MB 4K screenshot
only costs upload time and request size. :func:`prepare` turns image bytes into what is
sent:

- **sent as is** when the file is a format enclave accepts (PNG, JPEG, WebP, GIF, BMP),
  its longest side is at most ``max_side`` and it is at most :data:`SMALL_BYTES` bytes;
- otherwise **re-encoded**: EXIF rotation applied, shrunk (Lanczos) so the longest side is
  at most ``max_side``, then encoded as PNG if any pixel is transparent (JPEG cannot keep
  it); else as JPEG quality :data:`JPEG_QUALITY`, or as PNG when the image has at most
  256 colours (a typical screenshot) and the PNG is the smaller of the two. If the result
  is not smaller than the original and no shrinking was needed, the original is sent.

Every image is decoded, even one sent as is, so a corrupt file is refused here with one
line (:class:`~enclave.errors.ImageError`) rather than by the server.

Pillow is imported when this module is, and ``ask`` imports this module only when it has
an image to send.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from enclave.errors import ImageError
from enclave.imagetypes import sniff_mime

DEFAULT_MAX_SIDE = 1568
SMALL_BYTES = 1_000_000
JPEG_QUALITY = 85
_NOT_AN_IMAGE = "is not a PNG, JPEG, WebP, GIF or BMP image"


@dataclass(frozen=True, slots=True)
class Prepared:
    """The bytes to send, and what was done to them."""

    name: str
    data: bytes
    mime: str
    original_size: tuple[int, int]
    original_bytes: int
    size: tuple[int, int]
    changed: bool

    @property
    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"

    def report(self) -> str:
        """``image shot.png: 3840x2160 12.1 MB → 1568x882 310 kB`` (for ``ask -v``)."""
        before = f"{_dims(self.original_size)} {human_bytes(self.original_bytes)}"
        if not self.changed:
            return f"image {self.name}: {before} (sent as is)"
        return f"image {self.name}: {before} → {_dims(self.size)} {human_bytes(len(self.data))}"


def prepare_file(path: Path, max_side: int = DEFAULT_MAX_SIDE) -> Prepared:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return prepare(data, str(path), max_side)


def prepare(data: bytes, name: str, max_side: int = DEFAULT_MAX_SIDE) -> Prepared:
    """What to send for ``data``; :class:`ImageError` (one line) if it is no usable image."""
    image, original = _decode(data, name, max_side)
    mime = sniff_mime(data)
    if mime is not None and max(original) <= max_side and len(data) <= SMALL_BYTES:
        return Prepared(name, data, mime, original, len(data), original, changed=False)
    image = ImageOps.exif_transpose(image)
    shrunk = max(image.size) > max_side
    if shrunk:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    new, new_mime = _encode(image)
    if mime is not None and not shrunk and len(new) >= len(data):
        return Prepared(name, data, mime, original, len(data), original, changed=False)
    return Prepared(name, new, new_mime, original, len(data), image.size, changed=True)


def _decode(data: bytes, name: str, max_side: int) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image (a JPEG possibly at a reduced scale) and its full size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            original = image.size
            scale = max_side / max(original)
            if image.format == "JPEG" and scale < 1:  # decode at a reduced scale: faster
                image.draft("RGB", (math.ceil(original[0] * scale), math.ceil(original[1] * scale)))
            image.load()
    except UnidentifiedImageError:
        raise ImageError(f"{name} {_NOT_AN_IMAGE}") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{name} has too many pixels to be an image worth sending") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"{name} is a corrupt or truncated image ({reason})") from None
    return image, original


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def _encode(image: Image.Image) -> tuple[bytes, str]:
    """PNG if the image is transparent anywhere; else JPEG, or PNG for at most 256
    colours when that is smaller."""
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        lowest = rgba.getchannel("A").getextrema()[0]
        if isinstance(lowest, int | float) and lowest < 255:
            return _save(rgba, "PNG", optimize=True), "image/png"
    flat = image.convert("RGB")
    best = (_save(flat, "JPEG", quality=JPEG_QUALITY, optimize=True), "image/jpeg")
    if flat.getcolors(256) is not None:
        png = _save(flat, "PNG", optimize=True)
        if len(png) <= len(best[0]):
            best = (png, "image/png")
    return best


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _dims(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def human_bytes(n: int) -> str:
    """``950 B``, ``310 kB``, ``12.1 MB`` (decimal units)."""
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.0f} kB"
    return f"{n / 1_000_000:.1f} MB"
