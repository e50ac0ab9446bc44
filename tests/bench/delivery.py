"""Checks that every event got exactly one answer, from the fake Slack Web API's log and the database."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from tests.bench.harness import AnswerBot, answers_by_thread, answers_for, event_key_of, query, wait_for_replies

# Time to wait after the last reply for a late duplicate to arrive.
SETTLE_S = 2.0


async def check_exactly_once(bot: AnswerBot, thread_ts: Sequence[str], *, timeout: float) -> dict[str, Any]:
    """Wait for a reply to each event, then count the events lost and answered twice."""
    await wait_for_replies(bot.slack, thread_ts, timeout=timeout)
    await asyncio.sleep(SETTLE_S)
    answers = answers_by_thread(bot.slack)
    # A long answer is posted in several parts with different texts; the same text twice is a duplicate.
    texts = [[call.params.get("text") for call in answers.get(ts, [])] for ts in thread_ts]
    keys = [event_key_of(ts) for ts in thread_ts]
    stored = await asyncio.to_thread(answers_for, bot.urls, keys)
    accepted = await asyncio.to_thread(
        query, bot.urls, "SELECT count(*) FROM processed_events WHERE event_key = ANY(%s)", (keys,)
    )
    failed_jobs = await asyncio.to_thread(
        query, bot.urls, "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('failed', 'aborted')"
    )
    paths: dict[str, int] = {}
    for rows in stored.values():
        for answer_path, *_ in rows:
            paths[answer_path] = paths.get(answer_path, 0) + 1
    return {
        "events": len(thread_ts),
        "accepted": accepted[0][0],
        "lost": sum(not parts for parts in texts),
        "answered_twice": sum(len(parts) != len(set(parts)) for parts in texts),
        "stored_answers_missing": sum(len(rows) == 0 for rows in stored.values()),
        "stored_answers_duplicated": sum(len(rows) > 1 for rows in stored.values()),
        "not_marked_posted": sum(any(row[1] != "posted" for row in rows) for rows in stored.values()),
        "failed_jobs": failed_jobs[0][0],
        "answer_paths": paths,
    }


def answered_once(check: dict[str, Any]) -> bool:
    return (
        check["accepted"] == check["events"]
        and check["lost"] == 0
        and check["answered_twice"] == 0
        and check["stored_answers_missing"] == 0
        and check["stored_answers_duplicated"] == 0
        and check["not_marked_posted"] == 0
        and check["failed_jobs"] == 0
    )
