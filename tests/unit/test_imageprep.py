"""Images downscaled and re-encoded before ``ask`` sends them."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from enclave.client.imageprep import DEFAULT_MAX_SIDE, human_bytes, prepare, prepare_file
from enclave.errors import ImageError


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Noisy gradients: compresses like a photo, not like a flat test card."""
    rng = random.Random(7)
    small = Image.new(mode, (64, 48))
    small.putdata([tuple(rng.randrange(256) for _ in mode) for _ in range(64 * 48)])
    return small.resize((width, height), Image.Resampling.BICUBIC)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_big_photo_is_downscaled_to_the_longest_side(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(encoded(photo(4000, 3000), "PNG"))
    result = prepare_file(path)
    sent = decode(result.data)
    assert sent.size == (1568, 1176) == result.size
    assert result.original_size == (4000, 3000)
    assert result.changed
    assert result.mime == "image/jpeg"
    assert sent.format == "JPEG"
    assert len(result.data) * 10 < path.stat().st_size
    assert result.data_url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(result.data_url.split(",", 1)[1]) == result.data
    line = result.report()
    assert line.startswith(f"image {path}: 4000x3000 ")
    assert " → 1568x1176 " in line


def test_portrait_and_custom_side() -> None:
    result = prepare(encoded(photo(900, 2000), "JPEG", quality=95), "tall.jpg", max_side=500)
    assert result.size == (225, 500)
    assert decode(result.data).size == (225, 500)


def test_small_image_is_sent_untouched() -> None:
    data = encoded(photo(640, 480), "PNG")
    result = prepare(data, "small.png")
    assert not result.changed
    assert result.data == data
    assert result.mime == "image/png"
    assert result.report() == f"image small.png: 640x480 {human_bytes(len(data))} (sent as is)"


def test_screenshot_with_few_colours_stays_png() -> None:
    image = Image.new("RGB", (3840, 2160), "white")
    draw = ImageDraw.Draw(image)
    for y in range(0, 2160, 40):
        draw.rectangle((100, y, 3000, y + 20), fill=(30, 30, 30))
    result = prepare(encoded(image, "PNG"), "shot.png")
    assert result.changed
    assert result.mime == "image/png"
    assert decode(result.data).size == (DEFAULT_MAX_SIDE, 882)


def test_png_with_alpha_keeps_its_transparency() -> None:
    image = Image.new("RGBA", (3000, 2000), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((500, 500, 2500, 1500), fill=(200, 40, 40, 255))
    result = prepare(encoded(image, "PNG"), "logo.png")
    sent = decode(result.data)
    assert result.mime == "image/png"
    assert sent.mode == "RGBA"
    assert sent.size == (1568, 1045)
    assert sent.getpixel((5, 5))[3] == 0  # type: ignore[index]
    assert sent.getpixel((784, 522))[3] == 255  # type: ignore[index]


def test_large_bytes_but_small_side_is_reencoded() -> None:
    data = encoded(photo(1500, 1200), "BMP")  # 5.4 MB, within the side limit
    result = prepare(data, "raw.bmp")
    assert result.changed
    assert result.size == (1500, 1200)
    assert len(result.data) < len(data) // 10


def test_exif_rotation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encoded(photo(3200, 1600), "JPEG", exif=exif.tobytes())
    result = prepare(data, "phone.jpg")
    assert result.size == (784, 1568)
    assert result.original_size == (3200, 1600)


def test_corrupt_image_is_one_line_error() -> None:
    data = encoded(photo(2000, 1500), "PNG")
    with pytest.raises(ImageError) as caught:
        prepare(data[: len(data) // 2], "cut.png")
    message = str(caught.value)
    assert message.startswith("cut.png is a corrupt or truncated image")
    assert "\n" not in message


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("plain text")
    with pytest.raises(ImageError, match=r"notes.png is not a PNG, JPEG, WebP, GIF or BMP image"):
        prepare_file(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as caught:
        prepare_file(path)
    assert str(caught.value) == f"cannot read image {path}: No such file or directory"


@pytest.mark.parametrize(
    ("size", "text"),
    [(950, "950 B"), (310_400, "310 kB"), (12_100_000, "12.1 MB")],
)
def test_human_bytes(size: int, text: str) -> None:
    assert human_bytes(size) == text
