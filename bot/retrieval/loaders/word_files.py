"""Loader for Word documents (.docx): paragraphs, headings and tables in document order.

python-docx (1.2) reads the body. The "Title" style becomes a level-1 heading and
"Heading N" styles (or styles based on them) the levels below it, so they form the
chunks' heading path. Tables become Markdown tables with their first row as the
header, cells merged across columns are padded and cells merged across rows are
repeated. List paragraphs become "- " items. Headers, footers, comments and text
boxes are not read.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from bot.errors import SourceError
from bot.retrieval.loaders.base import ParsedDocument, clean_inline
from bot.retrieval.loaders.tables import markdown_table

# Office files encrypted with a password are OLE compound files, not ZIP packages.
_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# Upper bound on the unpacked size, so that a small ZIP bomb cannot exhaust memory.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
_HEADING_STYLE = re.compile(r"^heading\s+([1-9])$", re.IGNORECASE)
_MARKDOWN_LEVELS = 3


def parse_docx(name: str, data: bytes) -> ParsedDocument:
    """Convert a .docx file to Markdown; the title is the Title paragraph, the core title or the first heading."""
    if not data.strip():
        raise SourceError("the file is empty")
    if data.startswith(_OLE_SIGNATURE):
        raise SourceError(
            "the file is encrypted with a password or is an old binary Word file; "
            "save it as a .docx without a password and add that"
        )
    _check_package(data)

    document = docx.Document(io.BytesIO(data))
    blocks = list(document.iter_inner_content())
    has_title = any(isinstance(block, Paragraph) and _style_name(block) == "title" for block in blocks)

    title: str | None = None
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Table):
            parts.append(markdown_table(_table_rows(block)))
            continue
        text = _paragraph_markdown(block, heading_offset=1 if has_title else 0)
        if title is None and text.startswith("# "):
            title = text[2:]
        parts.append(text)

    markdown = _join_blocks(part for part in parts if part.strip())
    if not markdown.strip():
        raise SourceError("the document has no text")
    title = _preferred_title(title, clean_inline(document.core_properties.title or ""), has_title)
    return ParsedDocument(kind="markdown", text=markdown + "\n", title=title)


def _join_blocks(parts: Iterable[str]) -> str:
    # Consecutive list items stay on consecutive lines, so that they read as one list.
    text = ""
    for part in parts:
        if text:
            both_items = part.startswith("- ") and text.rsplit("\n", 1)[-1].startswith("- ")
            text += "\n" if both_items else "\n\n"
        text += part
    return text


def _check_package(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = set(package.namelist())
            unpacked = sum(info.file_size for info in package.infolist())
    except zipfile.BadZipFile as exc:
        raise SourceError("not a valid .docx file (it is not a ZIP package); it may be corrupt") from exc
    if "word/document.xml" not in names:
        raise SourceError("not a Word document: the package has no word/document.xml")
    if unpacked > MAX_UNPACKED_BYTES:
        raise SourceError(f"the document unpacks to {unpacked} bytes, above the {MAX_UNPACKED_BYTES}-byte limit")


def _preferred_title(first_heading: str | None, core_title: str, has_title_paragraph: bool) -> str | None:
    # The Title paragraph is what readers see; the core property, set in File > Properties,
    # comes next; the first level-1 heading is the last resort.
    if has_title_paragraph:
        return first_heading
    return core_title or first_heading


def _paragraph_markdown(paragraph: Paragraph, *, heading_offset: int) -> str:
    text = clean_inline(paragraph.text)
    if not text:
        return ""
    style = _style_name(paragraph)
    if style == "title":
        return "# " + text

    level = _heading_level(paragraph)
    if level is not None:
        level += heading_offset
        return "#" * level + " " + text if level <= _MARKDOWN_LEVELS else text
    if _is_list_item(paragraph, style):
        return "- " + text
    return text


def _style_name(paragraph: Paragraph) -> str:
    style = paragraph.style
    return (style.name or "").strip().lower() if style is not None else ""


def _heading_level(paragraph: Paragraph) -> int | None:
    """Return N for a "Heading N" style or a style based on one, else None."""
    style = paragraph.style
    depth = 0
    while style is not None and depth < 10:
        match = _HEADING_STYLE.match((style.name or "").strip())
        if match:
            return int(match.group(1))
        style = style.base_style
        depth += 1
    return None


def _is_list_item(paragraph: Paragraph, style: str) -> bool:
    properties = paragraph._p.pPr  # python-docx has no public API for list numbering
    return style.startswith("list") or (properties is not None and properties.numPr is not None)


def _table_rows(table: Table) -> list[list[str]]:
    rows: list[list[str]] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            # python-docx repeats a cell merged across columns once per grid column.
            same_cell = previous is not None and cell._tc is previous._tc
            cells.append("" if same_cell else " ".join(p.text for p in cell.paragraphs))
            previous = cell
        rows.append(cells)
    return rows
