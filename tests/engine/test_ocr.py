"""enclave.engine.ocr with the real RapidOCR models (bundled in rapidocr-onnxruntime)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from enclave.engine.ocr import OCR
from enclave.images import DecodedImage

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def ocr() -> OCR:
    engine = OCR()
    engine.load()
    return engine


def render(
    lines: list[tuple[tuple[int, int], str]],
    fmt: str = "PNG",
    size: tuple[int, int] = (900, 260),
    mode: str = "RGB",
) -> bytes:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=48)
    for position, text in lines:
        draw.text(position, text, font=font, fill="black")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def words(text: str) -> str:
    """OCR sometimes drops the space between words; compare without spaces."""
    return text.replace(" ", "").lower()


def test_reads_english_lines_in_reading_order(ocr: OCR) -> None:
    # Drawn bottom line first and right column before left, to check the sorting.
    data = render(
        [
            ((40, 160), "Permission denied"),
            ((520, 40), "failed"),
            ((40, 40), "Build"),
        ]
    )

    text = ocr.read(data)

    assert [words(line) for line in text.splitlines()] == ["build", "failed", "permissiondenied"]


def test_reads_chinese(ocr: OCR) -> None:
    # Rendered with WenQuanYi Micro Hei: a fresh machine has no CJK font, so it is shipped.
    text = ocr.read((DATA / "ocr_chinese.png").read_bytes())

    assert text.splitlines() == ["如何查看磁盘空间", "服务器内存不足"]


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB"), ("JPEG", "L"), ("PNG", "RGBA"), ("PNG", "P")],
)
def test_reads_every_accepted_format(ocr: OCR, fmt: str, mode: str) -> None:
    data = render([((30, 40), "Disk quota exceeded")], fmt=fmt, size=(700, 140), mode=mode)

    assert words(ocr.read(data)) == "diskquotaexceeded"


def test_transparent_background_reads_as_white(ocr: OCR) -> None:
    image = Image.new("RGBA", (700, 140), (0, 0, 0, 0))
    ImageDraw.Draw(image).text(
        (30, 40), "Segmentation fault", font=ImageFont.load_default(size=48), fill="black"
    )
    buffer = io.BytesIO()
    image.save(buffer, "PNG")

    assert words(ocr.read(buffer.getvalue())) == "segmentationfault"


def test_an_image_without_text_gives_an_empty_string(ocr: OCR) -> None:
    assert ocr.read(render([], size=(320, 200))) == ""


def test_read_all_keeps_the_order(ocr: OCR) -> None:
    first = render([((30, 40), "alpha")], size=(400, 140))
    second = render([((30, 40), "omega")], size=(400, 140))

    images = [
        DecodedImage(index=n, param=f"p{n}", mime="image/png", data=data, sha256="")
        for n, data in enumerate([first, second], start=1)
    ]
    texts = asyncio.run(ocr.read_all(images))

    assert [words(t) for t in texts] == ["alpha", "omega"]
