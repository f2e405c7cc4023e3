"""What goes with a question: piped stdin, ``-f`` files and the clipboard as fenced text
blocks, ``-i`` images (and a clipboard image) as ``image_url`` parts.

A file or stdin that cannot be attached raises :class:`~enclave.errors.AttachmentError`
(the clipboard: :class:`~enclave.errors.ClipboardError`), whose ``str()`` is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from enclave.errors import AttachmentError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO

    from enclave.client.options import AskOptions


def compose_question(options: AskOptions, cap: int, stdin: TextIO | None, err: TextIO) -> str:
    """The question words, then piped stdin and each ``-f`` file as fenced blocks (each
    kept to its last ``cap`` bytes); ``""`` when there are attachments but no question."""
    words = " ".join(options.question).strip()
    piped = read_stdin(stdin, cap, err)
    if not words:  # stdin is the question itself
        words, piped = piped.strip(), ""
    parts = [words] if words else []
    if piped.strip():
        parts.append(fenced("stdin", piped))
    for path in options.files:
        parts.append(fenced(f"file {path}", read_text_file(path, cap, err), path.suffix[1:]))
    if options.clip:
        clip_text = read_clipboard(options, cap, err)
        if clip_text is not None:
            parts.append(fenced("clipboard", clip_text))
    if parts and not words:  # files but no question: the files need one
        return ""
    return "\n\n".join(parts)


def read_clipboard(options: AskOptions, cap: int, err: TextIO) -> str | None:
    """``--clip``: an image is kept in ``options.clip_image``; text is returned (capped)."""
    import io

    from enclave.client import clipboard

    clip = clipboard.read()
    if clip.image is not None:
        options.clip_image = clip.image
        return None
    data, total = read_tail(io.BytesIO((clip.text or "").encode("utf-8")), cap)
    return as_text(data, total, "clipboard", err)


def stdin_is_piped(stdin: TextIO | None) -> bool:
    """A pipe or a redirected file; never a terminal or an inherited socket (no hang)."""
    import os
    import stat

    if stdin is None:
        return False
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def read_stdin(stdin: TextIO | None, cap: int, err: TextIO) -> str:
    if stdin is None or not stdin_is_piped(stdin):
        return ""
    data, total = read_tail(stdin.buffer, cap)
    return as_text(data, total, "stdin", err)


def read_text_file(path: Path, cap: int, err: TextIO) -> str:
    try:
        with path.open("rb") as handle:
            data, total = read_tail(handle, cap)
    except OSError as exc:
        raise AttachmentError(f"cannot read {path}: {exc.strerror or exc}") from None
    return as_text(data, total, str(path), err)


def read_tail(stream: BinaryIO, cap: int) -> tuple[bytes, int]:
    """The last ``cap`` bytes (moved forward to a UTF-8 character start) and the total size.

    The end is kept because that is where a log says what went wrong. Memory stays
    bounded at about twice the cap, however much is piped in.
    """
    kept = bytearray()
    total = 0
    while chunk := stream.read(1 << 16):
        total += len(chunk)
        kept += chunk
        if len(kept) > 2 * cap:
            del kept[: len(kept) - cap]
    if total > cap:
        del kept[: len(kept) - cap]
        skip = 0
        while skip < min(3, len(kept)) and kept[skip] & 0xC0 == 0x80:  # continuation bytes
            skip += 1
        del kept[:skip]
    return bytes(kept), total


def as_text(data: bytes, total: int, name: str, err: TextIO) -> str:
    if b"\x00" in data:
        raise AttachmentError(f"{name} is binary, not text (attach images with -i)")
    text = data.decode("utf-8", errors="replace")
    if len(data) < total:
        note = f"{name}: kept the last {len(data)} of {total} bytes"
        print(f"ask: {note}", file=err)
        text = f"[{note}]\n{text}"
    return text


def fenced(label: str, text: str, lang: str = "") -> str:
    """``label:`` and the text in a fence longer than any backtick run inside it."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{label}:\n{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}"


def build_messages(
    question: str,
    images: Sequence[Path],
    system: str | None,
    *,
    clip_image: bytes | None = None,
    max_side: int = 1568,
    report: TextIO | None = None,
) -> list[dict[str, object]]:
    """The messages; each image downscaled and re-encoded (:mod:`enclave.client.imageprep`),
    with a line per image on ``report`` (``-v``)."""
    from enclave.client.chat import system_message, user_message

    urls: list[str] = []
    if images or clip_image is not None:
        from enclave.client import imageprep

        prepared = [imageprep.prepare_file(path, max_side) for path in images]
        if clip_image is not None:
            prepared.append(imageprep.prepare(clip_image, "clipboard", max_side))
        for image in prepared:
            if report is not None:
                print(image.report(), file=report)
            urls.append(image.data_url)
    head = [system_message(system)] if system else []
    return [*head, user_message(question, urls)]
