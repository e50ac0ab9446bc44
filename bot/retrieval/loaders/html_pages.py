"""Loader for HTML pages: the main content as Markdown, with headings and tables kept.

Only the content a reader of the page can see is kept. Scripts, styles,
navigation, forms, comments and hidden elements are dropped. When the page has a
``<main>`` element (or ``role="main"``), only that is read, plus the page's first
``<h1>`` when it sits outside. Without one, the whole body is read, except its
site footer.
``h1`` to ``h3`` become Markdown headings, so they form the chunks' heading path;
deeper headings become plain paragraphs. Tables become Markdown tables, with cells
spanning several rows or columns repeated or padded so that every row stands alone.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

from bot.errors import SourceError
from bot.retrieval.loaders.base import ParsedDocument, clean_inline
from bot.retrieval.loaders.tables import markdown_table

_DROPPED_TAGS = [
    "script", "style", "noscript", "template", "nav", "iframe", "svg", "canvas", "form",
    "button", "select", "input", "textarea", "head", "object", "embed", "audio", "video", "map",
]
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_HEADING_LEVELS = {"h1": 1, "h2": 2, "h3": 3}
_MINOR_HEADINGS = {"h4", "h5", "h6"}
_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "center", "dd", "details", "div", "dl",
    "dt", "fieldset", "figcaption", "figure", "footer", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hgroup", "hr", "html", "li", "main", "ol", "p", "pre", "section", "summary",
    "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)
# Upper bounds on colspan and rowspan, so that a malformed attribute cannot blow up a table.
_MAX_COLSPAN = 50
_MAX_ROWSPAN = 500


def parse_html(name: str, data: bytes) -> ParsedDocument:
    """Convert an HTML page to Markdown; the first ``<h1>``, else ``<title>``, is the title."""
    if not data.strip():
        raise SourceError("the file is empty")
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError("the file contains binary data, not HTML")

    # BeautifulSoup picks the encoding from a BOM or <meta charset>, else guesses it.
    soup = BeautifulSoup(data, "html.parser")
    page_title = _page_title(soup)
    _drop_invisible(soup)

    first_h1 = soup.find("h1")
    root = _content_root(soup)
    writer = _MarkdownWriter()
    if isinstance(first_h1, Tag) and not any(parent is root for parent in first_h1.parents):
        writer.add_heading(1, _inline_text(first_h1))
    writer.walk(root)

    text = writer.markdown()
    if not text.strip():
        raise SourceError("the page has no text in its main content")
    title = clean_inline(first_h1.get_text()) if isinstance(first_h1, Tag) else None
    return ParsedDocument(kind="markdown", text=text, title=title or page_title)


def _page_title(soup: BeautifulSoup) -> str | None:
    title = soup.find("title")
    return clean_inline(title.get_text()) or None if isinstance(title, Tag) else None


def _drop_invisible(soup: BeautifulSoup) -> None:
    for comment in soup.find_all(string=lambda value: isinstance(value, _SKIPPED_STRINGS)):
        comment.extract()
    for tag in soup.find_all(_DROPPED_TAGS):
        if not tag.decomposed:
            tag.decompose()
    for tag in soup.find_all(_is_hidden):
        if not tag.decomposed:
            tag.decompose()


def _is_hidden(tag: Tag) -> bool:
    return (
        tag.has_attr("hidden")
        or str(tag.get("aria-hidden", "")).lower() == "true"
        or bool(_HIDDEN_STYLE.search(str(tag.get("style", ""))))
    )


def _content_root(soup: BeautifulSoup) -> Tag:
    main = soup.find("main") or soup.find(attrs={"role": "main"})
    if isinstance(main, Tag):
        return main
    body = soup.find("body")
    if not isinstance(body, Tag):
        return soup
    for footer in body.find_all("footer", recursive=False):
        footer.decompose()
    return body


def _inline_text(node: Tag | NavigableString) -> str:
    """Return a node's text on one line, with ``<br>`` and block boundaries as spaces."""
    if isinstance(node, NavigableString):
        return clean_inline(str(node))
    parts: list[str] = []
    for descendant in node.descendants:
        if isinstance(descendant, NavigableString):
            parts.append(str(descendant))
        elif descendant.name == "br" or descendant.name in _BLOCK_TAGS:
            parts.append(" ")
    return clean_inline("".join(parts))


def _has_block_descendant(tag: Tag) -> bool:
    return tag.find(_BLOCK_TAGS) is not None


class _MarkdownWriter:
    """Collects Markdown blocks while walking the element tree in document order."""

    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.pending_inline: list[str] = []

    def markdown(self) -> str:
        self.flush()
        return "\n\n".join(self.blocks) + "\n"

    def flush(self) -> None:
        text = clean_inline("".join(self.pending_inline))
        self.pending_inline.clear()
        if text:
            self.blocks.append(text)

    def add_block(self, text: str) -> None:
        self.flush()
        if text.strip():
            self.blocks.append(text)

    def add_heading(self, level: int, text: str) -> None:
        if text:
            self.add_block("#" * level + " " + text)

    def walk(self, node: Tag) -> None:
        for child in node.children:
            if isinstance(child, NavigableString):
                self.pending_inline.append(str(child))
            elif isinstance(child, Tag):
                self.visit(child)

    def visit(self, tag: Tag) -> None:
        name = tag.name
        if name in _HEADING_LEVELS:
            self.add_heading(_HEADING_LEVELS[name], _inline_text(tag))
        elif name in _MINOR_HEADINGS or name == "p":
            self.add_block(_inline_text(tag))
        elif name in ("ul", "ol"):
            self.add_block("\n".join(_list_lines(tag, depth=0)))
        elif name == "table":
            self.add_table(tag)
        elif name == "pre":
            self.add_block(_code_block(tag.get_text()))
        elif name == "blockquote":
            self.add_quote(tag)
        elif name in ("br", "hr"):
            self.flush()
        elif name in _BLOCK_TAGS or _has_block_descendant(tag):
            self.flush()
            self.walk(tag)
            self.flush()
        else:
            self.pending_inline.append(" " + _inline_text(tag) + " " if _is_spaced(tag) else _inline_text(tag))

    def add_table(self, table: Tag) -> None:
        caption = table.find("caption")
        if isinstance(caption, Tag) and caption.find_parent("table") is table:
            self.add_block(_inline_text(caption))
        self.add_block(markdown_table(_table_rows(table)))

    def add_quote(self, quote: Tag) -> None:
        inner = _MarkdownWriter()
        inner.walk(quote)
        text = inner.markdown().strip()
        self.add_block("\n".join("> " + line if line else ">" for line in text.split("\n")))


def _is_spaced(tag: Tag) -> bool:
    # An inline element keeps the spaces around it only when its source text has them.
    text = tag.get_text()
    return text[:1].isspace() or text[-1:].isspace()


def _list_lines(list_tag: Tag, depth: int) -> list[str]:
    lines: list[str] = []
    number = _list_start(list_tag)
    for item in list_tag.find_all("li", recursive=False):
        text_parts: list[str] = []
        nested: list[Tag] = []
        for child in item.children:
            if isinstance(child, Tag) and child.name in ("ul", "ol"):
                nested.append(child)
            elif isinstance(child, Tag):
                text_parts.append(f" {_inline_text(child)} " if child.name in _BLOCK_TAGS else _inline_text(child))
            elif isinstance(child, NavigableString):
                text_parts.append(str(child))
        marker = f"{number}." if list_tag.name == "ol" else "-"
        text = clean_inline("".join(text_parts))
        if text:
            lines.append("  " * depth + f"{marker} {text}")
        for nested_list in nested:
            lines.extend(_list_lines(nested_list, depth + 1))
        number += 1
    return lines


def _list_start(list_tag: Tag) -> int:
    try:
        return int(str(list_tag.get("start", "1")))
    except ValueError:
        return 1


def _code_block(code: str) -> str:
    fence = "~~~~" if "```" in code else "```"
    return f"{fence}\n{code.strip(chr(10))}\n{fence}"


def _table_rows(table: Tag) -> list[list[str]]:
    """Return the table's rows as text, with spanned cells repeated (rows) or padded (columns)."""
    rows: list[list[str]] = []
    # Column index -> [text, rows still covered] for cells with rowspan > 1.
    carried: dict[int, list] = {}
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue
        row: list[str] = []
        for cell in tr.find_all(["td", "th"], recursive=False):
            _take_carried(row, carried)
            text = _inline_text(cell)
            rowspan = _span(cell, "rowspan", _MAX_ROWSPAN)
            for offset in range(_span(cell, "colspan", _MAX_COLSPAN)):
                if rowspan > 1:
                    carried[len(row)] = [text if offset == 0 else "", rowspan - 1]
                row.append(text if offset == 0 else "")
        while any(column >= len(row) for column in carried):
            before = len(row)
            _take_carried(row, carried)
            if len(row) == before:
                row.append("")
        rows.append(row)
    return rows


def _take_carried(row: list[str], carried: dict[int, list]) -> None:
    while len(row) in carried:
        column = len(row)
        text, remaining = carried[column]
        row.append(text)
        if remaining <= 1:
            del carried[column]
        else:
            carried[column][1] = remaining - 1


def _span(cell: Tag, attribute: str, maximum: int) -> int:
    try:
        return min(max(int(str(cell.get(attribute, "1"))), 1), maximum)
    except ValueError:
        return 1
