"""``chatops eval hr``: ingest a sources folder into a fresh database and score the HR skill.

The database is never the bot's own. With ``DATABASE_URL`` set, a new database
``chatops_eval_<random>`` is created on that server and dropped afterwards, which
needs the CREATEDB privilege. Without it, an embedded PostgreSQL server runs in a
temporary folder that is deleted afterwards.

The top-level files of the sources folder are ingested (subfolders are not).
A question whose ``source`` lies in a subfolder, such as
``updates/travel-expenses.v2.md``, is asked in a second pass. Before it, that
file replaces the top-level file of the same name without its version suffix
(``travel-expenses.md``), or is added as a new source if there is none. Every
other question is asked in the first pass.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy import text

from bot.config import Settings
from bot.core.message import IncomingMessage
from bot.core.roles import RoleDirectory
from bot.errors import ChatOpsError, SourceError
from bot.evaluation.scoring import EvalQuestion, QuestionOutcome, load_questions, score_answer, summarise
from bot.llm import chat_model_from_settings
from bot.prompts import PromptLibrary
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.retrieval.store import SourceStore
from bot.storage import migrate
from bot.storage.database import Database, DatabaseUrls, database_urls, embedded_server
from skills.base import SkillContext, SkillRequest
from skills.hr_qa.skill import HRQuestionSkill

logger = logging.getLogger(__name__)

EMPLOYEE_ID = "eval-employee"
MANAGER_ID = "eval-manager"
_VERSION_SUFFIX = re.compile(r"\.v\d+(?=\.[^.]+$)")

Progress = Callable[[str], None]


class EvaluationError(ChatOpsError):
    """The evaluation could not run: no sources, no database, an unreadable file."""


@dataclass(frozen=True)
class SourceUpdate:
    """A file in a subfolder that replaces a top-level source before the second pass."""

    relative: str
    replaces: str


def plan_updates(questions: Sequence[EvalQuestion], sources_dir: Path) -> dict[str, SourceUpdate]:
    """Map each subfolder ``source`` named by a question to the top-level file it replaces."""
    updates: dict[str, SourceUpdate] = {}
    for question in questions:
        relative = question.source
        if not relative or "/" not in relative or relative in updates:
            continue
        path = sources_dir / relative
        if not path.is_file():
            raise EvaluationError(f"question {question.id} names source {relative}, which is not in {sources_dir}")
        updates[relative] = SourceUpdate(relative=relative, replaces=_VERSION_SUFFIX.sub("", path.name))
    return updates


async def run_hr_evaluation(
    settings: Settings,
    *,
    questions_path: Path,
    sources_dir: Path,
    model: str | None = None,
    progress: Progress = lambda line: None,
) -> dict:
    """Run every question of ``questions_path`` against ``sources_dir`` and return the figures."""
    questions = load_questions(questions_path)
    if not sources_dir.is_dir():
        raise EvaluationError(f"sources folder {sources_dir} does not exist")
    updates = plan_updates(questions, sources_dir)
    if model:
        settings = settings.model_copy(update={"model": model})

    with tempfile.TemporaryDirectory(prefix="chatops-eval-") as work:
        work_dir = Path(work)
        with _fresh_database(settings, work_dir / "postgres") as urls:
            migrate.upgrade(urls)
            return await _evaluate(settings, urls, questions, updates, sources_dir, work_dir, progress)


async def _evaluate(
    settings: Settings,
    urls: DatabaseUrls,
    questions: Sequence[EvalQuestion],
    updates: dict[str, SourceUpdate],
    sources_dir: Path,
    work_dir: Path,
    progress: Progress,
) -> dict:
    db = Database(urls)
    embedder = get_embedder()
    store = SourceStore(db, embedder)
    sources_copy = work_dir / "sources"
    sources_copy.mkdir()
    chat_model = None
    try:
        await _ingest(store, sources_dir, sources_copy, progress)
        chat_model = await asyncio.to_thread(chat_model_from_settings, settings)
        context = SkillContext(settings=settings, model=chat_model, retriever=Retriever.from_settings(db, embedder, settings), prompts=PromptLibrary())
        runner = _QuestionRunner(settings, HRQuestionSkill(context), db)

        first = [question for question in questions if question.source not in updates]
        second = [question for question in questions if question.source in updates]
        outcomes = [await runner.run(question, evaluation_pass=1, progress=progress) for question in first]
        if second:
            expected_files = await _apply_updates(store, sources_dir, sources_copy, updates.values(), progress)
            for question in second:
                outcome = await runner.run(
                    question, evaluation_pass=2, progress=progress, expected_file=expected_files[question.source]
                )
                outcomes.append(outcome)
    finally:
        if chat_model is not None:
            await chat_model.aclose()
        await db.dispose()

    order = {question.id: index for index, question in enumerate(questions)}
    outcomes.sort(key=lambda outcome: order[outcome.id])
    figures = summarise(outcomes)
    figures["model"] = settings.model
    figures["updates"] = {update.relative: update.replaces for update in updates.values()}
    return figures


async def _ingest(store: SourceStore, sources_dir: Path, copy_dir: Path, progress: Progress) -> None:
    files = sorted(path for path in sources_dir.iterdir() if path.is_file() and not path.name.startswith("."))
    if not files:
        raise EvaluationError(f"sources folder {sources_dir} has no files")
    loaded = 0
    for path in files:
        target = copy_dir / path.name
        shutil.copyfile(path, target)
        try:
            result = await store.add_file(target)
        except SourceError as exc:
            progress(f"skipped {path.name}: {exc}")
            continue
        loaded += 1
        progress(f"indexed {path.name}: {result.chunk_count} chunks")
    if not loaded:
        raise EvaluationError(f"no file in {sources_dir} could be indexed")


async def _apply_updates(
    store: SourceStore, sources_dir: Path, copy_dir: Path, updates, progress: Progress
) -> dict[str, str]:
    """Copy each update over the file it replaces, re-index it, and map it to the cited file name."""
    expected: dict[str, str] = {}
    for update in updates:
        target = copy_dir / update.replaces
        shutil.copyfile(sources_dir / update.relative, target)
        result = await store.add_file(target)
        progress(f"updated {update.replaces} from {update.relative}: {result.status}, {result.chunk_count} chunks")
        expected[update.relative] = update.replaces
    return expected


class _QuestionRunner:
    """Asks the skill one question as an employee or a manager, and scores the answer."""

    def __init__(self, settings: Settings, skill: HRQuestionSkill, db: Database) -> None:
        self.settings = settings
        self.skill = skill
        self.db = db
        self.roles = RoleDirectory(managers=frozenset({MANAGER_ID}))

    async def run(
        self, question: EvalQuestion, *, evaluation_pass: int, progress: Progress, expected_file: str | None = None
    ) -> QuestionOutcome:
        is_manager = question.audience == "managers"
        message = IncomingMessage(
            platform="eval",
            event_key=f"eval:{question.id}:{uuid.uuid4().hex[:8]}",
            channel_id="eval",
            thread_key=question.id,
            user_id=MANAGER_ID if is_manager else EMPLOYEE_ID,
            text=question.question,
            message_id=question.id,
            channel_type="im",
        )
        request = SkillRequest(message=message, text=question.question, audiences=self.roles.audiences_for(message))
        started = time.perf_counter()
        outcome = await self.skill.answer(request)
        latency = time.perf_counter() - started
        result = outcome.result

        origins = await self._origins([source.source_id for source in result.sources])
        cited_ranks = {citation.number for citation in result.citations}
        cited_files = sorted(
            {Path(origins.get(source.source_id, "")).name for source in result.sources if source.rank in cited_ranks}
        )
        manager_chunks = await self._manager_chunks([source.chunk_id for source in result.sources])
        scored = score_answer(
            question,
            answer=result.text,
            path=result.path,
            citation_numbers=sorted(cited_ranks),
            cited_files=cited_files,
            cited_excerpts=[source.excerpt for source in result.sources if source.rank in cited_ranks],
            expected_file=expected_file or (Path(question.source).name if question.source else None),
            used_manager_content=bool(manager_chunks),
            is_manager=is_manager,
            hr_contact=self.settings.hr_contact,
            latency_s=latency,
            evaluation_pass=evaluation_pass,
            signals=outcome.signals,
        )
        verdict = "ok" if (scored.correct if question.answerable else scored.declined) else "WRONG"
        progress(f"{question.id:10} {result.path:10} {verdict:5} {latency:5.2f} s")
        return scored

    async def _origins(self, source_ids) -> dict:
        ids = [source_id for source_id in source_ids if source_id is not None]
        if not ids:
            return {}
        async with self.db.sessions() as session:
            rows = await session.execute(text("SELECT id, origin FROM knowledge_sources WHERE id = ANY(:ids)"), {"ids": ids})
            return {row.id: row.origin for row in rows}

    async def _manager_chunks(self, chunk_ids) -> list[int]:
        ids = [chunk_id for chunk_id in chunk_ids if chunk_id is not None]
        if not ids:
            return []
        async with self.db.sessions() as session:
            rows = await session.execute(
                text("SELECT id FROM knowledge_chunks WHERE id = ANY(:ids) AND audience <> 'all'"), {"ids": ids}
            )
            return [row.id for row in rows]


@contextmanager
def _fresh_database(settings: Settings, embedded_dir: Path) -> Iterator[DatabaseUrls]:
    if settings.database_url:
        with _scratch_database(settings.database_url) as urls:
            yield urls
        return
    logger.info("Starting a temporary embedded PostgreSQL in %s", embedded_dir)
    server = embedded_server(embedded_dir, cleanup_mode="delete")
    try:
        yield database_urls(server.get_uri(database="postgres"))
    finally:
        server.cleanup()


@contextmanager
def _scratch_database(url: str) -> Iterator[DatabaseUrls]:
    """Create a uniquely named database on the server of ``url`` and drop it afterwards."""
    admin = database_urls(url)
    name = f"chatops_eval_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(admin.libpq, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise EvaluationError(
            f"cannot create the evaluation database {name} on the DATABASE_URL server ({exc.sqlstate}): "
            "grant the CREATEDB privilege, or unset DATABASE_URL to use a temporary embedded server"
        ) from exc
    logger.info("Created evaluation database %s", name)
    try:
        yield database_urls(_with_database(admin.libpq, name))
    finally:
        with psycopg.connect(admin.libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        logger.info("Dropped evaluation database %s", name)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)
