"""Text and headings out of md, html, txt, csv, pdf and docx files."""

from __future__ import annotations

import pytest

from enclave.errors import InvalidRequest
from enclave.knowledge.chunking import Section
from enclave.knowledge.documents import decode, extract, kind_of
from tests.faq import SECURITY, docx, pdf


def test_markdown_headings_nest_and_code_fences_are_not_headings() -> None:
    text = "intro\n# A\none\n## B\ntwo\n```\n# not a heading\n```\n# C ##\nthree\n"
    assert extract("x.md", text.encode()) == [
        Section((), "intro"),
        Section(("A",), "one"),
        Section(("A", "B"), "two\n```\n# not a heading\n```"),
        Section(("C",), "three"),
    ]


def test_html_headings_blocks_and_skipped_elements() -> None:
    html = (
        "<html><head><title>T</title><style>p{}</style></head><body>"
        "<h1>Top</h1><p>One &amp; <b>two</b></p><ul><li>a</li><li>b</li></ul>"
        "<h2>Sub <i>part</i></h2><table><tr><td>x</td><td>y</td></tr></table>"
        "<script>alert(1)</script></body></html>"
    )
    assert extract("x.html", html.encode()) == [
        Section(("Top",), "One & two\na\nb"),
        Section(("Top", "Sub part"), "x y"),
    ]


def test_csv_rows_become_lines_with_column_names() -> None:
    data = b"name,price\nwidget,42\n\ngadget,7\n"
    assert extract("p.csv", data) == [
        Section((), "name: widget; price: 42\nname: gadget; price: 7")
    ]
    tsv = b"a\tb\n1\t2\n"
    assert extract("p.tsv", tsv) == [Section((), "a: 1; b: 2")]


def test_pdf_pages_and_chinese_text() -> None:
    sections = extract("m.pdf", pdf([["Hello (world)", "你好，世界。"], ["Second page"]]))
    assert [s.headings for s in sections] == [("p. 1",), ("p. 2",)]
    assert "Hello (world)" in sections[0].text
    assert "你好，世界。" in sections[0].text


def test_docx_title_headings_and_text() -> None:
    sections = extract("s.docx", docx(SECURITY))
    assert [s.headings for s in sections] == [
        ("Security guide · 安全指南", "Two-factor authentication"),
        ("Security guide · 安全指南", "磁盘加密"),
        ("Security guide · 安全指南", "Firewall"),
    ]
    assert "AES-256" in sections[1].text


def test_encodings_types_and_broken_files() -> None:
    assert decode("中文".encode("gb18030")) == "中文"
    assert decode("\ufeffbom".encode()) == "bom"
    assert extract("a.txt", "纯文本".encode()) == [Section((), "纯文本")]
    assert (kind_of("A.MD"), kind_of("x.htm"), kind_of("x.exe")) == ("md", "html", None)
    with pytest.raises(InvalidRequest, match="unsupported file type"):
        extract("x.exe", b"MZ")
    with pytest.raises(InvalidRequest, match=r"cannot read x\.docx as docx"):
        extract("x.docx", b"not a zip")
