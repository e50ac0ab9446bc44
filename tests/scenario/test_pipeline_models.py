"""The worker pipeline with the real bundled models: context limits and templates without a system role."""

from __future__ import annotations

import psycopg
import pytest

from bot.channels.base import ChannelClient
from bot.config import load_settings
from bot.core.message import IncomingMessage, Reply
from bot.core.pipeline import Pipeline
from bot.core.router import Router, load_skills
from bot.llm import END_OF_TURN_TOKENS, create_chat_model
from bot.prompts import PromptLibrary
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.retrieval.store import SourceStore
from bot.storage import exchanges
from bot.storage.database import Database
from skills.base import SkillContext
from tests.conftest import HANDBOOK_DIR

pytestmark = pytest.mark.model

CONTEXT_WINDOW = 2048
MAX_ANSWER_TOKENS = 96


class RecordingChannel(ChannelClient):
    """Stands in for a chat platform and keeps what the bot posted."""

    platform = "console"

    def __init__(self) -> None:
        self.replies: list[tuple[IncomingMessage, Reply]] = []

    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str:
        self.replies.append((message, reply))
        return f"posted-{len(self.replies)}"


def long_policy(number: int) -> str:
    paragraphs = [
        f"# Carer Leave Supplement {number}",
        "",
        f"## Section {number}",
        "",
    ]
    for line in range(40):
        paragraphs.append(
            f"Paragraph {line} of supplement {number}: employees caring for a relative may take carer days; "
            f"each request goes to the manager and People Operations records it in PeopleHub within {number + 2} days."
        )
    return "\n\n".join(paragraphs)


@pytest.fixture(scope="module")
async def database(db_urls, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long-sources")
    db = Database(db_urls)
    store = SourceStore(db, get_embedder())
    for number in range(8):
        path = folder / f"carer-supplement-{number}.md"
        path.write_text(long_policy(number), encoding="utf-8")
        await store.add_file(path)
    await store.add_file(HANDBOOK_DIR / "sick-leave.md")
    yield db
    await db.dispose()


def make_pipeline(db: Database, model_name: str, data_dir, channel: RecordingChannel) -> Pipeline:
    settings = load_settings(
        CHATOPS_MODEL=model_name,
        CHATOPS_CONTEXT_WINDOW=CONTEXT_WINDOW,
        CHATOPS_MAX_ANSWER_TOKENS=MAX_ANSWER_TOKENS,
        CHATOPS_RETRIEVAL_TOP_K=8,
        CHATOPS_DATA_DIR=str(data_dir),
        CHATOPS_HR_CONTACT="hr@northwind.example.com",
    )
    model = create_chat_model(model=model_name, data_dir=data_dir, context_window=CONTEXT_WINDOW, n_threads=2)
    embedder = get_embedder()
    context = SkillContext(settings=settings, model=model, retriever=Retriever(db, embedder), prompts=PromptLibrary())
    return Pipeline(db, Router(load_skills(context)), {"console": channel})


def question(text: str, *, thread: str, number: int) -> IncomingMessage:
    return IncomingMessage(
        platform="console",
        event_key=f"console:{thread}:{number}",
        channel_id="terminal",
        thread_key=thread,
        user_id="U0EMPLOYEE1",
        text=text,
        message_id=str(number),
    )


async def seed_thread(db: Database, thread: str, turns: int) -> None:
    for number in range(turns):
        message = question(f"Earlier question {number} about carer days and how requests are recorded?", thread=thread, number=number)
        async with db.autocommit() as conn:
            opened = await exchanges.open_exchange(conn, message, history_limit=0)
            await exchanges.record_answer(
                conn,
                conversation_id=opened.conversation_id,
                event_key=message.event_key,
                text=f"Earlier answer {number}: carer days are requested from the manager. " * 6,
                skill="hr_qa",
                answer_path="model",
                model_id="smollm2",
                prompt_version="hr_qa.v1",
                latency_ms=1,
                prompt_tokens=None,
                completion_tokens=None,
                sources=[],
            )


def stored_answer(db_urls, event_key: str):
    with psycopg.connect(db_urls.libpq) as conn:
        return conn.execute(
            "SELECT text, model_id, prompt_tokens, completion_tokens, delivery_status FROM messages "
            "WHERE event_key = %s AND role = 'assistant'",
            (event_key,),
        ).fetchone()


async def test_long_thread_and_sources_fit_context(database, db_urls, tmp_path):
    channel = RecordingChannel()
    pipeline = make_pipeline(database, "smollm2", tmp_path, channel)
    await seed_thread(database, "thread-long", 30)
    message = question("How many carer days do we get and who records them?", thread="thread-long", number=99)

    await pipeline.answer(message)

    assert len(channel.replies) == 1
    text, model_id, prompt_tokens, completion_tokens, status = stored_answer(db_urls, message.event_key)
    assert status == "posted"
    assert model_id == "smollm2"
    assert prompt_tokens is not None
    assert prompt_tokens + MAX_ANSWER_TOKENS <= CONTEXT_WINDOW
    assert text


async def test_gemma_answers_without_turn_markers(database, db_urls, tmp_path_factory):
    channel = RecordingChannel()
    pipeline = make_pipeline(database, "gemma-3-270m", tmp_path_factory.getbasetemp() / "gemma-data", channel)
    message = question("How many paid sick days do we get in Austin?", thread="thread-gemma", number=1)

    await pipeline.answer(message)

    assert len(channel.replies) == 1
    text, model_id, prompt_tokens, _, _ = stored_answer(db_urls, message.event_key)
    assert model_id == "gemma-3-270m"
    assert prompt_tokens is not None
    for marker in (*END_OF_TURN_TOKENS, "<start_of_turn>", "<bos>"):
        assert marker not in text
        assert marker not in channel.replies[0][1].text
