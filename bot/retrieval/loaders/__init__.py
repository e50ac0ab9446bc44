"""Source loaders: read HR documents of each supported format into text for chunking.

One loader per file format, chosen by the file's suffix from a registry:

    .md .markdown   Markdown, as written
    .txt .text      plain text
    .html .htm      the main content converted to Markdown (headings, lists, tables)
    .pdf            the text layer converted to Markdown (headings, tables)
    .docx           paragraphs, headings and tables converted to Markdown
    .csv            a curated FAQ, one entry per row

Every failure to read a file (unsupported type, too large, empty, corrupt,
encrypted) raises :class:`bot.errors.SourceError` with a message that starts with
the file's name. More formats can be added with :func:`register_loader`.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from pathlib import Path

from bot.errors import SourceError
from bot.retrieval.loaders.base import (
    FaqEntry,
    LoadedDocument,
    Loader,
    ParsedDocument,
    normalize_audience,
    title_from_filename,
)
from bot.retrieval.loaders.faq_csv import parse_faq_csv
from bot.retrieval.loaders.text_files import parse_markdown, parse_plain_text

__all__ = [
    "MAX_SOURCE_BYTES",
    "FaqEntry",
    "LoadedDocument",
    "Loader",
    "ParsedDocument",
    "load_bytes",
    "load_document",
    "normalize_audience",
    "register_loader",
    "supported_suffixes",
]

logger = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 20 * 1024 * 1024

# Suffix (lower case, with the dot) -> (format name, loader).
_LOADERS: dict[str, tuple[str, Loader]] = {}


def register_loader(suffixes: tuple[str, ...], format_name: str, loader: Loader) -> None:
    """Use ``loader`` for files ending in any of ``suffixes`` (such as ".md"), replacing an earlier one."""
    for suffix in suffixes:
        _LOADERS[suffix.lower()] = (format_name, loader)


def supported_suffixes() -> list[str]:
    return sorted(_LOADERS)


def _imported_on_first_use(module: str, function: str) -> Loader:
    """Wrap a parser so that its module is imported when the first such file arrives.

    The HTML, PDF and Word parsers add several MiB to every process that imports
    them, and a server may never see such a file.
    """

    def load(name: str, data: bytes) -> ParsedDocument:
        return getattr(importlib.import_module(module), function)(name, data)

    return load


register_loader((".md", ".markdown"), "markdown", parse_markdown)
register_loader((".txt", ".text"), "text", parse_plain_text)
register_loader((".html", ".htm"), "html", _imported_on_first_use("bot.retrieval.loaders.html_pages", "parse_html"))
register_loader((".pdf",), "pdf", _imported_on_first_use("bot.retrieval.loaders.pdf_files", "parse_pdf"))
register_loader((".docx",), "docx", _imported_on_first_use("bot.retrieval.loaders.word_files", "parse_docx"))
register_loader((".csv",), "faq", parse_faq_csv)


def load_document(path: Path, *, max_bytes: int = MAX_SOURCE_BYTES) -> LoadedDocument:
    """Read a source file; its origin is the file's absolute path.

    Blocking (reads and parses the file): call it from a worker thread in async code.
    """
    _loader_for(str(path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SourceError(f"{path}: the file is {size} bytes, above the {max_bytes}-byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: failed to read the file: {exc.strerror or exc}") from exc
    return load_bytes(str(path), data, origin=str(path.resolve()), max_bytes=max_bytes)


def load_bytes(name: str, data: bytes, *, origin: str | None = None, max_bytes: int = MAX_SOURCE_BYTES) -> LoadedDocument:
    """Parse a file's content; ``name`` picks the loader and appears in error messages.

    ``origin`` identifies the source in the store and defaults to ``name``. Blocking:
    call it from a worker thread in async code.
    """
    format_name, loader = _loader_for(name)
    if len(data) > max_bytes:
        raise SourceError(f"{name}: the file is {len(data)} bytes, above the {max_bytes}-byte limit")
    if not data.strip():
        raise SourceError(f"{name}: the file is empty")

    try:
        parsed = loader(name, data)
    except SourceError as exc:
        raise SourceError(f"{name}: {exc}") from exc
    except Exception as exc:  # parsers raise many types on corrupt input (ValueError, KeyError, zlib.error, ...)
        logger.debug("Loader for %s failed", name, exc_info=exc)
        raise SourceError(f"{name}: the file is corrupt or not a valid {format_name} file ({type(exc).__name__})") from exc

    return LoadedDocument(
        origin=origin or name,
        title=parsed.title or title_from_filename(name),
        kind=parsed.kind,
        text=parsed.text,
        content_hash=hashlib.sha256(data).hexdigest(),
        format=format_name,
        faq_entries=parsed.faq_entries,
    )


def _loader_for(name: str) -> tuple[str, Loader]:
    suffix = Path(name).suffix.lower()
    found = _LOADERS.get(suffix)
    if found is None:
        raise SourceError(
            f"{name}: unsupported file type {suffix or '(no suffix)'}; supported: {', '.join(supported_suffixes())}"
        )
    return found
