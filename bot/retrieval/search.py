"""Hybrid search: pgvector cosine similarity and PostgreSQL full-text search, fused by rank."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from sqlalchemy import text

from bot.retrieval.embedder import Embedder
from bot.storage.database import Database

logger = logging.getLogger(__name__)

# Reciprocal rank fusion constant; 60 is the value from Cormack et al. (2009).
RRF_K = 60


@dataclass(frozen=True)
class SearchHit:
    """A chunk found for a query.

    ``similarity`` is the cosine similarity of query and chunk (-1 to 1) and decides
    relevance; ``fused_score`` orders the hits.
    """

    chunk_id: int
    source_id: uuid.UUID
    title: str
    heading_path: tuple[str, ...]
    text: str
    audience: str
    similarity: float
    fused_score: float
    kind: str = "text"
    metadata: dict | None = None

    @property
    def heading(self) -> str | None:
        return " › ".join(self.heading_path[1:] if self.heading_path[:1] == (self.title,) else self.heading_path) or None


_VECTOR_QUERY = text(
    """
    SELECT c.id, 1 - (c.embedding <=> CAST(:vector AS vector)) AS similarity
      FROM knowledge_chunks c
     WHERE c.audience = ANY(:audiences)
     ORDER BY c.embedding <=> CAST(:vector AS vector)
     LIMIT :limit
    """
)

_TEXT_QUERY = text(
    """
    SELECT c.id, ts_rank_cd(c.search_vector, query) AS rank
      FROM knowledge_chunks c,
           websearch_to_tsquery('english', :query) AS query
     WHERE c.audience = ANY(:audiences) AND c.search_vector @@ query
     ORDER BY rank DESC
     LIMIT :limit
    """
)

# Both settings last until the transaction ends, and one statement sets both.
_HNSW_SETTINGS = text(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), set_config('hnsw.ef_search', :ef_search, true)"
)

_DETAILS_QUERY = text(
    """
    SELECT c.id, c.source_id, s.title, c.heading_path, c.text, c.audience, c.kind, c.metadata,
           1 - (c.embedding <=> CAST(:vector AS vector)) AS similarity
      FROM knowledge_chunks c
      JOIN knowledge_sources s ON s.id = c.source_id
     WHERE c.id = ANY(:ids)
    """
)


class Retriever:
    """Finds the chunks most relevant to a question among those the asker may see.

    ``candidates`` is the number of rows each ranking returns for fusion, and
    ``ef_search`` the size of the HNSW index's candidate list (pgvector's
    ``hnsw.ef_search``, 40 by default in pgvector). The larger list finds the true
    nearest chunks more often at about the same latency. With generated handbook
    passages, recall@5 against exact search rose from about 0.9 to 0.95 at
    10,000 chunks, and from about 0.65 to 0.75 at 100,000 (three runs, see
    BENCHMARKS.md). With 5,000 chunks or fewer the planner then prefers an exact
    scan, which is exact and cost about 10 ms more there.
    """

    def __init__(self, db: Database, embedder: Embedder, *, candidates: int = 40, ef_search: int = 100) -> None:
        self.db = db
        self.embedder = embedder
        self.candidates = candidates
        self.ef_search = ef_search

    async def search(
        self,
        query: str,
        *,
        audiences: Collection[str] = ("all",),
        limit: int = 5,
        keywords: str | None = None,
        vector: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """Return up to ``limit`` chunks visible to ``audiences``, best first.

        Both rankings filter on the audience before ranking, so content of other
        audiences never takes a place in the results. ``keywords`` replaces
        ``query`` in the full-text ranking (for example with misspellings
        repaired); ``vector`` is the query's embedding when the caller already
        has it.
        """
        started = time.perf_counter()
        if vector is None:
            vector = (await self.embedder.embed_async([query]))[0]
        vector_literal = "[" + ",".join(f"{value:.7f}" for value in vector) + "]"
        allowed = sorted(set(audiences))
        async with self.db.sessions() as session:
            # With an audience filter, HNSW alone may return fewer rows than asked;
            # pgvector 0.8's iterative scan keeps searching until enough pass the filter.
            await session.execute(_HNSW_SETTINGS, {"ef_search": str(max(self.ef_search, self.candidates))})
            vector_rows = (
                await session.execute(
                    _VECTOR_QUERY, {"vector": vector_literal, "audiences": allowed, "limit": self.candidates}
                )
            ).all()
            text_rows = (
                await session.execute(
                    _TEXT_QUERY,
                    {"query": _or_query(keywords or query), "audiences": allowed, "limit": self.candidates},
                )
            ).all()
            fused = _fuse([row.id for row in vector_rows], [row.id for row in text_rows])
            top_ids = [chunk_id for chunk_id, _ in fused[:limit]]
            details = {
                row.id: row
                for row in (await session.execute(_DETAILS_QUERY, {"ids": top_ids, "vector": vector_literal})).all()
            }
        hits = [
            SearchHit(
                chunk_id=row.id,
                source_id=row.source_id,
                title=row.title,
                heading_path=tuple(row.heading_path or ()),
                text=row.text,
                audience=row.audience,
                similarity=float(row.similarity),
                fused_score=score,
                kind=row.kind,
                metadata=row.metadata,
            )
            for chunk_id, score in fused[:limit]
            if (row := details.get(chunk_id)) is not None
        ]
        logger.info("Searched %d chunk candidates in %.1f ms", len(vector_rows) + len(text_rows), (time.perf_counter() - started) * 1000)
        return hits


    async def faq_entries(self, audiences: Collection[str]) -> list[SearchHit]:
        """Return every curated FAQ chunk visible to ``audiences``, in source order.

        ``similarity`` and ``fused_score`` are 0: callers rank FAQ entries themselves.
        """
        async with self.db.sessions() as session:
            rows = (await session.execute(_FAQ_QUERY, {"audiences": sorted(set(audiences))})).all()
        return [
            SearchHit(
                chunk_id=row.id,
                source_id=row.source_id,
                title=row.title,
                heading_path=tuple(row.heading_path or ()),
                text=row.text,
                audience=row.audience,
                similarity=0.0,
                fused_score=0.0,
                kind=row.kind,
                metadata=row.metadata,
            )
            for row in rows
        ]

    async def corpus_version(self) -> tuple:
        """A value that changes whenever a source is added, replaced or removed."""
        async with self.db.sessions() as session:
            row = (await session.execute(_VERSION_QUERY)).one()
        return (row.sources, row.chunks, row.max_chunk_id, row.updated)

    async def chunk_texts(self) -> list[tuple[str, str]]:
        """Return ``(audience, searchable text)`` of every chunk, for term statistics."""
        async with self.db.sessions() as session:
            rows = (await session.execute(_CHUNK_TEXTS_QUERY)).all()
        return [(row.audience, " ".join([row.title, *(row.heading_path or ()), row.text])) for row in rows]


_FAQ_QUERY = text(
    """
    SELECT c.id, c.source_id, s.title, c.heading_path, c.text, c.audience, c.kind, c.metadata
      FROM knowledge_chunks c
      JOIN knowledge_sources s ON s.id = c.source_id
     WHERE c.kind = 'faq' AND c.audience = ANY(:audiences)
     ORDER BY s.title, c.ordinal
    """
)

_VERSION_QUERY = text(
    """
    SELECT (SELECT count(*) FROM knowledge_sources) AS sources,
           (SELECT count(*) FROM knowledge_chunks) AS chunks,
           (SELECT coalesce(max(id), 0) FROM knowledge_chunks) AS max_chunk_id,
           (SELECT max(updated_at) FROM knowledge_sources) AS updated
    """
)

_CHUNK_TEXTS_QUERY = text(
    """
    SELECT c.audience, s.title, c.heading_path, c.text
      FROM knowledge_chunks c
      JOIN knowledge_sources s ON s.id = c.source_id
    """
)


def _or_query(query: str) -> str:
    # websearch_to_tsquery ANDs plain words; a question rarely shares every word with
    # its answer, so the words are ORed and ts_rank_cd rewards chunks matching more.
    words = [word for word in "".join(ch if ch.isalnum() else " " for ch in query).split() if len(word) > 1]
    return " OR ".join(words)


def _fuse(*rankings: list[int]) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for position, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + position + 1)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)
