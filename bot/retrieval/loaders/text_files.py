"""Loaders for Markdown and plain-text files."""

from __future__ import annotations

import re

from bot.errors import SourceError
from bot.retrieval.loaders.base import ParsedDocument, decode_text

# The first level-1 ATX heading, as in "# Travel & Expenses" or "# Travel #".
_FIRST_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def parse_markdown(name: str, data: bytes) -> ParsedDocument:
    """Read a Markdown file; its first level-1 heading outside code blocks is the title."""
    text = _require_text(decode_text(data))
    return ParsedDocument(kind="markdown", text=text, title=_markdown_title(text))


def parse_plain_text(name: str, data: bytes) -> ParsedDocument:
    """Read a plain-text file; the title comes from the file name."""
    return ParsedDocument(kind="text", text=_require_text(decode_text(data)))


def _require_text(text: str) -> str:
    if not text.strip():
        raise SourceError("the file is empty")
    return text


def _markdown_title(text: str) -> str | None:
    # Cut at the first code fence, so that "# comment" lines in shell examples are not titles.
    fence = _FENCE.search(text)
    searchable = text[: fence.start()] if fence else text
    match = _FIRST_H1.search(searchable)
    return match.group(1).strip() if match else None
