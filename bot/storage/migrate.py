"""Apply the Alembic revisions in ``migrations/`` to the configured database."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from bot.storage.database import DatabaseUrls, check_pgvector

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(urls: DatabaseUrls) -> Config:
    from alembic.config import Config

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
    A database already at the newest revision is left alone without importing
    Alembic, which would add about 11 MB to every server process.
    """
    check_pgvector(urls.libpq)
    if revision == "head" and (head := head_revision()) is not None and current_revision(urls) == head:
        logger.info("Database schema is up to date at revision %s", head)
        return
    from alembic import command

    with psycopg.connect(urls.libpq, autocommit=True) as lock_conn:
        lock_conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            logger.info("Applying database migrations up to %s", revision)
            command.upgrade(alembic_config(urls), revision)
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))


_REVISION_LINE = re.compile(r"""^(revision|down_revision)\s*=\s*(?:["']([^"']+)["']|None)\s*$""", re.MULTILINE)


def head_revision() -> str | None:
    """Return the newest revision in ``migrations/versions``, read from the files' ``revision`` lines.

    Returns None when the files do not name exactly one head, for example after
    a branch or with a line that this reading does not understand. ``upgrade``
    then leaves the decision to Alembic.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(_REVISION_LINE.findall(path.read_text(encoding="utf-8")))
        if not found.get("revision") or "down_revision" not in found:
            return None
        revisions.add(found["revision"])
        if found["down_revision"]:
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def current_revision(urls: DatabaseUrls) -> str | None:
    with psycopg.connect(urls.libpq) as conn:
        exists = conn.execute("SELECT to_regclass('alembic_version')").fetchone()[0]
        if exists is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None
