"""Rendering of table rows as GitHub-flavoured Markdown tables.

HTML, DOCX and PDF tables become Markdown tables so that the Markdown chunker cuts
them by rows and repeats the header row in every chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.retrieval.loaders.base import clean_inline


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Render rows as a Markdown table whose first row is the header.

    Cell text is put on one line and ``|`` is escaped. Short rows are padded with
    empty cells and rows without any text are dropped. Returns "" when no row has text.
    """
    cleaned = [[_cell_text(cell) for cell in row] for row in rows]
    cleaned = [row for row in cleaned if any(row)]
    if not cleaned:
        return ""

    width = max(len(row) for row in cleaned)
    padded = [row + [""] * (width - len(row)) for row in cleaned]
    header, body = padded[0], padded[1:]
    lines = [_table_line(header), _table_line(["---"] * width)]
    lines.extend(_table_line(row) for row in body)
    return "\n".join(lines)


def _cell_text(cell: str) -> str:
    return clean_inline(cell).replace("|", "\\|")


def _table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"
