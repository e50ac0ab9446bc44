"""Accepting a platform message: record its event id and queue it, atomically.

Messages that arrive while an earlier batch is committing are accepted together
in the next batch, which is one statement and so one round trip. The web
process runs one event loop. Under a burst, each round trip waits behind the
requests that the loop is reading, so the number of round trips limits how fast
requests are acknowledged.
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

# Upper bound of messages accepted in one statement.
MAX_BATCH = 200

# Records the keys, queues a job per new key and links the two in one statement
# (the function of migration 0007), which calls procrastinate's SQL function as its
# ``defer`` does. Procrastinate's Python API took about half of the time to accept
# a burst, because it copies each job's arguments into a log context twice.
_ACCEPT_EVENTS = text(
    "SELECT accepted_key, accepted_job FROM chatops_accept_events("
    "CAST(:event_keys AS text[]), CAST(:platforms AS text[]), CAST(:job_arguments AS jsonb), "
    ":queue, :task, :priority, :lock, :queueing_lock)"
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
    """Commits the messages of one database and event loop in batches, one statement at a time."""

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
        job_arguments = {key: {"message": message.to_job_args()} for key, message in messages.items()}
        # The statement is its own transaction, so the whole batch commits or none of it.
        async with self.db.autocommit() as conn:
            rows = await conn.execute(
                _ACCEPT_EVENTS,
                {
                    "event_keys": list(messages),
                    "platforms": [message.platform for message in messages.values()],
                    "job_arguments": json.dumps(job_arguments),
                    "queue": answer_message.queue,
                    "task": answer_message.name,
                    "priority": answer_message.priority,
                    "lock": answer_message.lock,
                    "queueing_lock": answer_message.queueing_lock,
                },
            )
            accepted = rows.all()
        new = [messages[row.accepted_key] for row in accepted]
        job_ids = [row.accepted_job for row in accepted]
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
