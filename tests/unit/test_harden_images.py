"""Hardening (issue 13): images are checked from their header and for integrity before
OCR or a vision upstream sees them, and OCR decodes within a memory bound."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from enclave.config import LimitsSettings
from enclave.errors import InvalidRequest
from enclave.images import decode_images
from enclave.protocol.chat import ChatCompletionRequest
from tests.bad_images import flat_png, photo, truncated

LIMITS = {"max_images": 4, "max_image_bytes": 20 << 20}


def chat(data: bytes) -> ChatCompletionRequest:
    url = f"data:image/png;base64,{base64.b64encode(data).decode()}"
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": url}}]
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": content}]}
    )


def refusal(data: bytes, **limits: int) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        decode_images(chat(data), **{**LIMITS, **limits})
    assert caught.value.param == "messages[0].content[0].image_url"
    return caught.value


def test_the_pixel_limit_is_a_setting_of_40_megapixels() -> None:
    field = LimitsSettings.model_fields["max_image_pixels"]
    assert LimitsSettings().max_image_pixels == 40_000_000
    assert field.description


def test_a_small_png_declaring_13000_by_13000_is_refused_from_its_header() -> None:
    bomb = flat_png(13000, 13000)
    assert len(bomb) < 300_000  # 169 megapixels in a few hundred KB

    error = refusal(bomb)

    assert error.status == 400
    assert error.message == (
        "image 1 is 13000x13000 = 169000000 pixels; the limit is 40000000 pixels per image "
        "(limits.max_image_pixels)"
    )


def test_the_limit_is_the_setting_and_an_image_at_it_passes() -> None:
    image = flat_png(100, 50)
    [decoded] = decode_images(chat(image), **LIMITS, max_image_pixels=5000)
    assert decoded.mime == "image/png"
    assert (
        "4999 pixels per image (limits.max_image_pixels)"
        in refusal(image, max_image_pixels=4999).message
    )


def test_pillows_own_bomb_limit_never_escapes() -> None:
    # Over Pillow's own limit (2 x 89 megapixels raises DecompressionBombError in
    # Image.open) and allowed by ours: the image is judged by our checks alone.
    header_only = flat_png(20000, 10000)[:33] + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    error = refusal(header_only, max_image_pixels=10**9)
    assert error.message.startswith("image 1 is not a valid PNG image (truncated or corrupt")


@pytest.mark.parametrize(("fmt", "kind"), [("PNG", "PNG"), ("JPEG", "JPEG")])
def test_a_truncated_image_is_refused_naming_the_problem(fmt: str, kind: str) -> None:
    error = refusal(truncated(photo(fmt)))
    assert error.status == 400
    assert error.message.startswith(f"image 1 is not a valid {kind} image (truncated or corrupt")


def test_magic_bytes_over_garbage_are_refused() -> None:
    error = refusal(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert error.message.startswith("image 1 is not a valid PNG image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "BMP"])
def test_valid_images_pass_the_checks(fmt: str) -> None:
    data = photo(fmt)
    assert decode_images(chat(data), **LIMITS)[0].data == data


_PEAK = """
import resource, sys
from pathlib import Path
from enclave.engine.ocr import _to_rgb
data = Path(sys.argv[1]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = _to_rgb(data)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(image.size[0], image.size[1], (after - before) * 1024)
"""


def test_ocr_decodes_a_large_allowed_image_within_a_memory_bound(tmp_path: Path) -> None:
    # 12000 x 3000 RGBA (36 megapixels, under the default limit): the decode itself
    # needs 144 MB; converting, compositing and copying at full size took over 600 MB.
    width, height = 12000, 3000
    path = tmp_path / "long.png"
    path.write_bytes(flat_png(width, height, rgba=True))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PEAK), str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out_width, out_height, grown = (int(n) for n in done.stdout.split())

    assert grown < width * height * 4 + 64 * 2**20
    assert max(out_width, out_height) <= 4096


def test_a_small_image_is_not_resized_for_ocr() -> None:
    from enclave.engine.ocr import _to_rgb

    image = _to_rgb(photo("PNG", (900, 160)))
    assert (image.mode, image.size) == ("RGB", (900, 160))
    jpeg = _to_rgb(photo("JPEG", (5000, 1000)))
    assert jpeg.size == (4096, 819)  # decoded at 1/2 scale, then resized
    assert Image.open(io.BytesIO(photo("JPEG"))).size == (320, 240)
