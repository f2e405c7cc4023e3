"""File bytes → sections of text under their headings, for txt, md, html, pdf, docx, csv.

- **md**: ATX headings (``#`` … ``######``) outside fenced code blocks;
- **html**: ``h1`` to ``h6`` are headings; ``script``, ``style`` and ``head`` are skipped;
  block elements end lines (standard library ``html.parser``);
- **pdf**: one section per page, headed ``p. N`` (so answers can cite the page); pypdf;
- **docx**: paragraphs styled ``Title`` or ``Heading N`` are headings; tables follow the
  text, one row a line; python-docx;
- **csv** / **tsv**: one line per row, ``column: value; ...`` with the header's names;
- **txt**: the text as it is.

Text files are UTF-8 (a BOM is fine), else GB18030 (Chinese Windows), else Latin-1.
pypdf and python-docx are imported only when such a file comes (``enclave[assistants]``).

Every file is bounded (:class:`Limits`, from ``knowledge.ingest``): its size, or a docx's
declared uncompressed members and their compression ratio (checked before unzipping;
``zipfile`` reads no more than a member declares), and the characters of text extracted,
counted while pages and paragraphs are read. Time and memory are bounded by the child
process that runs :func:`extract` (:mod:`.sandbox`).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import PurePath

from enclave.errors import InvalidRequest
from enclave.knowledge.chunking import Section

KINDS = {
    ".txt": "txt", ".text": "txt", ".log": "txt",
    ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv", ".tsv": "csv",
}  # fmt: skip
ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^ {0,3}(```|~~~)")


SETTING = "knowledge.ingest"
RATIO_FLOOR = 2**20  # members smaller than this may compress as well as they like


@dataclass(frozen=True)
class Limits:
    """What one file may unpack to and yield (``knowledge.ingest``'s settings)."""

    max_unpacked_bytes: int = 64 * 2**20
    max_compression_ratio: float = 100.0
    max_text_chars: int = 5_000_000


class _Budget:
    """Counts extracted characters; past the limit, :class:`InvalidRequest` naming it."""

    def __init__(self, name: str, limit: int) -> None:
        self.name, self.limit, self.used = name, limit, 0

    def take(self, text: str) -> str:
        self.used += len(text) + 1  # a paragraph or line costs at least its line break
        if self.used > self.limit:
            raise InvalidRequest(
                f"{self.name}: more than {self.limit} characters of text ({SETTING}.max_text_chars)"
            )
        return text


MAX_NAME = 255
NAME_RULE = (
    "a document name is one file name of at most 255 characters, without '/', '\\', NUL "
    "or control characters, and not '.' or '..'"
)


def document_name(name: str) -> str:
    """An uploaded document's name, refused (:class:`InvalidRequest`, 400) unless it is
    one plain file name; surrounding spaces are dropped."""
    clean = name.strip()
    bad = (
        not clean or len(clean) > MAX_NAME or clean in {".", ".."}
        or any(c in "/\\" or ord(c) < 32 or 127 <= ord(c) < 160 for c in clean)
    )  # fmt: skip
    if bad:
        shown = clean if len(clean) <= 80 else clean[:80] + "..."
        raise InvalidRequest(f"invalid document name {shown!r}: {NAME_RULE}", param="filename")
    return clean


def kind_of(name: str) -> str | None:
    """``md``, ``pdf``, ... for a supported file name, else ``None``."""
    return KINDS.get(PurePath(name).suffix.lower())


def extract(name: str, data: bytes, limits: Limits | None = None) -> list[Section]:
    """The sections of the file ``name`` holding ``data``; :class:`InvalidRequest` if the
    type is not supported, the file cannot be read, or it is over one of ``limits``."""
    kind = kind_of(name)
    if kind is None:
        known = ", ".join(sorted(set(KINDS)))
        raise InvalidRequest(f"{name}: unsupported file type; supported: {known}")
    limits = limits or Limits()
    if len(data) > limits.max_unpacked_bytes:
        raise InvalidRequest(
            f"{name}: {len(data)} bytes, over {limits.max_unpacked_bytes} "
            f"({SETTING}.max_unpacked_bytes)"
        )
    budget = _Budget(name, limits.max_text_chars)
    try:
        if kind == "docx":
            check_zip(name, data, limits)
        sections = EXTRACTORS[kind](data, budget)
    except InvalidRequest:
        raise
    except MemoryError as exc:  # the child's address space limit
        raise InvalidRequest(
            f"{name}: parsing it needs more memory than {SETTING}.max_memory_bytes allows"
        ) from exc
    except Exception as exc:  # a broken PDF or DOCX raises whatever its parser raises
        raise InvalidRequest(f"cannot read {name} as {kind}: {exc}") from exc
    for section in sections:
        if kind not in {"pdf", "docx"}:  # those two count while they read
            budget.take(section.text)
    return [s for s in sections if s.text.strip()]


def check_zip(name: str, data: bytes, limits: Limits) -> None:
    """Refuse a zip (docx) whose members declare more than ``max_unpacked_bytes`` in all,
    or a large member compressed more than ``max_compression_ratio`` times."""
    try:
        members = zipfile.ZipFile(io.BytesIO(data)).infolist()
    except zipfile.BadZipFile as exc:
        raise InvalidRequest(f"cannot read {name} as docx: {exc}") from exc
    total = sum(m.file_size for m in members)
    if total > limits.max_unpacked_bytes:
        raise InvalidRequest(
            f"{name}: unpacks to {total} bytes, over {limits.max_unpacked_bytes} "
            f"({SETTING}.max_unpacked_bytes)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise InvalidRequest(
                f"{name}: {member.filename} is compressed {ratio:.0f} times, over "
                f"{limits.max_compression_ratio:g} ({SETTING}.max_compression_ratio)"
            )


def decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def from_text(data: bytes, budget: _Budget) -> list[Section]:
    return [Section((), decode(data))]


def from_markdown(data: bytes, budget: _Budget) -> list[Section]:
    return markdown_sections(decode(data))


def markdown_sections(text: str) -> list[Section]:
    sections: list[Section] = []
    path: list[str] = []
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else ATX.match(line)
        if heading is None:
            lines.append(line)
            continue
        sections.append(Section(tuple(path), "\n".join(lines)))
        lines = []
        level = len(heading.group(1))
        path = [*path[: level - 1], *[""] * (level - 1 - len(path)), heading.group(2)]
    sections.append(Section(tuple(path), "\n".join(lines)))
    return sections


_BLOCKS = """p div br li tr table section article header footer nav pre blockquote dd dt ul
ol h1 h2 h3 h4 h5 h6 main aside figure figcaption hr"""


class _HTML(HTMLParser):
    BLOCKS = frozenset(_BLOCKS.split())
    SKIP = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._path: list[str] = []
        self._text: list[str] = []
        self._heading: list[str] | None = None
        self._level = 0
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._heading, self._level = [], int(tag[1])
        elif tag in self.BLOCKS:
            self._text.append("\n")
        elif tag in {"td", "th"}:
            self._text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self._new_section(" ".join("".join(self._heading).split()))
        elif tag in self.BLOCKS:
            self._text.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        (self._heading if self._heading is not None else self._text).append(data)

    def _new_section(self, title: str) -> None:
        self.flush()
        level = self._level
        self._path = [*self._path[: level - 1], *[""] * (level - 1 - len(self._path)), title]
        self._heading = None

    def flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self._text).splitlines())
        self.sections.append(Section(tuple(self._path), "\n".join(x for x in lines if x)))
        self._text = []


def from_html(data: bytes, budget: _Budget) -> list[Section]:
    parser = _HTML()
    parser.feed(decode(data))
    parser.close()
    parser.flush()
    return parser.sections


def from_pdf(data: bytes, budget: _Budget) -> list[Section]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return [Section((f"p. {n}",), budget.take(page.extract_text() or "")) for n, page in
            enumerate(reader.pages, 1)]  # fmt: skip


def from_docx(data: bytes, budget: _Budget) -> list[Section]:
    import docx

    document = docx.Document(io.BytesIO(data))
    sections: list[Section] = []
    title: list[str] = []  # the Title paragraph heads every section after it
    path: list[str] = []
    lines: list[str] = []
    for paragraph in document.paragraphs:
        budget.take(paragraph.text)
        style = paragraph.style.name if paragraph.style else ""
        level = _docx_heading_level(style)
        if level is None and style != "Title":
            lines.append(paragraph.text)
            continue
        sections.append(Section((*title, *path), "\n".join(lines)))
        lines = []
        if level is None:
            title, path = [paragraph.text.strip()], []
        else:
            path = [*path[: level - 1], *[""] * (level - 1 - len(path)), paragraph.text.strip()]
    for table in document.tables:
        for row in table.rows:
            lines.append(budget.take(" | ".join(cell.text.strip() for cell in row.cells)))
    sections.append(Section((*title, *path), "\n".join(lines)))
    return sections


def _docx_heading_level(style: str) -> int | None:
    found = re.fullmatch(r"Heading (\d)", style)
    return int(found.group(1)) if found else None


def from_csv(data: bytes, budget: _Budget) -> list[Section]:
    text = decode(data)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",\t;")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in row)]
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    lines = ["; ".join(_cell(header, i, v) for i, v in enumerate(row) if v.strip())
             for row in body]  # fmt: skip
    return [Section((), "\n".join(lines))]


def _cell(header: list[str], index: int, value: str) -> str:
    name = header[index].strip() if index < len(header) else ""
    return f"{name}: {value.strip()}" if name else value.strip()


EXTRACTORS: dict[str, Callable[[bytes, _Budget], list[Section]]] = {
    "txt": from_text,
    "md": from_markdown,
    "html": from_html,
    "pdf": from_pdf,
    "docx": from_docx,
    "csv": from_csv,
}
