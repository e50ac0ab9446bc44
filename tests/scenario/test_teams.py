"""Teams activities through ``chatops serve``: token checks, conversations, cards and feedback.

The Bot Framework around the bot is replaced by local stand-ins: signing keys
and OpenID metadata from FakeIdentityProvider, and a FakeBotConnector behind
every activity's serviceUrl that records what the bot posts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest

from bot.channels.teams.cards import assert_submit_data_are_objects
from bot.channels.teams.testing import (
    FakeBotConnector,
    FakeIdentityProvider,
    PostedActivity,
    message_activity,
    new_signing_key,
)
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.scenario.teams_support import APP_ID, bearer, post_activity, query, teams_env
from tests.support import BotProcess, free_port

pytestmark = pytest.mark.model

# Teams sends an activity again when it has no response after about 15 s; acknowledgements stay far below.
ACK_BOUND_S = 5.0
SICK_DAYS_QUESTION = "ask How many paid sick days do I get in Austin?"


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    await SourceStore(db, get_embedder()).add_file(HANDBOOK_DIR / "sick-leave.md")
    await db.dispose()
    return db_urls


@pytest.fixture(scope="module")
def identity():
    provider = FakeIdentityProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
async def connector():
    fake = await FakeBotConnector().start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def bot(indexed_db, identity, connector, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("teams-bot")
    process = BotProcess(
        env=teams_env(database_url=indexed_db.libpq, identity=identity, data_dir=data_dir),
        port=free_port(),
        log_path=data_dir / "serve.log",
    )
    await process.start()
    yield process
    await process.stop()


def activity(connector: FakeBotConnector, text: str | None, **values) -> dict:
    values.setdefault("service_url", connector.service_url("emea"))
    return message_activity(text, bot_app_id=APP_ID, **values)


async def send(bot, identity, body: dict) -> tuple[int, float, str]:
    return await post_activity(bot.url, body, authorization=bearer(identity, body))


async def wait_until_posted(urls, event_key: str, timeout: float = 10.0) -> str:
    """Return the id of the answer to ``event_key`` once it is marked posted (just after the connector got it)."""
    sql = "SELECT id::text FROM messages WHERE event_key = %s AND role = 'assistant' AND delivery_status = 'posted'"
    deadline = asyncio.get_running_loop().time() + timeout
    while not (rows := query(urls, sql, event_key)):
        assert asyncio.get_running_loop().time() < deadline, f"answer to {event_key} not marked posted"
        await asyncio.sleep(0.1)
    return rows[0][0]


@dataclass(frozen=True)
class Answered:
    status: int
    elapsed_s: float
    answer_id: str
    reply: PostedActivity


@pytest.fixture(scope="module")
async def answered(bot, identity, connector, indexed_db) -> Answered:
    """A question asked with a valid token in a personal chat, and its posted answer."""
    body = activity(connector, SICK_DAYS_QUESTION, activity_id="1700000001001", conversation_id="a:1personal-chat")
    status, elapsed, _ = await send(bot, identity, body)
    [reply] = await connector.wait_for_messages("a:1personal-chat")
    answer_id = await wait_until_posted(indexed_db, "teams:a:1personal-chat:1700000001001")
    return Answered(status=status, elapsed_s=elapsed, answer_id=answer_id, reply=reply)


async def test_valid_token_gets_answer_with_card(identity, answered):
    reply = answered.reply

    assert answered.status == 200
    assert answered.elapsed_s < ACK_BOUND_S
    assert reply.region == "emea"
    assert reply.reply_to_id is None
    assert reply.authorization == f"Bearer {identity.access_token}"
    assert "Sources:" in reply.text
    assert "Sick Leave" in reply.text
    card = reply.card()
    assert card is not None, reply.activity
    assert_submit_data_are_objects(card)
    assert {action["data"]["answer_id"] for action in card["actions"]} == {answered.answer_id}


async def test_typing_shown_before_answer(bot, identity, connector, answered):
    posted = [item for item in connector.posted if item.conversation_id == "a:1personal-chat"]

    assert posted[0].type == "typing"
    assert posted[-1].type == "message"


async def test_outbound_token_from_managed_identity(bot, identity, answered):
    assert identity.token_requests
    request = identity.token_requests[0]
    assert request["resource"] == "https://api.botframework.com"
    assert request["client_id"] == APP_ID
    assert request["identity_header_valid"] is True


TOKEN_CASES = {
    "missing": None,
    "expired": {"expires_in_s": -3600},
    "wrong audience": {"audience": "11111111-0000-4000-8000-000000000bad"},
    "wrong issuer": {"issuer": "https://api.botframework.example"},
    "wrong key": {"key": new_signing_key()},
    "unknown key id": {"key_id": "retired-key"},
    "wrong serviceurl claim": {"service_url": "https://smba.trafficmanager.net/amer/"},
    "not a JWT": "Bearer not-a-token",
    "wrong scheme": "Basic dXNlcjpwYXNz",
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
async def test_invalid_token_rejected(bot, identity, connector, indexed_db, case):
    conversation = f"a:1rejected-{case.replace(' ', '-')}"
    body = activity(connector, "How many sick days?", activity_id="1700000003001", conversation_id=conversation)
    spec = TOKEN_CASES[case]
    if spec is None or isinstance(spec, str):
        authorization = spec
    else:
        authorization = bearer(identity, body, **spec)

    status, _, _ = await post_activity(bot.url, body, authorization=authorization)

    assert status == 401, bot.log()
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", f"teams:{conversation}:%") == [(0,)]
    assert query(indexed_db, "SELECT count(*) FROM conversation_references WHERE conversation_id = %s", conversation) == [(0,)]


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        (json.dumps({"id": "1", "text": "no type"}), "application/json", 400),
        (json.dumps({"type": "message", "entities": "not-a-list"}), "application/json", 400),
        ("type=message", "application/x-www-form-urlencoded", 415),
    ],
)
async def test_malformed_body_rejected(bot, identity, connector, body, content_type, expected):
    authorization = bearer(identity, {"serviceUrl": connector.service_url("emea")})

    status, _, _ = await post_activity(bot.url, None, authorization=authorization, body=body, content_type=content_type)

    assert status == expected


async def test_help_command_lists_skills(bot, identity, connector, indexed_db):
    body = activity(connector, "help", activity_id="1700000004001", conversation_id="a:1help-chat")

    status, _, _ = await send(bot, identity, body)

    assert status == 200
    [reply] = await connector.wait_for_messages("a:1help-chat")
    assert "Here is what I can do" in reply.text
    assert query(
        indexed_db, "SELECT skill FROM messages WHERE event_key = %s AND role = 'assistant'", "teams:a:1help-chat:1700000004001"
    ) == [("help",)]


async def test_group_chat_mentions_cleaned(bot, identity, connector, indexed_db):
    conversation = "19:group-chat-1@thread.v2"
    body = activity(
        connector,
        "<at>HR Helper</at> summarise ticket 4412 for <at>Sam Lee</at>",
        activity_id="1700000005001",
        conversation_id=conversation,
        conversation_type="groupChat",
        entities=[
            {"type": "mention", "mentioned": {"id": f"28:{APP_ID}", "name": "HR Helper"}},
            {"type": "mention", "mentioned": {"id": "29:1sam-lee", "name": "Sam Lee"}, "text": "<at>Sam Lee</at>"},
        ],
    )

    status, _, _ = await send(bot, identity, body)

    assert status == 200
    [reply] = await connector.wait_for_messages(conversation)
    assert reply.reply_to_id is None
    assert query(
        indexed_db, "SELECT text FROM messages WHERE event_key = %s AND role = 'user'", f"teams:{conversation}:1700000005001"
    ) == [("summarise ticket 4412 for Sam Lee",)]


async def test_resent_activity_answered_once(bot, identity, connector, indexed_db):
    conversation = "19:test@thread.tacv2;messageid=1700000000001"
    body = activity(
        connector,
        "<at>HR Helper</at> How many paid sick days do I get in Austin?",
        activity_id="1700000000001",
        conversation_id=conversation,
        conversation_type="channel",
        entities=[{"type": "mention", "mentioned": {"id": f"28:{APP_ID}", "name": "HR Helper"}, "text": "<at>HR Helper</at>"}],
    )

    # Teams re-sends while the answer is being prepared, and once more after it was posted.
    first = await send(bot, identity, body)
    while_answering = [await send(bot, identity, body) for _ in range(2)]
    await connector.wait_for_messages(conversation)
    after_answer = await send(bot, identity, body)
    await asyncio.sleep(2.0)

    responses = [first, *while_answering, after_answer]
    assert [status for status, _, _ in responses] == [200, 200, 200, 200]
    assert max(elapsed for _, elapsed, _ in responses) < ACK_BOUND_S
    replies = connector.messages(conversation)
    assert len(replies) == 1
    assert replies[0].reply_to_id == "1700000000001"
    assert query(
        indexed_db,
        "SELECT role, count(*) FROM messages WHERE event_key = %s GROUP BY role ORDER BY role",
        "teams:19:test@thread.tacv2:1700000000001",
    ) == [("assistant", 1), ("user", 1)]


async def test_channel_thread_reply_goes_to_root(bot, identity, connector):
    conversation = "19:hr-channel@thread.tacv2;messageid=1700000000100"
    body = activity(
        connector,
        "<at>HR Helper</at> help",
        activity_id="1700000000200",
        conversation_id=conversation,
        conversation_type="channel",
        entities=[{"type": "mention", "mentioned": {"id": f"28:{APP_ID}", "name": "HR Helper"}, "text": "<at>HR Helper</at>"}],
    )

    status, _, _ = await send(bot, identity, body)

    assert status == 200
    [reply] = await connector.wait_for_messages(conversation)
    assert reply.reply_to_id == "1700000000100"
    assert not connector.messages("19:hr-channel@thread.tacv2;messageid=1700000000200")


async def test_card_feedback_stored_without_model_call(bot, identity, connector, indexed_db, answered):
    answer_id = answered.answer_id
    submit = activity(
        connector,
        None,
        activity_id="1700000001002",
        conversation_id="a:1personal-chat",
        reply_to_id="posted-reply-id",
        value={"action": "feedback", "answer_id": answer_id, "rating": "down", "comment": "Link is out of date"},
    )

    status, elapsed, _ = await send(bot, identity, submit)

    assert status == 200
    assert elapsed < ACK_BOUND_S
    assert query(
        indexed_db, "SELECT rating, comment, user_id FROM feedback WHERE message_id = %s", answer_id
    ) == [("down", "Link is out of date", "6f1c1a5e-0000-4000-8000-00000000a1ce")]
    # A model call happens only in a job for an accepted event; the submit was neither accepted nor stored.
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", "%:1700000001002") == [(0,)]
    assert query(indexed_db, "SELECT count(*) FROM messages WHERE event_key LIKE %s", "%:1700000001002") == [(0,)]
    confirmation = connector.messages("a:1personal-chat")[-1]
    assert "Thanks for your feedback" in confirmation.text
    assert confirmation.reply_to_id == "1700000001002"


@pytest.mark.parametrize("answer_id", ["ans-77", "0b5a3c2e-0000-4000-8000-000000000000"])
async def test_feedback_for_unknown_answer_not_stored(bot, identity, connector, indexed_db, answer_id):
    conversation = f"a:1unknown-answer-{answer_id}"
    submit = activity(
        connector,
        None,
        activity_id="1700000006001",
        conversation_id=conversation,
        value={"action": "feedback", "answer_id": answer_id, "rating": "down", "comment": "Link is out of date"},
    )
    feedback_before = query(indexed_db, "SELECT count(*) FROM feedback")

    status, _, _ = await send(bot, identity, submit)

    assert status == 200
    assert query(indexed_db, "SELECT count(*) FROM feedback") == feedback_before
    assert query(indexed_db, "SELECT count(*) FROM processed_events WHERE event_key LIKE %s", f"teams:{conversation}:%") == [(0,)]
    [reply] = await connector.wait_for_messages(conversation)
    assert "could not find the answer" in reply.text


async def test_unsupported_invoke_rejected(bot, identity, connector):
    body = activity(connector, None, activity_id="1700000007001", conversation_id="a:1invoke-chat")
    body.update({"type": "invoke", "name": "composeExtension/query", "value": {"commandId": "search"}})

    status, _, text = await send(bot, identity, body)

    assert status == 400
    assert "composeExtension/query" in text
