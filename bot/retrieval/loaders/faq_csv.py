"""Loader for curated FAQ files in CSV: ``question,answer[,category][,audience]``.

The first row names the columns, in any order and case; other columns are ignored.
The delimiter is a comma, semicolon or tab, whichever the header row uses. Each row
becomes one FAQ entry, and so one chunk. A row's audience, when given, restricts who
may retrieve that entry; a blank audience means the audience the file is added with.
"""

from __future__ import annotations

import csv
import io

from bot.errors import SourceError
from bot.retrieval.loaders.base import (
    FaqEntry,
    ParsedDocument,
    clean_inline,
    clean_lines,
    decode_text,
    normalize_audience,
)

REQUIRED_COLUMNS = ("question", "answer")
OPTIONAL_COLUMNS = ("category", "audience")
_DELIMITERS = (",", ";", "\t")


def parse_faq_csv(name: str, data: bytes) -> ParsedDocument:
    """Read an FAQ file; raise SourceError naming the line of a row without question or answer."""
    text = decode_text(data)
    if not text.strip():
        raise SourceError("the file is empty")

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        header = next(reader)
        columns = _column_positions(header)
        entries = [entry for entry in (_entry(row, columns, reader.line_num) for row in reader) if entry]
    except csv.Error as exc:
        raise SourceError(f"invalid CSV on line {reader.line_num}: {exc}") from exc

    if not entries:
        raise SourceError("the FAQ has a header row but no questions")
    return ParsedDocument(kind="faq", text=_rendered(entries), faq_entries=tuple(entries))


def _delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {delimiter: first_line.count(delimiter) for delimiter in _DELIMITERS}
    return max(counts, key=lambda delimiter: counts[delimiter]) if any(counts.values()) else ","


def _column_positions(header: list[str]) -> dict[str, int]:
    positions = {clean_inline(cell).casefold(): index for index, cell in reversed(list(enumerate(header)))}
    missing = [column for column in REQUIRED_COLUMNS if column not in positions]
    if missing:
        raise SourceError(
            f"the header row lacks the column(s) {', '.join(missing)}; "
            "an FAQ file starts with the row question,answer[,category][,audience]"
        )
    return {column: positions[column] for column in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if column in positions}


def _entry(row: list[str], columns: dict[str, int], line: int) -> FaqEntry | None:
    values = {column: row[index] if index < len(row) else "" for column, index in columns.items()}
    if not any(value.strip() for value in values.values()):
        return None

    question = clean_inline(values["question"])
    # The answer keeps its line breaks, because HR may write steps or lists on separate lines.
    answer = clean_lines(values["answer"])
    if not question or not answer:
        raise SourceError(f"the row ending on line {line} has no {'question' if not question else 'answer'}")

    audience = clean_inline(values.get("audience", ""))
    try:
        audience = normalize_audience(audience) if audience else None
    except SourceError as exc:
        raise SourceError(f"the row ending on line {line} has an {exc}") from exc
    return FaqEntry(
        question=question,
        answer=answer,
        category=clean_inline(values.get("category", "")) or None,
        audience=audience,
    )


def _rendered(entries: list[FaqEntry]) -> str:
    return "\n\n".join(f"Q: {entry.question}\nA: {entry.answer}" for entry in entries) + "\n"
