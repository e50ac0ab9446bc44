"""The real ``chatops sources`` commands as subprocesses against a test database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.conftest import HANDBOOK_DIR, REPO_ROOT

HANDBOOK_FILES = sorted(path.name for path in HANDBOOK_DIR.iterdir() if path.is_file())


@pytest.fixture(scope="module")
def env(db_urls, tmp_path_factory) -> dict[str, str]:
    variables = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "CHATOPS_", "DATABASE_"))}
    variables.update(
        {
            "DATABASE_URL": db_urls.libpq,
            "CHATOPS_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
            "CHATOPS_LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return variables


def chatops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "sources", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def query(db_urls, sql: str, *params):
    with psycopg.connect(db_urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def handbook_added(env) -> subprocess.CompletedProcess:
    return chatops(env, "add", "deploy/sample-data/hr-handbook")


def test_add_handbook_loads_all_files(handbook_added, db_urls):
    result = handbook_added

    assert result.returncode == 0, result.stderr
    added = [line for line in result.stdout.splitlines() if line.startswith("added")]
    assert len(added) == 14
    for name in HANDBOOK_FILES:
        assert any(name in line for line in added), name
    assert "14 files: 14 added, 0 replaced, 0 unchanged, 0 failed" in result.stdout
    assert query(db_urls, "SELECT count(*) FROM knowledge_sources")[0][0] == 14


def test_add_handbook_skips_updates_folder(handbook_added, db_urls):
    assert "travel-expenses.v2" not in handbook_added.stdout
    assert "not reading subfolder" in handbook_added.stderr
    assert "updates" in handbook_added.stderr
    origins = [row[0] for row in query(db_urls, "SELECT origin FROM knowledge_sources")]
    assert not any("/updates/" in origin for origin in origins)


def test_add_handbook_keeps_faq_audiences(handbook_added, db_urls):
    rows = query(
        db_urls,
        "SELECT c.audience, count(*) FROM knowledge_chunks c JOIN knowledge_sources s ON s.id = c.source_id "
        "WHERE s.origin LIKE %s GROUP BY c.audience",
        "%/faq.csv",
    )

    assert dict(rows) == {"all": 34, "managers": 6}


def test_add_again_reports_unchanged(handbook_added, env):
    result = chatops(env, "add", "deploy/sample-data/hr-handbook")

    assert result.returncode == 0, result.stderr
    assert "14 files: 0 added, 0 replaced, 14 unchanged, 0 failed" in result.stdout


def test_list_shows_title_audience_chunks_updated(handbook_added, env):
    result = chatops(env, "list")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["TITLE", "AUDIENCE", "CHUNKS", "UPDATED", "ORIGIN"]
    assert len(lines) == 1 + 14
    faq = next(line for line in lines if line.startswith("FAQ "))
    assert "all 34, managers 6" in faq
    assert " 40 " in faq
    pdf = next(line for line in lines if line.startswith("Performance Review Process 2027"))
    assert pdf.rstrip().endswith("performance-review-process.pdf")


def test_add_folder_with_bad_files_loads_the_rest(handbook_added, env, tmp_path, db_urls):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(HANDBOOK_DIR / "sick-leave.md", folder / "sick-leave-copy.md")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\nnot really a pdf")
    (folder / "empty.docx").write_bytes(b"")
    (folder / "budget.xlsx").write_bytes(b"PK\x03\x04")

    result = chatops(env, "add", str(folder), "--owner", "people-ops@example.com")

    assert result.returncode == 1
    assert any(line.startswith("added") and "sick-leave-copy.md" in line for line in result.stdout.splitlines())
    for name in ("broken.pdf", "empty.docx", "budget.xlsx"):
        assert any(name in line and line.startswith("failed") for line in result.stderr.splitlines()), name
    assert "4 files: 1 added, 0 replaced, 0 unchanged, 3 failed" in result.stdout
    owner = query(db_urls, "SELECT owner FROM knowledge_sources WHERE origin LIKE %s", "%/sick-leave-copy.md")
    assert owner == [("people-ops@example.com",)]


def test_remove_by_relative_path_removes_chunks(handbook_added, env, db_urls):
    origin = str((HANDBOOK_DIR / "remote-work.md").resolve())
    source_id = query(db_urls, "SELECT id FROM knowledge_sources WHERE origin = %s", origin)[0][0]

    result = chatops(env, "remove", "deploy/sample-data/hr-handbook/remote-work.md")

    assert result.returncode == 0, result.stderr
    assert query(db_urls, "SELECT count(*) FROM knowledge_chunks WHERE source_id = %s", source_id) == [(0,)]
    assert query(db_urls, "SELECT count(*) FROM knowledge_sources WHERE id = %s", source_id) == [(0,)]


def test_remove_unknown_source_fails(handbook_added, env):
    result = chatops(env, "remove", "no-such-file.md")

    assert result.returncode == 1
    assert "no source 'no-such-file.md'" in result.stderr


def test_reindex_reports_every_source(handbook_added, env, db_urls):
    sources, chunks = query(db_urls, "SELECT count(*), sum(chunk_count) FROM knowledge_sources")[0]

    result = chatops(env, "reindex")

    assert result.returncode == 0, result.stderr
    assert f"reindexed {sources} sources, {chunks} chunks" in result.stdout
    assert len([line for line in result.stdout.splitlines() if line.startswith("reindexed ") and "/" in line]) == sources


def test_add_with_invalid_audience_fails(env, tmp_path: Path):
    path = tmp_path / "note.md"
    path.write_text("# Note\n\nText.\n", encoding="utf-8")

    result = chatops(env, "add", str(path), "--audience", "Everyone!")

    assert result.returncode == 1
    assert "invalid audience 'Everyone!'" in result.stderr
