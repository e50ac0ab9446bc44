"""Socket Mode: ``chatops serve`` with SLACK_APP_TOKEN connects out to a fake Slack WebSocket on 127.0.0.1.

The fake Web API's ``apps.connections.open`` returns the fake's WebSocket
address; envelopes sent over it reach the same listeners as HTTP requests.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psycopg
import pytest

from bot.channels.slack.app import create_bolt_app
from bot.channels.slack.blocks import ACTION_HELPFUL
from bot.channels.slack.client import close_web_client, create_web_client
from bot.channels.slack.commands import WORKING
from bot.channels.slack.socket_mode import connect_socket_mode
from bot.channels.slack.testing import (
    FakeSlackApi,
    app_mention_payload,
    block_action_payload,
    signed_headers,
    slash_command_fields,
)
from bot.errors import ConfigError
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.support import BOT_TOKEN, SIGNING_SECRET, BotProcess, bot_env, free_port

pytestmark = pytest.mark.model

APP_TOKEN = "xapp-1-A0TEST001-1234567890-socketmodetest"
CHANNEL = "C0TEST001"
ACK_LIMIT_S = 3.0


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    await SourceStore(db, get_embedder()).add_file(HANDBOOK_DIR / "sick-leave.md")
    await db.dispose()
    return db_urls


@pytest.fixture(scope="module")
async def fake_slack():
    slack = await FakeSlackApi(bot_token=BOT_TOKEN).start()
    yield slack
    await slack.stop()


@pytest.fixture(scope="module")
async def bot(indexed_db, fake_slack, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("socket-mode")
    env = bot_env(
        database_url=indexed_db.libpq,
        slack_api_url=fake_slack.api_url,
        data_dir=data_dir,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_SIGNING_SECRET="",
        CHATOPS_MAX_ANSWER_TOKENS="48",
    )
    process = BotProcess(env=env, port=free_port(), log_path=data_dir / "serve.log")
    await process.start()
    await fake_slack.wait_for_connection()
    yield process
    await process.stop()


def query(urls, sql: str, *params):
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()


async def send_and_time_ack(slack: FakeSlackApi, kind: str, payload: dict, *, envelope_id: str | None = None, retry_attempt: int = 0):
    """Send one envelope and return (envelope id, seconds until its acknowledgement, the acknowledgement)."""
    acked_before = len(slack.acks_for(envelope_id)) if envelope_id else 0
    started = time.monotonic()
    envelope_id = await slack.send_envelope(kind, payload, envelope_id=envelope_id, retry_attempt=retry_attempt)
    await slack.wait_until(lambda: len(slack.acks_for(envelope_id)) > acked_before, 30)
    ack = slack.acks_for(envelope_id)[acked_before]
    return envelope_id, ack.at - started, ack


async def test_connects_with_app_token(bot, fake_slack):
    [call] = fake_slack.calls_to("apps.connections.open")

    assert call.headers["authorization-present"] == "True"
    assert "connected in Socket Mode" in bot.log()


async def test_same_envelope_twice_answered_once(bot, fake_slack, indexed_db):
    ts = "1700003000.000100"
    payload = app_mention_payload("what is the notice period?", event_id="Ev0TEST0001", ts=ts)

    envelope_id, first_ack_s, _ = await send_and_time_ack(fake_slack, "events_api", payload)
    await fake_slack.wait_until(lambda: any(c.params.get("timestamp") == ts for c in fake_slack.calls_to("reactions.add")), 60)
    _, second_ack_s, _ = await send_and_time_ack(fake_slack, "events_api", payload, envelope_id=envelope_id, retry_attempt=1)
    await fake_slack.wait_for_answers(CHANNEL, ts, timeout=180)
    await asyncio.sleep(2.0)

    assert first_ack_s < ACK_LIMIT_S
    assert second_ack_s < ACK_LIMIT_S
    assert len(fake_slack.answers(CHANNEL, ts)) == 1
    assert len([c for c in fake_slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]) == 1
    rows = query(indexed_db, "SELECT role, count(*) FROM messages WHERE event_key = %s GROUP BY role ORDER BY role", f"slack:T0TEST001:{CHANNEL}:{ts}")
    assert rows == [("assistant", 1), ("user", 1)]


async def test_slash_command_over_socket(bot, fake_slack, indexed_db):
    response_url = fake_slack.response_url()
    fields = slash_command_fields("/chatops", "help", response_url=response_url)

    _, ack_s, ack = await send_and_time_ack(fake_slack, "slash_commands", fields)
    await fake_slack.wait_until(lambda: bool(fake_slack.responses(response_url)), 60)

    assert ack_s < ACK_LIMIT_S
    assert ack.payload == {"text": WORKING}
    [answer] = fake_slack.responses(response_url)
    assert "Here is what I can do" in answer.params["text"]


async def test_feedback_click_over_socket(bot, fake_slack, indexed_db):
    response_url = fake_slack.response_url()
    await send_and_time_ack(fake_slack, "slash_commands", slash_command_fields("/chatops", "", response_url=response_url))
    await fake_slack.wait_until(lambda: bool(fake_slack.responses(response_url)), 60)
    answer_id = fake_slack.responses(response_url)[0].params["blocks"][-1]["elements"][0]["value"]
    click = block_action_payload(ACTION_HELPFUL, answer_id, message_ts="1700003100.000100", response_url=fake_slack.response_url(), ephemeral=True)

    _, ack_s, _ = await send_and_time_ack(fake_slack, "interactive", click)

    assert ack_s < ACK_LIMIT_S
    assert query(indexed_db, "SELECT rating FROM feedback WHERE message_id = %s", answer_id) == [("up",)]


async def test_http_endpoint_absent_without_signing_secret(bot):
    body = '{"type": "url_verification", "challenge": "x"}'
    headers = signed_headers(body, SIGNING_SECRET)

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot.url}/slack/events", data=body, headers=headers) as response:
            status = response.status

    assert status == 404


async def test_rejected_app_token_stops_start(indexed_db):
    slack = await FakeSlackApi(bot_token=BOT_TOKEN).start()
    slack.errors["apps.connections.open"] = ["invalid_auth"]
    db = Database(indexed_db)
    client = create_web_client(BOT_TOKEN, slack.api_url, keep_alive=False)
    try:
        with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
            await connect_socket_mode(create_bolt_app(signing_secret=None, client=client, db=db), app_token=APP_TOKEN, client=client)
    finally:
        await close_web_client(client)
        await db.dispose()
        await slack.stop()
