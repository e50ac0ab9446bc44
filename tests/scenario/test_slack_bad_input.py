"""Malformed or unverified requests to the Slack endpoint get 4xx and create no work."""

from __future__ import annotations

import json
import time

import aiohttp
import psycopg
import pytest

from bot.channels.slack.testing import FakeSlackApi, app_mention_payload, event_callback, signed_headers
from tests.support import SIGNING_SECRET, BotProcess, bot_env, free_port


@pytest.fixture(scope="module")
async def fake_slack():
    slack = await FakeSlackApi().start()
    yield slack
    await slack.stop()


@pytest.fixture(scope="module")
async def bot(db_urls, fake_slack, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("bad-input")
    process = BotProcess(
        env=bot_env(database_url=db_urls.libpq, slack_api_url=fake_slack.api_url, data_dir=data_dir),
        port=free_port(),
        log_path=data_dir / "serve.log",
        args=["--no-worker"],
    )
    await process.start()
    yield process
    await process.stop()


async def send(bot: BotProcess, body: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}/slack/events", data=body.encode(), headers=headers) as response:
            return response.status


@pytest.mark.parametrize(
    ("case", "body"),
    [
        ("not json", "{this is not json"),
        ("json array", "[1, 2, 3]"),
        ("event without fields", '{"type": "event_callback", "event": {}}'),
        ("event of wrong type", '{"type": "event_callback", "event": "text"}'),
        ("unknown envelope", '{"type": "something_else"}'),
    ],
)
async def test_signed_malformed_body_not_5xx(bot, db_urls, case, body):
    status = await send(bot, body, signed_headers(body, SIGNING_SECRET))

    assert 200 <= status < 500, f"{case}: HTTP {status}\n{bot.log()}"
    with psycopg.connect(db_urls.libpq) as conn:
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no signature headers", {"Content-Type": "application/json"}),
        ("timestamp not a number", {"Content-Type": "application/json", "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}),
        ("signature of other body", None),
    ],
)
async def test_unsigned_request_gets_401(bot, case, headers):
    body = '{"type": "event_callback", "event": {"type": "app_mention", "user": "U1", "text": "hi", "ts": "1.1", "channel": "C1"}}'
    if headers is None:
        headers = signed_headers('{"other": true}', SIGNING_SECRET, timestamp=int(time.time()))

    assert await send(bot, body, headers) == 401


async def test_oversized_body_rejected(bot):
    body = '{"type": "event_callback", "padding": "' + "x" * (3 * 1024 * 1024) + '"}'

    status = await send(bot, body, signed_headers(body, SIGNING_SECRET))

    assert status == 413


MALFORMED_MESSAGE_EVENTS = [
    ("text is a number", {"type": "message", "channel_type": "im", "user": "U0EMPLOYEE1", "text": 42, "ts": "1710000001.000001", "channel": "D0BAD"}),
    ("user is a list", {"type": "message", "channel_type": "im", "user": ["U1"], "text": "hi", "ts": "1710000001.000002", "channel": "D0BAD"}),
    ("no channel", {"type": "app_mention", "user": "U0EMPLOYEE1", "text": "<@UBOT0001> hi", "ts": "1710000001.000003"}),
    ("ts is a number", {"type": "app_mention", "user": "U0EMPLOYEE1", "text": "<@UBOT0001> hi", "ts": 1710000001.4, "channel": "C0BAD"}),
    ("thread_ts is an object", {"type": "message", "channel_type": "channel", "user": "U0EMPLOYEE1", "text": "hi", "ts": "1710000001.000005", "thread_ts": {"a": 1}, "channel": "C0BAD"}),
    ("channel_type is a number", {"type": "message", "channel_type": 7, "user": "U0EMPLOYEE1", "text": "hi", "ts": "1710000001.000006", "channel": "D0BAD"}),
    ("subtype is a number", {"type": "message", "subtype": 3, "channel_type": "im", "user": "U0EMPLOYEE1", "text": "hi", "ts": "1710000001.000007", "channel": "D0BAD"}),
    ("edit without message", {"type": "message", "subtype": "message_changed", "channel_type": "im", "ts": "1710000001.000008", "channel": "D0BAD"}),
    ("files is a string", {"type": "message", "subtype": "file_share", "channel_type": "im", "user": "U0EMPLOYEE1", "text": "", "files": "x", "ts": "1710000001.000009", "channel": "D0BAD"}),
    ("channel is a number", {"type": "message", "channel_type": "im", "user": "U0EMPLOYEE1", "text": "hi", "ts": "1710000001.000010", "channel": 5}),
]


async def test_malformed_events_on_fast_path_not_5xx(bot):
    # A valid event first: after it, message events skip Bolt, so these exercise that path.
    first = app_mention_payload("help", event_id="Ev0BADFIRST", ts="1710000000.000001")
    body = json.dumps(first)
    assert await send(bot, body, signed_headers(body, SIGNING_SECRET)) == 200

    statuses = {}
    for index, (case, event) in enumerate(MALFORMED_MESSAGE_EVENTS):
        body = json.dumps(event_callback(event, event_id=f"Ev0BAD{index:04d}"))
        statuses[case] = await send(bot, body, signed_headers(body, SIGNING_SECRET))

    assert {case: status for case, status in statuses.items() if not 200 <= status < 500} == {}, bot.log()
