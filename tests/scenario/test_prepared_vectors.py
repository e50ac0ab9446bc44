"""Work done ahead of questions: stored passage vectors, batched ingestion and bounded full-text ranking.

Runs against a real PostgreSQL with the real embedder. The embedder is wrapped
to record which texts reach it, which is how these tests see what was computed
and what was read back.
"""

from __future__ import annotations

import hashlib

import numpy as np
import psycopg
import pytest

from bot.config import load_settings
from bot.core.message import IncomingMessage
from bot.errors import ChatOpsError
from bot.llm.testing import ScriptedChatModel
from bot.prompts import PromptLibrary
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.retrieval.store import SourceStore
from bot.retrieval.vectors import VectorCache
from skills.base import SkillContext, SkillRequest
from skills.hr_qa import HRQuestionSkill
from tests.conftest import HANDBOOK_DIR

QUESTION = "How many paid sick days do I get in Austin?"


class RecordingEmbedder:
    """The real embedder, recording the texts of each call."""

    def __init__(self) -> None:
        self.embedder = get_embedder()
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.embedder, name)

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.embedder.embed(texts)

    async def embed_async(self, texts):
        self.calls.append(list(texts))
        return await self.embedder.embed_async(texts)

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]


@pytest.fixture(scope="module")
async def handbook(db):
    """The sample handbook, indexed once for the module."""
    reports = []
    await SourceStore(db, get_embedder()).add_files(
        sorted(HANDBOOK_DIR.glob("*.md")), on_result=lambda path, outcome: reports.append((path, outcome))
    )
    assert reports and not [outcome for _, outcome in reports if isinstance(outcome, ChatOpsError)]
    return reports


def stored_digests(db_urls) -> set[bytes]:
    with psycopg.connect(db_urls.libpq) as conn:
        return {bytes(row[0]) for row in conn.execute("SELECT digest FROM text_embeddings").fetchall()}


def digest(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8")).digest()


def hr_skill(db, embedder, tmp_path) -> HRQuestionSkill:
    settings = load_settings(CHATOPS_HR_MODEL_ANSWERS="false", CHATOPS_DATA_DIR=str(tmp_path))
    context = SkillContext(
        settings=settings, model=ScriptedChatModel(), retriever=Retriever(db, embedder), prompts=PromptLibrary()
    )
    return HRQuestionSkill(context)


def request(text: str) -> SkillRequest:
    message = IncomingMessage(
        platform="slack",
        event_key=f"Ev-{abs(hash(text))}",
        channel_id="D0HR",
        thread_key="1.0",
        user_id="U0EMPLOYEE",
        text=text,
        message_id="1.0",
    )
    return SkillRequest(message=message, text=text)


async def test_stored_vectors_are_read_by_another_cache(db, db_urls):
    texts = ["Sick leave is paid from the first day.", "Book hotels through TripDesk."]
    first_embedder, second_embedder = RecordingEmbedder(), RecordingEmbedder()

    first = await VectorCache(db, first_embedder).embed(texts)
    second = await VectorCache(db, second_embedder).embed(texts)

    assert first_embedder.texts == texts
    assert second_embedder.calls == []
    np.testing.assert_allclose(first, second, atol=1e-6)
    assert {digest(text) for text in texts} <= stored_digests(db_urls)


async def test_question_texts_are_kept_out_of_the_table(db, db_urls):
    question = "Can I take my dog to the Berlin office on Fridays?"
    embedder = RecordingEmbedder()
    cache = VectorCache(db, embedder)

    await cache.embed([question], store=False)
    await cache.embed([question], store=False)

    assert digest(question) not in stored_digests(db_urls)
    # The second call reads the vector from memory.
    assert embedder.texts == [question]


async def test_memory_keeps_at_most_its_size(db):
    cache = VectorCache(db, RecordingEmbedder(), memory_size=3)

    await cache.embed([f"Policy line number {index}." for index in range(5)])

    assert len(cache._memory) == 3


async def test_prepared_skill_embeds_only_the_question(db, handbook, tmp_path):
    await hr_skill(db, get_embedder(), tmp_path).prepare()
    embedder = RecordingEmbedder()
    skill = hr_skill(db, embedder, tmp_path)

    outcome = await skill.answer(request(QUESTION))

    assert outcome.result.path == "extractive"
    assert outcome.result.citations
    # The question itself (repaired spelling) is the only new text; the passages
    # the skill compared it with came from the table.
    assert len(embedder.texts) == 1
    assert "sick" in embedder.texts[0].lower()


async def test_unprepared_skill_embeds_and_stores_passages(db, db_urls, handbook, tmp_path):
    embedder = RecordingEmbedder()
    with psycopg.connect(db_urls.libpq, autocommit=True) as conn:
        conn.execute("DELETE FROM text_embeddings")

    outcome = await hr_skill(db, embedder, tmp_path).answer(request(QUESTION))

    assert outcome.result.citations
    assert len(embedder.texts) > 1
    passages = embedder.texts[1:]
    assert {digest(text) for text in passages} <= stored_digests(db_urls)


async def test_preparing_again_embeds_nothing(db, handbook, tmp_path, caplog):
    await hr_skill(db, get_embedder(), tmp_path).prepare()
    embedder = RecordingEmbedder()

    with caplog.at_level("INFO", logger="skills.hr_qa.skill"):
        await hr_skill(db, embedder, tmp_path).prepare()

    assert embedder.calls == []
    assert "0 of them new" in caplog.text


async def test_skill_prepares_nothing_above_its_chunk_limit(db, handbook, tmp_path, caplog):
    embedder = RecordingEmbedder()
    settings = load_settings(CHATOPS_HR_PREPARE_MAX_CHUNKS="10", CHATOPS_DATA_DIR=str(tmp_path))
    context = SkillContext(
        settings=settings, model=ScriptedChatModel(), retriever=Retriever(db, embedder), prompts=PromptLibrary()
    )

    with caplog.at_level("INFO", logger="skills.hr_qa.skill"):
        await HRQuestionSkill(context).prepare()

    assert embedder.calls == []
    assert "CHATOPS_HR_PREPARE_MAX_CHUNKS" in caplog.text


async def test_add_files_embeds_several_files_in_one_call(db, tmp_path):
    paths = []
    for index, body in enumerate(["Meals are refunded up to 25 per day.", "", "Taxis are refunded after 22:00."]):
        path = tmp_path / f"policy-{index}.md"
        path.write_text(f"# Policy {index}\n\n{body}\n" if body else "", encoding="utf-8")
        paths.append(path)
    embedder = RecordingEmbedder()
    reports = []

    await SourceStore(db, embedder).add_files(paths, on_result=lambda path, outcome: reports.append((path, outcome)))

    assert [path for path, _ in reports] == paths
    assert isinstance(reports[1][1], ChatOpsError)
    assert "empty" in str(reports[1][1])
    assert [reports[0][1].status, reports[2][1].status] == ["added", "added"]
    # The empty file fails before embedding, so the other two still share no call
    # with it; each side of it is embedded once.
    assert sum(len(call) for call in embedder.calls) == reports[0][1].chunk_count + reports[2][1].chunk_count


async def test_add_files_pools_small_files(db, tmp_path):
    paths = []
    for index in range(4):
        path = tmp_path / f"pooled-{index}.md"
        path.write_text(f"# Pooled {index}\n\nRule {index}: submit form P{index} within {index + 5} days.\n", encoding="utf-8")
        paths.append(path)
    embedder = RecordingEmbedder()
    reports = []

    await SourceStore(db, embedder).add_files(
        paths, on_result=lambda path, outcome: reports.append(outcome), batch_chunks=1000
    )

    assert [outcome.status for outcome in reports] == ["added"] * 4
    assert len(embedder.calls) == 1
    assert len(embedder.calls[0]) == sum(outcome.chunk_count for outcome in reports)


async def test_full_text_skips_common_words(db, db_urls, handbook):
    with psycopg.connect(db_urls.libpq, autocommit=True) as conn:
        conn.execute("ANALYZE knowledge_chunks")
        chunks = conn.execute("SELECT count(*) FROM knowledge_chunks").fetchone()[0]
        # A word of most chunks, and one of very few.
        common = conn.execute(
            "SELECT count(*) FROM knowledge_chunks WHERE search_vector @@ to_tsquery('english', 'leave')"
        ).fetchone()[0]
        rare = conn.execute(
            "SELECT count(*) FROM knowledge_chunks WHERE search_vector @@ to_tsquery('english', 'bluebonnet')"
        ).fetchone()[0]
    assert 0 < rare < 10 < common
    bounded = Retriever(db, get_embedder(), max_text_matches=10)
    unbounded = Retriever(db, get_embedder(), max_text_matches=chunks + 1)

    async with db.sessions() as session:
        assert await bounded._rankable_words(session, ["leave", "Bluebonnet"]) == ["Bluebonnet"]
        assert set(await unbounded._rankable_words(session, ["leave", "Bluebonnet"])) == {"leave", "Bluebonnet"}

    hits = await bounded.search("What does the Bluebonnet plan cover?", keywords="leave Bluebonnet")
    assert any("Bluebonnet" in hit.text for hit in hits)
    # With only common words there is no full-text ranking, and the vector ranking still finds chunks.
    assert await bounded.search("How do I request leave?", keywords="leave")
