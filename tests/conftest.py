"""Shared fixtures: one embedded PostgreSQL per test session, a fresh database per test module.

Everything runs on this machine: the embedded server listens on a Unix socket,
the bot and the fake Slack Web API on 127.0.0.1.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg
import pytest

from bot.storage import migrate
from bot.storage.database import Database, DatabaseUrls, database_urls, embedded_server

REPO_ROOT = Path(__file__).resolve().parents[1]
HANDBOOK_DIR = REPO_ROOT / "deploy" / "sample-data" / "hr-handbook"
TEST_DATA_DIR = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    # The bot's own settings, so that the tests run the server as the bot does.
    server = embedded_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def db_urls(pg_server) -> DatabaseUrls:
    """A new, migrated database for each test module."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.get_uri(database="postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    urls = database_urls(pg_server.get_uri(database=name))
    migrate.upgrade(urls)
    return urls


@pytest.fixture(scope="module")
async def db(db_urls):
    """The bot's async database access to the module's database; a module may define its own."""
    database = Database(db_urls)
    yield database
    await database.dispose()


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chatops-data")


def pytest_configure(config):
    # Model threads: keep the suite predictable on small CI machines.
    os.environ.setdefault("CHATOPS_MODEL_THREADS", "2")
