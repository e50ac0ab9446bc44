"""Accepting a platform message: record its event id and queue it, atomically."""

from __future__ import annotations

import logging
import time

from sqlalchemy import text

from bot.core.message import IncomingMessage
from bot.queue import answer_message
from bot.storage.database import Database

logger = logging.getLogger(__name__)

_RECORD_EVENT = text(
    "INSERT INTO processed_events (event_key, platform) VALUES (:event_key, :platform) "
    "ON CONFLICT (event_key) DO NOTHING RETURNING event_key"
)
_SET_JOB = text("UPDATE processed_events SET job_id = :job_id WHERE event_key = :event_key")


async def accept_message(db: Database, message: IncomingMessage) -> bool:
    """Queue ``message`` unless its event was accepted before; return whether it was queued.

    The event id and the job commit together: if queueing fails, the event id is
    rolled back too, so the platform's re-delivery is accepted instead of dropped.
    """
    started = time.perf_counter()
    async with db.engine.begin() as conn:
        inserted = (await conn.execute(_RECORD_EVENT, {"event_key": message.event_key, "platform": message.platform})).first()
        if inserted is None:
            logger.info("Dropped duplicate delivery of event %s", message.event_key)
            return False
        raw = await conn.get_raw_connection()
        deferrer = answer_message.configure(connection=raw.driver_connection)
        job_id = await deferrer.defer_async(message=message.to_job_args())
        await conn.execute(_SET_JOB, {"job_id": job_id, "event_key": message.event_key})
    logger.info(
        "Accepted event %s as job %s in %.1f ms", message.event_key, job_id, (time.perf_counter() - started) * 1000
    )
    return True
