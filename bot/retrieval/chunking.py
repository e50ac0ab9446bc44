"""Split Markdown and plain-text documents into chunks for embedding and search.

Markdown goes through langchain-text-splitters (1.1.3) in two steps. First,
MarkdownHeaderTextSplitter cuts the document into sections at ``#``, ``##`` and
``###`` headings, which become each chunk's ``heading_path`` and are left out of
its body. Then a section longer than ``chunk_size`` is cut into pieces. Prose goes
through RecursiveCharacterTextSplitter (paragraphs, then lines, sentences and
words). Tables are cut by rows, with the header and delimiter rows repeated on
every piece. A fenced code block is cut by lines only when it alone is too long.

Sizes are in characters and are soft maxima. Only a table piece with a single row
can be longer than ``chunk_size``, because rows are never cut.

HTML comments stay in the text so that later review steps can see them. The text
loses YAML front matter at the very start, the heading lines, leading indentation
and repeated blank lines outside code blocks, and invisible format and control
characters such as U+200B. Tabs and other spaces become plain spaces.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    # Imported where used: the splitters add about 12 MB to a server that may never index a file.
    from langchain_text_splitters import RecursiveCharacterTextSplitter

DEFAULT_CHUNK_SIZE = 900
DEFAULT_CHUNK_OVERLAP = 120

_HEADING_LEVELS = (("#", "h1"), ("##", "h2"), ("###", "h3"))

# YAML front matter: "---" on the first line, closed by "---" or "...".
_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\n(?:.*?\n)??(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
# Opening code fence. A backtick fence's info string cannot contain backticks, which
# keeps inline code such as ```x``` out.
_FENCE_OPEN = re.compile(r"^\s*(?:(`{3,})(?!.*`)|(~{3,}))")
# GFM delimiter row, e.g. "|---|:--:|---:|" or "--- | ---".
_TABLE_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$")
# Closing sequence of an ATX heading, as in "## Scanning ##".
_HEADING_CLOSING_HASHES = re.compile(r"(?:^|\s+)#+\s*$")

# Whitespace other than the newline: tab, no-break space, thin space and the like.
_OTHER_SPACES = re.compile(r"[^\S\n]")

# Paragraphs first, then lines, sentences, words and finally single characters.
_PROSE_SEPARATORS = ["\n\n", "\n", ". ", " ", ""]

# MarkdownHeaderTextSplitter joins the paragraphs of a section with this string.
_SPLITTER_PARAGRAPH_JOINER = "  \n"


@dataclass(frozen=True)
class Chunk:
    """A piece of a document together with the headings it sits under."""

    text: str
    heading_path: tuple[str, ...]
    ordinal: int

    def with_context(self, title: str) -> str:
        """Return the text to embed and search: "title > h1 > h2", a blank line, then the body.

        A heading equal to the one before it (usually the H1 repeating the document
        title) appears once. Without a title or headings the body is returned alone.
        """
        path: list[str] = []
        for part in (title.strip(), *self.heading_path):
            if part and (not path or part.casefold() != path[-1].casefold()):
                path.append(part)

        if not path:
            return self.text
        return " > ".join(path) + "\n\n" + self.text


def chunk_markdown(
    text: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Split a Markdown document into chunks that carry their heading path.

    ``chunk_overlap`` applies where prose is cut inside a section, never across
    sections, tables or code blocks.
    """
    _validate_sizes(chunk_size, chunk_overlap)
    text = _strip_front_matter(_normalize_newlines(text))
    prose_splitter = _make_prose_splitter(chunk_size, chunk_overlap)

    pieces: list[tuple[str, tuple[str, ...]]] = []
    for heading_path, body in _split_sections(text):
        for piece in _split_section(body, chunk_size, prose_splitter):
            pieces.append((piece, heading_path))

    return _number_chunks(pieces)


def chunk_text(
    text: str,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    chunk_overlap: int = DEFAULT_CHUNK_OVERLAP,
) -> list[Chunk]:
    """Split plain text into chunks, preferring paragraph, then line and sentence breaks.

    The chunks have an empty ``heading_path``.
    """
    _validate_sizes(chunk_size, chunk_overlap)
    prose_splitter = _make_prose_splitter(chunk_size, chunk_overlap)
    pieces = prose_splitter.split_text(_normalize_newlines(text))
    return _number_chunks([(piece, ()) for piece in pieces])


def _validate_sizes(chunk_size: int, chunk_overlap: int) -> None:
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if not 0 <= chunk_overlap < chunk_size:
        raise ValueError(
            f"chunk_overlap must be at least 0 and less than chunk_size ({chunk_size}), "
            f"got {chunk_overlap}"
        )


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _strip_front_matter(text: str) -> str:
    return _FRONT_MATTER.sub("", text, count=1)


def _make_prose_splitter(chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # keep_separator="end" leaves ". " at the end of a sentence instead of starting the next piece.
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=_PROSE_SEPARATORS,
        keep_separator="end",
    )


def _number_chunks(pieces: list[tuple[str, tuple[str, ...]]]) -> list[Chunk]:
    chunks: list[Chunk] = []
    for text, heading_path in pieces:
        text = text.strip("\n")
        if text.strip():
            chunks.append(Chunk(text=text, heading_path=heading_path, ordinal=len(chunks)))
    return chunks


# Sections


def _split_sections(text: str) -> Iterator[tuple[tuple[str, ...], str]]:
    """Yield (heading path, body) per section, with fenced code blocks kept verbatim.

    MarkdownHeaderTextSplitter strips every line and drops non-printable characters,
    which would flatten the indentation inside code blocks. Fenced code blocks are
    therefore swapped for one-line placeholders before the split and put back after.
    Outside code blocks, tabs and other spaces such as U+00A0 become plain spaces
    first, because the splitter would drop them and join the words on either side.
    """
    placeholder_prefix = f"chatopscodeblock{secrets.token_hex(8)}n"
    code_blocks: list[str] = []

    protected_lines: list[str] = []
    for block_kind, block_text in _split_fenced_code(text):
        if block_kind == "code":
            protected_lines.append(f"{placeholder_prefix}{len(code_blocks)}")
            code_blocks.append(block_text)
        else:
            protected_lines.append(_OTHER_SPACES.sub(" ", block_text))

    from langchain_text_splitters import MarkdownHeaderTextSplitter

    splitter = MarkdownHeaderTextSplitter(headers_to_split_on=list(_HEADING_LEVELS))
    placeholder = re.compile(re.escape(placeholder_prefix) + r"(\d+)")

    for document in splitter.split_text("\n".join(protected_lines)):
        headings = [
            _HEADING_CLOSING_HASHES.sub("", document.metadata.get(name, "")).strip()
            for _, name in _HEADING_LEVELS
        ]
        heading_path = tuple(heading for heading in headings if heading)
        # NOTE: relies on MarkdownHeaderTextSplitter 1.1.3 joining paragraphs with
        # "  \n". Stripped lines cannot end in two spaces, so the joiner is unambiguous.
        body = document.page_content.replace(_SPLITTER_PARAGRAPH_JOINER, "\n\n")
        body = placeholder.sub(lambda match: code_blocks[int(match.group(1))], body)
        yield heading_path, body


def _split_fenced_code(text: str) -> Iterator[tuple[Literal["code", "text"], str]]:
    """Yield ("code", block) for each fenced code block and ("text", line) for other lines."""
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        fence_end = _find_fence_end(lines, index)
        if fence_end is None:
            yield "text", lines[index]
            index += 1
        else:
            yield "code", "\n".join(lines[index:fence_end])
            index = fence_end


def _find_fence_end(lines: list[str], index: int) -> int | None:
    """Return the index after the fenced code block opening at lines[index], or None.

    An unclosed fence runs to the end of the text, as in CommonMark.
    """
    closing = _closing_fence_pattern(lines[index])
    if closing is None:
        return None

    for end in range(index + 1, len(lines)):
        if closing.match(lines[end]):
            return end + 1
    return len(lines)


def _closing_fence_pattern(line: str) -> re.Pattern[str] | None:
    """Return the pattern of the line that closes a fence opened by line, or None.

    A fence closes at a line of the same character, at least as long as the opening.
    """
    opening = _FENCE_OPEN.match(line)
    if opening is None:
        return None

    fence = opening.group(1) or opening.group(2)
    return re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")


# Pieces within a section


@dataclass
class _Segment:
    kind: Literal["prose", "table", "code"]
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _split_section(
    body: str, chunk_size: int, prose_splitter: RecursiveCharacterTextSplitter
) -> list[str]:
    """Cut a section body into pieces of at most chunk_size characters where possible.

    The first piece of a segment joins the previous piece when both fit together, so
    a short lead-in paragraph stays with the table or code block that follows it.
    """
    body = body.strip("\n")
    if len(body) <= chunk_size:
        return [body]

    pieces: list[str] = []
    for segment in _segment_body(body):
        if segment.kind == "table":
            segment_pieces = _split_table(segment.lines, chunk_size)
        elif segment.kind == "code":
            segment_pieces = _split_code(segment.lines, chunk_size)
        else:
            segment_pieces = prose_splitter.split_text(segment.text)

        segment_pieces = [piece for piece in segment_pieces if piece.strip()]
        if not segment_pieces:
            continue

        first = segment_pieces[0]
        if pieces and len(pieces[-1]) + 2 + len(first) <= chunk_size:
            pieces[-1] = pieces[-1] + "\n\n" + first
            segment_pieces = segment_pieces[1:]
        pieces.extend(segment_pieces)
    return pieces


def _segment_body(body: str) -> list[_Segment]:
    """Group the lines of a section into prose, table and fenced code segments."""
    lines = body.split("\n")
    segments: list[_Segment] = []
    prose: list[str] = []

    def flush_prose() -> None:
        if any(line.strip() for line in prose):
            segments.append(_Segment("prose", list(prose)))
        prose.clear()

    index = 0
    while index < len(lines):
        line = lines[index]

        fence_end = _find_fence_end(lines, index)
        if fence_end is not None:
            flush_prose()
            segments.append(_Segment("code", lines[index:fence_end]))
            index = fence_end
            continue

        is_table_start = (
            "|" in line
            and index + 1 < len(lines)
            and _TABLE_DELIMITER.match(lines[index + 1]) is not None
        )
        if is_table_start:
            end = index + 2
            while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                end += 1
            flush_prose()
            segments.append(_Segment("table", lines[index:end]))
            index = end
            continue

        prose.append(line)
        index += 1

    flush_prose()
    return segments


def _split_table(lines: list[str], chunk_size: int) -> list[str]:
    """Cut a table by rows, starting every piece with the header and delimiter rows.

    A piece contains at least one row, so a row too long to fit with the header makes a
    piece longer than chunk_size.
    """
    table = "\n".join(lines)
    if len(table) <= chunk_size:
        return [table]

    header = "\n".join(lines[:2])
    pieces: list[str] = []
    current = header
    current_has_rows = False
    for row in lines[2:]:
        if current_has_rows and len(current) + 1 + len(row) > chunk_size:
            pieces.append(current)
            current = header
            current_has_rows = False
        current = current + "\n" + row
        current_has_rows = True

    if current_has_rows or not pieces:
        pieces.append(current)
    return pieces


def _split_code(lines: list[str], chunk_size: int) -> list[str]:
    """Cut a fenced code block by lines, wrapping each piece in the block's own fences.

    Lines longer than the room left inside the fences are cut by characters. When the
    fences alone would fill chunk_size, the block is cut without re-adding them.
    """
    block = "\n".join(lines)
    if len(block) <= chunk_size:
        return [block]

    opening = lines[0]
    closing_pattern = _closing_fence_pattern(opening)
    has_closing = len(lines) > 1 and closing_pattern is not None and closing_pattern.match(lines[-1])
    closing = lines[-1] if has_closing else ""
    inner = lines[1:-1] if has_closing else lines[1:]

    room = chunk_size - len(opening) - len(closing) - 2
    if room < 1:
        return _pack_lines(lines, chunk_size)

    pieces = _pack_lines(inner, room)
    return [f"{opening}\n{piece}\n{closing}".rstrip("\n") for piece in pieces]


def _pack_lines(lines: list[str], max_length: int) -> list[str]:
    """Join lines into pieces of at most max_length characters, cutting longer lines."""
    pieces: list[str] = []
    current: str | None = None
    for line in lines:
        for part in [line[start : start + max_length] for start in range(0, len(line), max_length)] or [""]:
            if current is not None and len(current) + 1 + len(part) <= max_length:
                current = current + "\n" + part
            else:
                if current is not None:
                    pieces.append(current)
                current = part
    if current is not None:
        pieces.append(current)
    return pieces
