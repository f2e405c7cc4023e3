"""The bilingual product FAQ the knowledge-base tests ingest (StarRiver S2, a made-up NAS).

``tests/data/faq/`` holds the text formats (md, html, txt, csv); :func:`write_faq` copies
them into a directory and writes the binary ones beside them: ``manual.pdf`` (a small
hand-made PDF: Helvetica for English, the standard ``STSong-Light`` CID font with the
``UniGB-UCS2-H`` encoding for Chinese, so pypdf reads both back) and ``security.docx``
(python-docx, with ``Title`` and ``Heading 1`` styles).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

FAQ = Path(__file__).parent / "data" / "faq"

MANUAL = [
    [
        "Backup and snapshots",
        "Snapshots are taken every hour and kept for 30 days.",
        "To restore a file, open Snapshot Manager, pick a time and click Restore.",
        "快照每小时自动创建一次，保留 30 天。",
        "要恢复文件，请打开快照管理器，选择时间点，然后点击恢复。",
    ],
    [
        "Offsite backup",
        "Every night at 02:00 the S2 can copy encrypted backups to an S3-compatible bucket.",
        "异地备份：每天凌晨两点，S2 可以把加密的备份复制到兼容 S3 的存储桶。",
    ],
]

SECURITY = [
    ("Title", "Security guide · 安全指南"),
    ("Heading 1", "Two-factor authentication"),
    (
        "Normal",
        "Turn on two-factor authentication under Control Panel > Security. The S2 "
        "works with TOTP apps such as FreeOTP.",
    ),
    ("Heading 1", "磁盘加密"),
    ("Normal", "共享文件夹可以使用 AES-256 加密。加密密钥可以保存在 U 盘上，开机时自动挂载。"),
    ("Heading 1", "Firewall"),
    ("Normal", "By default only ports 5080 (web console) and 445 (SMB) are open on the LAN."),
]


def write_faq(target: Path) -> list[Path]:
    """The six FAQ files (md, html, txt, csv, pdf, docx) in ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(FAQ.iterdir()):
        shutil.copy(path, target / path.name)
    (target / "manual.pdf").write_bytes(pdf(MANUAL))
    (target / "security.docx").write_bytes(docx(SECURITY))
    return sorted(target.iterdir())


def docx(paragraphs: list[tuple[str, str]]) -> bytes:
    import docx as python_docx

    document = python_docx.Document()
    for style, text in paragraphs:
        document.add_paragraph(text, style=style)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pdf(pages: list[list[str]]) -> bytes:
    """A PDF with one text line per string; Chinese lines in a CID font."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    latin = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    cid = add(
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (GB1) /Supplement 4 >> "
        b"/FontDescriptor << /Type /FontDescriptor /FontName /STSong-Light /Flags 6 "
        b"/FontBBox [0 -200 1000 900] /ItalicAngle 0 /Ascent 880 /Descent -120 "
        b"/CapHeight 880 /StemV 93 >> >>"
    )
    chinese = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /UniGB-UCS2-H "
        b"/DescendantFonts [%d 0 R] >>" % cid
    )
    parent = len(objects) + 2 * len(pages) + 1
    kids = []
    for lines in pages:
        stream = _page_stream(lines)
        content = add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Resources << /Font "
            b"<< /F1 %d 0 R /F2 %d 0 R >> >> /Contents %d 0 R >>"
            % (parent, latin, chinese, content)
        ))  # fmt: skip
    refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (refs, len(kids)))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % parent)
    return _file(objects, catalog)


def _page_stream(lines: list[str]) -> bytes:
    ops = [b"BT 14 TL 50 780 Td"]
    for line in lines:
        if line.isascii():
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"/F1 11 Tf (%s) Tj T*" % escaped.encode())
        else:
            ops.append(b"/F2 11 Tf <%s> Tj T*" % line.encode("utf-16-be").hex().encode())
    ops.append(b"ET")
    return b"\n".join(ops)


def _file(objects: list[bytes], root: int) -> bytes:
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\n" % (len(objects) + 1, root))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()
