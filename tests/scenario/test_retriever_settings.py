"""The Retriever's HNSW settings stay with each pooled connection and follow the Retriever that uses it."""

from __future__ import annotations

from sqlalchemy import text

from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever


async def settings_seen_by(retriever: Retriever) -> tuple[str, str]:
    async with retriever.connection() as conn:
        ef_search = (await conn.execute(text("SHOW hnsw.ef_search"))).scalar_one()
        iterative_scan = (await conn.execute(text("SHOW hnsw.iterative_scan"))).scalar_one()
    return ef_search, iterative_scan


async def test_each_retriever_gets_its_settings(db):
    wide = Retriever(db, get_embedder(), ef_search=321)
    narrow = Retriever(db, get_embedder(), ef_search=64)

    # The pool hands out the connection returned last, so all three share one session.
    assert await settings_seen_by(wide) == ("321", "relaxed_order")
    assert await settings_seen_by(narrow) == ("64", "relaxed_order")
    assert await settings_seen_by(wide) == ("321", "relaxed_order")


async def test_settings_survive_a_rolled_back_transaction(db):
    retriever = Retriever(db, get_embedder(), ef_search=222)
    await settings_seen_by(retriever)

    async with db.sessions() as session:
        await session.execute(text("SELECT 1"))
        await session.rollback()

    assert await settings_seen_by(retriever) == ("222", "relaxed_order")
