"""Acknowledgement under load: how fast ``/slack/events`` responds while the worker generates.

Three HR questions first keep the in-process worker generating. Once the first of
them shows its progress reaction, the burst goes out: all events at once, each on
its own connection, as Slack would deliver messages that many employees send in
the same moment. Then the same number of events is sent again at a steady
``PACED_EVENTS_PER_S``. Slack rate-limits an app that would receive more than
30,000 events per hour from one workspace (about 8 per second, see Slack's
``app_rate_limited`` event reference), so the paced rate is already above what one
workspace can deliver for long. Slack's limit for the acknowledgement is 3,000 ms.

To bound the wait for the replies, every ``burst_model_every``-th event of each
burst is an HR question for the model and the others are ``help``, which the
router answers without the model. Afterwards every event must have exactly one
reply in the fake Slack Web API's log and one stored answer marked posted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.bench.bench_e2e import pick_questions
from tests.bench.delivery import answered_once, check_exactly_once
from tests.bench.harness import AnswerBot, BenchContext, EventPoster, answers_by_thread, summarise_ms

BUSY_QUESTIONS = 3
PACED_EVENTS_PER_S = 50.0
REPLY_TIMEOUT_S = 900.0


async def run(ctx: BenchContext) -> dict[str, Any]:
    bot = await ctx.answer_bot()
    questions = pick_questions(20)
    sizes = ctx.sizes
    busy = [bot.events.next(question) for question in questions[:BUSY_QUESTIONS]]
    burst = [bot.events.next(_burst_text(index, sizes.burst_model_every, questions)) for index in range(sizes.burst_events)]
    paced = [bot.events.next(_burst_text(index, sizes.burst_model_every, questions)) for index in range(sizes.burst_events)]

    async with EventPoster(bot.process.url) as poster:
        for _, body, headers in busy:
            await poster.post(body, headers)
        await _wait_for_progress(bot, busy[0][0])
        burst_started = time.monotonic()
        at_once = await asyncio.gather(*(poster.post(body, headers) for _, body, headers in burst))
        burst_window = max(started + seconds for _, started, seconds in at_once) - burst_started
        # No answer to the first busy question yet means that the model was generating throughout.
        generating_through_burst = _first_reply_at(bot, busy[0][0]) is None
        spaced = await _post_paced(poster, paced, interval=1.0 / PACED_EVENTS_PER_S)

    check = await check_exactly_once(bot, [ts for ts, _, _ in busy + burst + paced], timeout=REPLY_TIMEOUT_S)
    at_once_stats = summarise_ms([seconds for _, _, seconds in at_once])
    paced_stats = summarise_ms([seconds for _, _, seconds in spaced])
    return {
        "ack_p99_ms": at_once_stats.get("p99_ms"),
        "ack_paced_p99_ms": paced_stats.get("p99_ms"),
        "ack_burst": at_once_stats,
        "ack_burst_window_ms": round(burst_window * 1000, 1),
        "ack_paced": paced_stats,
        "ack_paced_events_per_s": PACED_EVENTS_PER_S,
        "ack_non_200": sum(status != 200 for status, _, _ in at_once + spaced),
        "ack_worker_generating_through_burst": generating_through_burst,
        "ack_model_questions_per_burst": len(range(0, sizes.burst_events, sizes.burst_model_every)),
        "ack_delivery": check,
        "ack_each_answered_once": answered_once(check),
    }


def _burst_text(index: int, model_every: int, questions: list[str]) -> str:
    if index % model_every == 0:
        return questions[(index // model_every) % len(questions)]
    return "help"


async def _wait_for_progress(bot: AnswerBot, ts: str, timeout: float = 60.0) -> None:
    """Wait for the progress reaction that the worker adds just before it runs the skill."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(call.params.get("timestamp") == ts for call in bot.slack.calls_to("reactions.add")):
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"the worker did not start on {ts} within {timeout:.0f} s:\n{bot.process.log()}")


def _first_reply_at(bot: AnswerBot, ts: str) -> float | None:
    answers = answers_by_thread(bot.slack).get(ts, [])
    return answers[0].at if answers else None


async def _post_paced(poster: EventPoster, events, *, interval: float) -> list[tuple[int, float, float]]:
    started = time.monotonic()
    tasks = []
    for index, (_, body, headers) in enumerate(events):
        delay = started + index * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(poster.post(body, headers)))
    return await asyncio.gather(*tasks)
