"""Start-up and memory: seconds until ``chatops serve`` responds to ``/healthz``, and its peak RSS.

The bot runs as a deployment without DATABASE_URL would: with the embedded
PostgreSQL server in its data folder. ``chatops sources add`` initialises that
folder first (initdb, migrations, the sample handbook) and stops the server when
it exits. Each timed start therefore begins with an initialised data folder, the
server stopped and the files in the operating system's page cache (a warm start):
it includes starting PostgreSQL, checking migrations and loading the embedding
model and the bundled chat model. The clock runs from spawning the process until
the first HTTP 200 from ``/healthz``, polled every 10 ms.

Memory is the serve process's own resident set (the PostgreSQL server runs in
separate processes): the kernel's high-water mark ``VmHWM``, read after the
last start has answered a few questions, and the maximum of samples taken every
20 ms. MB here means 10^6 bytes.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from tests.bench.bench_e2e import pick_questions
from tests.bench.harness import (
    BenchContext,
    EventFactory,
    EventPoster,
    chatops_command,
    index_handbook,
    wait_for_replies,
)
from tests.support import BotProcess, free_port

HEALTH_POLL_S = 0.01
START_TIMEOUT_S = 120.0


class RssSampler:
    """Samples a process's resident set size in a thread until stopped."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_bytes

    def high_water_mark_bytes(self) -> int:
        """The kernel's peak resident set size of the process (VmHWM), 0 when unavailable."""
        try:
            with open(f"/proc/{self.process.pid}/status", encoding="utf-8") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, self.process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(self.interval)


async def run(ctx: BenchContext) -> dict[str, Any]:
    slack = await ctx.slack()
    data_dir = ctx.root / "startup"
    env = ctx.bot_env(database_url="", data_dir=data_dir)
    initialised = time.monotonic()
    await index_handbook(env)
    init_s = time.monotonic() - initialised

    starts: list[float] = []
    server_left_running = 0
    high_water = sampled = after_start = 0
    questions = pick_questions(ctx.sizes.rss_questions)
    for index in range(ctx.sizes.startup_runs):
        server_left_running += _postmaster_running(data_dir)
        bot = BotProcess(env=env, port=free_port(), log_path=data_dir / f"serve-{index}.log")
        log = bot.log_path.open("ab")
        started = time.monotonic()
        bot.process = subprocess.Popen(
            [*chatops_command(), "serve", "--host", "127.0.0.1", "--port", str(bot.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sampler = RssSampler(bot.process.pid).start()
        try:
            starts.append(await _wait_healthy(bot) - started)
            if index == ctx.sizes.startup_runs - 1:
                after_start = sampler.process.memory_info().rss
                await _ask_all(bot, slack, questions)
                high_water = sampler.high_water_mark_bytes()
        finally:
            sampled = max(sampled, sampler.stop())
            await bot.stop()
            log.close()
        await _wait_server_stopped(data_dir)

    return {
        "startup_s": round(statistics.median(starts), 2),
        "startup_runs_s": [round(value, 2) for value in starts],
        "startup_mode": "warm: initialised data folder, embedded PostgreSQL stopped, files in the page cache",
        "startup_server_left_running": server_left_running,
        "startup_first_initialisation_s": round(init_s, 1),
        "rss_mb": round(max(high_water, sampled) / 1e6, 1),
        "rss_after_start_mb": round(after_start / 1e6, 1),
        "rss_high_water_mb": round(high_water / 1e6, 1),
        "rss_sampled_peak_mb": round(sampled / 1e6, 1),
        "rss_questions_answered": len(questions),
    }


async def _wait_healthy(bot: BotProcess) -> float:
    """Poll /healthz until HTTP 200; return the monotonic time it came."""
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if bot.process.poll() is not None:
                raise RuntimeError(f"chatops serve exited with {bot.process.returncode}:\n{bot.log()}")
            try:
                async with session.get(f"{bot.url}/healthz") as response:
                    if response.status == 200:
                        return time.monotonic()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(HEALTH_POLL_S)
    raise TimeoutError(f"chatops serve did not answer /healthz within {START_TIMEOUT_S:.0f} s:\n{bot.log()}")


async def _ask_all(bot: BotProcess, slack, questions: list[str]) -> None:
    events = EventFactory()
    async with EventPoster(bot.url) as poster:
        for question in questions:
            ts, body, headers = events.next(question)
            await poster.post(body, headers)
            replies = await wait_for_replies(slack, [ts], timeout=120)
            if not replies[ts]:
                raise TimeoutError(f"no reply to {ts} within 120 s:\n{bot.log()}")


def _postmaster_running(data_dir: Path) -> bool:
    return (data_dir / "postgres" / "postmaster.pid").exists()


async def _wait_server_stopped(data_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while _postmaster_running(data_dir) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
