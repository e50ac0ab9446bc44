"""Loader for PDF files: the text layer as Markdown, with headings and tables recovered.

pypdf (7.1) extracts each page in layout mode, which keeps the horizontal position
of text, so table columns show up as runs of spaces. From that text:

* lines repeated at the top or bottom of every page (running headers and footers
  with page numbers) are dropped;
* lines set in a font clearly larger than the body text become headings, the
  largest size level 1, the next level 2, smaller ones level 3;
* rows of text in aligned columns become Markdown tables, with a cell's wrapped
  lines joined to it;
* a table that continues on the next page is joined to the part before the page
  break, without its repeated header row;
* wrapped prose lines are joined into paragraphs, and bullet glyphs become "- ".

Scanned PDFs have no text layer; they are rejected with a message saying so.
"""

from __future__ import annotations

import io
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from pypdf import PageObject, PdfReader

from bot.errors import SourceError
from bot.retrieval.loaders.base import ParsedDocument, clean_inline
from bot.retrieval.loaders.tables import markdown_table

logger = logging.getLogger(__name__)

# Three or more spaces separate table columns; prose has single spaces between words.
_COLUMN_GAP = re.compile(r" {3,}")
# Allowed drift, in characters, between a cell's start and its column's start.
_COLUMN_TOLERANCE = 3
# Allowed difference between two pages' tables in a column's share of the row width.
_RELATIVE_COLUMN_TOLERANCE = 0.08
# A font at least this much larger than the body text marks a heading.
_HEADING_SIZE_RATIO = 1.15
_MAX_HEADING_CHARS = 120
# Bullet glyphs as pypdf extracts them: U+007F comes out of ZapfDingbats bullets.
_BULLET = re.compile(r"^[\x7f\u2022\u25cf\u25aa\u25e6\u2023\u2043\uf0b7\uf0a7*-]\s+")
_DIGITS = re.compile(r"\d+")
_WHITESPACE = re.compile(r"\s+")
# A prose line shorter than this share of the longest line, ending a sentence, ends its paragraph.
_SHORT_LINE_RATIO = 0.75
# How many non-blank lines at each end of a page may be a running header or footer.
_EDGE_LINES = 2


def parse_pdf(name: str, data: bytes) -> ParsedDocument:
    """Convert a PDF's text layer to Markdown; the document's Title, else its largest heading, is the title."""
    if not data.strip():
        raise SourceError("the file is empty")
    if b"%PDF-" not in data[:1024]:
        raise SourceError("not a PDF file (no %PDF- header); it may be corrupt or of another type")

    reader = PdfReader(io.BytesIO(data))
    _unlock(reader)
    page_lines = [_page_text(page).split("\n") for page in reader.pages]
    if not any(line.strip() for lines in page_lines for line in lines):
        raise SourceError("the PDF has no text layer (a scan?); run OCR on it or add the text as another format")

    heading_levels = _heading_levels(reader)
    page_lines = _drop_running_lines(page_lines)
    blocks = _merge_pages([_page_blocks(lines, heading_levels) for lines in page_lines])
    text = "\n\n".join(block.markdown() for block in blocks if block.markdown()) + "\n"
    return ParsedDocument(kind="markdown", text=text, title=_title(reader, heading_levels))


def _page_text(page: PageObject) -> str:
    try:
        return page.extract_text(extraction_mode="layout")
    except Exception as exc:  # layout mode fails on some fonts that plain mode reads
        logger.debug("Layout extraction failed; using plain extraction", exc_info=exc)
        return page.extract_text()


def _unlock(reader: PdfReader) -> None:
    """Open a PDF encrypted with an empty user password; reject one that needs a password."""
    if not reader.is_encrypted:
        return
    try:
        unlocked = bool(reader.decrypt(""))
    except Exception as exc:  # pypdf raises DependencyError, PdfReadError or NotImplementedError here
        logger.debug("Decrypting a PDF with the empty password failed", exc_info=exc)
        unlocked = False
    if not unlocked:
        raise SourceError("the PDF is encrypted with a password; save a copy without the password and add that")


def _title(reader: PdfReader, heading_levels: dict[str, int]) -> str | None:
    metadata_title = clean_inline(str((reader.metadata or {}).get("/Title") or ""))
    if metadata_title and metadata_title.casefold() not in ("untitled", "untitled document"):
        return metadata_title
    top_headings = [text for text, level in heading_levels.items() if level == 1]
    return top_headings[0] if top_headings else None


# Headings from font sizes


def _heading_levels(reader: PdfReader) -> dict[str, int]:
    """Return {line text: heading level} for text set larger than the body text."""
    sizes: Counter[float] = Counter()
    fragments: list[tuple[float, str]] = []

    def collect(text: str, cm: list[float], tm: list[float], font: object, font_size: float) -> None:
        # The rendered size is the font size scaled by the text and graphics matrices.
        size = round(font_size * math.hypot(tm[2], tm[3]) * math.hypot(cm[2], cm[3]) * 2) / 2
        stripped = clean_inline(text)
        if stripped:
            sizes[size] += len(stripped)
            fragments.append((size, stripped))

    for page in reader.pages:
        page.extract_text(visitor_text=collect)
    if not sizes:
        return {}

    body_size = sizes.most_common(1)[0][0]
    headings = [
        (size, text)
        for size, text in fragments
        if size >= body_size * _HEADING_SIZE_RATIO
        and len(text) <= _MAX_HEADING_CHARS
        and sum(character.isalpha() for character in text) >= 2
    ]
    ranked_sizes = sorted({size for size, _ in headings}, reverse=True)
    return {text: min(ranked_sizes.index(size) + 1, 3) for size, text in reversed(headings)}


# Running headers and footers


def _drop_running_lines(page_lines: list[list[str]]) -> list[list[str]]:
    """Drop lines found at the top or bottom of every page, ignoring their numbers.

    On a two-page document only lines whose numbers differ between the pages (page
    numbers) count, so that a table header repeated at the top of page 2 stays.
    """
    if len(page_lines) < 2:
        return page_lines

    edges = [_edge_keys(lines) for lines in page_lines]
    common = set(edges[0]).intersection(*edges[1:])
    if len(page_lines) == 2:
        common = {key for key in common if edges[0][key] != edges[1][key]}
    return [[line for line in lines if _running_key(line) not in common] for lines in page_lines]


def _edge_keys(lines: list[str]) -> dict[str, str]:
    non_blank = [line for line in lines if line.strip()]
    edge = non_blank[:_EDGE_LINES] + non_blank[-_EDGE_LINES:]
    return {_running_key(line): line.strip() for line in edge}


def _running_key(line: str) -> str:
    return _DIGITS.sub("0", _WHITESPACE.sub(" ", line.strip()))


# Blocks of one page


@dataclass
class _Table:
    columns: list[int]
    rows: list[list[str]] = field(default_factory=list)

    def markdown(self) -> str:
        return markdown_table(self.rows)


@dataclass
class _Text:
    text: str

    def markdown(self) -> str:
        return self.text


def _segments(line: str) -> list[tuple[int, str]]:
    """Split a layout line into (start column, text) pieces at runs of 3+ spaces."""
    pieces: list[tuple[int, str]] = []
    position = 0
    for gap in [*_COLUMN_GAP.finditer(line), None]:
        end = gap.start() if gap else len(line)
        piece = line[position:end]
        if piece.strip():
            pieces.append((position + len(piece) - len(piece.lstrip()), piece.strip()))
        position = gap.end() if gap else end
    return pieces


def _page_blocks(lines: list[str], heading_levels: dict[str, int]) -> list[_Table | _Text]:
    """Split one page into tables and Markdown text blocks, in reading order."""
    blocks: list[_Table | _Text] = []
    prose: list[str] = []

    def flush_prose() -> None:
        text = _join_prose(prose)
        if text:
            blocks.append(_Text(text))
        prose.clear()

    index = 0
    while index < len(lines):
        table, end = _read_table(lines, index)
        if table is not None:
            flush_prose()
            blocks.append(table)
            index = end
            continue

        stripped = clean_inline(lines[index])
        level = heading_levels.get(stripped)
        if level is not None:
            flush_prose()
            blocks.append(_Text("#" * level + " " + stripped))
        else:
            prose.append(lines[index])
        index += 1

    flush_prose()
    return blocks


def _read_table(lines: list[str], start: int) -> tuple[_Table | None, int]:
    """Read a table starting at lines[start]; return (None, start) when none starts there.

    A table is a line of two or more aligned columns followed by at least one more
    such line. Lines right below a row whose pieces all fall inside the columns are
    wrapped cell text. A blank line may separate rows; anything else ends the table.
    """
    header = _segments(lines[start])
    if len(header) < 2 or _BULLET.match(header[0][1] + " "):
        return None, start

    table = _Table(columns=[column for column, _ in header], rows=[[text for _, text in header]])
    index = start + 1
    after_blank = False
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            after_blank = True
            index += 1
            continue
        pieces = _segments(line)
        cells = _cells_in_columns(pieces, table.columns)
        if cells is None:
            break
        if len(pieces) >= 2:
            table.rows.append(cells)
        elif after_blank or not _fits_columns(pieces, table.columns):
            break
        else:
            _append_wrapped(table.rows[-1], cells)
        after_blank = False
        index += 1

    if len(table.rows) < 2:
        return None, start
    while index > start and not lines[index - 1].strip():
        index -= 1
    return table, index


def _column_of(start: int, columns: list[int]) -> int | None:
    for number, column in enumerate(columns):
        if abs(start - column) <= _COLUMN_TOLERANCE:
            return number
    return None


def _cells_in_columns(pieces: list[tuple[int, str]], columns: list[int]) -> list[str] | None:
    """Place pieces in their columns; None when a piece starts outside every column."""
    cells = [""] * len(columns)
    for start, text in pieces:
        number = _column_of(start, columns)
        if number is None:
            return None
        cells[number] = (cells[number] + " " + text).strip()
    return cells


def _fits_columns(pieces: list[tuple[int, str]], columns: list[int]) -> bool:
    """Tell whether each piece ends before the next column starts (wrapped cell text does)."""
    for start, text in pieces:
        number = _column_of(start, columns)
        if number is None:
            return False
        if number + 1 < len(columns) and start + len(text) >= columns[number + 1]:
            return False
    return True


def _append_wrapped(row: list[str], cells: list[str]) -> None:
    for number, text in enumerate(cells):
        if text:
            row[number] = _join_wrapped(row[number], text)


def _join_wrapped(first: str, second: str) -> str:
    # A line that ends in a hyphen after a letter was wrapped inside a compound word.
    if len(first) >= 2 and first.endswith("-") and first[-2].isalpha():
        return first + second
    return (first + " " + second).strip()


def _join_prose(lines: list[str]) -> str:
    """Join wrapped lines into paragraphs and list items.

    A paragraph ends at a blank line, at a bullet, and at a line less indented than
    the text of the list item before it. It also ends after a short line that ends
    a sentence, because wrapped lines run close to the full width.
    """
    full_width = max((len(line.rstrip()) for line in lines), default=0)
    paragraphs: list[str] = []
    current: str | None = None
    item_indent: int | None = None
    for line in lines:
        stripped = clean_inline(line)
        indent = len(line) - len(line.lstrip())
        bullet = _BULLET.match(stripped)
        if current is not None and (not stripped or bullet or (item_indent is not None and indent < item_indent)):
            paragraphs.append(current)
            current, item_indent = None, None
        if not stripped:
            continue

        if bullet:
            current = "- " + stripped[bullet.end():]
            item_indent = indent + 2
        else:
            current = stripped if current is None else _join_wrapped(current, stripped)
        if stripped[-1] in ".!?:" and len(line.rstrip()) < full_width * _SHORT_LINE_RATIO:
            paragraphs.append(current)
            current, item_indent = None, None
    if current:
        paragraphs.append(current)
    return _separate_paragraphs(paragraphs)


def _separate_paragraphs(paragraphs: list[str]) -> str:
    # List items stay on consecutive lines; anything else is its own paragraph.
    text = ""
    for paragraph in paragraphs:
        if text:
            both_items = paragraph.startswith("- ") and text.rsplit("\n", 1)[-1].startswith("- ")
            text += "\n" if both_items else "\n\n"
        text += paragraph
    return text


# Page breaks


def _merge_pages(pages: list[list[_Table | _Text]]) -> list[_Table | _Text]:
    """Flatten the pages' blocks, joining what a page break cut in two.

    A table continues when the next page starts with a table of the same columns;
    its repeated header row is dropped. A sentence continues when the page ends
    without final punctuation and the next page starts with plain text. A list
    continues when both sides of the break are list items.
    """
    merged: list[_Table | _Text] = []
    for blocks in pages:
        if blocks and merged and _join_across_break(merged[-1], blocks[0]):
            blocks = blocks[1:]
        merged.extend(blocks)
    return merged


def _join_across_break(previous: _Table | _Text, first: _Table | _Text) -> bool:
    """Append ``first`` to ``previous`` when one continues the other; tell whether it did."""
    if isinstance(previous, _Table) and isinstance(first, _Table) and _continues(previous, first):
        rows = first.rows
        if _normalized(rows[0]) == _normalized(previous.rows[0]):
            rows = rows[1:]
        previous.rows.extend(rows)
        return True
    if not isinstance(previous, _Text) or not isinstance(first, _Text) or first.text.startswith("#"):
        return False
    last_line = previous.text.rsplit("\n", 1)[-1]
    if last_line.startswith("- ") and first.text.startswith("- "):
        previous.text += "\n" + first.text
        return True
    if previous.text.startswith("#") or previous.text[-1] in ".!?:" or first.text.startswith("- "):
        return False
    previous.text = _join_wrapped(previous.text, first.text)
    return True


def _continues(previous: _Table | _Text, first: _Table | _Text) -> bool:
    """Tell whether table ``first`` at the top of a page continues table ``previous``.

    Layout mode sets the character grid per page, so columns are compared by their
    relative positions: the same number of columns at about the same share of the
    row's width. A repeated header row is enough on its own.
    """
    if not isinstance(previous, _Table) or not isinstance(first, _Table):
        return False
    if len(previous.columns) != len(first.columns):
        return False
    if _normalized(first.rows[0]) == _normalized(previous.rows[0]):
        return True
    return all(
        abs(before - after) <= _RELATIVE_COLUMN_TOLERANCE
        for before, after in zip(_relative_columns(previous.columns), _relative_columns(first.columns))
    )


def _relative_columns(columns: list[int]) -> list[float]:
    span = (columns[-1] - columns[0]) or 1
    return [(column - columns[0]) / span for column in columns]


def _normalized(row: list[str]) -> list[str]:
    return [cell.casefold() for cell in row]
