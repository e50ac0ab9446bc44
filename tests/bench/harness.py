"""Shared parts of the benchmarks: sizes, the database server, the bot process, events and statistics.

Everything runs on this machine: an embedded PostgreSQL server on a Unix socket,
``chatops serve`` as a subprocess on 127.0.0.1 and the fake Slack Web API in the
benchmark's own event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg

from bot.channels.slack.client import PLACEHOLDER_TEXT
from bot.channels.slack.testing import FakeSlackApi, RecordedCall, app_mention_payload, signed_headers
from bot.storage import migrate
from bot.storage.database import DatabaseUrls, database_urls, embedded_server
from tests.support import SIGNING_SECRET, BotProcess, bot_env, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
HANDBOOK_DIR = REPO_ROOT / "deploy" / "sample-data" / "hr-handbook"
QUESTIONS_PATH = REPO_ROOT / "tests" / "data" / "hr-eval" / "questions.jsonl"
CACHE_DIR = REPO_ROOT / "var" / "bench-cache"

# Answer paths on which the skill called the model. "extractive" is the fallback
# after a model answer failed the grounding check, so the model ran there too.
MODEL_PATHS = frozenset({"model", "extractive"})
# The HR skill logs this when the worker has prepared it (skills/hr_qa/skill.py).
PREPARED_LINE = "Prepared HR passages"


@dataclass(frozen=True)
class Sizes:
    """How much work each benchmark does."""

    e2e_questions: int
    e2e_rounds: int
    """Times the questions are asked in order; the ratio is the median over all of them."""
    burst_events: int
    burst_model_every: int
    """Every n-th burst event is an HR question for the model; the others are ``help``."""
    concurrency_questions: int
    retrieval_chunks: tuple[int, int]
    retrieval_repeats: int
    ingest_chunks: int
    startup_runs: int
    rss_questions: int


FULL = Sizes(
    e2e_questions=20,
    e2e_rounds=2,
    burst_events=200,
    burst_model_every=20,
    concurrency_questions=50,
    retrieval_chunks=(10_000, 100_000),
    retrieval_repeats=2,
    ingest_chunks=3_000,
    startup_runs=3,
    rss_questions=5,
)
QUICK = Sizes(
    e2e_questions=5,
    e2e_rounds=1,
    burst_events=40,
    burst_model_every=10,
    concurrency_questions=10,
    retrieval_chunks=(2_000, 5_000),
    retrieval_repeats=1,
    ingest_chunks=400,
    startup_runs=2,
    rss_questions=3,
)


def load_questions() -> list[dict[str, Any]]:
    with QUESTIONS_PATH.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def summarise_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Percentiles (linear interpolation) of durations given in seconds, in milliseconds."""
    values = np.asarray(seconds, dtype=float) * 1000
    if values.size == 0:
        return {"n": 0}
    return {
        "n": int(values.size),
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "mean_ms": round(float(values.mean()), 2),
    }


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
                break
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def chatops_command() -> list[str]:
    """The installed ``chatops`` console script next to this interpreter, or ``python -m bot.cli``."""
    script = Path(sys.executable).with_name("chatops")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "bot.cli"]


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    seconds: float
    stdout: str
    stderr: str


async def run_chatops(args: Sequence[str], env: dict[str, str], *, timeout: float = 1800) -> CommandResult:
    """Run ``chatops ARGS`` to completion in a thread, so that the event loop keeps serving."""

    def run() -> CommandResult:
        started = time.perf_counter()
        completed = subprocess.run(
            [*chatops_command(), *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
        )
        return CommandResult(completed.returncode, time.perf_counter() - started, completed.stdout, completed.stderr)

    return await asyncio.to_thread(run)


class EventFactory:
    """Signed ``app_mention`` events with a message timestamp unique within this process."""

    # Shared by all factories, because the bots of all benchmarks post to one fake Slack Web API.
    _counter = itertools.count(1)
    # Eleven days in the past, so that no event ts equals the ts of a message the fake posts now.
    _base = int(time.time()) - 1_000_000

    def next(self, text: str) -> tuple[str, str, dict[str, str]]:
        """Return (message ts, body, headers) for one signed event asking ``text``."""
        ts = f"{self._base}.{next(self._counter):06d}"
        payload = app_mention_payload(text, event_id=f"Ev{uuid.uuid4().hex[:16].upper()}", ts=ts)
        body = json.dumps(payload)
        return ts, body, signed_headers(body, SIGNING_SECRET)


def event_key_of(ts: str) -> str:
    # Same key as bot.channels.slack.convert.event_key for app_mention_payload's defaults.
    return f"slack:T0TEST001:C0TEST001:{ts}"


class EventPoster:
    """Posts pre-signed events to ``/slack/events`` over one connection pool and times each."""

    def __init__(self, bot_url: str) -> None:
        self.url = f"{bot_url}/slack/events"
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EventPoster:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, float, float]:
        """Return (HTTP status, monotonic start, seconds until the acknowledgement was read)."""
        assert self._session is not None
        started = time.monotonic()
        async with self._session.post(self.url, data=body, headers=headers) as response:
            await response.read()
            return response.status, started, time.monotonic() - started


def answers_by_thread(slack: FakeSlackApi) -> dict[str, list[RecordedCall]]:
    """Calls that put answer text into each thread, oldest first.

    An answer arrives either as a ``chat.postMessage`` in the thread, or as a
    ``chat.update`` of the progress placeholder that the bot posts when an
    answer takes a while. Posts of the placeholder itself are left out.
    """
    answers: dict[str, list[RecordedCall]] = {}
    for call in slack.calls:
        thread_ts = None
        if call.method == "chat.postMessage" and call.params.get("text") != PLACEHOLDER_TEXT:
            thread_ts = call.params.get("thread_ts")
        elif call.method == "chat.update":
            edited = slack.messages.get((str(call.params.get("channel")), str(call.params.get("ts"))), {})
            thread_ts = edited.get("thread_ts")
        if thread_ts:
            answers.setdefault(str(thread_ts), []).append(call)
    return answers


async def wait_for_replies(slack: FakeSlackApi, thread_ts: Iterable[str], *, timeout: float) -> dict[str, list[RecordedCall]]:
    """Wait until every thread in ``thread_ts`` has an answer or ``timeout`` seconds pass."""
    expected = set(thread_ts)
    # Woken by each call the fake receives, not by polling: a polling loop here
    # would take CPU from the bot's model while the raw side runs undisturbed.
    try:
        await slack.wait_until(lambda: expected <= answers_by_thread(slack).keys(), timeout)
    except TimeoutError:
        pass
    answers = answers_by_thread(slack)
    return {ts: answers.get(ts, []) for ts in expected}


def query(urls: DatabaseUrls, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


def answers_for(urls: DatabaseUrls, event_keys: Sequence[str]) -> dict[str, list[tuple]]:
    """Stored assistant rows per event key: (answer_path, delivery_status, prompt_tokens, completion_tokens)."""
    rows = query(
        urls,
        "SELECT event_key, answer_path, delivery_status, prompt_tokens, completion_tokens "
        "FROM messages WHERE role = 'assistant' AND event_key = ANY(%s)",
        (list(event_keys),),
    )
    found: dict[str, list[tuple]] = {key: [] for key in event_keys}
    for key, *values in rows:
        found[key].append(tuple(values))
    return found


async def wait_delivered(urls: DatabaseUrls, event_key: str, *, timeout: float = 30.0) -> None:
    """Wait until the answer to ``event_key`` is marked posted, so that the worker is idle again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await asyncio.to_thread(
            query,
            urls,
            "SELECT 1 FROM messages WHERE role = 'assistant' AND event_key = %s AND delivery_status = 'posted'",
            (event_key,),
        )
        if rows:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"answer to {event_key} was not marked posted within {timeout:.0f} s")


async def wait_prepared(process: BotProcess, *, timeout: float = 600.0) -> None:
    """Wait until the worker has prepared the HR skill, as it does in the background after start-up.

    The benchmarks measure a bot in its steady state; a question asked during the
    preparation would share the CPU with it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if PREPARED_LINE in process.log_path.read_text(errors="replace"):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the worker did not prepare the HR skill within {timeout:.0f} s:\n{process.log()}")


@dataclass
class AnswerBot:
    """A ``chatops serve`` process on an indexed database, replying to the fake Slack Web API."""

    process: BotProcess
    urls: DatabaseUrls
    env: dict[str, str]
    slack: FakeSlackApi
    events: EventFactory = field(default_factory=EventFactory)
    poster: EventPoster | None = None

    async def aclose(self) -> None:
        if self.poster is not None:
            await self.poster.__aexit__(None, None, None)
            self.poster = None

    async def ask(self, text: str, *, timeout: float = 120.0) -> tuple[str, float]:
        """Ask one question and wait for its answer; return (ts, seconds from POST to the answer's arrival).

        The questions share one keep-alive connection, as Slack's deliveries to an
        app do, so that opening a connection is not counted as the bot's time.
        """
        ts, body, headers = self.events.next(text)
        if self.poster is None:
            self.poster = await EventPoster(self.process.url).__aenter__()
        status, started, _ = await self.poster.post(body, headers)
        if status != 200:
            raise RuntimeError(f"event for {ts} got HTTP {status}:\n{self.process.log()}")
        replies = await wait_for_replies(self.slack, [ts], timeout=timeout)
        if not replies[ts]:
            raise TimeoutError(f"no reply to {ts} within {timeout:.0f} s:\n{self.process.log()}")
        return ts, replies[ts][0].at - started


class BenchContext:
    """Resources that several benchmarks share, created on first use and closed once."""

    def __init__(self, root: Path, sizes: Sizes) -> None:
        self.root = root
        self.sizes = sizes
        self._server = None
        self._slack: FakeSlackApi | None = None
        self._answer_bot: AnswerBot | None = None

    @property
    def pg_server(self):
        if self._server is None:
            # With the bot's settings, as ``chatops serve`` starts its embedded server.
            self._server = embedded_server(self.root / "pg", cleanup_mode="delete")
        return self._server

    def create_database(self, name: str) -> DatabaseUrls:
        """Create and migrate a new database on the shared embedded server."""
        with psycopg.connect(self.pg_server.get_uri(database="postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        urls = database_urls(self.pg_server.get_uri(database=name))
        migrate.upgrade(urls)
        return urls

    async def slack(self) -> FakeSlackApi:
        if self._slack is None:
            self._slack = await FakeSlackApi().start()
        return self._slack

    def bot_env(self, *, database_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
        assert self._slack is not None, "start the fake Slack Web API first"
        return bot_env(database_url=database_url, slack_api_url=self._slack.api_url, data_dir=data_dir, **overrides)

    async def answer_bot(self) -> AnswerBot:
        """The bot that answers questions, on a database with the sample handbook indexed."""
        if self._answer_bot is not None:
            return self._answer_bot
        slack = await self.slack()
        urls = await asyncio.to_thread(self.create_database, "bench_answers")
        data_dir = self.root / "answer-bot"
        data_dir.mkdir()
        env = self.bot_env(database_url=urls.libpq, data_dir=data_dir)
        await index_handbook(env)
        process = BotProcess(env=env, port=free_port(), log_path=data_dir / "serve.log")
        await process.start(timeout=120)
        await wait_prepared(process)
        self._answer_bot = AnswerBot(process=process, urls=urls, env=env, slack=slack)
        return self._answer_bot

    async def close_answer_bot(self) -> None:
        """Stop the bot of ``answer_bot``, if it was started."""
        if self._answer_bot is not None:
            await self._answer_bot.aclose()
            await self._answer_bot.process.stop()
            self._answer_bot = None

    async def aclose(self) -> None:
        await self.close_answer_bot()
        if self._slack is not None:
            await self._slack.stop()
        if self._server is not None:
            self._server.cleanup()


async def index_handbook(env: dict[str, str]) -> CommandResult:
    """Index the sample handbook with ``chatops sources add``, as ``make run`` does.

    The command exits with 1 when it skips a file type it cannot read yet, so
    success means that at least one source was added.
    """
    result = await run_chatops(["sources", "add", str(HANDBOOK_DIR)], env)
    if "added" not in result.stdout:
        raise RuntimeError(f"chatops sources add indexed nothing:\n{result.stdout}\n{result.stderr}")
    return result


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
