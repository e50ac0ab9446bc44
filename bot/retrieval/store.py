"""Adding, replacing and removing knowledge sources and their chunks."""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from bot.errors import SourceError
from bot.retrieval.chunking import Chunk, chunk_markdown, chunk_text
from bot.retrieval.embedder import Embedder
from bot.storage.database import Database
from bot.storage.models import KnowledgeChunk, KnowledgeSource

logger = logging.getLogger(__name__)

MAX_SOURCE_BYTES = 20 * 1024 * 1024
TEXT_KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}


@dataclass(frozen=True)
class LoadedDocument:
    """A source file read into text, before chunking."""

    origin: str
    title: str
    kind: str
    text: str
    content_hash: str


@dataclass(frozen=True)
class IngestResult:
    """What happened to one source: ``added``, ``replaced`` or ``unchanged``."""

    origin: str
    title: str
    status: str
    chunk_count: int
    source_id: uuid.UUID


def load_document(path: Path) -> LoadedDocument:
    """Read a Markdown or text file; raise SourceError naming the file otherwise."""
    kind = TEXT_KINDS.get(path.suffix.lower())
    if kind is None:
        supported = ", ".join(sorted(TEXT_KINDS))
        raise SourceError(f"{path}: unsupported file type {path.suffix or '(none)'}; supported: {supported}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the file: {exc.strerror}") from exc
    if len(raw) > MAX_SOURCE_BYTES:
        raise SourceError(f"{path}: file is {len(raw)} bytes, above the {MAX_SOURCE_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not valid UTF-8 text (byte {exc.start})") from exc
    if not text.strip():
        raise SourceError(f"{path}: the file is empty")
    return LoadedDocument(
        origin=str(path.resolve()),
        title=_title_of(text, path),
        kind=kind,
        text=text,
        content_hash=hashlib.sha256(raw).hexdigest(),
    )


def _title_of(text: str, path: Path) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


def chunk_document(document: LoadedDocument) -> list[Chunk]:
    if document.kind == "markdown":
        return chunk_markdown(document.text)
    return chunk_text(document.text)


class SourceStore:
    """Writes sources to PostgreSQL; embedding happens before any transaction opens."""

    def __init__(self, db: Database, embedder: Embedder) -> None:
        self.db = db
        self.embedder = embedder

    async def add_file(self, path: Path, *, audience: str = "all", owner: str | None = None) -> IngestResult:
        return await self.add_document(load_document(path), audience=audience, owner=owner)

    async def add_document(
        self, document: LoadedDocument, *, audience: str = "all", owner: str | None = None
    ) -> IngestResult:
        """Store ``document``, replacing the chunks of an earlier version in one transaction."""
        async with self.db.sessions() as session:
            existing = (
                await session.execute(select(KnowledgeSource).where(KnowledgeSource.origin == document.origin))
            ).scalar_one_or_none()
        if existing is not None and existing.content_hash == document.content_hash and existing.audience == audience:
            return IngestResult(document.origin, existing.title, "unchanged", existing.chunk_count, existing.id)

        started = time.perf_counter()
        chunks = chunk_document(document)
        if not chunks:
            raise SourceError(f"{document.origin}: no text to index")
        vectors = await self.embedder.embed_async([chunk.with_context(document.title) for chunk in chunks])

        async with self.db.transaction() as session:
            source = await self._upsert_source(session, document, audience=audience, owner=owner, count=len(chunks))
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.source_id == source.id))
            session.add_all(
                KnowledgeChunk(
                    source_id=source.id,
                    ordinal=chunk.ordinal,
                    heading_path=list(chunk.heading_path),
                    text=chunk.text,
                    audience=audience,
                    embedding=vector.tolist(),
                )
                for chunk, vector in zip(chunks, vectors)
            )
        status = "added" if existing is None else "replaced"
        logger.info(
            "Indexed source %s (%s, %d chunks) in %.0f ms",
            document.origin,
            status,
            len(chunks),
            (time.perf_counter() - started) * 1000,
        )
        return IngestResult(document.origin, document.title, status, len(chunks), source.id)

    async def _upsert_source(self, session, document: LoadedDocument, *, audience: str, owner: str | None, count: int):
        source = (
            await session.execute(
                select(KnowledgeSource).where(KnowledgeSource.origin == document.origin).with_for_update()
            )
        ).scalar_one_or_none()
        if source is None:
            source = KnowledgeSource(origin=document.origin)
            session.add(source)
        source.title = document.title
        source.kind = document.kind
        source.content_hash = document.content_hash
        source.audience = audience
        source.owner = owner
        source.chunk_count = count
        await session.flush()
        return source

    async def remove(self, origin_or_id: str) -> int:
        """Remove a source and all its chunks; return how many sources were removed."""
        async with self.db.transaction() as session:
            condition = KnowledgeSource.origin == origin_or_id
            try:
                condition = condition | (KnowledgeSource.id == uuid.UUID(origin_or_id))
            except ValueError:
                pass
            result = await session.execute(delete(KnowledgeSource).where(condition))
            return result.rowcount or 0

    async def list_sources(self) -> list[KnowledgeSource]:
        async with self.db.sessions() as session:
            return list((await session.execute(select(KnowledgeSource).order_by(KnowledgeSource.title))).scalars())
