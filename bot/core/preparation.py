"""Background preparation: lets skills compute what answers need whenever the knowledge base changes.

The worker runs :func:`run_skill_preparation` beside the queue. It checks the
knowledge base's version every few seconds and, after start-up and after each
change, calls every skill's ``prepare``. A session-level advisory lock, taken
outside any transaction, lets one process at a time prepare; the others skip the
round and look again later, when the work is already stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import psycopg

from bot.retrieval.search import Retriever
from skills.base import Skill

logger = logging.getLogger(__name__)

# Any fixed number works; it only has to differ from other advisory locks on the server.
PREPARATION_LOCK_ID = 7_215_400_002


async def prepare_skills(libpq_url: str, skills: Sequence[Skill]) -> bool:
    """Run every skill's ``prepare`` unless another process is preparing; return whether it ran."""
    async with await psycopg.AsyncConnection.connect(libpq_url, autocommit=True) as lock_conn:
        locked = (await (await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (PREPARATION_LOCK_ID,))).fetchone())[0]
        if not locked:
            return False
        try:
            for skill in skills:
                try:
                    await skill.prepare()
                except Exception:
                    # Preparing only saves time later, so questions are handled without it.
                    logger.exception(
                        "Preparing skill %s failed; it will embed what questions need on demand", skill.name
                    )
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (PREPARATION_LOCK_ID,))
    return True


async def run_skill_preparation(
    libpq_url: str, retriever: Retriever, skills: Sequence[Skill], *, interval_s: float
) -> None:
    """Prepare the skills now and after each change of the knowledge base, until cancelled."""
    prepared_version = None
    while True:
        try:
            version = await retriever.corpus_version()
            if version != prepared_version and await prepare_skills(libpq_url, skills):
                prepared_version = version
        except Exception:
            logger.exception("Preparing the skills failed; trying again in %.0f s", interval_s)
        await asyncio.sleep(interval_s)
