"""The image parts of a chat request: decode, check, and swap for OCR text.

No I/O, so the gateway can check images before it picks an upstream. Counting,
base64 and the magic bytes are stdlib; the header, dimension and integrity checks use
Pillow, imported on the first image (never by ``ask``). enclave never fetches a remote
image URL: in an air-gapped network there is nothing to fetch, and fetching would be a
way out of it. Images come inline as
``data:`` URLs with base64, as the OpenAI SDKs send local files.

Each image is numbered from 1 across the whole request, in message and part order; error
messages use that number and ``param`` names the exact field, e.g.
``messages[2].content[1].image_url``.
"""

from __future__ import annotations

import binascii
import hashlib
import io
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import InvalidRequest, PayloadTooLarge
from enclave.imagetypes import ACCEPTED, sniff_mime
from enclave.protocol.chat import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    ImagePart,
    TextPart,
)

if TYPE_CHECKING:
    from PIL.ImageFile import ImageFile

_BASE64_WHITESPACE = " \t\r\n"
# limits.max_image_pixels: 40 MP holds an 8K frame (33 MP) and the photos of 12-24 MP
# phone cameras with room to spare, and caps one decode at 160 MB (4 bytes a pixel).
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Formats Pillow decodes whole to check them (PNG and JPEG are checked without): one at a
# time, so concurrent requests hold at most one such decode.
_FULL_DECODE_LOCK = threading.Lock()


@dataclass(frozen=True)
class DecodedImage:
    index: int  # 1-based over the request
    param: str  # e.g. "messages[2].content[1].image_url"
    mime: str  # sniffed from the bytes, not the one the data URL declares
    data: bytes
    sha256: str


def image_params(request: ChatCompletionRequest) -> list[tuple[str, ImagePart]]:
    """Every image part of the request with the field that holds it, in order."""
    found: list[tuple[str, ImagePart]] = []
    for i, message in enumerate(request.messages):
        if not isinstance(message.content, list):
            continue
        for j, part in enumerate(message.content):
            if isinstance(part, ImagePart):
                found.append((f"messages[{i}].content[{j}].image_url", part))
    return found


def decode_images(
    request: ChatCompletionRequest,
    *,
    max_images: int,
    max_image_bytes: int,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> list[DecodedImage]:
    """Decode the request's images and check count, encoding, size, format and pixels.

    Raises InvalidRequest (too many, not a data URL, bad base64, not an image, over
    ``max_image_pixels`` by its header, truncated or corrupt: see :func:`check_image`)
    or PayloadTooLarge (over ``max_image_bytes`` once decoded; checked from the base64
    length before anything is decoded).
    """
    parts = image_params(request)
    if len(parts) > max_images:
        raise InvalidRequest(
            f"too many images: {len(parts)}; the limit is {max_images} per request "
            "(limits.max_images)",
            param="messages",
        )
    decoded: list[DecodedImage] = []
    for index, (param, part) in enumerate(parts, start=1):
        url = part.image_url.url
        start = _base64_start(url, index=index, param=param)
        size = _decoded_size(url, start)
        if size > max_image_bytes:
            raise PayloadTooLarge(
                f"image {index} is {_size(size, max_image_bytes)}; the limit is "
                f"{_size(max_image_bytes, size)} per image (limits.max_image_bytes)",
                param=param,
            )
        data = _b64decode(url[start:], index=index, param=param)
        mime = sniff_mime(data)
        if mime is None:
            raise InvalidRequest(f"image {index} is not a {ACCEPTED} image", param=param)
        image = DecodedImage(
            index=index, param=param, mime=mime, data=data, sha256=hashlib.sha256(data).hexdigest()
        )
        check_image(image, max_pixels=max_image_pixels)
        decoded.append(image)
    return decoded


def check_image(image: DecodedImage, *, max_pixels: int) -> None:
    """Refuse an image whose header declares over ``max_pixels``, or that is truncated or
    corrupt, before it goes to OCR or to a vision upstream (InvalidRequest, 400).

    The dimensions come from the header alone, before any pixel is decoded. Integrity:
    PNG by its chunk CRCs through IEND (nothing inflated), JPEG by a decode at 1/8 scale
    (64 times fewer pixels); WebP, GIF and BMP by decoding the first frame, which the
    pixel limit bounds, one at a time.
    """
    with unreadable(image), open_image(image.data, image.mime) as opened:
        width, height = opened.size
        if width * height > max_pixels:
            raise InvalidRequest(
                f"image {image.index} is {width}x{height} = {width * height} pixels; the "
                f"limit is {max_pixels} pixels per image (limits.max_image_pixels)",
                param=image.param,
            )
        if image.mime == "image/png":
            opened.verify()
        elif image.mime == "image/jpeg":
            opened.draft(None, (1, 1))
            opened.load()
        else:
            with _FULL_DECODE_LOCK:
                opened.load()


def open_image(data: bytes, mime: str) -> ImageFile:
    """The image, opened lazily (header only) by the Pillow plugin of its sniffed type.

    Not ``Image.open``: that would try every format, and its own decompression-bomb
    check would warn or raise before ours can name the setting.
    """
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    openers: dict[str, type[ImageFile]] = {
        "image/png": PngImagePlugin.PngImageFile,
        "image/jpeg": JpegImagePlugin.JpegImageFile,
        "image/webp": WebPImagePlugin.WebPImageFile,
        "image/gif": GifImagePlugin.GifImageFile,
        "image/bmp": BmpImagePlugin.BmpImageFile,
    }
    return openers[mime](io.BytesIO(data))


class ImageUnreadable(Exception):
    """Pillow could not decode an image; the message is Pillow's reason."""


def decode_errors() -> tuple[type[Exception], ...]:
    """What Pillow raises for a truncated, corrupt or bomb image."""
    from PIL import Image

    return (
        OSError,  # truncated data; UnidentifiedImageError
        SyntaxError,  # a broken header or chunk (Pillow's choice)
        ValueError,
        EOFError,
        IndexError,
        struct.error,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,  # where warnings are errors
        ImageUnreadable,
    )


@contextmanager
def unreadable(image: DecodedImage) -> Iterator[None]:
    """Pillow's errors for a truncated, corrupt or bomb image as a 400 naming the image."""
    try:
        yield
    except decode_errors() as exc:
        raise unreadable_error(image, exc) from None


def unreadable_error(image: DecodedImage, reason: object) -> InvalidRequest:
    """The 400 for an image that cannot be decoded, naming it and Pillow's reason."""
    kind = image.mime.removeprefix("image/").upper()
    return InvalidRequest(
        f"image {image.index} is not a valid {kind} image (truncated or corrupt: {reason})",
        param=image.param,
    )


def replace_images_with_text(
    request: ChatCompletionRequest, texts: Sequence[str]
) -> ChatCompletionRequest:
    """A copy of the request with image N replaced by a text part holding ``texts[N-1]``.

    The text is fenced so the model can tell OCR output from what the user typed. Content
    stays in list form (llama.cpp accepts text parts). The input request is not changed.
    """
    count = len(image_params(request))
    if len(texts) != count:
        raise ValueError(f"{len(texts)} OCR texts for {count} images")
    index = 0
    messages: list[ChatMessage] = []
    for message in request.messages:
        if not isinstance(message.content, list) or not message.images():
            messages.append(message)
            continue
        content: list[ContentPart] = []
        for part in message.content:
            if isinstance(part, ImagePart):
                index += 1
                content.append(TextPart(type="text", text=ocr_text(index, texts[index - 1])))
            else:
                content.append(part)
        messages.append(message.model_copy(update={"content": content}))
    return request.model_copy(update={"messages": messages})


def ocr_text(index: int, text: str) -> str:
    """The text part that stands in for image ``index``."""
    text = text.strip()
    if not text:
        return f"[image {index}: no text found by OCR]"
    return f"[OCR text of image {index}]\n{text}\n[end of OCR text]"


def _base64_start(url: str, *, index: int, param: str) -> int:
    """Where the base64 of a ``data:...;base64,`` URL starts (the URL is not copied)."""
    scheme = url[:8].lower()
    if scheme.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"image {index} is a remote URL; enclave does not fetch remote URLs. "
            "Send the image inline as a data URL (data:image/png;base64,...)",
            param=param,
        )
    if not scheme.startswith("data:"):
        raise InvalidRequest(
            f"image {index} must be a data URL (data:image/png;base64,...)", param=param
        )
    comma = url.find(",", 0, 300)  # a media type with parameters is short
    if comma < 0 or not url[:comma].lower().endswith(";base64"):
        raise InvalidRequest(
            f"image {index}: the data URL must be base64-encoded (data:image/png;base64,...)",
            param=param,
        )
    return comma + 1


def _decoded_size(url: str, start: int) -> int:
    """Bytes the base64 from ``start`` on decodes to, counted without decoding or copying."""
    length = len(url) - start - sum(url.count(c, start) for c in _BASE64_WHITESPACE)
    padding = 0
    end = len(url)
    while end > start and url[end - 1] in _BASE64_WHITESPACE:
        end -= 1
    if url.endswith("==", start, end):
        padding = 2
    elif url.endswith("=", start, end):
        padding = 1
    # Unpadded base64 is accepted too: 2 or 3 leftover characters carry 1 or 2 bytes.
    return (length // 4) * 3 + max(length % 4 - 1, 0) - padding


def _b64decode(payload: str, *, index: int, param: str) -> bytes:
    if any(c in payload for c in _BASE64_WHITESPACE):
        payload = "".join(payload.split())
    payload += "=" * (-len(payload) % 4)
    try:
        return binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            f"image {index}: the data URL is not valid base64", param=param
        ) from None


def _size(n: int, other: int) -> str:
    """``n`` bytes in MiB with one decimal; exact bytes too where MiB cannot tell."""
    mib = f"{n / 2**20:.1f} MiB"
    if mib == f"{other / 2**20:.1f} MiB":
        return f"{mib} ({n} bytes)"
    return mib
