"""Hybrid search: pgvector cosine similarity and PostgreSQL full-text search, fused by rank."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

import numpy as np
import snowballstemmer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.retrieval.embedder import Embedder
from bot.retrieval.vectors import VectorCache
from bot.storage.database import Database
from bot.storage.models import EMBEDDING_DIM

logger = logging.getLogger(__name__)

# Reciprocal rank fusion constant; 60 is the value from Cormack et al. (2009).
RRF_K = 60
# How long the list of words too common to rank on is reused before it is read again.
COMMON_WORDS_TTL_S = 60.0

_stemmer = snowballstemmer.stemmer("english")


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


# The HNSW index stores the vectors at half precision (migration 0006), so the
# candidates are found by that distance, which must be written exactly as the
# index's expression, and then ordered by the exact distance of the full vectors.
_VECTOR_SQL = f"""
    SELECT id, similarity FROM (
        SELECT c.id, 1 - (c.embedding <=> CAST(:vector AS vector)) AS similarity
          FROM knowledge_chunks c
         WHERE c.audience = ANY(:audiences)
         ORDER BY CAST(c.embedding AS halfvec({EMBEDDING_DIM})) <=> CAST(:vector AS halfvec({EMBEDDING_DIM}))
         LIMIT :limit
    ) nearest
     ORDER BY similarity DESC
"""

_TEXT_SQL = """
    SELECT c.id, ts_rank_cd(c.search_vector, query) AS rank
      FROM knowledge_chunks c,
           websearch_to_tsquery('english', :query) AS query
     WHERE CAST(:rank_text AS boolean) AND c.audience = ANY(:audiences) AND c.search_vector @@ query
     ORDER BY rank DESC
     LIMIT :limit
"""

# The vector ranking alone, as the hybrid query runs it (the benchmarks measure its recall).
_VECTOR_QUERY = text(_VECTOR_SQL)

# Both rankings, reciprocal rank fusion and the winners' details in one round
# trip. Ties keep the order of first appearance, vector ranking first.
_HYBRID_QUERY = text(
    f"""
    WITH vector_hits AS ({_VECTOR_SQL}),
         text_hits AS ({_TEXT_SQL}),
         ranked AS (
             SELECT id, 0 AS ranking, row_number() OVER (ORDER BY similarity DESC) AS position FROM vector_hits
             UNION ALL
             SELECT id, 1 AS ranking, row_number() OVER (ORDER BY rank DESC) AS position FROM text_hits
         ),
         fused AS (
             SELECT id,
                    sum(1.0 / (CAST(:rrf_k AS float8) + position)) AS score,
                    min(ranking * 1000000 + position) AS first_seen
               FROM ranked
              GROUP BY id
              ORDER BY score DESC, first_seen
              LIMIT :top
         )
    SELECT c.id, c.source_id, s.title, c.heading_path, c.text, c.audience, c.kind, c.metadata,
           1 - (c.embedding <=> CAST(:vector AS vector)) AS similarity, f.score
      FROM fused f
      JOIN knowledge_chunks c ON c.id = f.id
      JOIN knowledge_sources s ON s.id = c.source_id
     ORDER BY f.score DESC, f.first_seen
    """
)

# Both settings last as long as the connection's session, and one statement sets both.
# With an audience filter, HNSW alone may return fewer rows than requested, so
# pgvector 0.8's iterative scan keeps searching until enough rows pass the filter.
_HNSW_SETTINGS = text(
    "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', false), set_config('hnsw.ef_search', :ef_search, false)"
)
_HNSW_SETTINGS_KEY = "hnsw_ef_search"


class Retriever:
    """Finds the chunks most relevant to a question among those the asker may see.

    The full-text ranking uses the query's rarest words, as many as together
    occur in at most about ``max_text_matches`` chunks, judged from PostgreSQL's
    statistics of the column. Ranking costs time for every chunk that contains a
    query word: at 100,000 generated chunks even a question's five rarest words
    matched up to 48,500 chunks, and the ranking took 127 ms at the 95th
    percentile. Words that common tell the chunks apart no better than the vector
    similarity does, while the rare words that the full-text ranking is for ("G3",
    a city, a form's name) stay. Below about ``max_text_matches`` chunks every
    word is kept.

    ``candidates`` is the number of rows each ranking returns for fusion, and
    ``ef_search`` the size of the HNSW index's candidate list (pgvector's
    ``hnsw.ef_search``, 40 by default in pgvector). The larger list finds the true
    nearest chunks more often and takes longer. With 100,000 generated handbook
    passages and the half-precision index, recall@5 against exact search was
    0.89 at 100 and 0.97 at 300, and the vector query's p95 rose from 1.6 to
    2.9 ms (see BENCHMARKS.md).
    """

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        candidates: int = 40,
        ef_search: int = 300,
        max_text_matches: int = 500,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.candidates = candidates
        self.ef_search = ef_search
        self.max_text_matches = max_text_matches
        self.vectors = VectorCache(db, embedder)
        self._common: tuple[float, dict[str, float]] = (-COMMON_WORDS_TTL_S, {})

    @classmethod
    def from_settings(cls, db: Database, embedder: Embedder, settings) -> Retriever:
        """Create the Retriever with ``CHATOPS_RETRIEVAL_EF_SEARCH`` and ``CHATOPS_RETRIEVAL_TEXT_MATCHES``."""
        return cls(
            db, embedder, ef_search=settings.retrieval_ef_search, max_text_matches=settings.retrieval_text_matches
        )

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
        async with self.connection() as conn:
            words = await self._rankable_words(conn, query_words(keywords or query))
            rows = (
                await conn.execute(
                    _HYBRID_QUERY,
                    {
                        "vector": vector_literal,
                        "query": " OR ".join(words),
                        "rank_text": bool(words),
                        "audiences": allowed,
                        "limit": self.candidates,
                        "rrf_k": RRF_K,
                        "top": limit,
                    },
                )
            ).all()
        hits = [_hit(row, similarity=float(row.similarity), fused_score=float(row.score)) for row in rows]
        logger.info(
            "Searched with %d of %d words ranked in full text in %.1f ms",
            len(words),
            len(query_words(keywords or query)),
            (time.perf_counter() - started) * 1000,
        )
        return hits

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """Yield a pooled connection outside a transaction, with this Retriever's HNSW settings.

        A search is one statement, so it needs no BEGIN and COMMIT. The settings
        last as long as the connection's session and are remembered with it: only
        the first search on a connection, or the first after a Retriever with other
        settings used it, sets them. Measured at 100,000 chunks, the search's
        statement and round trips took 6.8 ms p50 this way and 7.8 ms inside a
        transaction that set them locally.

        NOTE: a pooler that hands each transaction another server connection
        (PgBouncer's transaction mode) loses session settings; searches through
        one would run with pgvector's defaults.
        """
        ef_search = str(max(self.ef_search, self.candidates))
        async with self.db.autocommit() as conn:
            if conn.info.get(_HNSW_SETTINGS_KEY) != ef_search:
                await conn.execute(_HNSW_SETTINGS, {"ef_search": ef_search})
                conn.info[_HNSW_SETTINGS_KEY] = ef_search
            yield conn

    async def _rankable_words(self, session, words: list[str]) -> list[str]:
        """Return the rarest of ``words`` that together occur in at most about ``max_text_matches`` chunks.

        Words that PostgreSQL's statistics do not list as common count as rare.
        """
        common = await self._common_words(session)
        estimated = {word: common.get(english_stem(word), 0.0) for word in words}
        kept: list[str] = []
        total = 0.0
        for word in sorted(dict.fromkeys(words), key=lambda word: estimated[word]):
            total += estimated[word]
            if total > self.max_text_matches:
                break
            kept.append(word)
        return kept

    async def _common_words(self, session) -> dict[str, float]:
        """Return the estimated chunk count of each common lexeme, reading the statistics again after a minute."""
        loaded_at, common = self._common
        if time.monotonic() - loaded_at < COMMON_WORDS_TTL_S:
            return common
        row = (await session.execute(_COMMON_LEXEMES_QUERY)).one_or_none()
        common = {}
        if row is not None and row.lexemes and row.rows > self.max_text_matches:
            # most_common_elem_freqs ends with three summary values after one frequency per lexeme.
            common = {lexeme: frequency * row.rows for lexeme, frequency in zip(row.lexemes, row.frequencies)}
        self._common = (time.monotonic(), common)
        return common

    async def faq_entries(self, audiences: Collection[str]) -> list[SearchHit]:
        """Return every curated FAQ chunk visible to ``audiences``, in source order.

        ``similarity`` and ``fused_score`` are 0: callers rank FAQ entries themselves.
        """
        async with self.db.sessions() as session:
            rows = (await session.execute(_FAQ_QUERY, {"audiences": sorted(set(audiences))})).all()
        return [_hit(row) for row in rows]

    async def chunk_pages(self, *, page_size: int = 500) -> AsyncIterator[list[SearchHit]]:
        """Yield every chunk of every audience in pages of ``page_size``, in id order.

        Each page is read in its own short transaction, so a caller may embed
        between pages without holding one open.
        """
        after = 0
        while True:
            async with self.db.sessions() as session:
                rows = (await session.execute(_PAGE_QUERY, {"after": after, "limit": page_size})).all()
            if not rows:
                return
            yield [_hit(row) for row in rows]
            after = rows[-1].id

    async def corpus_version(self) -> tuple:
        """A value that changes whenever a source is added, replaced or removed.

        Its second item is the number of chunks. One statement in autocommit mode:
        the HR skill reads it for every question.
        """
        async with self.db.autocommit() as conn:
            row = (await conn.execute(_VERSION_QUERY)).one()
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

_PAGE_QUERY = text(
    """
    SELECT c.id, c.source_id, s.title, c.heading_path, c.text, c.audience, c.kind, c.metadata
      FROM knowledge_chunks c
      JOIN knowledge_sources s ON s.id = c.source_id
     WHERE c.id > :after
     ORDER BY c.id
     LIMIT :limit
    """
)

# The planner's estimate of the row count, and the most common lexemes of the
# full-text column with the share of rows containing each (from ANALYZE).
_COMMON_LEXEMES_QUERY = text(
    """
    SELECT c.reltuples AS rows,
           CAST(CAST(s.most_common_elems AS text) AS text[]) AS lexemes,
           s.most_common_elem_freqs AS frequencies
      FROM pg_class c
      LEFT JOIN pg_stats s
        ON s.schemaname = current_schema() AND s.tablename = 'knowledge_chunks' AND s.attname = 'search_vector'
     WHERE c.oid = CAST('knowledge_chunks' AS regclass)
    """
)

# Chunks change only with their source, which then gets a new updated_at or is
# removed. So the small sources table and the chunks' primary key index suffice,
# while counting the chunks themselves would scan them all on every question.
_VERSION_QUERY = text(
    """
    SELECT count(*) AS sources,
           coalesce(sum(chunk_count), 0) AS chunks,
           (SELECT coalesce(max(id), 0) FROM knowledge_chunks) AS max_chunk_id,
           max(updated_at) AS updated
      FROM knowledge_sources
    """
)

_CHUNK_TEXTS_QUERY = text(
    """
    SELECT c.audience, s.title, c.heading_path, c.text
      FROM knowledge_chunks c
      JOIN knowledge_sources s ON s.id = c.source_id
    """
)


def _hit(row, *, similarity: float = 0.0, fused_score: float = 0.0) -> SearchHit:
    """Build the hit of a chunk row; a row read without a query has ``similarity`` and ``fused_score`` 0."""
    return SearchHit(
        chunk_id=row.id,
        source_id=row.source_id,
        title=row.title,
        heading_path=tuple(row.heading_path or ()),
        text=row.text,
        audience=row.audience,
        similarity=similarity,
        fused_score=fused_score,
        kind=row.kind,
        metadata=row.metadata,
    )


def query_words(query: str) -> list[str]:
    """Split ``query`` into the words for the full-text ranking, which ORs them.

    websearch_to_tsquery ANDs plain words; a question rarely shares every word with
    its answer, so the words are ORed and ts_rank_cd rewards chunks matching more.
    """
    return [word for word in "".join(ch if ch.isalnum() else " " for ch in query).split() if len(word) > 1]


def english_stem(word: str) -> str:
    """Return the lexeme that PostgreSQL's ``english`` configuration makes of ``word`` (both use the Snowball English stemmer)."""
    return _stemmer.stemWord(word.lower())
