"""Images that attack the decoder, made compactly in the test: flat PNGs whose header
declares huge dimensions (a decompression bomb: a few hundred KB that inflate to
hundreds of MB), and truncated PNG and JPEG files."""

from __future__ import annotations

import io
import random
import struct
import zlib

_ZERO_ROWS = 1 << 20  # inflate this many zero bytes at a time


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def flat_png(width: int, height: int, *, rgba: bool = False) -> bytes:
    """A valid PNG of one colour (all zero: black, or transparent when ``rgba``), made
    without ever holding its pixels: 13000 x 13000 grayscale is about 165 KB."""
    channels, colour_type = (4, 6) if rgba else (1, 0)
    raw = height * (1 + width * channels)  # a filter byte before each row
    packer = zlib.compressobj(9)
    compressed = bytearray()
    zeros = bytes(_ZERO_ROWS)
    for start in range(0, raw, _ZERO_ROWS):
        compressed += packer.compress(zeros[: min(_ZERO_ROWS, raw - start)])
    compressed += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", bytes(compressed))
        + _chunk(b"IEND", b"")
    )


def photo(fmt: str, size: tuple[int, int] = (320, 240)) -> bytes:
    """A noisy image that does not compress to nothing (so truncation cuts pixel data)."""
    from PIL import Image

    rng = random.Random(13)
    image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def truncated(data: bytes) -> bytes:
    """The first 60 % of the file: the header is whole, the pixel data is not."""
    return data[: len(data) * 6 // 10]


def garbled_png(width: int = 64, height: int = 64) -> bytes:
    """A PNG whose chunks are whole and their CRCs right, but whose pixel data is not
    deflate: only decoding it tells."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", random.Random(5).randbytes(512))
        + _chunk(b"IEND", b"")
    )
