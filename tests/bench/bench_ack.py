"""Acknowledgement under load: how fast ``/slack/events`` responds while the worker generates.

Three HR questions first keep the in-process worker generating. Once the first of
them shows its progress reaction, the burst goes out: all events at once, each on
its own connection, as Slack would deliver messages that many employees send in
the same moment. The connections are opened and used once before the burst, as
the keep-alive connections of Slack's delivery servers would be. Each request is
written as prepared bytes, and its time runs from writing it to reading the
response. So the benchmark's own client, which shares the CPU with the bot, adds
little to it. The same burst is then sent once more through
an ``aiohttp`` client that opens a new connection for each event, which is the
figure this benchmark reported first. Then the same number of events is sent
again at a steady ``PACED_EVENTS_PER_S``. Slack rate-limits an app that would receive more than
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
from urllib.parse import urlsplit

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
    fresh = [bot.events.next(_burst_text(index, sizes.burst_model_every, questions)) for index in range(sizes.burst_events)]
    paced = [bot.events.next(_burst_text(index, sizes.burst_model_every, questions)) for index in range(sizes.burst_events)]

    connections = await RawConnections.open(bot.process.url, len(burst))
    try:
        async with EventPoster(bot.process.url) as poster:
            for _, body, headers in busy:
                await poster.post(body, headers)
            await _wait_for_progress(bot, busy[0][0])
            burst_started = time.monotonic()
            at_once = await connections.post_all("/slack/events", [(body, headers) for _, body, headers in burst])
            burst_window = max(started + seconds for _, started, seconds in at_once) - burst_started
            # No answer to the first busy question yet means that the model was generating throughout.
            generating_through_burst = _first_reply_at(bot, busy[0][0]) is None
            with_new_connections = await asyncio.gather(*(poster.post(body, headers) for _, body, headers in fresh))
            spaced = await _post_paced(poster, paced, interval=1.0 / PACED_EVENTS_PER_S)
    finally:
        await connections.close()

    check = await check_exactly_once(bot, [ts for ts, _, _ in busy + burst + fresh + paced], timeout=REPLY_TIMEOUT_S)
    at_once_stats = summarise_ms([seconds for _, _, seconds in at_once])
    new_connection_stats = summarise_ms([seconds for _, _, seconds in with_new_connections])
    paced_stats = summarise_ms([seconds for _, _, seconds in spaced])
    return {
        "ack_p99_ms": at_once_stats.get("p99_ms"),
        "ack_new_connections_p99_ms": new_connection_stats.get("p99_ms"),
        "ack_paced_p99_ms": paced_stats.get("p99_ms"),
        "ack_burst": at_once_stats,
        "ack_burst_window_ms": round(burst_window * 1000, 1),
        "ack_burst_new_connections": new_connection_stats,
        "ack_paced": paced_stats,
        "ack_paced_events_per_s": PACED_EVENTS_PER_S,
        "ack_non_200": sum(status != 200 for status, _, _ in at_once + with_new_connections + spaced),
        "ack_worker_generating_through_burst": generating_through_burst,
        "ack_model_questions_per_burst": len(range(0, sizes.burst_events, sizes.burst_model_every)),
        "ack_delivery": check,
        "ack_each_answered_once": answered_once(check),
    }


class RawConnections:
    """Open keep-alive HTTP/1.1 connections that send prepared requests, one per connection."""

    def __init__(self, host: str, port: int, streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
        self.host = host
        self.port = port
        self.streams = streams

    @classmethod
    async def open(cls, base_url: str, count: int) -> RawConnections:
        url = urlsplit(base_url)
        streams = [await asyncio.open_connection(url.hostname, url.port) for _ in range(count)]
        connections = cls(url.hostname, url.port, streams)
        # One request on each connection first, so the server has accepted them all.
        warm_up = [(reader, writer, connections._request("GET", "/healthz", b"", {})) for reader, writer in streams]
        for _, writer, request in warm_up:
            writer.write(request)
        for reader, _, _ in warm_up:
            status = await _read_response(reader)
            if status != 200:
                raise RuntimeError(f"/healthz answered {status} while opening connections")
        return connections

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body

    async def post_all(self, path: str, events: list[tuple[str, dict[str, str]]]) -> list[tuple[int, float, float]]:
        """Write one event to each connection, then read every response.

        Returns (HTTP status, monotonic start, seconds from the write until the
        response was read) per event, in order.
        """
        requests = [
            self._request("POST", path, body.encode("utf-8"), {"Content-Type": "application/json", **headers})
            for body, headers in events
        ]
        started: list[float] = []
        for (_, writer), request in zip(self.streams, requests):
            started.append(time.monotonic())
            writer.write(request)

        async def read(index: int) -> tuple[int, float, float]:
            status = await _read_response(self.streams[index][0])
            return status, started[index], time.monotonic() - started[index]

        return await asyncio.gather(*(read(index) for index in range(len(requests))))

    async def close(self) -> None:
        for _, writer in self.streams:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for _, writer in self.streams), return_exceptions=True)


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response with a Content-Length body; return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
    await reader.readexactly(length)
    return status


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
