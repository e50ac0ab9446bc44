"""Proactive Teams posts from the stored conversation reference, across a restart of the bot."""

from __future__ import annotations

import pytest

from bot.channels.teams.testing import FakeBotConnector, FakeIdentityProvider, message_activity
from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import SourceStore
from bot.storage.database import Database
from tests.conftest import HANDBOOK_DIR
from tests.scenario.teams_support import APP_ID, bearer, post_activity, query, teams_env
from tests.support import BotProcess, free_port

pytestmark = pytest.mark.model

CONVERSATION = "a:1restart-chat"


@pytest.fixture(scope="module")
async def indexed_db(db_urls):
    db = Database(db_urls)
    await SourceStore(db, get_embedder()).add_file(HANDBOOK_DIR / "sick-leave.md")
    await db.dispose()
    return db_urls


@pytest.fixture
def identity():
    provider = FakeIdentityProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
async def connector():
    fake = await FakeBotConnector().start()
    yield fake
    await fake.stop()


def stored_service_url(urls) -> list[tuple]:
    return query(urls, "SELECT service_url FROM conversation_references WHERE platform = 'teams' AND conversation_id = %s", CONVERSATION)


async def test_answer_after_restart_uses_stored_reference(indexed_db, identity, connector, tmp_path):
    env = teams_env(database_url=indexed_db.libpq, identity=identity, data_dir=tmp_path)
    emea = connector.service_url("emea")
    question = message_activity(
        "How many paid sick days do I get in Austin?",
        activity_id="1700000009001",
        conversation_id=CONVERSATION,
        service_url=emea,
        bot_app_id=APP_ID,
    )

    # The first process only accepts: the question waits in the queue, its reference in the database.
    first = BotProcess(env=env, port=free_port(), log_path=tmp_path / "first.log", args=["--no-worker"])
    await first.start()
    status, _, _ = await post_activity(first.url, question, authorization=bearer(identity, question))
    await first.stop()

    assert status == 200
    assert stored_service_url(indexed_db) == [(emea,)]
    assert connector.messages(CONVERSATION) == []

    # The restarted process answers before any new activity arrives.
    second = BotProcess(env=env, port=free_port(), log_path=tmp_path / "second.log")
    await second.start()
    try:
        [answer] = await connector.wait_for_messages(CONVERSATION)
        assert answer.region == "emea"
        assert "Sick Leave" in answer.text

        # A later activity from another regional endpoint moves the stored reference there.
        amer = connector.service_url("amer")
        later = message_activity(
            "help", activity_id="1700000009002", conversation_id=CONVERSATION, service_url=amer, bot_app_id=APP_ID
        )
        status, _, _ = await post_activity(second.url, later, authorization=bearer(identity, later))
        replies = await connector.wait_for_messages(CONVERSATION, count=2)
    finally:
        await second.stop()

    assert status == 200
    assert stored_service_url(indexed_db) == [(amer,)]
    assert replies[1].region == "amer"
    assert "Here is what I can do" in replies[1].text
