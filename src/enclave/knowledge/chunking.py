"""Split a document's sections into overlapping chunks of about ``size`` characters.

Pure functions, no I/O. A chunk never crosses a heading: each :class:`Section` (the text
under one heading, with the path of headings above it) is chunked on its own, and every
chunk carries that path, so the heading's words are embedded and indexed with it.

Within a section, text is cut at sentence ends — ``。`` and the full-width ``!?;`` (a closing quote
stays with its sentence), ``. ! ? ;`` before white space, and line breaks — and sentences are packed
greedily up to ``size`` characters. A sentence longer than ``size`` is cut at ``size``.
Consecutive chunks overlap: the next chunk starts with the last whole sentences of the
one before that fit in ``overlap`` characters, or, when none fits, with its last
``overlap`` characters (from a word boundary where there is one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_SIZE = 500
DEFAULT_OVERLAP = 80
HEADING_SEPARATOR = " > "

# Where a sentence ends: the end of each match is a cut.
_BOUNDARY = re.compile(
    r"[。！？；][”’」』）》\"']*"  # Chinese sentence ends, closing quotes kept with them
    r"|[.!?;][)\]\"']*\s+"  # Latin ones, followed by white space
    r"|\n+"  # line breaks
)


@dataclass(frozen=True)
class Section:
    """Text under one heading; ``headings`` is the path from the outermost heading."""

    headings: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class Chunk:
    index: int  # position in the document, from 0
    heading: str  # the heading path, joined by " > "
    text: str

    def embedding_text(self) -> str:
        """What is embedded and indexed: the heading path, then the text."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


def sentences(text: str) -> list[str]:
    """``text`` cut after each sentence end; joined together they give ``text`` back."""
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def chunk_sections(
    sections: Iterable[Section], *, size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP
) -> list[Chunk]:
    """Chunks of every section, in order and numbered from 0."""
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need 0 <= overlap < size, got size={size} overlap={overlap}")
    chunks: list[Chunk] = []
    for section in sections:
        heading = HEADING_SEPARATOR.join(h for h in section.headings if h)
        for text in chunk_text(section.text, size=size, overlap=overlap):
            chunks.append(Chunk(index=len(chunks), heading=heading, text=text))
    return chunks


def chunk_text(text: str, *, size: int = DEFAULT_SIZE, overlap: int = DEFAULT_OVERLAP) -> list[str]:
    """The chunks of one stretch of text (no headings inside), stripped, none empty."""
    units = [piece for s in sentences(text) for piece in _cut(s, size)]
    found: list[str] = []
    current: list[str] = []
    fresh = 0  # units in ``current`` that no earlier chunk holds
    for unit in units:
        if fresh and _length(current) + len(unit) > size:
            found.append("".join(current))
            current = _tail(current, overlap)
            fresh = 0
            if _length(current) + len(unit) > size:
                current = []
        current.append(unit)
        fresh += 1
    if fresh:
        found.append("".join(current))
    return [chunk.strip() for chunk in found if chunk.strip()]


def _length(units: Sequence[str]) -> int:
    return sum(len(unit) for unit in units)


def _cut(sentence: str, size: int) -> list[str]:
    """A sentence longer than ``size`` in pieces of ``size`` characters."""
    return [sentence[i : i + size] for i in range(0, len(sentence), size)]


def _tail(units: Sequence[str], overlap: int) -> list[str]:
    """The end of a chunk to repeat at the start of the next one."""
    if overlap == 0 or not units:
        return []
    kept: list[str] = []
    for unit in reversed(units):
        if _length(kept) + len(unit) > overlap:
            break
        kept.insert(0, unit)
    if kept:
        return kept
    last = units[-1][-overlap:]
    space = last.find(" ")
    return [last[space + 1 :] if 0 <= space < len(last) - 1 else last]
