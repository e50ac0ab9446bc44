"""End to end against raw inference: the bot's time per answer over llama.cpp's time for the same prompts.

Each question is a signed Slack event through ``chatops serve`` to the fake Slack
Web API; the bot's time runs from the POST until the fake receives the answer.
Right after each answer, the same question goes through the HR skill in this
process. Its model calls go to a plain ``llama_cpp.Llama`` with the bot's
settings, in a process of its own (see raw_llama.py), and only those calls are
timed. The two
sides alternate question by question, so that load from other processes hits both.

Both models start from the same seed and see the same sequence of prompts (one
warm-up question, then the questions in order), so llama.cpp's sampling seeds and
its reuse of the previous prompt's prefix match on both sides. Only questions on
which the stored ``answer_path`` shows that the model ran are compared.

The reported ratio is the median of the per-question ratios. On a machine shared
with other work, a burst of load can slow one side of several consecutive pairs,
which moves the ratio of the totals (also reported) far more than the median.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from typing import Any

from tests.bench.harness import MODEL_PATHS, BenchContext, answers_for, event_key_of, load_questions, wait_delivered
from tests.bench.raw_llama import RawReplayer, settings_from_env

WARM_UP_QUESTION = "How many paid sick days do I get in Austin?"

# INFO lines of the bot's log that split its time per answer (see bot.core.pipeline and bot.llm.llama_cpp).
_ANSWERED_LINE = re.compile(r"Answered event (\S+) with skill \S+ via \S+ in (\d+) ms")
_MODEL_LINE = re.compile(r"model \S+ completed: .*duration_ms=(\d+)")


def pick_questions(count: int) -> list[str]:
    """The first ``count`` answerable questions that any employee may ask."""
    answerable = [item["question"] for item in load_questions() if item["answerable"] and item["audience"] == "all"]
    return answerable[:count]


async def run(ctx: BenchContext) -> dict[str, Any]:
    bot = await ctx.answer_bot()
    settings = settings_from_env(bot.env)
    replayer = await RawReplayer.start(settings, bot.urls)
    try:
        await _ask_both(bot, replayer, WARM_UP_QUESTION)
        rows = [await _ask_both(bot, replayer, question) for question in pick_questions(ctx.sizes.e2e_questions)]
    finally:
        await replayer.aclose()

    stored = answers_for(bot.urls, [row["event_key"] for row in rows])
    timings = timings_from_log(bot.process.log_path.read_text(errors="replace"))
    for row in rows:
        answer_path, _, prompt_tokens, completion_tokens = stored[row["event_key"]][0]
        row.update(answer_path=answer_path, bot_prompt_tokens=prompt_tokens, bot_completion_tokens=completion_tokens)
        row.update(timings.get(row["event_key"], {}))
    return summarise(rows)


def timings_from_log(log: str) -> dict[str, dict[str, float]]:
    """Per event key: the worker's time from routing to the skill's result, and the model's share of it.

    Questions are asked one at a time, so the model calls logged before an
    event's "Answered" line belong to that event.
    """
    timings: dict[str, dict[str, float]] = {}
    model_ms = 0.0
    for line in log.splitlines():
        if match := _MODEL_LINE.search(line):
            model_ms += float(match.group(1))
        elif match := _ANSWERED_LINE.search(line):
            timings[match.group(1)] = {"pipeline_ms": float(match.group(2)), "bot_model_ms": model_ms}
            model_ms = 0.0
    return timings


async def _ask_both(bot, replayer: RawReplayer, question: str) -> dict[str, Any]:
    ts, bot_seconds = await bot.ask(question)
    event_key = event_key_of(ts)
    # The worker marks the answer posted after chat.postMessage returns; wait for that
    # so that the raw run never shares the CPU with the bot's own work.
    await wait_delivered(bot.urls, event_key)
    calls = await replayer.replay(question, ts)
    return {
        "question": question,
        "event_key": event_key,
        "bot_s": bot_seconds,
        "raw_s": sum(call.seconds for call in calls),
        "raw_calls": len(calls),
        "raw_prompt_tokens": calls[-1].prompt_tokens if calls else None,
        "raw_completion_tokens": calls[-1].completion_tokens if calls else None,
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    compared = [row for row in rows if row["answer_path"] in MODEL_PATHS and row["raw_calls"]]
    bot_total = sum(row["bot_s"] for row in compared)
    raw_total = sum(row["raw_s"] for row in compared)
    paths: dict[str, int] = {}
    for row in rows:
        paths[row["answer_path"]] = paths.get(row["answer_path"], 0) + 1
    ratios = [row["bot_s"] / row["raw_s"] for row in compared if row["raw_s"] > 0]
    timed = [row for row in compared if row.get("bot_model_ms")]
    return {
        # The median of per-question ratios: each pair is measured back to back, so a
        # burst of load from other processes spoils one pair instead of both totals.
        "e2e_ratio": round(statistics.median(ratios), 3) if ratios else None,
        "e2e_ratio_of_totals": round(bot_total / raw_total, 3) if raw_total else None,
        # The bot's time over its own model's time (from its log): the overhead alone,
        # without the variance between two processes.
        "e2e_ratio_to_bot_model": (
            round(sum(row["bot_s"] for row in timed) / sum(row["bot_model_ms"] / 1000 for row in timed), 3)
            if timed
            else None
        ),
        "e2e_breakdown_ms_per_answer": _breakdown(compared),
        "e2e_questions": len(rows),
        "e2e_compared": len(compared),
        "e2e_answer_paths": paths,
        "e2e_bot_total_s": round(bot_total, 3),
        "e2e_raw_total_s": round(raw_total, 3),
        # Everything but the bot's own model calls, per answer.
        "e2e_overhead_ms_per_answer": (
            round(statistics.mean(row["bot_s"] * 1000 - row["bot_model_ms"] for row in timed), 1) if timed else None
        ),
        # The bot stores the token counts of the skill's last model call, so the raw side
        # reports its last call too. Equal counts show that both sides ran the same prompts.
        "e2e_prompt_token_mismatches": sum(row["bot_prompt_tokens"] != row["raw_prompt_tokens"] for row in compared),
        "e2e_completion_tokens_bot": sum(row["bot_completion_tokens"] or 0 for row in compared),
        "e2e_completion_tokens_raw": sum(row["raw_completion_tokens"] or 0 for row in compared),
        "e2e_rows": [
            {
                "question": row["question"],
                "answer_path": row["answer_path"],
                "bot_ms": round(row["bot_s"] * 1000, 1),
                "raw_ms": round(row["raw_s"] * 1000, 1),
                "pipeline_ms": row.get("pipeline_ms"),
                "bot_model_ms": row.get("bot_model_ms"),
                "tokens_bot": [row["bot_prompt_tokens"], row["bot_completion_tokens"]],
                "tokens_raw": [row["raw_prompt_tokens"], row["raw_completion_tokens"]],
            }
            for row in rows
        ],
    }


def _breakdown(compared: list[dict[str, Any]]) -> dict[str, float] | None:
    """Mean milliseconds per compared answer, split by where the bot spent them (from its log)."""
    timed = [row for row in compared if "pipeline_ms" in row]
    if not timed:
        return None

    def mean(values) -> float:
        values = list(values)
        return round(sum(values) / len(values), 1)

    return {
        "answers": len(timed),
        "raw_model": mean(row["raw_s"] * 1000 for row in timed),
        "bot_model": mean(row["bot_model_ms"] for row in timed),
        # The worker's time from routing to the skill's result: progress reaction and skill.
        "progress_and_skill_outside_model": mean(row["pipeline_ms"] - row["bot_model_ms"] for row in timed),
        # Acknowledgement, queue, loading and storing the exchange, and posting the answer.
        "ack_queue_storage_and_delivery": mean(row["bot_s"] * 1000 - row["pipeline_ms"] for row in timed),
    }
