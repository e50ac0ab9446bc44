"""The embedded PostgreSQL server that the bot starts when no DATABASE_URL is set."""

from __future__ import annotations

import psycopg
import pytest

from bot.errors import DatabaseError
from bot.storage import database
from bot.storage.database import MIN_PGVECTOR, embedded_server_settings, pgvector_version


def test_embedded_server_uses_bot_settings(pg_server):
    with psycopg.connect(pg_server.get_uri(database="postgres")) as conn:
        shared_buffers = conn.execute("SHOW shared_buffers").fetchone()[0]

    assert shared_buffers == embedded_server_settings()["shared_buffers"]


def test_pgvector_version_parsing():
    assert pgvector_version("0.8.6") == (0, 8, 6)
    assert pgvector_version("0.10.0") > MIN_PGVECTOR
    assert pgvector_version("0.7.4") < MIN_PGVECTOR


def test_old_pgvector_is_rejected(pg_server, monkeypatch):
    monkeypatch.setattr(database, "MIN_PGVECTOR", (99, 0, 0))

    with pytest.raises(DatabaseError, match=r"provides pgvector 0\.8\.\d+, and the bot needs 99\.0\.0 or later"):
        database.check_pgvector(pg_server.get_uri(database="postgres"))
