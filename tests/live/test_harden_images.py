"""Hardening (issue 13), against a real gateway: an image over ``limits.max_image_pixels``
by its header, or truncated, is a 400 naming the problem on both paths (OCR for a model
without vision, forwarding to a vision upstream) and never reaches the upstream; OCR of a
large allowed image keeps the gateway's memory within a bound."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bad_images import flat_png, garbled_png, photo, truncated
from tests.fakes.procs import FakeUpstream, run_fake_upstream
from tests.gateway import Gateway, run_gateway

TEXT_MODEL = "text-model"  # no vision: the gateway reads images by OCR
VISION_MODEL = "vl-model"  # images forwarded as they are
MODELS = (TEXT_MODEL, VISION_MODEL)
pytestmark = pytest.mark.fake_upstream(models=[TEXT_MODEL])


@pytest.fixture(scope="module")
def vision_fake() -> Iterator[FakeUpstream]:
    with run_fake_upstream(models=[VISION_MODEL], vision=True) as upstream:
        yield upstream


@pytest.fixture(scope="module")
def gateway(
    fake: FakeUpstream, vision_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    config = {
        "engine": {"enabled": False, "embeddings": False, "ocr": True},
        "upstreams": [
            {"name": "text", "base_url": fake.base_url, "models": [TEXT_MODEL]},
            {"name": "vision", "base_url": vision_fake.base_url, "models": [VISION_MODEL],
             "vision": True},
        ],
    }  # fmt: skip
    with run_gateway(tmp_path_factory.mktemp("home"), config) as running:
        yield running


def send(gateway: Gateway, model: str, image: bytes, mime: str = "image/png") -> httpx.Response:
    url = f"data:{mime};base64,{base64.b64encode(image).decode()}"
    content = [
        {"type": "text", "text": "what does it say?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    body = {"model": model, "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        gateway.v1 + "/chat/completions", content=json.dumps(body).encode(), timeout=120,
        headers={"content-type": "application/json"}, trust_env=False,
    )  # fmt: skip


def refused(response: httpx.Response) -> str:
    """The message of a 400 in the OpenAI error envelope, naming the image's field."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages[0].content[1].image_url"
    message: str = error["message"]
    return message


def upstream_requests(fake: FakeUpstream, vision_fake: FakeUpstream) -> int:
    return int(fake.stats()["requests"]) + int(vision_fake.stats()["requests"])


@pytest.mark.parametrize("model", MODELS)
def test_a_13000_square_png_is_refused_by_its_header(
    gateway: Gateway, fake: FakeUpstream, vision_fake: FakeUpstream, model: str
) -> None:
    before = upstream_requests(fake, vision_fake)

    message = refused(send(gateway, model, flat_png(13000, 13000)))

    assert "13000x13000" in message
    assert "(limits.max_image_pixels)" in message
    assert upstream_requests(fake, vision_fake) == before


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_a_400_naming_the_problem(
    gateway: Gateway, fake: FakeUpstream, vision_fake: FakeUpstream, model: str, fmt: str
) -> None:
    before = upstream_requests(fake, vision_fake)

    message = refused(send(gateway, model, truncated(photo(fmt)), f"image/{fmt.lower()}"))

    assert message.startswith(f"image 1 is not a valid {fmt} image (truncated or corrupt")
    assert upstream_requests(fake, vision_fake) == before
    assert "Traceback" not in gateway.log()


def test_pixel_data_that_does_not_decode_is_a_400_on_the_ocr_path(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    before = fake.stats()["requests"]

    message = refused(send(gateway, TEXT_MODEL, garbled_png()))

    assert message.startswith("image 1 is not a valid PNG image (truncated or corrupt")
    assert fake.stats()["requests"] == before
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_a_valid_image_still_works(gateway: Gateway, model: str, fmt: str, mime: str) -> None:
    response = send(gateway, model, photo(fmt), mime)
    assert response.status_code == 200, response.text
    assert ("x-enclave-ocr" in response.headers) == (model == TEXT_MODEL)


def memory_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert found, status
    return int(found.group(1))


def peak_kib(gateway: Gateway, image: bytes) -> int:
    """The gateway's peak resident memory while it answers a request with ``image``."""
    pid = gateway.running.process.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    response = send(gateway, TEXT_MODEL, image)
    assert response.status_code == 200, response.text
    return memory_kib(pid, "VmHWM")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_ocr_of_a_large_allowed_image_keeps_gateway_memory_bounded(gateway: Gateway) -> None:
    # RapidOCR's own peak (models, and buffers for a copy of at most 2000 pixels a side,
    # whatever it is given) is the same for any image it reads: the baseline is the peak
    # for an image of the size OCR reads, once RapidOCR has loaded.
    reads = flat_png(4096, 1024, rgba=True)
    peak_kib(gateway, reads)
    baseline = peak_kib(gateway, reads)
    width, height = 12000, 3000  # 36 megapixels of RGBA: 144 MB once decoded

    grown = (peak_kib(gateway, flat_png(width, height, rgba=True)) - baseline) * 1024

    # At most the decode and the 4096-side result; the full-size copies (RGBA
    # conversion, white background, composite, RGB) took 600 MB more.
    assert grown < width * height * 4 + 64 * 2**20, f"{grown / 2**20:.0f} MiB"
