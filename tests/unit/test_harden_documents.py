"""Document bombs: every loader is bounded per file (unpacked size, docx compression ratio,
extracted text, time, memory), and an uploaded name is one plain file name."""

from __future__ import annotations

import io
import zipfile

import pytest

from enclave.config import IngestSettings
from enclave.errors import InvalidRequest
from enclave.knowledge.documents import Limits, document_name, extract
from enclave.knowledge.sandbox import Stopped, Stopper, extract_isolated
from tests.faq import SECURITY, docx, pdf
from tests.kbjobs import docx_bomb

BOMB = docx_bomb(30 * 2**20 // 6)  # 30 MiB of empty paragraphs
SLOW = docx_bomb(40_000)  # under every size limit, minutes of python-docx


def test_the_bomb_is_small_and_unpacks_large() -> None:
    assert len(BOMB) < 100_000
    members = zipfile.ZipFile(io.BytesIO(BOMB)).infolist()
    assert sum(m.file_size for m in members) > 30 * 2**20


def test_a_docx_bomb_is_refused_by_its_compression_ratio_before_it_is_parsed() -> None:
    with pytest.raises(InvalidRequest) as refused:
        extract("bomb.docx", BOMB)
    assert refused.value.message.startswith("bomb.docx: word/document.xml is compressed ")
    assert "(knowledge.ingest.max_compression_ratio)" in refused.value.message


def test_a_docx_unpacking_past_the_size_limit_is_refused() -> None:
    limits = Limits(max_unpacked_bytes=2**20, max_compression_ratio=10**6)
    with pytest.raises(InvalidRequest, match=r"bomb.docx: unpacks to \d+ bytes, over 1048576 "
                       r"\(knowledge.ingest.max_unpacked_bytes\)"):  # fmt: skip
        extract("bomb.docx", BOMB, limits)


@pytest.mark.parametrize("name", ["big.txt", "big.md", "big.html", "big.csv"])
def test_every_text_loader_is_bounded_by_size(name: str) -> None:
    with pytest.raises(InvalidRequest, match=r"\(knowledge.ingest.max_unpacked_bytes\)"):
        extract(name, b"a,b\n" * 300, Limits(max_unpacked_bytes=1000))


@pytest.mark.parametrize("name", ["long.txt", "long.md", "long.html", "long.csv"])
def test_extracted_text_is_bounded_for_text_loaders(name: str) -> None:
    data = b"name,value\n" + b"word,other\n" * 500
    with pytest.raises(InvalidRequest) as refused:
        extract(name, data, Limits(max_text_chars=1000))
    assert refused.value.message == (
        f"{name}: more than 1000 characters of text (knowledge.ingest.max_text_chars)"
    )


def test_extracted_text_is_bounded_for_docx_and_pdf_while_they_are_read() -> None:
    limits = Limits(max_text_chars=1000, max_compression_ratio=10**6)
    with pytest.raises(InvalidRequest, match=r"^slow.docx: more than 1000 characters"):
        extract("slow.docx", SLOW, limits)
    pages = pdf([["x" * 90] * 8] * 3)
    with pytest.raises(InvalidRequest, match=r"^p.pdf: more than 1000 characters"):
        extract("p.pdf", pages, limits)
    assert extract("p.pdf", pages)  # within the default limits


@pytest.mark.anyio
async def test_the_default_limits_refuse_the_46_kb_bomb_at_once() -> None:
    with pytest.raises(InvalidRequest, match="max_compression_ratio"):
        await extract_isolated("bomb.docx", BOMB, IngestSettings())


@pytest.mark.anyio
async def test_a_parse_over_the_time_limit_is_killed_and_named() -> None:
    settings = IngestSettings(timeout_s=1, max_compression_ratio=10**6)
    with pytest.raises(InvalidRequest) as refused:
        await extract_isolated("slow.docx", SLOW, settings)
    assert refused.value.message == (
        "slow.docx: parsing took longer than 1 s (knowledge.ingest.timeout_s)"
    )


@pytest.mark.anyio
async def test_a_parse_over_the_memory_cap_fails_alone() -> None:
    settings = IngestSettings(max_memory_bytes=256 * 2**20, max_compression_ratio=10**6,
                              max_text_chars=10**8)  # fmt: skip
    with pytest.raises(InvalidRequest, match=r"bomb.docx"):
        await extract_isolated("bomb.docx", BOMB, settings)


@pytest.mark.anyio
async def test_a_good_file_parses_in_the_child_and_a_stopped_one_does_not() -> None:
    sections = await extract_isolated("s.docx", docx(SECURITY), IngestSettings())
    assert "AES-256" in sections[1].text
    stopper = Stopper()
    stopper.stop()
    with pytest.raises(Stopped):
        await extract_isolated("s.docx", docx(SECURITY), IngestSettings(), stopper)


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd.md", "a/b.md", "..\\x.md", "a\\b.md", "nul\x00.md", "bell\x07.md",
     "line\nbreak.md", "x" * 253 + ".md", "..", ".", "", "   "],
)  # fmt: skip
def test_document_names_are_one_plain_file_name(name: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        document_name(name)
    assert refused.value.param == "filename"
    assert "at most 255 characters, without '/', '\\', NUL or control characters" in (
        refused.value.message
    )


def test_plain_names_are_kept() -> None:
    assert document_name(" 价格表 v2.csv ") == "价格表 v2.csv"
    assert document_name("x" * 252 + ".md") == "x" * 252 + ".md"
    assert document_name("a..b.md") == "a..b.md"
