"""The loader contract, the loaded-document types and helpers that several loaders share."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.errors import SourceError

# Invisible characters that editors and exports leave behind (they would split words in search),
# and C0 control characters other than whitespace.
_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff\x00-\x08\x0e-\x1f]")
_SPACES = re.compile(r"\s+")
_FILENAME_SEPARATORS = re.compile(r"[-_\s]+")
# Matches the column size of knowledge_sources.audience and knowledge_chunks.audience.
MAX_AUDIENCE_CHARS = 64
_AUDIENCE = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_AUDIENCE_CHARS - 1}}}")


@dataclass(frozen=True)
class FaqEntry:
    """One curated question and answer from an FAQ file.

    ``audience`` is None when the row leaves it blank, so that the source's audience applies.
    """

    question: str
    answer: str
    category: str | None = None
    audience: str | None = None


@dataclass(frozen=True)
class ParsedDocument:
    """A loader's result: the file's content as Markdown or plain text.

    ``kind`` is ``markdown`` for every format converted to Markdown (HTML, PDF, DOCX),
    ``text`` for plain text and ``faq`` for FAQ files, whose ``faq_entries`` carry
    the content. ``title`` is None when the file names none.
    """

    kind: str
    text: str
    title: str | None = None
    faq_entries: tuple[FaqEntry, ...] = ()


@dataclass(frozen=True)
class LoadedDocument:
    """A source file read into text, before chunking.

    ``format`` names the file format (markdown, text, html, pdf, docx, faq) and is
    stored as the source's kind. ``kind`` selects how ``text`` is chunked.
    """

    origin: str
    title: str
    kind: str
    text: str
    content_hash: str
    format: str = ""
    faq_entries: tuple[FaqEntry, ...] = ()


Loader = Callable[[str, bytes], ParsedDocument]
"""A loader parses a file's bytes; ``name`` is the file name, for messages and titles.

A loader MUST raise SourceError with a reason (without the file name, which the
caller adds) when the file is corrupt, encrypted or has no text. It MAY raise other
exceptions on malformed input: the caller maps them to SourceError. It MUST NOT
read anything but the bytes it is given.
"""


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM) or UTF-16 with BOM, else Windows-1252.

    Spreadsheet programs on Windows still save CSV files as Windows-1252, which is
    why that is the fallback. Bytes with NUL characters are binary, not text.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise SourceError(f"not valid UTF-16 text (byte {exc.start})") from exc
    if b"\x00" in data:
        raise SourceError("the file contains binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise SourceError(f"not valid UTF-8 or Windows-1252 text (byte {exc.start}); save it as UTF-8") from exc


def clean_inline(text: str) -> str:
    """Collapse whitespace (newlines included) to single spaces and drop invisible characters."""
    return _SPACES.sub(" ", _INVISIBLE.sub("", text)).strip()


def clean_lines(text: str) -> str:
    """Collapse whitespace within each line, keep line breaks and drop blank lines."""
    lines = (clean_inline(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def normalize_audience(value: str) -> str:
    """Return the audience in the form retrieval filters on: lower case, without a leading "@".

    Raises SourceError for a value that cannot name a group: ``all``, ``managers``
    and Slack user-group handles such as ``@people-ops`` pass.
    """
    audience = value.strip().lstrip("@").lower()
    if not _AUDIENCE.fullmatch(audience):
        raise SourceError(
            f"invalid audience {value!r}: use all, managers or a group name of letters, digits, '.', '_' or '-' "
            f"(at most {MAX_AUDIENCE_CHARS} characters)"
        )
    return audience


def title_from_filename(name: str) -> str:
    """Turn "travel-expenses_2027.md" into "Travel expenses 2027"; "faq.csv" becomes "FAQ"."""
    stem = name.rsplit("/", 1)[-1]
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    words = _FILENAME_SEPARATORS.sub(" ", stem).strip().split(" ")
    words = ["FAQ" if word.casefold() == "faq" else word for word in words]
    title = " ".join(words)
    return title[:1].upper() + title[1:] if title else name
