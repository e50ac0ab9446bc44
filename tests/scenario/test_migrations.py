"""Schema migrations on a real PostgreSQL: the head check, the vector index and a round trip."""

from __future__ import annotations

import subprocess
import sys
import uuid

import numpy as np
import psycopg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.retrieval.search import _HNSW_SETTINGS, _VECTOR_QUERY
from bot.storage import migrate
from bot.storage.database import Database, database_urls
from tests.conftest import REPO_ROOT

INDEX = "ix_knowledge_chunks_embedding_hnsw"


@pytest.fixture
def fresh_urls(pg_server):
    """An empty database, not migrated."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(database="postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_urls(pg_server.get_uri(database=name))


def _index_definition(urls) -> str | None:
    with psycopg.connect(urls.libpq) as conn:
        row = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (INDEX,)).fetchone()
    return row[0] if row else None


def test_head_revision_matches_alembic(db_urls):
    script = ScriptDirectory.from_config(migrate.alembic_config(db_urls))

    assert migrate.head_revision() == script.get_current_head()


def test_upgrade_at_head_skips_alembic(db_urls):
    program = (
        "import sys\n"
        "from bot.storage import migrate\n"
        "from bot.storage.database import database_urls\n"
        f"migrate.upgrade(database_urls({db_urls.libpq!r}))\n"
        "print('alembic' in sys.modules)\n"
    )

    result = subprocess.run([sys.executable, "-c", program], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_migration_swaps_vector_index(fresh_urls):
    migrate.upgrade(fresh_urls, "0005")
    assert "vector_cosine_ops" in _index_definition(fresh_urls)

    migrate.upgrade(fresh_urls)
    definition = _index_definition(fresh_urls)
    assert "halfvec_cosine_ops" in definition
    assert "ef_construction='400'" in definition.replace(" ", "")
    assert migrate.current_revision(fresh_urls) == migrate.head_revision()

    from alembic import command

    command.downgrade(migrate.alembic_config(fresh_urls), "0005")
    assert "vector_cosine_ops" in _index_definition(fresh_urls)


async def test_vector_query_uses_hnsw_index(db_urls):
    """The query must repeat the index's expression exactly, or PostgreSQL scans the whole table."""
    db = Database(db_urls)
    vector = "[" + ",".join("0.05" for _ in range(384)) + "]"
    try:
        async with db.sessions() as session:
            # In a nearly empty database, scanning and sorting costs less than the index.
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            await session.execute(text("SET LOCAL enable_sort = off"))
            await session.execute(_HNSW_SETTINGS, {"ef_search": "300"})
            plan = await session.execute(
                text("EXPLAIN " + str(_VECTOR_QUERY)), {"vector": vector, "audiences": ["all"], "limit": 40}
            )
            lines = [row[0] for row in plan]
    finally:
        await db.dispose()

    assert any(f"Index Scan using {INDEX}" in line for line in lines), "\n".join(lines)


def test_vector_query_orders_by_exact_distance(db_urls):
    """Chunks too close for half precision to tell apart still come back in exact order."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=384)
    base[0] = 0.3 * np.linalg.norm(base)
    # Every component is exactly representable at half precision.
    base = (base / np.linalg.norm(base)).astype(np.float16).astype(np.float32)
    # Steps in one component smaller than half precision's rounding step there, so
    # all five chunks have the same halfvec copy, stored farthest from the query first.
    vectors = [base.copy() for _ in range(5)]
    for step, vector in enumerate(vectors, start=1):
        vector[0] += np.float32(step * np.spacing(np.float16(base[0])) / 16)
    query = base.copy()
    query[0] += 1.0
    with psycopg.connect(db_urls.libpq, autocommit=True) as conn:
        source = conn.execute(
            "INSERT INTO knowledge_sources (id, title, origin, content_hash, kind, audience, chunk_count) "
            "VALUES (gen_random_uuid(), 'Exact order', 'test://exact-order', md5(random()::text), 'markdown', 'exact', 5) "
            "RETURNING id"
        ).fetchone()[0]
        ids = [
            conn.execute(
                "INSERT INTO knowledge_chunks (source_id, ordinal, heading_path, text, audience, embedding) "
                "VALUES (%s, %s, '{}', %s, 'exact', %s::vector) RETURNING id",
                (source, ordinal, f"chunk {ordinal}", "[" + ",".join(f"{value:.9f}" for value in vector) + "]"),
            ).fetchone()[0]
            for ordinal, vector in enumerate(vectors)
        ]
        literal = "[" + ",".join(f"{value:.9f}" for value in query) + "]"
        by_halfvec = conn.execute(
            "SELECT id FROM knowledge_chunks WHERE audience = 'exact' "
            "ORDER BY embedding::halfvec(384) <=> %s::halfvec(384), id",
            (literal,),
        ).fetchall()
        sql = str(_VECTOR_QUERY.text)
        for name in ("vector", "audiences", "limit"):
            sql = sql.replace(f":{name}", f"%({name})s")
        rows = conn.execute(sql, {"vector": literal, "audiences": ["exact"], "limit": 40}).fetchall()

    assert [row[0] for row in by_halfvec] != list(reversed(ids))
    assert [row[0] for row in rows] == list(reversed(ids))

