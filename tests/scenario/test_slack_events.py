"""A signed Slack event through ``chatops serve`` to a cited answer, against a fake Slack Web API."""

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
from tests.support import HR_CONTACT, BotProcess, bot_env, free_port, post_event

pytestmark = pytest.mark.model

MARKDOWN_SOURCES = sorted(HANDBOOK_DIR.glob("*.md"))


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    store = SourceStore(db, get_embedder())
    for path in MARKDOWN_SOURCES:
        await store.add_file(path)
    await db.dispose()
    return db_urls


@pytest.fixture(scope="module")
async def fake_slack():
    slack = await FakeSlackApi().start()
    yield slack
    await slack.stop()


@pytest.fixture(scope="module")
async def bot(indexed_db, fake_slack, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bot-data")
    process = BotProcess(
        env=bot_env(database_url=indexed_db.libpq, slack_api_url=fake_slack.api_url, data_dir=data_dir),
        port=free_port(),
        log_path=data_dir / "serve.log",
    )
    await process.start()
    yield process
    await process.stop()


def query(urls, sql: str, *params):
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


async def wait_for_replies(slack: FakeSlackApi, thread_ts: str, count: int = 1, timeout: float = 60.0) -> list:
    """The bot's answer messages in the thread, as they read after any progress placeholder was replaced."""
    return await slack.wait_for_answers("C0TEST001", thread_ts, count, timeout)


def posts_in(slack: FakeSlackApi, thread_ts: str) -> list:
    return [call for call in slack.calls_to("chat.postMessage") if call.params.get("thread_ts") == thread_ts]


async def test_app_mention_gets_one_cited_reply(bot, fake_slack, indexed_db):
    ts = "1790000001.000100"
    payload = app_mention_payload("How many paid sick days do I get in Austin?", event_id="Ev0SKEL0001", ts=ts)

    status, elapsed, _ = await post_event(bot.url, payload)

    assert status == 200
    assert elapsed < 3.0
    await wait_for_replies(fake_slack, ts)
    await asyncio.sleep(1.0)
    replies = fake_slack.answers("C0TEST001", ts)
    assert len(replies) == 1, bot.log()
    assert len(posts_in(fake_slack, ts)) == 1
    text = replies[0]["text"]
    assert "Sources:" in text
    assert "Sick Leave" in text
    assert "10" in text

    rows = query(indexed_db, "SELECT m.role, m.skill, m.model_id, m.prompt_version, m.delivery_status, c.thread_key "
                 "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                 "WHERE m.event_key = %s ORDER BY m.created_at", "slack:T0TEST001:C0TEST001:" + ts)
    assert [row[0] for row in rows] == ["user", "assistant"]
    assert rows[1][1] == "hr_qa"
    assert rows[1][4] == "posted"
    assert rows[1][5] == ts
    sources = query(indexed_db, "SELECT s.source_title, s.cited FROM answer_sources s JOIN messages m ON m.id = s.message_id "
                    "WHERE m.event_key = %s", "slack:T0TEST001:C0TEST001:" + ts)
    assert any(title == "Sick Leave" and cited for title, cited in sources)


async def test_reply_goes_to_existing_thread(bot, fake_slack):
    payload = app_mention_payload(
        "How many office days per week in Berlin?", event_id="Ev0SKEL0002", ts="1790000002.000300", thread_ts="1790000002.000100"
    )

    status, _, _ = await post_event(bot.url, payload)

    assert status == 200
    replies = await wait_for_replies(fake_slack, "1790000002.000100")
    assert len(replies) == 1
    assert not posts_in(fake_slack, "1790000002.000300")


@pytest.mark.parametrize(
    ("case", "secret", "age_s"),
    [("bad signature", "wrong-secret", 0), ("stale timestamp", None, 6 * 60)],
)
async def test_unverified_request_rejected(bot, fake_slack, indexed_db, case, secret, age_s):
    event_id = f"Ev0BAD{abs(hash(case)) % 10000:04d}"
    ts = f"17900001{age_s:02d}.000100"
    payload = app_mention_payload("What is the notice period?", event_id=event_id, ts=ts)
    kwargs = {"timestamp": int(time.time()) - age_s}
    if secret:
        kwargs["secret"] = secret

    status, _, _ = await post_event(bot.url, payload, **kwargs)

    assert status == 401
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", f"%{ts}")[0][0] == 0
    assert query(indexed_db, "SELECT count(*) FROM procrastinate_jobs WHERE args::text LIKE %s", f"%{ts}%")[0][0] == 0


async def test_retried_delivery_answered_once(bot, fake_slack, indexed_db):
    ts = "1790000003.000100"
    payload = app_mention_payload("How many days of annual leave can I carry over?", event_id="Ev0SKEL0003", ts=ts)

    first = await post_event(bot.url, payload)
    retries = [
        await post_event(bot.url, payload, headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
        for n in (1, 2)
    ]

    assert [first[0], *(r[0] for r in retries)] == [200, 200, 200]
    await wait_for_replies(fake_slack, ts)
    await asyncio.sleep(2.0)
    assert len(fake_slack.answers("C0TEST001", ts)) == 1
    assert len(posts_in(fake_slack, ts)) == 1
    counts = query(indexed_db, "SELECT role, count(*) FROM messages WHERE event_key = %s GROUP BY role ORDER BY role",
                   "slack:T0TEST001:C0TEST001:" + ts)
    assert counts == [("assistant", 1), ("user", 1)]


async def test_uncovered_question_gets_hr_contact(bot, fake_slack, indexed_db):
    ts = "1790000004.000100"
    payload = app_mention_payload("Does the company reimburse llama grooming for pet therapy?", event_id="Ev0SKEL0004", ts=ts)

    status, _, _ = await post_event(bot.url, payload)

    assert status == 200
    replies = await wait_for_replies(fake_slack, ts)
    assert len(replies) == 1
    assert HR_CONTACT in replies[0]["text"]
    path = query(indexed_db, "SELECT answer_path FROM messages WHERE event_key = %s AND role = 'assistant'",
                 "slack:T0TEST001:C0TEST001:" + ts)
    assert path == [("not_found",)]


async def test_url_verification_returns_challenge(bot):
    status, _, text = await post_event(bot.url, {"type": "url_verification", "token": "x", "challenge": "chal-123"})

    assert status == 200
    assert "chal-123" in text


async def test_healthz_reports_ok(bot):
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"


async def test_worker_prepares_passage_vectors_in_the_background(bot, indexed_db):
    deadline = time.monotonic() + 120
    while "Prepared HR passages" not in bot.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, bot.log()
        await asyncio.sleep(0.2)

    # One vector per distinct passage, FAQ question and passage word of the handbook.
    (count,) = query(indexed_db, "SELECT count(*) FROM text_embeddings")[0]
    assert count > 1000
