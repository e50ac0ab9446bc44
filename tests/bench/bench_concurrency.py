"""Concurrency: the same questions one after another, then all at once, through the same endpoint.

Sequential time is the sum, over the questions, of the time from each POST to its
reply, so the benchmark's own pause between a reply and the next question does
not count. Concurrent time runs from the first POST to the last reply. The ratio
of throughputs is sequential time over concurrent time; above 1 means that
sending everything at once finished sooner.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.bench.delivery import answered_once, check_exactly_once
from tests.bench.harness import BenchContext, EventPoster, answers_by_thread, answers_for, event_key_of, load_questions

REPLY_TIMEOUT_S = 900.0


async def run(ctx: BenchContext) -> dict[str, Any]:
    bot = await ctx.answer_bot()
    questions = [item["question"] for item in load_questions()][: ctx.sizes.concurrency_questions]

    sequential_ts: list[str] = []
    sequential_s = 0.0
    for question in questions:
        ts, seconds = await bot.ask(question)
        sequential_ts.append(ts)
        sequential_s += seconds
    sequential_check = await check_exactly_once(bot, sequential_ts, timeout=REPLY_TIMEOUT_S)

    events = [bot.events.next(question) for question in questions]
    async with EventPoster(bot.process.url) as poster:
        posted = await asyncio.gather(*(poster.post(body, headers) for _, body, headers in events))
    concurrent_ts = [ts for ts, _, _ in events]
    concurrent_check = await check_exactly_once(bot, concurrent_ts, timeout=REPLY_TIMEOUT_S)
    first_post = min(started for _, started, _ in posted)
    answers = answers_by_thread(bot.slack)
    last_reply = max(answers[ts][-1].at for ts in concurrent_ts)
    concurrent_s = last_reply - first_post

    return {
        "concurrency_ratio": round(sequential_s / concurrent_s, 3),
        "concurrency_questions": len(questions),
        "concurrency_sequential_s": round(sequential_s, 2),
        "concurrency_concurrent_s": round(concurrent_s, 2),
        "concurrency_sequential_per_s": round(len(questions) / sequential_s, 3),
        "concurrency_concurrent_per_s": round(len(questions) / concurrent_s, 3),
        "concurrency_completion_tokens": {
            "sequential": _completion_tokens(bot.urls, sequential_ts),
            "concurrent": _completion_tokens(bot.urls, concurrent_ts),
        },
        "concurrency_sequential_delivery": sequential_check,
        "concurrency_concurrent_delivery": concurrent_check,
        "concurrency_each_answered_once": answered_once(sequential_check) and answered_once(concurrent_check),
    }


def _completion_tokens(urls, thread_ts: list[str]) -> int:
    """Tokens generated in one run: sampling differs between runs, so this shows how much work each did."""
    stored = answers_for(urls, [event_key_of(ts) for ts in thread_ts])
    return sum((row[3] or 0) for rows in stored.values() for row in rows)
