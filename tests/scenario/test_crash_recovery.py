"""A message accepted before the bot process is killed with SIGKILL is answered once after restart."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from bot.channels.slack.testing import FakeSlackApi, app_mention_payload
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.support import BotProcess, bot_env, free_port, post_event

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    await SourceStore(db, get_embedder()).add_file(HANDBOOK_DIR / "sick-leave.md")
    await db.dispose()
    return db_urls


@pytest.fixture
async def fake_slack():
    slack = await FakeSlackApi().start()
    yield slack
    await slack.stop()


def make_bot(urls, slack, data_dir, *args: str) -> BotProcess:
    env = bot_env(
        database_url=urls.libpq,
        slack_api_url=slack.api_url,
        data_dir=data_dir,
        CHATOPS_WORKER_HEARTBEAT_S="0.5",
        CHATOPS_STALLED_AFTER_S="2",
        # No placeholder message: a post in the thread then means the answer itself.
        CHATOPS_SLACK_PLACEHOLDER_AFTER_S="60",
    )
    return BotProcess(env=env, port=free_port(), log_path=data_dir / "serve.log", args=list(args))


async def replies_in(slack: FakeSlackApi, ts: str, *, settle_s: float, timeout: float = 60.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not [c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]:
        await asyncio.sleep(0.1)
    await asyncio.sleep(settle_s)
    return [c for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def job_states(urls, ts: str) -> list[str]:
    with psycopg.connect(urls.libpq) as conn:
        rows = conn.execute("SELECT status FROM procrastinate_jobs WHERE args::text LIKE %s", (f"%{ts}%",)).fetchall()
    return [row[0] for row in rows]


async def test_queued_job_answered_after_sigkill(indexed_db, fake_slack, tmp_path):
    ts = "1790000100.000100"
    first = make_bot(indexed_db, fake_slack, tmp_path, "--no-worker")
    await first.start()
    status, _, _ = await post_event(first.url, app_mention_payload("How many paid sick days in Austin?", event_id="Ev0KILL0001", ts=ts))
    first.kill()

    assert status == 200
    assert job_states(indexed_db, ts) == ["todo"]

    second = make_bot(indexed_db, fake_slack, tmp_path)
    await second.start()
    try:
        replies = await replies_in(fake_slack, ts, settle_s=2.0)
    finally:
        await second.stop()
    assert len(replies) == 1, second.log()


async def test_job_in_progress_answered_once_after_sigkill(indexed_db, fake_slack, tmp_path):
    ts = "1790000200.000100"
    first = make_bot(indexed_db, fake_slack, tmp_path)
    await first.start()
    status, _, _ = await post_event(first.url, app_mention_payload("Do I need a doctor's note in Austin?", event_id="Ev0KILL0002", ts=ts))
    # The progress reaction is added when the worker has claimed the job, before the model runs.
    await fake_slack.wait_for("reactions.add", timeout=30)
    first.kill()
    killed_mid_job = not [c for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]

    second = make_bot(indexed_db, fake_slack, tmp_path)
    await second.start()
    try:
        replies = await replies_in(fake_slack, ts, settle_s=3.0)
    finally:
        await second.stop()

    assert status == 200
    assert killed_mid_job, "the reply was posted before the kill; the test did not exercise recovery"
    assert len(replies) == 1, second.log()
    with psycopg.connect(indexed_db.libpq) as conn:
        answers = conn.execute("SELECT count(*) FROM messages WHERE role = 'assistant' AND event_key LIKE %s", (f"%{ts}",)).fetchone()[0]
    assert answers == 1
