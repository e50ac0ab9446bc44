"""Retrieval at scale: hybrid top-5 latency through ``Retriever.search``, HNSW against exact search.

Generated passages (see corpus.py) are embedded with the bot's embedder and loaded
with binary COPY into a fresh database per size. As usual for a bulk load, the
HNSW and full-text indexes are dropped before the load and created again
afterwards. They are created from their own definitions in ``pg_indexes``, which
the migrations wrote.

Each evaluation question is searched in two ways. The HR skill passes the question's
five rarest words as ``keywords`` for the full-text ranking, so the main timings
do the same, with the rarity taken from the stored chunks. The ``_question``
timings rank on the whole question, which is what ``Retriever.search`` does for
a caller that passes no keywords.

Exact search runs the same ``Retriever.search`` code on connections opened with
``enable_indexscan = off``. The HNSW index can only be read by an index scan, so
the vector query becomes a sequential scan with a sort, while the full-text query
keeps its bitmap scan of the GIN index. Query plans are checked to show both.
Each mode first runs every question in a block of its own, the blocks in
alternating order; the main timings come from there. Then the modes take turns
question by question, and those timings are reported as ``_interleaved``.
Timings include embedding the question.

Recall@5 compares the first five rows of the Retriever's own vector query under
HNSW with the exact top five by the full-precision vectors (a sequential scan
that neither the index nor its half-precision copies touch). A row counts as found when its similarity is
at least that of the exact fifth row, so ties between equal vectors are not
counted as misses. Every pair of handbook sentences appears in many passages that
differ only in cities and numbers, and their similarities to a question differ
in the third decimal place. Content recall@5 therefore also counts an HNSW row
as found when it was made of the same two sentences as one of the exact five.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from sqlalchemy import text

from bot.retrieval.embedder import MODEL_ID, get_embedder
# The Retriever's own vector query, run on its connections, so that recall is measured on the SQL it runs.
from bot.retrieval.search import _VECTOR_QUERY, Retriever
from bot.storage.database import Database, DatabaseUrls, database_urls
from tests.bench.corpus import Passage, passages
from tests.bench.harness import CACHE_DIR, BenchContext, load_questions, summarise_ms
from tests.bench.harness import query as query_rows

EMBED_BATCH = 2_000
TIE_TOLERANCE = 1e-6
WARM_UP_QUERIES = 5
PGVECTOR_DEFAULT_EF_SEARCH = 40
# The HR skill ranks full-text matches on this many of the question's rarest words.
RARE_WORDS = 5


async def run(ctx: BenchContext) -> dict[str, Any]:
    small, large = ctx.sizes.retrieval_chunks
    corpus = passages(large)
    vectors, cached = await asyncio.to_thread(embed_cached, corpus)
    queries = [item["question"] for item in load_questions()]
    results: dict[str, Any] = {"retrieval_embeddings_cached": cached, "retrieval_queries": len(queries)}
    for size in (small, large):
        urls = await asyncio.to_thread(ctx.create_database, f"bench_retrieval_{size}")
        load = await asyncio.to_thread(load_chunks, urls, corpus[:size], vectors[:size])
        measured = await measure(urls, queries, corpus[:size], repeats=ctx.sizes.retrieval_repeats)
        results[f"retrieval_{size}"] = {**load, **measured}

    largest = results[f"retrieval_{large}"]
    results.update(
        retrieval_p95_ms_100k=largest["hnsw"]["p95_ms"],
        retrieval_interleaved_p95_ms_100k=largest["hnsw_interleaved"]["p95_ms"],
        retrieval_exact_p95_ms_100k=largest["exact"]["p95_ms"],
        retrieval_question_p95_ms_100k=largest["hnsw_question"]["p95_ms"],
        retrieval_largest_chunks=large,
        recall_at_5=largest["recall_at_5"],
        recall_at_5_default_ef=largest["recall_at_5_default_ef"],
        content_recall_at_5=largest["content_recall_at_5"],
        retrieval_default_ef_p95_ms_100k=largest["hnsw_default_ef"]["p95_ms"],
    )
    return results


def embed_cached(corpus: Sequence[Passage]) -> tuple[np.ndarray, bool]:
    """Embed the passages, reusing the vectors of an earlier run of the same corpus and model."""
    texts = [passage.embedded_text for passage in corpus]
    digest = hashlib.sha256("\n".join([MODEL_ID, *texts]).encode("utf-8")).hexdigest()[:16]
    path = CACHE_DIR / f"passages-{len(texts)}-{digest}.npy"
    if path.is_file():
        return np.load(path), True
    embedder = get_embedder()
    started = time.monotonic()
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed(texts[start : start + EMBED_BATCH]))
        done = start + len(parts[-1])
        rate = done / (time.monotonic() - started)
        print(f"  embedded {done:,}/{len(texts):,} passages ({rate:.0f}/s)", file=sys.stderr, flush=True)
    vectors = np.concatenate(parts)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors, False


def load_chunks(urls: DatabaseUrls, corpus: Sequence[Passage], vectors: np.ndarray) -> dict[str, Any]:
    """Bulk-load passages as knowledge chunks and rebuild the search indexes; return the timings."""
    with psycopg.connect(urls.libpq, autocommit=True) as conn:
        register_vector(conn)
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'knowledge_chunks' "
            "AND (indexdef ILIKE '%USING hnsw%' OR indexdef ILIKE '%USING gin%')"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')

        started = time.monotonic()
        source_ids = _copy_sources(conn, corpus)
        with conn.cursor().copy(
            "COPY knowledge_chunks (source_id, ordinal, heading_path, text, audience, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["uuid", "int4", "text[]", "text", "varchar", "vector"])
            for ordinal, (passage, vector) in enumerate(zip(corpus, vectors)):
                copy.write_row((source_ids[passage.source], ordinal, list(passage.heading_path), passage.text, "all", vector))
        copied = time.monotonic()

        # Enough memory for the HNSW graph to be built in memory, as pgvector's documentation advises.
        conn.execute("SET maintenance_work_mem = '1GB'")
        for _, definition in indexes:
            conn.execute(definition)
        indexed = time.monotonic()
        conn.execute("VACUUM ANALYZE knowledge_chunks")
    return {
        "chunks": len(corpus),
        "copy_s": round(copied - started, 1),
        "index_build_s": round(indexed - copied, 1),
        "rebuilt_indexes": [name for name, _ in indexes],
    }


def _copy_sources(conn: psycopg.Connection, corpus: Sequence[Passage]) -> dict[str, uuid.UUID]:
    counts: dict[str, int] = {}
    for passage in corpus:
        counts[passage.source] = counts.get(passage.source, 0) + 1
    ids = {source: uuid.uuid4() for source in counts}
    with conn.cursor().copy(
        "COPY knowledge_sources (id, title, origin, content_hash, kind, audience, chunk_count) FROM STDIN"
    ) as copy:
        for source, count in counts.items():
            origin = f"generated://{source}"
            copy.write_row((ids[source], source, origin, hashlib.sha256(origin.encode()).hexdigest(), "markdown", "all", count))
    return ids


def exact_search_urls(urls: DatabaseUrls) -> DatabaseUrls:
    """The same database, on connections where the planner may not use index scans."""
    separator = "&" if "?" in urls.libpq else "?"
    return database_urls(urls.libpq + separator + "options=" + quote("-c enable_indexscan=off"))


async def measure(
    urls: DatabaseUrls, queries: Sequence[str], corpus: Sequence[Passage], *, repeats: int
) -> dict[str, Any]:
    embedder = get_embedder()
    hnsw_db, exact_db = Database(urls), Database(exact_search_urls(urls))
    hnsw, exact = Retriever(hnsw_db, embedder), Retriever(exact_db, embedder)
    # pgvector's default candidate list, which the Retriever used before it set ef_search.
    default_ef = Retriever(hnsw_db, embedder, ef_search=PGVECTOR_DEFAULT_EF_SEARCH)
    keywords = await asyncio.to_thread(rarest_words, urls, queries)
    try:
        for query in queries[:WARM_UP_QUERIES]:
            await hnsw.search(query, limit=5)
            await exact.search(query, limit=5)
        # The HR skill passes the question's rarest words for the full-text ranking;
        # the "_question" modes rank on the whole question, as callers without keywords do.
        modes = {
            "hnsw": (hnsw, True),
            "exact": (exact, True),
            "hnsw_question": (hnsw, False),
            "exact_question": (exact, False),
            "hnsw_default_ef": (default_ef, True),
        }
        # Blocks: each mode runs every query in a row, as a bot runs only its own search.
        # Every other repeat reverses the order of the blocks.
        timings: dict[str, list[float]] = {name: [] for name in modes}
        top5: dict[tuple[str, str], set[int]] = {}
        for repeat in range(repeats):
            names = list(modes) if repeat % 2 == 0 else list(reversed(modes))
            for name in names:
                retriever, with_keywords = modes[name]
                for query in queries:
                    words = keywords[query] if with_keywords else None
                    hits = await _timed_search(retriever, query, words, timings[name])
                    top5[name, query] = {hit.chunk_id for hit in hits}
        overlaps = [len(top5["exact", query] & top5["hnsw", query]) / max(1, len(top5["exact", query])) for query in queries]
        # Interleaved: the modes take turns query by query, so the exact scans and
        # the whole-question rankings run between the HNSW searches and compete
        # with them for PostgreSQL's shared buffers.
        interleaved: dict[str, list[float]] = {name: [] for name in modes}
        for position, query in enumerate(queries):
            names = list(modes)
            names = names[position % len(names) :] + names[: position % len(names)]
            for name in names:
                retriever, with_keywords = modes[name]
                await _timed_search(retriever, query, keywords[query] if with_keywords else None, interleaved[name])
        embed_s = []
        for query in queries:
            started = time.perf_counter()
            embedder.embed([query])
            embed_s.append(time.perf_counter() - started)
        vectors = embedder.embed(list(queries))
        # Chunks were copied with their corpus position as ordinal.
        content_of = {
            chunk_id: corpus[ordinal].content
            for chunk_id, ordinal in await asyncio.to_thread(query_rows, urls, "SELECT id, ordinal FROM knowledge_chunks")
        }
        recalls = np.array([await _vector_recall(hnsw, exact, vector, content_of) for vector in vectors])
        default_recalls = np.array([await _vector_recall(default_ef, exact, vector, content_of) for vector in vectors])
        first_vector = embedder.embed([queries[0]])[0]
        plans = {
            "hnsw_plan_uses_hnsw": await _plan_uses_hnsw(hnsw, first_vector),
            "default_ef_plan_uses_hnsw": await _plan_uses_hnsw(default_ef, first_vector),
            "exact_plan_uses_hnsw": await _plan_uses_hnsw(exact, first_vector),
        }
    finally:
        await hnsw_db.dispose()
        await exact_db.dispose()
    return {
        **{name: summarise_ms(values) for name, values in timings.items()},
        **{f"{name}_interleaved": summarise_ms(values) for name, values in interleaved.items()},
        "query_embedding": summarise_ms(embed_s),
        "recall_at_5": round(float(recalls[:, 0].mean()), 4),
        "recall_at_5_default_ef": round(float(default_recalls[:, 0].mean()), 4),
        "content_recall_at_5": round(float(recalls[:, 1].mean()), 4),
        "content_recall_at_5_default_ef": round(float(default_recalls[:, 1].mean()), 4),
        "ef_search": hnsw.ef_search,
        "hybrid_top5_overlap": round(float(np.mean(overlaps)), 4),
        **plans,
    }


def rarest_words(urls: DatabaseUrls, queries: Sequence[str]) -> dict[str, str]:
    """The five words of each query that the fewest chunks contain, as the HR skill picks keywords.

    Document frequencies come from PostgreSQL's ``ts_stat`` over the stored chunks,
    and a word is looked up by its English lexeme. Words that no chunk contains are
    left out.
    """
    with psycopg.connect(urls.libpq) as conn:
        frequency = dict(conn.execute("SELECT word, ndoc FROM ts_stat('SELECT search_vector FROM knowledge_chunks')"))
        result = {}
        for query in queries:
            words = list(dict.fromkeys(word for word in re.findall(r"[\w'-]+", query) if len(word) > 1))
            lexemes = conn.execute(
                "SELECT word, tsvector_to_array(to_tsvector('english', word)) FROM unnest(%s::text[]) AS word", (words,)
            ).fetchall()
            known = []
            for word, found in lexemes:
                if found and all(lexeme in frequency for lexeme in found):
                    known.append((min(frequency[lexeme] for lexeme in found), word))
            result[query] = " ".join(word for _, word in sorted(known)[:RARE_WORDS])
    return result


async def _timed_search(retriever: Retriever, query: str, keywords: str | None, timings: list[float]):
    started = time.perf_counter()
    hits = await retriever.search(query, limit=5, keywords=keywords or None)
    timings.append(time.perf_counter() - started)
    return hits


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.7f}" for value in vector) + "]"


async def _vector_rows(retriever: Retriever, vector: np.ndarray) -> list[tuple[int, float]]:
    async with retriever.connection() as conn:
        rows = await conn.execute(
            _VECTOR_QUERY, {"vector": _literal(vector), "audiences": ["all"], "limit": retriever.candidates}
        )
        return [(row.id, float(row.similarity)) for row in rows]


# The truth for recall: the exact top five by the full vectors' cosine distance,
# which no index and no half-precision rounding touch.
_EXACT_TOP5 = text(
    """
    SELECT id, 1 - (embedding <=> CAST(:vector AS vector)) AS similarity
      FROM knowledge_chunks
     WHERE audience = ANY(:audiences)
     ORDER BY embedding <=> CAST(:vector AS vector)
     LIMIT 5
    """
)


async def _exact_rows(retriever: Retriever, vector: np.ndarray) -> list[tuple[int, float]]:
    async with retriever.db.sessions() as session:
        rows = await session.execute(_EXACT_TOP5, {"vector": _literal(vector), "audiences": ["all"]})
        return [(row.id, float(row.similarity)) for row in rows]


async def _vector_recall(
    hnsw: Retriever, exact: Retriever, vector: np.ndarray, content_of: dict[int, tuple[int, int]]
) -> tuple[float, float]:
    """Return (recall@5, content recall@5) of the HNSW query against the exact one."""
    approximate = (await _vector_rows(hnsw, vector))[:5]
    truth = await _exact_rows(exact, vector)
    if not truth:
        return 1.0, 1.0
    fifth = truth[-1][1]
    found = sum(similarity >= fifth - TIE_TOLERANCE for _, similarity in approximate)
    true_content = {content_of[chunk_id] for chunk_id, _ in truth}
    same_content = sum(content_of[chunk_id] in true_content for chunk_id, _ in approximate)
    return min(found, len(truth)) / len(truth), min(same_content, len(truth)) / len(truth)


async def _plan_uses_hnsw(retriever: Retriever, vector: np.ndarray) -> bool:
    """Whether the planner reads the HNSW index for the Retriever's vector query, with its settings."""
    async with retriever.connection() as conn:
        plan = await conn.execute(
            text("EXPLAIN " + str(_VECTOR_QUERY)),
            {"vector": _literal(vector), "audiences": ["all"], "limit": retriever.candidates},
        )
        return any("hnsw" in row[0] for row in plan)
