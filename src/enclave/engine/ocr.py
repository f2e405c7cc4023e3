"""OCR of screenshots with RapidOCR (PP-OCRv4 on onnxruntime, CPU, models bundled).

The engine loads on first use (about a second) and reads one image at a time: each read
already uses every core, so running two at once only makes both slower.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Sequence
from typing import Any

# RapidOCR's loggers (it sets them to DEBUG with their own stream handlers).
_RAPIDOCR_LOGGERS = ("RapidOCR", "OrtInferSession")
# Lines from the same text row whose top edges differ by less than this share the row.
_ROW_TOLERANCE = 0.5


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

        Returns an empty string when no text is found.
        """
        image = _to_rgb(data)
        engine = self._get_engine()
        with self._run_lock:
            result, _elapsed = engine(image)
        if not result:
            return ""
        lines = [(box, str(text).strip()) for box, text, _score in result if str(text).strip()]
        return "\n".join(_reading_order(lines))

    async def read_all(self, images: Sequence[bytes]) -> list[str]:
        """``read`` each image in a worker thread, in order."""
        return [await asyncio.to_thread(self.read, data) for data in images]

    def _get_engine(self) -> Any:
        if self._engine is None:
            with self._init_lock:
                if self._engine is None:
                    from rapidocr_onnxruntime import RapidOCR

                    engine = RapidOCR()
                    for name in _RAPIDOCR_LOGGERS:
                        logging.getLogger(name).setLevel(logging.ERROR)
                    self._engine = engine
        return self._engine


def _to_rgb(data: bytes) -> Any:
    """The first frame of the image as an RGB Pillow image, transparency on white.

    RapidOCR would read palette images (GIF, some PNG/BMP) as grayscale palette indices,
    so every image is converted here.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
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
