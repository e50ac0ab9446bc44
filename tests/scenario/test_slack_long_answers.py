"""Long answers through the real Slack client: ordered parts, HTTP 429, resuming after a failure.

The client talks to the fake Slack Web API over HTTP on 127.0.0.1 and records
delivered parts in the real database.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from slack_sdk.errors import SlackApiError

from bot.channels.slack.client import PLACEHOLDER_TEXT, SlackChannelClient, create_web_client, render_parts
from bot.channels.slack.testing import FakeSlackApi
from bot.core.message import IncomingMessage, Reply
from bot.core.roles import RoleDirectory
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.support import BOT_TOKEN
from tests.unit.test_slack_format import FAMILY, FLAG, THUMB_MEDIUM, long_answer

CHANNEL = "C0LONG001"


@pytest.fixture(scope="module")
async def database(db_urls):
    db = Database(db_urls)
    yield db
    await db.dispose()


@pytest.fixture
async def fake_slack():
    slack = await FakeSlackApi(bot_token=BOT_TOKEN).start()
    yield slack
    await slack.stop()


_clients: list[SlackChannelClient] = []


@pytest.fixture(autouse=True)
async def close_clients():
    yield
    while _clients:
        await _clients.pop().aclose()


def make_client(slack: FakeSlackApi, database: Database, *, placeholder_after_s: float = 1.5) -> SlackChannelClient:
    client = SlackChannelClient(create_web_client(BOT_TOKEN, slack.api_url), placeholder_after_s=placeholder_after_s)
    client.attach(db=database, sources=SourceStore(database, get_embedder()), roles=RoleDirectory())
    _clients.append(client)
    return client


def question(thread_ts: str) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        event_key=f"slack:T0TEST001:{CHANNEL}:{thread_ts}",
        channel_id=CHANNEL,
        thread_key=thread_ts,
        user_id="U0EMPLOYEE1",
        text="Explain the carer leave rules in full",
        message_id=thread_ts,
        channel_type="channel",
    )


def posts(slack: FakeSlackApi, thread_ts: str) -> list:
    return [call for call in slack.calls_to("chat.postMessage") if call.params.get("thread_ts") == thread_ts]


async def test_answer_calls_share_one_connection(fake_slack, database):
    message = question("1700002000.000100")
    client = make_client(fake_slack, database)

    await client.show_progress(message)
    await client.send_reply(message, Reply("Carers get five days a year.", answer_id=str(uuid.uuid4())))

    methods = [call.method for call in fake_slack.calls]
    assert methods == ["reactions.add", "chat.postMessage", "reactions.remove"]
    assert len({call.peer for call in fake_slack.calls}) == 1


async def test_long_answer_three_parts_despite_429(fake_slack, database):
    thread_ts = "1700000500.000100"
    answer_id = str(uuid.uuid4())
    expected = render_parts(long_answer(), answer_id)
    fake_slack.rate_limits["chat.postMessage"] = [None, 7]

    first_id = await make_client(fake_slack, database).send_reply(question(thread_ts), Reply(long_answer(), answer_id=answer_id))

    posted = posts(fake_slack, thread_ts)
    assert len(expected) == 3
    assert [call.params["text"] for call in posted] == [text for text, _ in expected]
    assert first_id == fake_slack.bot_messages(CHANNEL, thread_ts)[0]["ts"]
    [limited] = fake_slack.calls_to("chat.postMessage:rate_limited")
    assert limited.params["text"] == expected[1][0]
    assert posted[1].at - limited.at >= 7.0
    assert limited.at > posted[0].at


async def test_long_answer_parts_keep_fence_and_emoji(fake_slack, database):
    thread_ts = "1700000600.000100"
    text = long_answer()

    await make_client(fake_slack, database).send_reply(question(thread_ts), Reply(text, answer_id=str(uuid.uuid4())))

    parts = [message["text"] for message in fake_slack.bot_messages(CHANNEL, thread_ts)]
    assert len(parts) == 3
    assert "```" not in parts[0]
    assert parts[1].startswith("```\n")
    assert parts[1].endswith("\n```")
    assert parts[2].startswith("```\n")
    joined = "".join(parts)
    for emoji in (FAMILY, FLAG, THUMB_MEDIUM):
        assert joined.count(emoji) == text.count(emoji)


async def test_feedback_buttons_on_last_part_only(fake_slack, database):
    thread_ts = "1700000700.000100"
    answer_id = str(uuid.uuid4())

    await make_client(fake_slack, database).send_reply(question(thread_ts), Reply(long_answer(), answer_id=answer_id))

    messages = fake_slack.bot_messages(CHANNEL, thread_ts)
    assert [message.get("blocks") for message in messages[:-1]] == [None, None]
    actions = [block for block in messages[-1]["blocks"] if block["type"] == "actions"]
    assert [element["value"] for element in actions[0]["elements"]] == [answer_id, answer_id]
    assert all(len(block["text"]["text"]) <= 3000 for block in messages[-1]["blocks"] if block["type"] == "section")


async def test_retried_delivery_resumes_after_posted_part(fake_slack, database):
    thread_ts = "1700000800.000100"
    reply = Reply(long_answer(), answer_id=str(uuid.uuid4()))
    expected = [text for text, _ in render_parts(reply.text, reply.answer_id)]
    fake_slack.errors["chat.postMessage"] = [None, "internal_error"]

    with pytest.raises(SlackApiError):
        await make_client(fake_slack, database).send_reply(question(thread_ts), reply)
    # A new client stands for the worker that runs the retried job after a crash.
    await make_client(fake_slack, database).send_reply(question(thread_ts), reply)

    sent = [call.params["text"] for call in posts(fake_slack, thread_ts)]
    assert sent == [expected[0], expected[1], expected[1], expected[2]]
    assert [message["text"] for message in fake_slack.bot_messages(CHANNEL, thread_ts)] == expected


async def test_placeholder_replaced_by_answer(fake_slack, database):
    thread_ts = "1700000900.000100"
    client = make_client(fake_slack, database, placeholder_after_s=0)
    message = question(thread_ts)

    await client.show_progress(message)
    await fake_slack.wait_for("chat.postMessage")
    await asyncio.sleep(0.2)
    await client.send_reply(message, Reply("Ten carer days a year [1].", answer_id=str(uuid.uuid4())))

    [placeholder_post] = posts(fake_slack, thread_ts)
    assert placeholder_post.params["text"] == PLACEHOLDER_TEXT
    [update] = fake_slack.calls_to("chat.update")
    assert update.params["text"] == "Ten carer days a year [1]."
    assert [m["text"] for m in fake_slack.bot_messages(CHANNEL, thread_ts)] == ["Ten carer days a year [1]."]
    assert [c.params["name"] for c in fake_slack.calls_to("reactions.add")] == ["eyes"]
    assert [c.params["name"] for c in fake_slack.calls_to("reactions.remove")] == ["eyes"]


async def test_fast_answer_posts_no_placeholder(fake_slack, database):
    thread_ts = "1700001000.000100"
    client = make_client(fake_slack, database, placeholder_after_s=30)
    message = question(thread_ts)

    await client.show_progress(message)
    await client.send_reply(message, Reply("Ten carer days a year.", answer_id=str(uuid.uuid4())))

    assert [call.params["text"] for call in posts(fake_slack, thread_ts)] == ["Ten carer days a year."]
    assert fake_slack.calls_to("chat.update") == []
