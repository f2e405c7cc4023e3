"""OCR of screenshots with RapidOCR (PP-OCRv4 on onnxruntime, CPU, models bundled).

The engine loads on first use (about a second) and reads one image at a time: each read
already uses every core, so running two at once only makes both slower. Decoding is inside
that one-at-a-time section too, and never keeps more than ``MAX_SIDE`` pixels a side: a
JPEG is decoded at a reduced scale, other formats are shrunk strip by strip right after
decoding, so the memory of OCR is one decoded image of at most ``limits.max_image_pixels``
(checked before, from the header) plus the RGB result of at most MAX_SIDE a side.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from enclave.images import (
    DecodedImage,
    ImageUnreadable,
    decode_errors,
    open_image,
    unreadable_error,
)
from enclave.imagetypes import sniff_mime

if TYPE_CHECKING:
    from PIL.Image import Image as PilImage

# RapidOCR's loggers (it sets them to DEBUG with their own stream handlers).
_RAPIDOCR_LOGGERS = ("RapidOCR", "OrtInferSession")
# Lines from the same text row whose top edges differ by less than this share the row.
_ROW_TOLERANCE = 0.5
# The longest side OCR reads. RapidOCR finds text boxes on a copy of at most 2000 pixels
# a side and reads each box from the image it is given: 4096 keeps small print of a
# 4K screenshot legible while a working RGB copy stays under 50 MB.
MAX_SIDE = 4096
# Images are flattened and shrunk in strips of about this many bytes of source pixels;
# each strip also reads the rows the Lanczos filter reaches (3 output pixels a side).
_STRIP_BYTES = 4 * 2**20
_LANCZOS_SUPPORT = 3


class OCR:
    """Reads the text of an image; thread-safe, lazy."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._init_lock = threading.Lock()
        self._run_lock = threading.Lock()

    def load(self) -> None:
        """Create the RapidOCR engine now rather than on the first read."""
        self._get_engine()

    def read(self, data: bytes) -> str:
        """The text of the image (PNG, JPEG, WebP, GIF or BMP bytes), lines in reading order.

        Returns an empty string when no text is found. Raises ImageUnreadable where
        Pillow cannot decode it (truncated or corrupt); ``read_all`` makes that a 400.
        """
        engine = self._get_engine()
        with self._run_lock:
            try:
                image = _to_rgb(data)
            except decode_errors() as exc:
                raise ImageUnreadable(str(exc)) from exc
            result, _elapsed = engine(image)
        if not result:
            return ""
        lines = [(box, str(text).strip()) for box, text, _score in result if str(text).strip()]
        return "\n".join(_reading_order(lines))

    async def read_all(self, images: Sequence[DecodedImage]) -> list[str]:
        """``read`` each image in a worker thread, in order; one that cannot be decoded is
        an InvalidRequest (400) naming it."""
        texts: list[str] = []
        for image in images:
            try:
                texts.append(await asyncio.to_thread(self.read, image.data))
            except ImageUnreadable as exc:
                raise unreadable_error(image, exc) from None
        return texts

    def _get_engine(self) -> Any:
        if self._engine is None:
            with self._init_lock:
                if self._engine is None:
                    _no_telemetry()
                    from rapidocr_onnxruntime import RapidOCR

                    engine = RapidOCR()
                    for name in _RAPIDOCR_LOGGERS:
                        logging.getLogger(name).setLevel(logging.ERROR)
                    self._engine = engine
        return self._engine


def _no_telemetry() -> None:
    """Keep onnxruntime from calling home. Its Linux wheels (1.32 here) send usage events
    to Microsoft's 1DS collector (mobile.events.data.microsoft.com) from background
    threads unless ``ORT_DISABLE_TELEMETRY`` is set when onnxruntime is first imported
    (``onnxruntime.disable_telemetry_events()`` does not stop them); the zero-egress
    proof (tests/airgap) caught their DNS lookups."""
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def _to_rgb(data: bytes, max_side: int = MAX_SIDE) -> PilImage:
    """The first frame of the image as an RGB Pillow image of at most ``max_side`` pixels
    a side, transparency on white.

    RapidOCR would read palette images (GIF, some PNG/BMP) as grayscale palette indices,
    so every image is converted. Beyond the decode itself nothing is done at full size:
    strips of about ``_STRIP_BYTES`` are flattened to RGB and resampled into the result
    (each with the rows around it that the filter reads, so no seams show).
    """
    from PIL import Image

    mime = sniff_mime(data)
    if mime is None:
        raise ValueError("not an image enclave accepts")
    image = open_image(data, mime)
    image.seek(0)
    width, height = image.size
    scale = min(1.0, max_side / max(width, height, 1))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    image.draft(None, target)  # JPEG: decode at 1/2, 1/4 or 1/8 scale
    image.load()
    width, height = image.size
    ratio = height / target[1]  # source rows per output row
    margin = 0 if image.size == target else math.ceil(_LANCZOS_SUPPORT * ratio) + 1
    rows = max(1, int(_STRIP_BYTES / (width * 4) / ratio))  # output rows per strip
    result = Image.new("RGB", target)
    for out_top in range(0, target[1], rows):
        out_bottom = min(out_top + rows, target[1])
        top, bottom = out_top * ratio, out_bottom * ratio
        first = max(0, math.floor(top) - margin)
        strip = _flatten(image.crop((0, first, width, min(height, math.ceil(bottom) + margin))))
        if image.size != target:
            box = (0.0, top - first, float(width), bottom - first)
            size = (target[0], out_bottom - out_top)
            strip = strip.resize(size, Image.Resampling.LANCZOS, box=box)
        result.paste(strip, (0, out_top))
    image.close()  # the full-size pixels go now
    return result


def _flatten(image: PilImage) -> PilImage:
    """RGB, transparency on white."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _reading_order(lines: list[tuple[list[list[float]], str]]) -> list[str]:
    """Texts top-to-bottom, and left-to-right within a row of text.

    A box joins the row above when their vertical centres are closer than half the height
    of the shorter one.
    """
    spans: list[tuple[float, float, float, str]] = []  # top, bottom, left, text
    for points, text in lines:
        ys = [point[1] for point in points]
        spans.append((min(ys), max(ys), min(point[0] for point in points), text))
    spans.sort(key=lambda span: span[0] + span[1])
    rows: list[list[tuple[float, float, float, str]]] = []
    for span in spans:
        if rows:
            last = rows[-1][-1]
            distance = abs((span[0] + span[1]) - (last[0] + last[1])) / 2
            height = min(span[1] - span[0], last[1] - last[0])
            if distance < _ROW_TOLERANCE * height:
                rows[-1].append(span)
                continue
        rows.append([span])
    return [span[3] for row in rows for span in sorted(row, key=lambda span: span[2])]
