"""Chunking: headings kept, sentence ends (Chinese too), sizes and overlap, segmentation."""

from __future__ import annotations

import itertools

import pytest

from enclave.knowledge.chunking import Chunk, Section, chunk_sections, chunk_text, sentences
from enclave.knowledge.segment import fold, index_text, query_terms


def test_sentences_cut_at_chinese_and_latin_ends_and_give_the_text_back() -> None:
    text = "第一句。第二句！“第三句？”第四句；Fifth one. Sixth? (yes) no\nline"
    pieces = sentences(text)
    assert pieces == ["第一句。", "第二句！", "“第三句？”", "第四句；", "Fifth one. ",
                      "Sixth? ", "(yes) no\n", "line"]  # fmt: skip
    assert "".join(pieces) == text
    assert sentences("v2.3 is out") == ["v2.3 is out"]  # no cut inside a number


def test_chunks_stay_under_size_and_overlap_by_whole_sentences() -> None:
    text = "".join(f"这是第{i}句话，内容不多。" for i in range(40))  # 12-13 chars each
    chunks = chunk_text(text, size=100, overlap=30)
    assert all(len(c) <= 100 for c in chunks)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        last = sentences(before)[-1]
        assert 0 <= after.find(last) < 30  # the last sentences are repeated, up to 30 chars
        assert before.endswith(after[: after.find(last) + len(last)])
        assert after.endswith("。")  # cut at a sentence end
    assert "".join(chunks).count("这是第39句话") >= 1


def test_no_overlap_and_long_sentences_are_cut() -> None:
    assert chunk_text("a" * 250, size=100, overlap=0) == ["a" * 100, "a" * 100, "a" * 50]
    words = " ".join(f"word{i}" for i in range(60))  # one long "sentence"
    chunks = chunk_text(words, size=100, overlap=20)
    assert all(len(c) <= 100 for c in chunks)
    assert chunks[1].split()[0] in chunks[0]  # the tail of the chunk before, from a word start


def test_sections_never_share_a_chunk_and_carry_their_headings() -> None:
    sections = [
        Section(("Guide",), "Intro text."),
        Section(("Guide", "Install"), "Step one. Step two."),
        Section(("Guide", "Install"), "   "),
        Section((), "Loose text."),
    ]
    chunks = chunk_sections(sections, size=200, overlap=20)
    assert chunks == [
        Chunk(0, "Guide", "Intro text."),
        Chunk(1, "Guide > Install", "Step one. Step two."),
        Chunk(2, "", "Loose text."),
    ]
    assert chunks[1].embedding_text() == "Guide > Install\nStep one. Step two."
    assert chunks[2].embedding_text() == "Loose text."


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section((), "x")], size=100, overlap=100)


def test_segmentation_for_keyword_search() -> None:
    assert query_terms("如何重置管理员密码？") == ["重置", "管理", "管理员", "密码"]
    assert query_terms("How do I reset the passwords?") == ["reset", "password"]
    assert index_text("S4 Pro 的价格") == "s4 pro 价格"
    assert query_terms("api_key v2.3") == ["api", "key", "v2", "3"]
    assert (fold("Keys"), fold("class"), fold("bus")) == ("key", "class", "bus")
