"""Recording questions and answers in autocommit mode, one statement at a time, against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from bot.core.message import IncomingMessage
from bot.storage import exchanges


def message(number: int, *, thread: str = "T-1", text: str = "How many sick days do I get?") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        event_key=f"slack:exchange-test:{uuid.uuid4().hex}:{number}",
        channel_id="C0EXCHANGE",
        thread_key=thread,
        user_id="U0EMPLOYEE",
        text=text,
        message_id=f"{number}.000",
        channel_type="channel",
    )


def source(rank: int, *, cited: bool) -> exchanges.StoredSource:
    return exchanges.StoredSource(
        chunk_id=None, source_id=None, title=f"Policy {rank}", rank=rank, score=0.5 / rank, cited=cited, excerpt=f"Excerpt {rank}."
    )


async def answer(db, opened: exchanges.OpenedExchange, incoming: IncomingMessage, text: str, sources=()):
    async with db.autocommit() as conn:
        return await exchanges.record_answer(
            conn,
            conversation_id=opened.conversation_id,
            event_key=incoming.event_key,
            text=text,
            skill="hr_qa",
            answer_path="model",
            model_id="smollm2",
            prompt_version="hr_qa.v1",
            latency_ms=900,
            prompt_tokens=300,
            completion_tokens=40,
            sources=list(sources),
        )


async def open_exchange(db, incoming: IncomingMessage) -> exchanges.OpenedExchange:
    async with db.autocommit() as conn:
        return await exchanges.open_exchange(conn, incoming, history_limit=40)


def rows(db_urls, sql: str, *params):
    with psycopg.connect(db_urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


async def test_new_thread_creates_conversation(db, db_urls):
    incoming = message(1, thread=f"new-{uuid.uuid4().hex}")

    opened = await open_exchange(db, incoming)

    assert opened.answer is None
    assert opened.history == []
    stored = rows(db_urls, "SELECT conversation_id, role, text, user_id FROM messages WHERE event_key = %s", incoming.event_key)
    assert stored == [(opened.conversation_id, "user", incoming.text, "U0EMPLOYEE")]
    assert rows(db_urls, "SELECT thread_key FROM conversations WHERE id = %s", opened.conversation_id) == [(incoming.thread_key,)]


async def test_follow_up_sees_earlier_turns(db):
    thread = f"follow-{uuid.uuid4().hex}"
    first = message(1, thread=thread, text="How many sick days do I get?")
    opened = await open_exchange(db, first)
    await answer(db, opened, first, "Ten days a year.")

    second = await open_exchange(db, message(2, thread=thread, text="Do they carry over?"))

    assert second.conversation_id == opened.conversation_id
    assert [(turn.role, turn.text) for turn in second.history] == [
        ("user", "How many sick days do I get?"),
        ("assistant", "Ten days a year."),
    ]


async def test_retried_job_keeps_one_question(db, db_urls):
    thread = f"retry-{uuid.uuid4().hex}"
    earlier = message(1, thread=thread, text="Where is the leave form?")
    await answer(db, await open_exchange(db, earlier), earlier, "In PeopleHub.")
    incoming = message(2, thread=thread, text="And who approves it?")
    first_run = await open_exchange(db, incoming)

    second_run = await open_exchange(db, incoming)

    assert second_run.answer is None
    assert second_run.conversation_id == first_run.conversation_id
    assert len(second_run.history) == 2
    assert second_run.history == first_run.history
    assert rows(db_urls, "SELECT count(*) FROM messages WHERE event_key = %s", incoming.event_key) == [(1,)]


async def test_answer_stored_with_sources(db, db_urls):
    incoming = message(1, thread=f"sources-{uuid.uuid4().hex}")
    opened = await open_exchange(db, incoming)

    stored = await answer(db, opened, incoming, "Ten days [1].", [source(1, cited=True), source(2, cited=False)])

    assert stored.text == "Ten days [1]."
    assert stored.delivery_status == "pending"
    assert stored.created_at is not None
    assert rows(
        db_urls,
        "SELECT source_title, rank, cited, excerpt FROM answer_sources WHERE message_id = %s ORDER BY rank",
        stored.id,
    ) == [("Policy 1", 1, True, "Excerpt 1."), ("Policy 2", 2, False, "Excerpt 2.")]
    reopened = await open_exchange(db, incoming)
    assert reopened.answer is not None
    assert reopened.answer.id == stored.id


async def test_second_answer_stores_nothing(db, db_urls):
    incoming = message(1, thread=f"twice-{uuid.uuid4().hex}")
    opened = await open_exchange(db, incoming)
    first = await answer(db, opened, incoming, "First.", [source(1, cited=True)])

    second = await answer(db, opened, incoming, "Second.", [source(1, cited=True), source(2, cited=True)])

    assert first is not None
    assert second is None
    assert rows(db_urls, "SELECT text FROM messages WHERE event_key = %s AND role = 'assistant'", incoming.event_key) == [
        ("First.",)
    ]
    assert rows(
        db_urls,
        "SELECT count(*) FROM answer_sources s JOIN messages m ON m.id = s.message_id WHERE m.event_key = %s",
        incoming.event_key,
    ) == [(1,)]


async def test_concurrent_questions_share_conversation(db, db_urls):
    thread = f"race-{uuid.uuid4().hex}"
    incoming = [message(number, thread=thread) for number in range(8)]

    opened = await asyncio.gather(*(open_exchange(db, item) for item in incoming))

    assert len({item.conversation_id for item in opened}) == 1
    assert rows(db_urls, "SELECT count(*) FROM conversations WHERE thread_key = %s", thread) == [(1,)]
    assert rows(db_urls, "SELECT count(*) FROM messages WHERE conversation_id = %s", opened[0].conversation_id) == [(8,)]
