"""End to end against raw inference: the bot's time per answer over llama.cpp's time for the same prompts.

Each question is a signed Slack event through ``chatops serve`` to the fake Slack
Web API; the bot's time runs from the POST until the fake receives the answer.
The same question also goes through the HR skill in this process, once right
before the bot's answer and once right after it. Its model calls go to a plain
``llama_cpp.Llama`` with the bot's settings, in a process of its own (see
raw_llama.py), and only those calls are timed. Each question's raw time is the
mean of the two, so that a change of the machine's speed during the pair (other
processes, other virtual machines on the host) moves both sides alike.

The two raw workers and the bot start from the same seed and see the same
sequence of prompts (one warm-up question, then the questions in order), so
llama.cpp's sampling seeds and its reuse of the previous prompt's prefix match on
all three sides. Only questions on which the stored ``answer_path`` shows that the
model ran are compared.

The reported ratio is the median of the per-question ratios, over two rounds of
the questions. On a machine shared with other work, a burst of load can slow one
side of several consecutive pairs, which moves the ratio of the totals (also
reported) far more than the median. Two raw runs of the same prompt in two
processes differed by 6% (standard deviation of their ratio) on a 2-core virtual
machine, so one round of 19 compared answers left the median about a percent
from run to run.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from typing import Any

from tests.bench.harness import MODEL_PATHS, BenchContext, answers_for, event_key_of, load_questions, wait_delivered
from tests.bench.raw_llama import RawReplayer, settings_from_env

WARM_UP_QUESTION = "How many paid sick days do I get in Austin?"
# Pause before each timed side, so that the previous side's threads are idle again.
SETTLE_S = 0.05

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
    before = await RawReplayer.start(settings, bot.urls)
    after = await RawReplayer.start(settings, bot.urls)
    try:
        await _ask_all(bot, before, after, WARM_UP_QUESTION)
        questions = pick_questions(ctx.sizes.e2e_questions) * ctx.sizes.e2e_rounds
        rows = [await _ask_all(bot, before, after, question) for question in questions]
    finally:
        await before.aclose()
        await after.aclose()

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


async def _ask_all(bot, before: RawReplayer, after: RawReplayer, question: str) -> dict[str, Any]:
    """Time the question raw, through the bot, and raw again, each side on an idle machine."""
    # After a generation, llama.cpp's OpenMP threads keep polling for work for a few
    # milliseconds: about 7 ms of CPU on 2 cores, at the model's nice value. Each
    # side therefore starts after a pause instead of sharing the CPU with the last one.
    await asyncio.sleep(SETTLE_S)
    # The message's timestamp does not reach the prompt; the bot's is not known yet.
    calls_before = await before.replay(question, f"{time.time():.6f}")
    await asyncio.sleep(SETTLE_S)
    ts, bot_seconds = await bot.ask(question)
    event_key = event_key_of(ts)
    # The worker marks the answer posted after chat.postMessage returns; wait for that
    # so that the raw run never shares the CPU with the bot's own work.
    await wait_delivered(bot.urls, event_key)
    await asyncio.sleep(SETTLE_S)
    calls_after = await after.replay(question, ts)
    raw_before = sum(call.seconds for call in calls_before)
    raw_after = sum(call.seconds for call in calls_after)
    last = calls_after[-1] if calls_after else None
    return {
        "question": question,
        "event_key": event_key,
        "bot_s": bot_seconds,
        "raw_s": (raw_before + raw_after) / 2,
        "raw_before_s": raw_before,
        "raw_after_s": raw_after,
        "raw_calls": len(calls_after),
        "raw_calls_agree": _token_counts(calls_before) == _token_counts(calls_after),
        "raw_prompt_tokens": last.prompt_tokens if last else None,
        "raw_completion_tokens": last.completion_tokens if last else None,
    }


def _token_counts(calls) -> list[tuple[int, int]]:
    return [(call.prompt_tokens, call.completion_tokens) for call in calls]


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
        # The two raw runs of a question must have made the same calls with the same counts.
        "e2e_raw_runs_disagreeing": sum(not row["raw_calls_agree"] for row in compared),
        # Raw time after the bot's answer over raw time before it, median per question:
        # how far the machine's speed moved within a pair.
        "e2e_raw_after_over_before": (
            round(statistics.median(row["raw_after_s"] / row["raw_before_s"] for row in compared if row["raw_before_s"] > 0), 3)
            if compared
            else None
        ),
        "e2e_completion_tokens_bot": sum(row["bot_completion_tokens"] or 0 for row in compared),
        "e2e_completion_tokens_raw": sum(row["raw_completion_tokens"] or 0 for row in compared),
        "e2e_rows": [
            {
                "question": row["question"],
                "answer_path": row["answer_path"],
                "bot_ms": round(row["bot_s"] * 1000, 1),
                "raw_ms": round(row["raw_s"] * 1000, 1),
                "raw_before_ms": round(row["raw_before_s"] * 1000, 1),
                "raw_after_ms": round(row["raw_after_s"] * 1000, 1),
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
