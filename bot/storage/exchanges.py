"""Queries for conversations, questions, answers and the sources answers used.

Each function runs on a session or connection the caller opened, and callers keep
transactions short and never hold one across a model call. A function documented
as safe in autocommit mode sends statements that are independent of each other.
The pipeline runs those on an autocommit connection, which saves the round trips
of BEGIN and COMMIT on the path of every reply.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.core.message import HistoryTurn, IncomingMessage
from bot.storage.models import Message


@dataclass(frozen=True)
class StoredSource:
    """A source row to store with an answer."""

    chunk_id: int | None
    source_id: uuid.UUID | None
    title: str
    rank: int
    score: float
    cited: bool
    excerpt: str


@dataclass(frozen=True)
class OpenedExchange:
    """The state of a message's exchange when its job starts.

    ``answer`` is the answer stored by an earlier run of the job, if any; otherwise
    the question is recorded and ``conversation_id`` and ``history`` are set.
    """

    answer: Message | None
    conversation_id: uuid.UUID | None = None
    history: list[HistoryTurn] = field(default_factory=list)


# Records a question in its thread's conversation in one round trip, and inserts
# the conversation unless it exists. Returns the conversation, whether it was
# created, and the question's time. When another transaction inserts the same
# thread at the same moment, this statement's snapshot sees neither row, so
# nothing is stored and the caller runs it again.
_RECORD_QUESTION = sql_text(
    """
    WITH inserted AS (
        INSERT INTO conversations (id, platform, channel_id, thread_key, channel_type)
        VALUES (:conversation_id, :platform, :channel_id, :thread_key, :channel_type)
        ON CONFLICT ON CONSTRAINT uq_conversation_thread DO NOTHING
        RETURNING id
    ), conversation AS (
        SELECT id, true AS created FROM inserted
        UNION ALL
        SELECT id, false AS created FROM conversations
         WHERE platform = :platform AND channel_id = :channel_id AND thread_key = :thread_key
    ), question AS (
        INSERT INTO messages (id, conversation_id, role, text, user_id, event_key, platform_message_id)
        SELECT :question_id, conversation.id, 'user', :text, :user_id, :event_key, :message_id FROM conversation
        RETURNING created_at
    )
    SELECT conversation.id, conversation.created, question.created_at FROM conversation, question
    """
)


async def open_exchange(connection: AsyncConnection, message: IncomingMessage, *, history_limit: int) -> OpenedExchange:
    """Return the stored answer to ``message``, or record it as a question with its conversation's history.

    The statements are independent of each other, so ``connection`` may be in autocommit mode.
    Two round trips for a question in a new thread, three in an existing one:
    the messages of the event, the question with its conversation, and the history.
    """
    stored = [
        Message(**row)
        for row in (
            await connection.execute(select(Message.__table__).where(Message.event_key == message.event_key))
        ).mappings()
    ]
    answer = next((row for row in stored if row.role == "assistant"), None)
    if answer is not None:
        return OpenedExchange(answer)
    question = next((row for row in stored if row.role == "user"), None)
    if question is not None:
        # A retried job: the question and its conversation were recorded by an earlier run.
        history = await load_history(connection, question.conversation_id, before=question, limit=history_limit)
        return OpenedExchange(None, question.conversation_id, history)
    parameters = {
        "conversation_id": uuid.uuid4(),
        "platform": message.platform,
        "channel_id": message.channel_id,
        "thread_key": message.thread_key,
        "channel_type": message.channel_type,
        "question_id": uuid.uuid4(),
        "text": message.text,
        "user_id": message.user_id,
        "event_key": message.event_key,
        "message_id": message.message_id,
    }
    row = (await connection.execute(_RECORD_QUESTION, parameters)).first()
    if row is None:
        row = (await connection.execute(_RECORD_QUESTION, parameters)).first()
    if row.created:
        # A conversation created for this question has no earlier turns.
        return OpenedExchange(None, row.id)
    question = Message(id=parameters["question_id"], conversation_id=row.id, created_at=row.created_at)
    history = await load_history(connection, row.id, before=question, limit=history_limit)
    return OpenedExchange(None, row.id, history)


async def load_history(
    connection: AsyncSession | AsyncConnection, conversation_id: uuid.UUID, *, before: Message, limit: int = 40
) -> list[HistoryTurn]:
    """Return up to ``limit`` earlier turns of the conversation, oldest first."""
    rows = (
        await connection.execute(
            select(Message.role, Message.text)
            .where(
                Message.conversation_id == conversation_id,
                Message.created_at <= before.created_at,
                Message.id != before.id,
            )
            .order_by(Message.created_at.desc())
            .limit(limit)
        )
    ).all()
    return [HistoryTurn(role=row.role, text=row.text) for row in reversed(rows)]


async def find_answer(session: AsyncSession, event_key: str) -> Message | None:
    return (
        await session.execute(select(Message).where(Message.event_key == event_key, Message.role == "assistant"))
    ).scalar_one_or_none()


# Inserts the bot's reply and its sources in one statement, so both commit together
# in one round trip. When the event already has a reply, the conflict leaves the
# ``answer`` CTE empty and nothing is inserted. The conflict target's predicate is
# literal SQL because PostgreSQL cannot match a bound parameter against the partial
# unique index uq_messages_answer_event.
_RECORD_ANSWER = sql_text(
    """
    WITH answer AS (
        INSERT INTO messages (id, conversation_id, role, text, event_key, skill, answer_path, model_id,
                              prompt_version, latency_ms, prompt_tokens, completion_tokens, delivery_status)
        VALUES (:id, :conversation_id, 'assistant', :text, :event_key, :skill, :answer_path, :model_id,
                :prompt_version, :latency_ms, :prompt_tokens, :completion_tokens, 'pending')
        ON CONFLICT (event_key) WHERE role = 'assistant' DO NOTHING
        RETURNING *
    ), used AS (
        INSERT INTO answer_sources (message_id, chunk_id, source_id, source_title, rank, score, cited, excerpt)
        SELECT answer.id, used.chunk_id, used.source_id, used.title, used.rank, used.score, used.cited, used.excerpt
          FROM answer,
               unnest(CAST(:chunk_ids AS bigint[]), CAST(:source_ids AS uuid[]), CAST(:titles AS text[]),
                      CAST(:ranks AS integer[]), CAST(:scores AS double precision[]), CAST(:cited AS boolean[]),
                      CAST(:excerpts AS text[]))
                   AS used (chunk_id, source_id, title, rank, score, cited, excerpt)
    )
    SELECT * FROM answer
    """
)


async def record_answer(
    connection: AsyncSession | AsyncConnection,
    *,
    conversation_id: uuid.UUID,
    event_key: str,
    text: str,
    skill: str,
    answer_path: str,
    model_id: str | None,
    prompt_version: str | None,
    latency_ms: int,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    sources: Sequence[StoredSource],
) -> Message | None:
    """Store an answer as pending delivery, with its sources; return None if this event already has one.

    A single statement: it may run in autocommit mode. The returned message is not
    attached to any session.
    """
    parameters = {
        "id": uuid.uuid4(),
        "conversation_id": conversation_id,
        "text": text,
        "event_key": event_key,
        "skill": skill,
        "answer_path": answer_path,
        "model_id": model_id,
        "prompt_version": prompt_version,
        "latency_ms": latency_ms,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "chunk_ids": [source.chunk_id for source in sources],
        "source_ids": [source.source_id for source in sources],
        "titles": [source.title for source in sources],
        "ranks": [source.rank for source in sources],
        "scores": [source.score for source in sources],
        "cited": [source.cited for source in sources],
        "excerpts": [source.excerpt for source in sources],
    }
    row = (await connection.execute(_RECORD_ANSWER, parameters)).mappings().first()
    return Message(**row) if row is not None else None


async def mark_delivered(
    connection: AsyncSession | AsyncConnection, answer_id: uuid.UUID, platform_message_id: str
) -> None:
    """Mark an answer posted: a single statement, which may run in autocommit mode."""
    await connection.execute(
        update(Message)
        .where(Message.id == answer_id)
        .values(delivery_status="posted", platform_message_id=platform_message_id)
    )
