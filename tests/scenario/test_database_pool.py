"""The connection pool tests a connection only after it has been idle, and replaces one that broke meanwhile."""

from __future__ import annotations

import psycopg
from sqlalchemy import text

from bot.storage import database as database_module
from bot.storage.database import Database


async def backend_pid(db: Database) -> int:
    async with db.engine.connect() as conn:
        return (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()


def terminate(db: Database, pid: int) -> None:
    with psycopg.connect(db.urls.libpq, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))


def count_pings(db: Database, monkeypatch) -> list[None]:
    pings: list[None] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection):
        pings.append(None)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return pings


async def test_recent_connection_reused_untested(db_urls, monkeypatch):
    db = Database(db_urls)
    try:
        pings = count_pings(db, monkeypatch)
        first = await backend_pid(db)
        # The pool hands out the connection returned last, so every query runs on the same backend.
        assert [await backend_pid(db) for _ in range(3)] == [first] * 3
        assert pings == []
    finally:
        await db.dispose()


async def test_closed_idle_connection_replaced(db_urls, monkeypatch):
    db = Database(db_urls)
    try:
        pings = count_pings(db, monkeypatch)
        first = await backend_pid(db)
        terminate(db, first)
        monkeypatch.setattr(database_module, "IDLE_PING_AFTER_S", 0.0)

        replaced = await backend_pid(db)

        assert pings, "the idle connection was not tested"
        assert replaced != first
    finally:
        await db.dispose()
