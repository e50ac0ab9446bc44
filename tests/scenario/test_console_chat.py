"""``chatops chat`` answers from the terminal through the same skills and database."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR, REPO_ROOT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    await SourceStore(db, get_embedder()).add_file(HANDBOOK_DIR / "sick-leave.md")
    await db.dispose()
    return db_urls


def test_chat_answers_and_stores(indexed_db, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "CHATOPS_", "DATABASE_"))}
    env.update({"DATABASE_URL": indexed_db.libpq, "CHATOPS_DATA_DIR": str(tmp_path), "CHATOPS_HR_CONTACT": "hr@example.com"})

    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "chat"],
        input="How many paid sick days do I get in Austin?\nexit\n",
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "bot> " in result.stdout
    assert "Sick Leave" in result.stdout
    with psycopg.connect(indexed_db.libpq) as conn:
        roles = conn.execute(
            "SELECT m.role FROM messages m JOIN conversations c ON c.id = m.conversation_id "
            "WHERE c.platform = 'console' ORDER BY m.created_at"
        ).fetchall()
    assert roles == [("user",), ("assistant",)]
