"""Adding, replacing, re-embedding and removing knowledge sources and their chunks.

A source is one file (from disk or shared in chat). Its chunks are stored with
their own audience, so that one FAQ file can contain entries for everyone and
entries for managers only. Embedding happens before a transaction opens. A
source's chunks are replaced in one transaction, so a search reads either the
old version or the new one, never a mix or nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import ChatOpsError, SourceError
from bot.retrieval.chunking import Chunk, chunk_markdown, chunk_text
from bot.retrieval.embedder import Embedder
from bot.retrieval.loaders import (
    MAX_SOURCE_BYTES,
    LoadedDocument,
    load_bytes,
    load_document,
    normalize_audience,
)
from bot.storage.database import Database
from bot.storage.models import KnowledgeChunk, KnowledgeSource

logger = logging.getLogger(__name__)

AUDIENCE_ALL = "all"
UPLOAD_ORIGIN_PREFIX = "upload:"
_MAX_UPLOAD_NAME_CHARS = 255
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")

__all__ = [
    "MAX_SOURCE_BYTES",
    "IngestResult",
    "LoadedDocument",
    "ReindexResult",
    "SourceChunk",
    "SourceStore",
    "SourceSummary",
    "chunk_document",
    "load_document",
]


@dataclass(frozen=True)
class SourceChunk:
    """A chunk ready to store: text, heading path, kind, audience and metadata.

    ``kind`` is ``faq`` for a curated FAQ entry, whose ``metadata`` then contains
    ``question``, ``answer`` and ``category``. Other chunks have kind ``text``.
    """

    text: str
    heading_path: tuple[str, ...]
    ordinal: int
    audience: str
    kind: str = "text"
    metadata: dict = field(default_factory=dict)

    def embedding_text(self, title: str) -> str:
        """Return the text that is embedded: the title and heading path, then the chunk."""
        return embedding_text(title, self.heading_path, self.text)


@dataclass(frozen=True)
class IngestResult:
    """The outcome of adding one source; ``status`` is ``added``, ``replaced`` or ``unchanged``."""

    origin: str
    title: str
    status: str
    chunk_count: int
    source_id: uuid.UUID


@dataclass(frozen=True)
class ReindexResult:
    """The number of sources and chunks that a reindex embedded again."""

    source_count: int
    chunk_count: int


@dataclass(frozen=True)
class SourceSummary:
    """A stored source as listed to HR: ``chunk_audiences`` counts its chunks per audience."""

    id: uuid.UUID
    title: str
    origin: str
    format: str
    audience: str
    owner: str | None
    chunk_count: int
    chunk_audiences: dict[str, int]
    content_hash: str
    updated_at: datetime


def embedding_text(title: str, heading_path: Sequence[str], text: str) -> str:
    return Chunk(text=text, heading_path=tuple(heading_path), ordinal=0).with_context(title)


def chunk_document(document: LoadedDocument, *, audience: str = AUDIENCE_ALL) -> list[SourceChunk]:
    """Cut a loaded document into chunks that carry the audience each may be shown to.

    An FAQ gives one chunk per entry. An entry's own audience applies when the
    source is for everyone. For a source with a narrower audience, an entry's
    audience must be that audience or ``all``, which then means the source's
    audience. So an entry can narrow its audience, never widen it.
    """
    audience = normalize_audience(audience)
    if document.kind == "faq":
        return [
            SourceChunk(
                text=f"Q: {entry.question}\nA: {entry.answer}",
                heading_path=(),
                ordinal=ordinal,
                audience=_entry_audience(document, entry.audience, audience),
                kind="faq",
                metadata={"question": entry.question, "answer": entry.answer, "category": entry.category},
            )
            for ordinal, entry in enumerate(document.faq_entries)
        ]

    chunks = chunk_markdown(document.text) if document.kind == "markdown" else chunk_text(document.text)
    return [
        SourceChunk(text=chunk.text, heading_path=chunk.heading_path, ordinal=chunk.ordinal, audience=audience)
        for chunk in chunks
    ]


def _entry_audience(document: LoadedDocument, entry_audience: str | None, source_audience: str) -> str:
    if entry_audience is None or entry_audience == source_audience:
        return source_audience
    if source_audience == AUDIENCE_ALL:
        return entry_audience
    if entry_audience == AUDIENCE_ALL:
        return source_audience
    raise SourceError(
        f"{document.origin}: an entry for audience {entry_audience!r} cannot be added to a source "
        f"for audience {source_audience!r}; add the file with --audience all and set each row's audience"
    )


def upload_name(filename: str) -> str:
    """Return the base name of a file shared in chat, without folders or control characters."""
    name = _CONTROL_CHARACTERS.sub("", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not name or name in (".", "..") or len(name) > _MAX_UPLOAD_NAME_CHARS:
        raise SourceError(f"the shared file's name {filename!r} cannot be used; rename the file and share it again")
    return name


@dataclass(frozen=True)
class _PlannedSource:
    """A document cut into chunks, waiting for their embeddings before it is stored."""

    document: LoadedDocument
    audience: str
    owner: str | None
    chunks: list[SourceChunk]
    is_new: bool


class SourceStore:
    """Writes sources and their chunks to PostgreSQL."""

    def __init__(self, db: Database, embedder: Embedder, *, max_bytes: int = MAX_SOURCE_BYTES) -> None:
        self.db = db
        self.embedder = embedder
        self.max_bytes = max_bytes

    async def add_file(
        self, path: Path, *, audience: str = AUDIENCE_ALL, owner: str | None = None, force: bool = False
    ) -> IngestResult:
        """Load a file from disk and store it under its absolute path (see add_document)."""
        document = await asyncio.to_thread(load_document, path, max_bytes=self.max_bytes)
        return await self.add_document(document, audience=audience, owner=owner, force=force)

    async def add_upload(
        self, filename: str, data: bytes, *, owner: str | None, audience: str = AUDIENCE_ALL
    ) -> IngestResult:
        """Store a file shared in chat under the origin ``upload:{filename}``.

        Sharing a file with the same name again replaces the earlier version.
        """
        name = upload_name(filename)
        document = await asyncio.to_thread(
            load_bytes, name, data, origin=UPLOAD_ORIGIN_PREFIX + name, max_bytes=self.max_bytes
        )
        return await self.add_document(document, audience=audience, owner=owner)

    async def add_files(
        self,
        paths: Sequence[Path],
        *,
        audience: str = AUDIENCE_ALL,
        owner: str | None = None,
        force: bool = False,
        on_result: Callable[[Path, IngestResult | ChatOpsError], None],
        batch_chunks: int = 256,
    ) -> None:
        """Add many files, embedding the chunks of several files in one call.

        Embedding one file at a time pads each batch to that file's longest chunk
        and leaves small batches. Pooling about ``batch_chunks`` chunks lets the
        embedder group chunks of similar length instead. Each file is still stored in its
        own transaction, and ``on_result(path, result_or_error)`` is called for
        each file, in order, once it is stored or has failed.
        """
        pending: list[tuple[Path, _PlannedSource]] = []
        for path in paths:
            try:
                document = await asyncio.to_thread(load_document, path, max_bytes=self.max_bytes)
                plan = await self._plan(document, audience=audience, owner=owner, force=force)
            except ChatOpsError as exc:
                await self._store_planned(pending, on_result)
                pending = []
                on_result(path, exc)
                continue
            if isinstance(plan, IngestResult):
                await self._store_planned(pending, on_result)
                pending = []
                on_result(path, plan)
                continue
            pending.append((path, plan))
            if sum(len(planned.chunks) for _, planned in pending) >= batch_chunks:
                await self._store_planned(pending, on_result)
                pending = []
        await self._store_planned(pending, on_result)

    async def _store_planned(
        self,
        pending: Sequence[tuple[Path, _PlannedSource]],
        on_result: Callable[[Path, IngestResult | ChatOpsError], None],
    ) -> None:
        if not pending:
            return
        texts = [chunk.embedding_text(plan.document.title) for _, plan in pending for chunk in plan.chunks]
        vectors = await self.embedder.embed_async(texts)
        offset = 0
        for path, plan in pending:
            plan_vectors = vectors[offset : offset + len(plan.chunks)]
            offset += len(plan.chunks)
            try:
                result = await self._write(plan, plan_vectors)
            except ChatOpsError as exc:
                on_result(path, exc)
            else:
                on_result(path, result)

    async def add_document(
        self, document: LoadedDocument, *, audience: str = AUDIENCE_ALL, owner: str | None = None, force: bool = False
    ) -> IngestResult:
        """Store ``document``, replacing the chunks of an earlier version in one transaction.

        A document whose content and audience match the stored version is skipped
        (status ``unchanged``) unless ``force`` is set; only a new owner is recorded.
        """
        plan = await self._plan(document, audience=audience, owner=owner, force=force)
        if isinstance(plan, IngestResult):
            return plan
        vectors = await self.embedder.embed_async([chunk.embedding_text(document.title) for chunk in plan.chunks])
        return await self._write(plan, vectors)

    async def _plan(
        self, document: LoadedDocument, *, audience: str, owner: str | None, force: bool
    ) -> _PlannedSource | IngestResult:
        """Chunk ``document`` for storing, or return the ``unchanged`` result when nothing changed."""
        audience = normalize_audience(audience)
        existing = await self._find(document.origin)
        if existing is not None and not force and _is_unchanged(existing, document, audience):
            if owner is not None and owner != existing.owner:
                await self._set_owner(existing.id, owner)
            return IngestResult(document.origin, existing.title, "unchanged", existing.chunk_count, existing.id)
        chunks = chunk_document(document, audience=audience)
        if not chunks:
            raise SourceError(f"{document.origin}: no text to index")
        return _PlannedSource(document, audience, owner, chunks, is_new=existing is None)

    async def _write(self, plan: _PlannedSource, vectors) -> IngestResult:
        started = time.perf_counter()
        document, chunks = plan.document, plan.chunks
        async with self.db.transaction() as session:
            source = await self._upsert_source(
                session, document, audience=plan.audience, owner=plan.owner, count=len(chunks)
            )
            await session.execute(delete(KnowledgeChunk).where(KnowledgeChunk.source_id == source.id))
            await session.execute(
                insert(KnowledgeChunk),
                [_chunk_row(source.id, chunk, vector) for chunk, vector in zip(chunks, vectors)],
            )

        status = "added" if plan.is_new else "replaced"
        logger.info(
            "Stored source %s (%s, %d chunks) in %.0f ms",
            document.origin,
            status,
            len(chunks),
            (time.perf_counter() - started) * 1000,
        )
        return IngestResult(document.origin, document.title, status, len(chunks), source.id)

    async def _find(self, origin: str) -> KnowledgeSource | None:
        async with self.db.sessions() as session:
            query = select(KnowledgeSource).where(KnowledgeSource.origin == origin)
            return (await session.execute(query)).scalar_one_or_none()

    async def _set_owner(self, source_id: uuid.UUID, owner: str) -> None:
        # updated_at records when the content changed, so an owner change keeps it.
        statement = (
            update(KnowledgeSource)
            .where(KnowledgeSource.id == source_id)
            .values(owner=owner, updated_at=KnowledgeSource.updated_at)
        )
        async with self.db.transaction() as session:
            await session.execute(statement)

    async def _upsert_source(
        self, session: AsyncSession, document: LoadedDocument, *, audience: str, owner: str | None, count: int
    ) -> KnowledgeSource:
        # Two processes adding the same new file at once must not both insert it.
        await session.execute(
            pg_insert(KnowledgeSource)
            .values(
                id=uuid.uuid4(),
                origin=document.origin,
                title=document.title,
                content_hash=document.content_hash,
                kind=document.format or document.kind,
                audience=audience,
                chunk_count=0,
            )
            .on_conflict_do_nothing(index_elements=[KnowledgeSource.origin])
        )
        query = select(KnowledgeSource).where(KnowledgeSource.origin == document.origin).with_for_update()
        source = (await session.execute(query)).scalar_one()
        source.title = document.title
        source.kind = document.format or document.kind
        source.content_hash = document.content_hash
        source.audience = audience
        source.owner = owner if owner is not None else source.owner
        source.chunk_count = count
        source.updated_at = func.now()
        await session.flush()
        return source

    async def reindex(self, *, progress: Callable[[int, int, str], None] | None = None) -> ReindexResult:
        """Embed every stored chunk again from its stored text, title and heading path.

        Use it after changing the embedding model. Files are not read again, so
        sources shared in chat (which have no file) are covered too. To apply
        changes in the loaders or the chunker, add the files again with force.
        ``progress(done, total, title)`` is called after each source. A source
        replaced or removed while its embeddings are computed is left as it is.
        """
        async with self.db.sessions() as session:
            query = select(KnowledgeSource.id, KnowledgeSource.title, KnowledgeSource.content_hash)
            sources = (await session.execute(query.order_by(KnowledgeSource.title))).all()

        chunk_total = 0
        for done, source in enumerate(sources, start=1):
            chunk_total += await self._reindex_source(source.id, source.title, source.content_hash)
            if progress is not None:
                progress(done, len(sources), source.title)
        return ReindexResult(source_count=len(sources), chunk_count=chunk_total)

    async def _reindex_source(self, source_id: uuid.UUID, title: str, content_hash: str) -> int:
        async with self.db.sessions() as session:
            query = select(KnowledgeChunk.id, KnowledgeChunk.text, KnowledgeChunk.heading_path).where(
                KnowledgeChunk.source_id == source_id
            )
            rows = (await session.execute(query)).all()
        if not rows:
            return 0

        started = time.perf_counter()
        vectors = await self.embedder.embed_async([embedding_text(title, row.heading_path or (), row.text) for row in rows])
        async with self.db.transaction() as session:
            current_hash = (
                await session.execute(
                    select(KnowledgeSource.content_hash).where(KnowledgeSource.id == source_id).with_for_update()
                )
            ).scalar_one_or_none()
            if current_hash != content_hash:
                logger.info("Skipped reindexing source %s: it changed or was removed meanwhile", source_id)
                return 0
            await session.execute(
                update(KnowledgeChunk),
                [{"id": row.id, "embedding": vector.tolist()} for row, vector in zip(rows, vectors)],
            )
        logger.info(
            "Reindexed source %s (%d chunks) in %.0f ms", source_id, len(rows), (time.perf_counter() - started) * 1000
        )
        return len(rows)

    async def remove(self, origin_or_id: str) -> int:
        """Remove a source and all its chunks; return how many sources were removed (0 or 1)."""
        condition = KnowledgeSource.origin == origin_or_id
        try:
            condition = condition | (KnowledgeSource.id == uuid.UUID(origin_or_id))
        except ValueError:
            pass
        async with self.db.transaction() as session:
            # knowledge_chunks.source_id has ON DELETE CASCADE, so the chunks go in the same statement.
            result = await session.execute(delete(KnowledgeSource).where(condition))
            removed = result.rowcount or 0
        if removed:
            logger.info("Removed source %s", origin_or_id)
        return removed

    async def list_sources(self) -> list[KnowledgeSource]:
        async with self.db.sessions() as session:
            return list((await session.execute(select(KnowledgeSource).order_by(KnowledgeSource.title))).scalars())

    async def summaries(self) -> list[SourceSummary]:
        """Return every source with its chunk count per audience, ordered by title."""
        async with self.db.sessions() as session:
            sources = (await session.execute(select(KnowledgeSource).order_by(KnowledgeSource.title))).scalars().all()
            query = select(KnowledgeChunk.source_id, KnowledgeChunk.audience, func.count()).group_by(
                KnowledgeChunk.source_id, KnowledgeChunk.audience
            )
            counts = (await session.execute(query)).all()

        audiences: dict[uuid.UUID, dict[str, int]] = {}
        for source_id, audience, count in counts:
            audiences.setdefault(source_id, {})[audience] = count
        return [
            SourceSummary(
                id=source.id,
                title=source.title,
                origin=source.origin,
                format=source.kind,
                audience=source.audience,
                owner=source.owner,
                chunk_count=source.chunk_count,
                chunk_audiences=dict(sorted(audiences.get(source.id, {}).items())),
                content_hash=source.content_hash,
                updated_at=source.updated_at,
            )
            for source in sources
        ]


def _is_unchanged(existing: KnowledgeSource, document: LoadedDocument, audience: str) -> bool:
    return existing.content_hash == document.content_hash and existing.audience == audience


def _chunk_row(source_id: uuid.UUID, chunk: SourceChunk, vector) -> dict:
    return {
        "source_id": source_id,
        "ordinal": chunk.ordinal,
        "heading_path": list(chunk.heading_path),
        "text": chunk.text,
        "audience": chunk.audience,
        "kind": chunk.kind,
        "chunk_metadata": chunk.metadata,
        "embedding": vector.tolist(),
    }
