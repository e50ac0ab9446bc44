"""Slack conversations through ``chatops serve`` over HTTP: retries, mentions, edits, bots, threads, progress.

Signed Events API requests go to the real endpoint on 127.0.0.1; the bot answers
with the bundled model and posts to the fake Slack Web API, which keeps the
thread as a person would see it.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from bot.channels.slack.client import PLACEHOLDER_TEXT
from bot.channels.slack.testing import DEFAULT_BOT_USER_ID, FakeSlackApi, app_mention_payload, event_callback
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.support import BotProcess, bot_env, free_port, post_event

pytestmark = pytest.mark.model

CHANNEL = "C0TEST001"
DM = "D0DM0001"
ACK_LIMIT_S = 3.0


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    store = SourceStore(db, get_embedder())
    for name in ("sick-leave.md", "annual-leave.md", "parental-leave.md", "code-of-conduct.md"):
        await store.add_file(HANDBOOK_DIR / name)
    await db.dispose()
    return db_urls


@pytest.fixture(scope="module")
async def fake_slack():
    slack = await FakeSlackApi().start()
    slack.add_user("UHR00002", "Priya Shah", "Priya Shah-Iyer")
    yield slack
    await slack.stop()


@pytest.fixture(scope="module")
async def bot(indexed_db, fake_slack, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("conversations")
    env = bot_env(
        database_url=indexed_db.libpq,
        slack_api_url=fake_slack.api_url,
        data_dir=data_dir,
        CHATOPS_SLACK_PLACEHOLDER_AFTER_S="0",
        CHATOPS_MAX_ANSWER_TOKENS="48",
    )
    process = BotProcess(env=env, port=free_port(), log_path=data_dir / "serve.log")
    await process.start()
    yield process
    await process.stop()


def query(urls, sql: str, *params):
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


def key(channel: str, ts: str) -> str:
    return f"slack:T0TEST001:{channel}:{ts}"


def message_event(text: str, *, ts: str, channel: str = DM, channel_type: str = "im", **fields) -> dict:
    event = {"type": "message", "user": "U0EMPLOYEE1", "text": text, "ts": ts, "channel": channel, "channel_type": channel_type, "event_ts": ts}
    event.update(fields)
    return event


async def reacted(slack: FakeSlackApi, ts: str, timeout: float = 60.0) -> None:
    """Wait until the worker has claimed the message's job: it adds its progress reaction first."""
    await slack.wait_until(lambda: any(c.params.get("timestamp") == ts for c in slack.calls_to("reactions.add")), timeout)


def posts_in(slack: FakeSlackApi, thread_ts: str) -> list:
    return [call for call in slack.calls_to("chat.postMessage") if call.params.get("thread_ts") == thread_ts]


async def test_retried_mention_while_busy_answered_once(bot, fake_slack, indexed_db):
    ts = "1700000001.000100"
    payload = app_mention_payload("what is the notice period?", event_id="Ev0TEST0001", ts=ts)

    first = await post_event(bot.url, payload)
    await reacted(fake_slack, ts)
    answered_before_retries = bool(fake_slack.answers(CHANNEL, ts))
    retries = [
        await post_event(bot.url, payload, headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"})
        for n in (1, 2)
    ]
    await fake_slack.wait_for_answers(CHANNEL, ts, timeout=180)
    await asyncio.sleep(2.0)

    assert not answered_before_retries, "the answer was posted before the retries; the worker was not busy"
    assert [response[0] for response in (first, *retries)] == [200, 200, 200]
    assert all(response[1] < ACK_LIMIT_S for response in (first, *retries))
    assert len(posts_in(fake_slack, ts)) == 1, bot.log()
    assert len(fake_slack.answers(CHANNEL, ts)) == 1
    rows = query(indexed_db, "SELECT role, count(*) FROM messages WHERE event_key = %s GROUP BY role ORDER BY role", key(CHANNEL, ts))
    assert rows == [("assistant", 1), ("user", 1)]


async def test_mention_mid_sentence_as_message_and_app_mention(bot, fake_slack, indexed_db):
    ts = "1700000002.000100"
    text = f"quick one <@{DEFAULT_BOT_USER_ID}>, how many carer days do we get? cc <@UHR00002>"
    as_message = event_callback(message_event(text, ts=ts), event_id="Ev0TEST0002")
    as_mention = event_callback({**message_event(text, ts=ts), "type": "app_mention"}, event_id="Ev0TEST0003")

    statuses = [(await post_event(bot.url, payload))[0] for payload in (as_message, as_mention)]
    await fake_slack.wait_for_answers(DM, ts, timeout=180)
    await asyncio.sleep(1.5)

    assert statuses == [200, 200]
    assert len(fake_slack.answers(DM, ts)) == 1
    questions = query(indexed_db, "SELECT text FROM messages WHERE event_key = %s AND role = 'user'", key(DM, ts))
    assert questions == [("quick one, how many carer days do we get? cc Priya Shah",)]
    looked_up = [call.params.get("user") for call in fake_slack.calls_to("users.info")]
    assert looked_up == ["UHR00002"]


async def test_bot_messages_and_unfurls_ignored(bot, fake_slack, indexed_db):
    unfurl = {
        "type": "message",
        "subtype": "message_changed",
        "channel": DM,
        "channel_type": "im",
        "ts": "1700000003.000900",
        "message": {
            "type": "message",
            "user": DEFAULT_BOT_USER_ID,
            "bot_id": "B0TEST001",
            "text": "See <https://hr.example.com/leave>",
            "ts": "1700000003.000100",
            "attachments": [{"title": "Leave", "title_link": "https://hr.example.com/leave"}],
        },
        "previous_message": {"type": "message", "user": DEFAULT_BOT_USER_ID, "bot_id": "B0TEST001", "text": "See <https://hr.example.com/leave>", "ts": "1700000003.000100"},
    }
    other_bot = message_event("Deploy finished", ts="1700000003.000200", subtype="bot_message", bot_id="B0OTHER01", username="deploybot")
    other_bot.pop("user")

    statuses = [
        (await post_event(bot.url, event_callback(event, event_id=event_id)))[0]
        for event, event_id in ((unfurl, "Ev0TEST0004"), (other_bot, "Ev0TEST0005"))
    ]
    await asyncio.sleep(1.0)

    assert statuses == [200, 200]
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "%1700000003.%") == [(0,)]
    assert query(indexed_db, "SELECT count(*) FROM procrastinate_jobs WHERE args::text LIKE %s", "%1700000003.%") == [(0,)]
    assert not fake_slack.bot_messages(DM, "1700000003.000100")
    assert not fake_slack.bot_messages(DM, "1700000003.000200")


async def test_own_message_ignored_on_fast_path(bot, fake_slack, indexed_db):
    # Earlier events went through Bolt, which gave the endpoint the bot's user id,
    # so this one is queued or dropped without Bolt.
    assert "Accepted event" in bot.log_path.read_text(errors="replace")
    own = message_event("Sick leave is paid from the first day.", ts="1700000007.000100", user=DEFAULT_BOT_USER_ID)
    question = message_event("How many sick days do I get?", ts="1700000007.000200")

    statuses = [
        (await post_event(bot.url, event_callback(event, event_id=event_id)))[0]
        for event, event_id in ((own, "Ev0TEST0006"), (question, "Ev0TEST0007"))
    ]
    await fake_slack.wait_for_answers(DM, "1700000007.000200")

    assert statuses == [200, 200]
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "%1700000007.000100") == [(0,)]
    assert not fake_slack.bot_messages(DM, "1700000007.000100")
    assert len(fake_slack.answers(DM, "1700000007.000200")) == 1


def edit_event(ts: str, new_text: str, old_text: str, edited_at: str) -> dict:
    return {
        "type": "message",
        "subtype": "message_changed",
        "channel": DM,
        "channel_type": "im",
        "ts": edited_at,
        "event_ts": edited_at,
        "message": {"type": "message", "user": "U0EMPLOYEE1", "text": new_text, "ts": ts, "edited": {"user": "U0EMPLOYEE1", "ts": edited_at}},
        "previous_message": {"type": "message", "user": "U0EMPLOYEE1", "text": old_text, "ts": ts},
    }


async def test_edited_question_answered_once_in_thread(bot, fake_slack, indexed_db):
    ts = "1700000004.000100"
    await post_event(bot.url, event_callback(message_event("sick days?", ts=ts), event_id="Ev0TEST0006"))
    await fake_slack.wait_for_answers(DM, ts, timeout=180)
    edit = event_callback(edit_event(ts, "sick days for part-timers?", "sick days?", "1700000004.000500"), event_id="Ev0TEST0007")
    second_edit = event_callback(
        edit_event(ts, "sick days for part-timers in Berlin?", "sick days for part-timers?", "1700000004.000600"), event_id="Ev0TEST0008"
    )

    statuses = [(await post_event(bot.url, payload))[0] for payload in (edit, edit, second_edit)]
    await fake_slack.wait_for_answers(DM, ts, count=2, timeout=180)
    await asyncio.sleep(2.0)

    assert statuses == [200, 200, 200]
    assert len(fake_slack.answers(DM, ts)) == 2
    questions = query(
        indexed_db,
        "SELECT m.text, c.thread_key FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.role = 'user' AND m.event_key LIKE %s ORDER BY m.created_at",
        key(DM, ts) + "%",
    )
    assert questions == [("sick days?", ts), ("sick days for part-timers?", ts)]


async def test_edit_of_unanswered_message_ignored(bot, fake_slack, indexed_db):
    ts = "1700000005.000100"
    edit = edit_event(ts, "what about bonuses? <@UBOT0001>", "what about bonuses?", "1700000005.000500")
    edit["channel"] = CHANNEL
    edit["channel_type"] = "channel"

    status, _, _ = await post_event(bot.url, event_callback(edit, event_id="Ev0TEST0009"))
    await asyncio.sleep(1.0)

    assert status == 200
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "%1700000005.%") == [(0,)]


async def test_reply_in_existing_thread_and_follow_up(bot, fake_slack, indexed_db):
    thread_ts, ts = "1700000100.000100", "1700000200.000300"
    mention = app_mention_payload("How many sick days do I get?", event_id="Ev0TEST0010", ts=ts, thread_ts=thread_ts)

    await post_event(bot.url, mention)
    await fake_slack.wait_for_answers(CHANNEL, thread_ts, timeout=180)
    follow_up = event_callback(
        message_event("And do I need a doctor's note?", ts="1700000200.000500", channel=CHANNEL, channel_type="channel", thread_ts=thread_ts),
        event_id="Ev0TEST0011",
    )
    await post_event(bot.url, follow_up)
    await fake_slack.wait_for_answers(CHANNEL, thread_ts, count=2, timeout=180)

    assert len(fake_slack.answers(CHANNEL, thread_ts)) == 2
    assert not posts_in(fake_slack, ts)
    rows = query(
        indexed_db,
        "SELECT c.thread_key, count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.event_key IN (%s, %s) GROUP BY c.thread_key",
        key(CHANNEL, ts),
        key(CHANNEL, "1700000200.000500"),
    )
    assert rows == [(thread_ts, 4)]


async def test_thread_without_bot_answer_ignored(bot, fake_slack, indexed_db):
    chatter = event_callback(
        message_event("lunch at noon?", ts="1700000300.000200", channel=CHANNEL, channel_type="channel", thread_ts="1700000300.000100"),
        event_id="Ev0TEST0012",
    )
    top_level = event_callback(message_event("morning all", ts="1700000300.000300", channel=CHANNEL, channel_type="channel"), event_id="Ev0TEST0013")

    statuses = [(await post_event(bot.url, payload))[0] for payload in (chatter, top_level)]
    await asyncio.sleep(1.0)

    assert statuses == [200, 200]
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "%1700000300.%") == [(0,)]


async def test_top_level_mention_starts_own_thread(bot, fake_slack, indexed_db):
    ts = "1700000400.000100"

    await post_event(bot.url, app_mention_payload("How many days of annual leave do I get?", event_id="Ev0TEST0014", ts=ts))
    answers = await fake_slack.wait_for_answers(CHANNEL, ts, timeout=180)

    assert len(answers) == 1
    assert answers[0]["thread_ts"] == ts
    assert query(indexed_db, "SELECT c.thread_key FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.event_key = %s AND m.role = 'user'", key(CHANNEL, ts)) == [(ts,)]


async def test_progress_then_answer_with_feedback_buttons(bot, fake_slack, indexed_db):
    ts = "1700000450.000100"

    await post_event(bot.url, app_mention_payload("Do I need a doctor's note for sick leave?", event_id="Ev0TEST0015", ts=ts))
    [answer] = await fake_slack.wait_for_answers(CHANNEL, ts, timeout=180)
    await fake_slack.wait_until(lambda: any(c.params.get("timestamp") == ts for c in fake_slack.calls_to("reactions.remove")), 10)

    [post] = posts_in(fake_slack, ts)
    assert post.params["text"] == PLACEHOLDER_TEXT
    updates = [call for call in fake_slack.calls_to("chat.update") if call.params.get("ts") == answer["ts"]]
    assert len(updates) == 1
    assert any(c.params.get("timestamp") == ts for c in fake_slack.calls_to("reactions.add"))
    [answer_id] = query(indexed_db, "SELECT id::text FROM messages WHERE event_key = %s AND role = 'assistant'", key(CHANNEL, ts))[0]
    buttons = [element for block in answer["blocks"] if block["type"] == "actions" for element in block["elements"]]
    assert [(button["action_id"], button["value"]) for button in buttons] == [("feedback_up", answer_id), ("feedback_down", answer_id)]
