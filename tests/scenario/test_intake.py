"""Accepting messages in batches: each event queued once, and a failed batch leaves nothing behind."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from bot.core.intake import accept_message
from bot.core.message import IncomingMessage
from bot.queue import bind_queue
from bot.storage.database import Database


@pytest.fixture(scope="module")
async def db(db_urls):
    queue = bind_queue(db_urls.libpq)
    await queue.open_async()
    database = Database(db_urls)
    yield database
    await database.dispose()
    await queue.close_async()


def message(key: str, *, platform: str = "slack") -> IncomingMessage:
    return IncomingMessage(
        platform=platform,
        event_key=key,
        channel_id="C0INTAKE",
        thread_key=key,
        user_id="U0INTAKE",
        text="How many paid sick days do I get?",
        message_id=key,
    )


def rows(db: Database, sql: str, *params) -> list[tuple]:
    with psycopg.connect(db.urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


async def test_concurrent_duplicates_queued_once(db):
    keys = [f"intake:burst:{index}" for index in range(40)]
    # Every key arrives twice, interleaved, as re-deliveries during a burst would.
    results = await asyncio.gather(*(accept_message(db, message(key)) for key in keys + keys))

    assert results[:40] == [True] * 40
    assert results[40:] == [False] * 40
    events = rows(db, "SELECT event_key, job_id FROM processed_events WHERE event_key LIKE %s", "intake:burst:%")
    assert sorted(key for key, _ in events) == sorted(keys)
    assert all(job_id is not None for _, job_id in events)
    jobs = rows(
        db,
        "SELECT args->'message'->>'event_key' FROM procrastinate_jobs WHERE id = ANY(%s)",
        [job_id for _, job_id in events],
    )
    assert sorted(key for (key,) in jobs) == sorted(keys)


async def test_same_key_in_one_batch_queued_once(db):
    results = await asyncio.gather(*(accept_message(db, message("intake:same")) for _ in range(5)))

    assert sorted(results) == [False, False, False, False, True]
    assert rows(db, "SELECT count(*) FROM processed_events WHERE event_key = 'intake:same'") == [(1,)]


async def test_redelivery_after_commit_dropped(db):
    assert await accept_message(db, message("intake:again")) is True

    assert await accept_message(db, message("intake:again")) is False
    assert rows(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->'message'->>'event_key' = 'intake:again'") == [(1,)]


async def test_failed_batch_commits_nothing(db):
    # processed_events.platform is varchar(16), so this message fails its whole batch.
    batch = [message("intake:fail:0"), message("intake:fail:1", platform="x" * 40), message("intake:fail:2")]

    results = await asyncio.gather(*(accept_message(db, item) for item in batch), return_exceptions=True)

    assert all(isinstance(result, Exception) for result in results)
    assert rows(db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "intake:fail:%") == [(0,)]
    assert rows(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->'message'->>'event_key' LIKE %s", "intake:fail:%") == [(0,)]
    # The platform delivers the valid events again, and they are accepted then.
    assert await accept_message(db, batch[0]) is True
    assert await accept_message(db, batch[2]) is True


async def test_jobs_queued_in_arrival_order(db):
    # The keys arrive in descending order, and the function records them sorted.
    keys = [f"intake:order:{index:02d}" for index in reversed(range(12))]

    results = await asyncio.gather(*(accept_message(db, message(key)) for key in keys))

    assert results == [True] * len(keys)
    linked = rows(
        db,
        "SELECT e.event_key, j.args->'message'->>'event_key' FROM processed_events e "
        "JOIN procrastinate_jobs j ON j.id = e.job_id WHERE e.event_key LIKE %s ORDER BY j.id",
        "intake:order:%",
    )
    assert [event_key for event_key, _ in linked] == keys
    for event_key, job_key in linked:
        assert job_key == event_key


async def test_two_processes_queue_each_event_once(db):
    # Two engines act as two web processes that receive the same events in opposite orders.
    other = Database(db.urls)
    try:
        for round_number in range(5):
            keys = [f"intake:overlap:{round_number}:{index:02d}" for index in range(60)]

            first, second = await asyncio.gather(
                asyncio.gather(*(accept_message(db, message(key)) for key in keys)),
                asyncio.gather(*(accept_message(other, message(key)) for key in reversed(keys))),
            )

            accepted_per_key = [int(a) + int(b) for a, b in zip(first, reversed(second))]
            assert accepted_per_key == [1] * len(keys)
    finally:
        await other.dispose()
    jobs = rows(db, "SELECT count(*) FROM procrastinate_jobs WHERE args->'message'->>'event_key' LIKE %s", "intake:overlap:%")
    assert jobs == [(300,)]
