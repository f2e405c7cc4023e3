"""enclave.images: decoding and checking image parts, and swapping them for OCR text."""

from __future__ import annotations

import base64
import hashlib
import io
import tracemalloc
from typing import Any

import pytest
from PIL import Image

from enclave.errors import InvalidRequest, PayloadTooLarge
from enclave.images import (
    DecodedImage,
    decode_images,
    ocr_text,
    replace_images_with_text,
)
from enclave.imagetypes import sniff_mime
from enclave.protocol.chat import ChatCompletionRequest, ImagePart, TextPart

LIMITS = {"max_images": 4, "max_image_bytes": 1 << 20}


def image_bytes(fmt: str, size: tuple[int, int] = (8, 6)) -> bytes:
    image = Image.new("RGB", size, (200, 30, 30))
    if fmt == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def chat(*contents: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": c} for c in contents]}
    )


@pytest.mark.parametrize(
    ("fmt", "mime"),
    [
        ("PNG", "image/png"),
        ("JPEG", "image/jpeg"),
        ("WEBP", "image/webp"),
        ("GIF", "image/gif"),
        ("BMP", "image/bmp"),
    ],
)
def test_each_accepted_format_decodes_with_its_sniffed_mime(fmt: str, mime: str) -> None:
    data = image_bytes(fmt)
    request = chat([{"type": "text", "text": "what is this?"}, image_part(data_url(data))])

    [image] = decode_images(request, **LIMITS)

    assert image == DecodedImage(
        index=1,
        param="messages[0].content[1].image_url",
        mime=mime,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def test_declared_mime_is_ignored_in_favour_of_the_bytes() -> None:
    data = image_bytes("JPEG")
    request = chat([image_part(data_url(data, mime="image/png"))])

    assert decode_images(request, **LIMITS)[0].mime == "image/jpeg"


def test_images_are_numbered_across_messages_and_name_their_field() -> None:
    png, gif = image_bytes("PNG"), image_bytes("GIF")
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [image_part(data_url(png))]},
                {"role": "assistant", "content": "ok"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "and"}, image_part(data_url(gif))],
                },
            ],
        }
    )

    images = decode_images(request, **LIMITS)

    assert [(i.index, i.param, i.mime) for i in images] == [
        (1, "messages[1].content[0].image_url", "image/png"),
        (2, "messages[3].content[1].image_url", "image/gif"),
    ]


def test_no_images_gives_an_empty_list() -> None:
    assert decode_images(chat("hello", [{"type": "text", "text": "hi"}]), **LIMITS) == []


def test_too_many_images_names_the_count_the_limit_and_the_setting() -> None:
    url = data_url(image_bytes("PNG"))
    request = chat([image_part(url), image_part(url)], [image_part(url)])

    with pytest.raises(InvalidRequest) as caught:
        decode_images(request, max_images=2, max_image_bytes=1 << 20)

    assert caught.value.message == (
        "too many images: 3; the limit is 2 per request (limits.max_images)"
    )
    assert caught.value.param == "messages"


@pytest.mark.parametrize(
    "url", ["https://example.com/cat.png", "http://intranet/cat.png", "HTTPS://x/y.png"]
)
def test_remote_urls_are_refused_with_a_pointer_to_data_urls(url: str) -> None:
    request = chat([{"type": "text", "text": "look"}, image_part(url)])

    with pytest.raises(InvalidRequest) as caught:
        decode_images(request, **LIMITS)

    assert "does not fetch remote URLs" in caught.value.message
    assert "data URL" in caught.value.message
    assert caught.value.param == "messages[0].content[1].image_url"


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "cat.png", "data:image/png,rawbytes", "data:image/png;base64"],
)
def test_other_urls_and_non_base64_data_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_images(chat([image_part(url)]), **LIMITS)

    assert "data:image/png;base64," in caught.value.message
    assert caught.value.param == "messages[0].content[0].image_url"


@pytest.mark.parametrize("payload", ["not base64 at all!", "QUJD$RA==", "QUJDRA==QUJD", "é"])
def test_bad_base64_is_refused(payload: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_images(chat([image_part(f"data:image/png;base64,{payload}")]), **LIMITS)

    assert caught.value.message == "image 1: the data URL is not valid base64"
    assert caught.value.param == "messages[0].content[0].image_url"


def test_base64_with_line_breaks_or_without_padding_is_accepted() -> None:
    data = image_bytes("PNG")
    encoded = base64.b64encode(data).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    unpadded = encoded.rstrip("=")
    assert unpadded != encoded  # the fixture must exercise the missing padding

    for payload in (wrapped, unpadded):
        request = chat([image_part(f"data:image/png;base64,{payload}")])
        assert decode_images(request, **LIMITS)[0].data == data


@pytest.mark.parametrize("junk", [b"", b"hello world", b"BM not a bitmap at all", b"%PDF-1.7\n"])
def test_bytes_that_are_not_an_accepted_image_are_refused(junk: bytes) -> None:
    request = chat([image_part(data_url(image_bytes("PNG"))), image_part(data_url(junk))])

    with pytest.raises(InvalidRequest) as caught:
        decode_images(request, **LIMITS)

    assert caught.value.message == "image 2 is not a PNG/JPEG/WebP/GIF/BMP image"
    assert caught.value.param == "messages[0].content[1].image_url"


def test_sniff_mime_knows_the_formats_from_their_magic_bytes() -> None:
    assert sniff_mime(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_mime(b"GIF87a...") == "image/gif"
    assert sniff_mime(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert sniff_mime(b"BM") is None
    assert sniff_mime(image_bytes("TIFF")) is None


def test_an_image_over_the_size_limit_is_refused_before_it_is_decoded() -> None:
    data = image_bytes("PNG") + bytes(2048 - len(image_bytes("PNG")))  # 2 KiB
    request = chat([image_part(data_url(data))])

    with pytest.raises(PayloadTooLarge) as caught:
        decode_images(request, max_images=4, max_image_bytes=1024)

    assert caught.value.message == (
        "image 1 is 0.0 MiB (2048 bytes); the limit is 0.0 MiB (1024 bytes) per image "
        "(limits.max_image_bytes)"
    )
    assert caught.value.param == "messages[0].content[0].image_url"


def test_the_size_message_uses_mib_with_one_decimal() -> None:
    data = b"\x89PNG\r\n\x1a\n" + bytes(3 * 2**20)
    request = chat([image_part(data_url(data))])

    with pytest.raises(PayloadTooLarge) as caught:
        decode_images(request, max_images=1, max_image_bytes=2 * 2**20)

    assert caught.value.message == (
        "image 1 is 3.0 MiB; the limit is 2.0 MiB per image (limits.max_image_bytes)"
    )


def test_the_size_check_allocates_nothing_near_the_payload_size() -> None:
    payload = "A" * (40 * 2**20)  # base64 of 30 MiB of zero bytes
    request = chat([image_part(f"data:image/png;base64,{payload}")])

    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooLarge):
            decode_images(request, max_images=1, max_image_bytes=1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 2**20  # decoding would have needed 30 MiB


def test_a_payload_exactly_at_the_limit_is_accepted() -> None:
    data = image_bytes("PNG")
    request = chat([image_part(data_url(data))])

    assert decode_images(request, max_images=1, max_image_bytes=len(data))[0].data == data
    with pytest.raises(PayloadTooLarge):
        decode_images(request, max_images=1, max_image_bytes=len(data) - 1)


def test_replace_images_with_text_fences_ocr_output_and_keeps_list_content() -> None:
    url = data_url(image_bytes("PNG"))
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [image_part(url)]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "why does this fail?"},
                        {**image_part(url), "x-extra": 1},
                    ],
                },
            ],
        }
    )
    before = request.model_dump()

    replaced = replace_images_with_text(request, ["Disk full\n/dev/sda1 100%", "  \n"])

    assert request.model_dump() == before
    assert replaced.images() == []
    assert replaced.messages[0] == request.messages[0]
    assert replaced.temperature == 0.2
    assert replaced.wire()["messages"][1]["content"] == [
        {
            "type": "text",
            "text": "[OCR text of image 1]\nDisk full\n/dev/sda1 100%\n[end of OCR text]",
        }
    ]
    second = replaced.messages[2].content
    assert isinstance(second, list)
    assert all(isinstance(part, TextPart) for part in second)
    assert [part.text for part in second if isinstance(part, TextPart)] == [
        "why does this fail?",
        "[image 2: no text found by OCR]",
    ]
    assert isinstance(request.messages[2].content, list)
    assert isinstance(request.messages[2].content[1], ImagePart)


def test_replace_images_with_text_needs_one_text_per_image() -> None:
    request = chat([image_part(data_url(image_bytes("PNG")))])

    with pytest.raises(ValueError, match="2 OCR texts for 1 images"):
        replace_images_with_text(request, ["a", "b"])


def test_ocr_text_strips_surrounding_whitespace() -> None:
    assert ocr_text(3, "\n hello \n") == "[OCR text of image 3]\nhello\n[end of OCR text]"
    assert ocr_text(3, "") == "[image 3: no text found by OCR]"
