"""The job queue: procrastinate on the bot's own PostgreSQL database.

A message is queued in the same transaction that records its platform event id,
so an acknowledged message is never lost and a re-delivered one is never queued
twice. Workers may run in any number of processes on any machine that reaches the
database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import procrastinate
from procrastinate import RetryStrategy

from bot.core.message import IncomingMessage

logger = logging.getLogger(__name__)

MESSAGES_QUEUE = "messages"

# The connector is replaced by ``bind_queue`` at start-up, once the database URL
# is known. A process serves one database, so the app is a module-level singleton.
queue_app = procrastinate.App(connector=procrastinate.PsycopgConnector())


@queue_app.task(
    name="chatops.answer_message",
    queue=MESSAGES_QUEUE,
    pass_context=True,
    retry=RetryStrategy(max_attempts=4, exponential_wait=2),
)
async def answer_message(context: procrastinate.JobContext, message: dict[str, Any]) -> None:
    runtime = context.additional_context["runtime"]
    await runtime.pipeline.answer(IncomingMessage.from_job_args(message))


def bind_queue(libpq_url: str, *, max_size: int = 5) -> procrastinate.App:
    """Point the queue at ``libpq_url``; the caller opens it with ``open_async``."""
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url, min_size=1, max_size=max_size)
    queue_app.connector = connector
    queue_app.job_manager.connector = connector
    return queue_app


async def recover_stalled_jobs(app: procrastinate.App, *, stalled_after_s: float) -> int:
    """Queue again the jobs whose worker stopped sending heartbeats (a crash or SIGKILL)."""
    stalled = await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after_s)
    count = 0
    for job in stalled:
        await app.job_manager.retry_job(job)
        logger.warning("Re-queued stalled job %s (%s) left by a stopped worker", job.id, job.task_name)
        count += 1
    return count


async def run_stalled_job_recovery(app: procrastinate.App, *, stalled_after_s: float, interval_s: float) -> None:
    """Check for stalled jobs every ``interval_s`` seconds until cancelled."""
    while True:
        try:
            await recover_stalled_jobs(app, stalled_after_s=stalled_after_s)
        except Exception:
            logger.exception("Stalled-job recovery failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
