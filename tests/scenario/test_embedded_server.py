"""The embedded PostgreSQL server that the bot starts when no DATABASE_URL is set."""

from __future__ import annotations

import psycopg

from bot.storage.database import embedded_server_settings


def test_embedded_server_uses_bot_settings(pg_server):
    with psycopg.connect(pg_server.get_uri(database="postgres")) as conn:
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]

    assert shared_buffers == embedded_server_settings()["shared_buffers"]
