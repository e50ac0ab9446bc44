"""Apply the Alembic revisions in ``migrations/`` to the configured database."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config

from bot.storage.database import DatabaseUrls, check_pgvector

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(urls: DatabaseUrls) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser treats % as interpolation; a password may contain it.
    config.set_main_option("sqlalchemy.url", urls.sqlalchemy.replace("%", "%%"))
    return config


# Any fixed number works; it only has to differ from other advisory locks on the server.
MIGRATION_LOCK_ID = 7_215_400_001


def upgrade(urls: DatabaseUrls, revision: str = "head") -> None:
    """Bring the schema to ``revision``; fails with the fix when pgvector is missing.

    An advisory lock makes replicas that start together apply the revisions one at a time.
    """
    check_pgvector(urls.libpq)
    with psycopg.connect(urls.libpq, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            logger.info("Applying database migrations up to %s", revision)
            command.upgrade(alembic_config(urls), revision)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


def current_revision(urls: DatabaseUrls) -> str | None:
    with psycopg.connect(urls.libpq) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
