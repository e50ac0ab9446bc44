"""SourceStore against a real PostgreSQL: replacing, skipping, removing, uploads, audiences and reindexing."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest

from bot.errors import SourceError
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.retrieval.store import SourceStore, chunk_document, load_document
from tests.conftest import HANDBOOK_DIR

EXPENSES_V1 = """# Expenses

## Meals

The meal allowance is 25 per day on business trips inside Germany.
Keep the receipts for every meal.

## Hotels

Book hotels through TripDesk. The hotel cap is 150 per night.
"""

EXPENSES_V2 = """# Expenses

## Meals

The meal allowance is 30 per day on business trips inside Germany.

## Hotels

Book hotels through TripDesk. The hotel cap is 150 per night.

## Taxis

Taxis are refunded after 22:00 or when no public transport runs.

## Claims

Submit claims within 45 days of the trip.
"""


@pytest.fixture(scope="module")
def store(db) -> SourceStore:
    return SourceStore(db, get_embedder())


@pytest.fixture(scope="module")
def retriever(db) -> Retriever:
    return Retriever(db, get_embedder())


def query(db_urls, sql: str, *params):
    with psycopg.connect(db_urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


def chunk_count(db_urls, source_id) -> int:
    return query(db_urls, "SELECT count(*) FROM knowledge_chunks WHERE source_id = %s", source_id)[0][0]


async def test_reingest_replaces_stale_chunks(store, retriever, db_urls, tmp_path):
    path = tmp_path / "expenses.md"
    path.write_text(EXPENSES_V1, encoding="utf-8")
    first = await store.add_file(path)
    path.write_text(EXPENSES_V2, encoding="utf-8")
    expected_chunks = len(chunk_document(load_document(path)))

    second = await store.add_file(path)

    assert first.status == "added"
    assert second.status == "replaced"
    assert second.source_id == first.source_id
    assert second.chunk_count == expected_chunks
    assert chunk_count(db_urls, first.source_id) == expected_chunks
    texts = [row[0] for row in query(db_urls, "SELECT text FROM knowledge_chunks WHERE source_id = %s", first.source_id)]
    assert not any("25 per day" in text for text in texts)

    hits = await retriever.search("What is the meal allowance per day?", limit=3)
    assert "30 per day" in hits[0].text
    assert not any("25 per day" in hit.text for hit in hits)

    assert await store.remove(str(path.resolve())) == 1
    assert chunk_count(db_urls, first.source_id) == 0
    assert query(db_urls, "SELECT count(*) FROM knowledge_sources WHERE id = %s", first.source_id)[0][0] == 0
    assert not any("meal allowance" in hit.text for hit in await retriever.search("meal allowance per day"))


async def test_unchanged_file_skipped(store, db_urls, tmp_path):
    path = tmp_path / "sick.md"
    path.write_text("# Sick leave\n\nSend a certificate from day 3.\n", encoding="utf-8")
    first = await store.add_file(path)
    updated_before = query(db_urls, "SELECT updated_at FROM knowledge_sources WHERE id = %s", first.source_id)[0][0]
    chunk_ids_before = query(db_urls, "SELECT id FROM knowledge_chunks WHERE source_id = %s", first.source_id)

    second = await store.add_file(path, owner="people-ops@example.com")

    assert second.status == "unchanged"
    assert second.chunk_count == first.chunk_count
    assert query(db_urls, "SELECT id FROM knowledge_chunks WHERE source_id = %s", first.source_id) == chunk_ids_before
    row = query(db_urls, "SELECT updated_at, owner FROM knowledge_sources WHERE id = %s", first.source_id)[0]
    assert row[0] == updated_before
    assert row[1] == "people-ops@example.com"


async def test_audience_change_reindexes(store, db_urls, tmp_path):
    path = tmp_path / "bands.md"
    path.write_text("# Salary bands\n\nG4 in Berlin: 68,000 to 86,000.\n", encoding="utf-8")
    await store.add_file(path)

    result = await store.add_file(path, audience="managers")

    assert result.status == "replaced"
    audiences = query(db_urls, "SELECT DISTINCT audience FROM knowledge_chunks WHERE source_id = %s", result.source_id)
    assert audiences == [("managers",)]


async def test_replace_is_atomic_for_readers(store, db_urls, tmp_path):
    path = tmp_path / "atomic.md"
    versions = [EXPENSES_V1, EXPENSES_V2]
    counts = set()
    for text in versions:
        path.write_text(text, encoding="utf-8")
        counts.add(len(chunk_document(load_document(path))))
    source_id = (await store.add_file(path)).source_id

    observed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with psycopg.connect(db_urls.libpq, autocommit=True) as conn:
            while not stop.is_set():
                observed.append(
                    conn.execute("SELECT count(*) FROM knowledge_chunks WHERE source_id = %s", (source_id,)).fetchone()[0]
                )

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for round_number in range(6):
            path.write_text(versions[round_number % 2], encoding="utf-8")
            await store.add_file(path)
    finally:
        stop.set()
        await asyncio.to_thread(watcher.join, 10)

    assert set(observed) <= counts
    assert set(observed) == counts  # both versions were seen, so the check had something to catch


async def test_faq_manager_rows_hidden_from_employees(store, retriever, db_urls):
    result = await store.add_file(HANDBOOK_DIR / "faq.csv")

    assert result.chunk_count == 40
    rows = query(
        db_urls,
        "SELECT audience, count(*) FROM knowledge_chunks WHERE source_id = %s AND kind = 'faq' GROUP BY audience",
        result.source_id,
    )
    assert dict(rows) == {"all": 34, "managers": 6}

    employee_hits = await retriever.search("What's the salary band for a G5 in Austin?", limit=10)
    manager_hits = await retriever.search("What's the salary band for a G5 in Austin?", audiences=("all", "managers"), limit=10)

    assert all(hit.audience == "all" for hit in employee_hits)
    assert not any("$130,000" in hit.text for hit in employee_hits)
    assert any("$130,000" in hit.text and hit.kind == "faq" for hit in manager_hits)
    faq_hit = next(hit for hit in manager_hits if "$130,000" in hit.text)
    assert set(faq_hit.metadata) == {"question", "answer", "category"}


async def test_upload_replaced_by_same_name(store, retriever, db_urls):
    first = await store.add_upload(
        "C:\\Users\\hr\\Desktop\\parking.md",
        b"# Parking\n\nBike parking is in the courtyard.\n",
        owner="U0HR",
    )
    second = await store.add_upload(
        "parking.md",
        b"# Parking\n\nBike parking is in the basement.\n\n## Cars\n\nCar parking costs 40 per month.\n",
        owner="U0HR2",
    )

    assert first.origin == "upload:parking.md"
    assert first.status == "added"
    assert second.status == "replaced"
    assert second.source_id == first.source_id
    assert chunk_count(db_urls, first.source_id) == second.chunk_count
    owner = query(db_urls, "SELECT owner FROM knowledge_sources WHERE id = %s", first.source_id)[0][0]
    assert owner == "U0HR2"
    hits = await retriever.search("Where is the bike parking?", limit=2)
    assert "basement" in hits[0].text


async def test_upload_errors_name_the_file(store):
    with pytest.raises(SourceError, match=r"^budget\.xlsx: unsupported file type"):
        await store.add_upload("budget.xlsx", b"data", owner="U0HR")
    with pytest.raises(SourceError, match=r"^notes\.md: the file is empty"):
        await store.add_upload("notes.md", b"", owner="U0HR")
    with pytest.raises(SourceError, match="cannot be used"):
        await store.add_upload("../", b"# x\n\ny\n", owner="U0HR")


async def test_invalid_audience_rejected(store, tmp_path):
    path = tmp_path / "x.md"
    path.write_text("# X\n\nText.\n", encoding="utf-8")

    with pytest.raises(SourceError, match="invalid audience"):
        await store.add_file(path, audience="all managers")


async def test_reindex_restores_embeddings(store, db_urls, tmp_path):
    path = tmp_path / "remote.md"
    path.write_text("# Remote work\n\nBerlin staff work two days a week in the office.\n", encoding="utf-8")
    source_id = (await store.add_file(path)).source_id
    original = query(db_urls, "SELECT id, embedding::text FROM knowledge_chunks WHERE source_id = %s", source_id)
    with psycopg.connect(db_urls.libpq) as conn:
        conn.execute(
            "UPDATE knowledge_chunks SET embedding = array_fill(0.01, ARRAY[384])::vector WHERE source_id = %s",
            (source_id,),
        )

    calls: list[tuple[int, int, str]] = []
    result = await store.reindex(progress=lambda done, total, title: calls.append((done, total, title)))

    sources = query(db_urls, "SELECT count(*) FROM knowledge_sources")[0][0]
    chunks = query(db_urls, "SELECT count(*) FROM knowledge_chunks")[0][0]
    assert result.source_count == sources
    assert result.chunk_count == chunks
    assert len(calls) == sources
    assert calls[-1][:2] == (sources, sources)
    similarity = query(
        db_urls,
        "SELECT min(1 - (c.embedding <=> CAST(o.embedding AS vector))) FROM knowledge_chunks c "
        "JOIN (SELECT * FROM unnest(%s::bigint[], %s::text[]) AS t(id, embedding)) o ON o.id = c.id",
        [row[0] for row in original],
        [row[1] for row in original],
    )[0][0]
    assert similarity > 0.999


async def test_summaries_count_chunks_per_audience(store):
    summaries = {summary.title: summary for summary in await store.summaries()}

    faq = summaries["FAQ"]
    assert faq.chunk_audiences == {"all": 34, "managers": 6}
    assert faq.format == "faq"
    assert faq.chunk_count == 40
    assert faq.updated_at is not None
