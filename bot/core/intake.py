"""Accepting a platform message: record its event id and queue it, atomically.

Messages that arrive while an earlier acceptance is committing are accepted
together in the next transaction, with one statement per step for the whole
batch. The web process runs one event loop, so under a burst the per-statement round
trips, not PostgreSQL, limit how fast requests are acknowledged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from weakref import WeakKeyDictionary

from sqlalchemy import text

from bot.core.message import IncomingMessage
from bot.queue import answer_message
from bot.storage.database import Database

logger = logging.getLogger(__name__)

# Upper bound of messages committed in one transaction.
MAX_BATCH = 200

_RECORD_EVENTS = text(
    "INSERT INTO processed_events (event_key, platform) "
    "SELECT * FROM unnest(CAST(:event_keys AS text[]), CAST(:platforms AS text[])) "
    "ON CONFLICT (event_key) DO NOTHING RETURNING event_key"
)
_SET_JOBS = text(
    "UPDATE processed_events AS p SET job_id = v.job_id "
    "FROM unnest(CAST(:event_keys AS text[]), CAST(:job_ids AS bigint[])) AS v(event_key, job_id) "
    "WHERE p.event_key = v.event_key"
)


# Queues one answer_message job per element of a JSON array of job arguments,
# through the same SQL function that procrastinate's own defer calls. Going
# through procrastinate's Python API cost about half of the time to accept a
# burst: it builds a log context (a deep copy of each job's arguments) twice per
# job even when nothing logs it, and psycopg escapes each job as a composite
# value in Python. Here the whole batch is one JSON text. The function and its
# row type belong to procrastinate's schema, which migration 0002 installs for
# the pinned version.
_DEFER_JOBS = text(
    """
    SELECT unnest(procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW(:queue, :task, :priority, :lock, :queueing_lock, job.args, NULL)::procrastinate_job_to_defer_v1
          FROM jsonb_array_elements(CAST(:args AS jsonb)) WITH ORDINALITY AS job(args, position)
         ORDER BY job.position
    ))) AS id
    """
)


async def accept_message(db: Database, message: IncomingMessage) -> bool:
    """Queue ``message`` unless its event was accepted before; return whether it was queued.

    The event id and the job commit together: if queueing fails, the event id is
    rolled back too, so the platform's re-delivery is accepted instead of dropped.
    A failure fails every message of the same batch, and each caller gets the error.
    """
    loop = asyncio.get_running_loop()
    intake = _intakes.get(db)
    if intake is None or intake.loop is not loop:
        intake = _intakes[db] = _Intake(db, loop)
    return await intake.accept(message)


class _Intake:
    """Commits the messages of one database and event loop in batches, one transaction at a time."""

    def __init__(self, db: Database, loop: asyncio.AbstractEventLoop) -> None:
        self.db = db
        self.loop = loop
        self._pending: list[tuple[IncomingMessage, asyncio.Future[bool]]] = []
        self._drain: asyncio.Task[None] | None = None

    async def accept(self, message: IncomingMessage) -> bool:
        future: asyncio.Future[bool] = self.loop.create_future()
        self._pending.append((message, future))
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_task(self._commit_pending())
        return await future

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                accepted = await self._commit(batch)
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for message, future in batch:
                queued = message.event_key in accepted
                # Only the first caller with a new event key gets True.
                accepted.discard(message.event_key)
                if not queued:
                    logger.info("Dropped duplicate delivery of event %s", message.event_key)
                if not future.done():
                    future.set_result(queued)

    async def _commit(self, batch: list[tuple[IncomingMessage, asyncio.Future[bool]]]) -> set[str]:
        """Record and queue the batch's new events; return the event keys queued."""
        started = time.perf_counter()
        messages: dict[str, IncomingMessage] = {}
        for message, _ in batch:
            # The same event twice in one batch is queued once, for its first caller.
            messages.setdefault(message.event_key, message)
        async with self.db.engine.begin() as conn:
            rows = await conn.execute(
                _RECORD_EVENTS,
                {"event_keys": list(messages), "platforms": [message.platform for message in messages.values()]},
            )
            new = [messages[row.event_key] for row in rows]
            job_ids: list[int] = []
            if new:
                rows = await conn.execute(
                    _DEFER_JOBS,
                    {
                        "queue": answer_message.queue,
                        "task": answer_message.name,
                        "priority": answer_message.priority,
                        "lock": answer_message.lock,
                        "queueing_lock": answer_message.queueing_lock,
                        "args": json.dumps([{"message": message.to_job_args()} for message in new]),
                    },
                )
                job_ids = [row.id for row in rows]
                await conn.execute(
                    _SET_JOBS, {"event_keys": [message.event_key for message in new], "job_ids": job_ids}
                )
        elapsed_ms = (time.perf_counter() - started) * 1000
        if len(new) == 1:
            logger.info("Accepted event %s as job %s in %.1f ms", new[0].event_key, job_ids[0], elapsed_ms)
        elif new:
            # One line per batch: under a burst, a line per event delays every acknowledgement.
            logger.info("Accepted %d events as jobs %s to %s in %.1f ms", len(new), job_ids[0], job_ids[-1], elapsed_ms)
            for message, job_id in zip(new, job_ids):
                logger.debug("Accepted event %s as job %s", message.event_key, job_id)
        return {message.event_key for message in new}


_intakes: WeakKeyDictionary[Database, _Intake] = WeakKeyDictionary()
