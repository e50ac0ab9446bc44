"""Queries for conversations, questions, answers and the sources answers used.

Each function runs inside a session the caller opened; callers keep those
transactions short and never hold one across a model call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.message import HistoryTurn, IncomingMessage
from bot.storage.models import AnswerSource, Conversation, Message


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


# Inserts the thread's conversation unless it exists, and returns the row either
# way in one round trip. When another transaction inserts the same thread at the
# same moment, this statement's snapshot sees neither row, and the caller reads again.
_GET_OR_CREATE_CONVERSATION = sql_text(
    """
    WITH inserted AS (
        INSERT INTO conversations (id, platform, channel_id, thread_key, channel_type)
        VALUES (:id, :platform, :channel_id, :thread_key, :channel_type)
        ON CONFLICT ON CONSTRAINT uq_conversation_thread DO NOTHING
        RETURNING id
    )
    SELECT id, true AS created FROM inserted
    UNION ALL
    SELECT id, false AS created FROM conversations
     WHERE platform = :platform AND channel_id = :channel_id AND thread_key = :thread_key
    """
)


async def open_exchange(session: AsyncSession, message: IncomingMessage, *, history_limit: int) -> OpenedExchange:
    """Return the stored answer to ``message``, or record it as a question with its conversation's history.

    Three round trips for a question in a new thread, four in an existing one:
    the messages of the event, the conversation, the question and the history.
    """
    stored = (await session.execute(select(Message).where(Message.event_key == message.event_key))).scalars().all()
    answer = next((row for row in stored if row.role == "assistant"), None)
    if answer is not None:
        return OpenedExchange(answer)
    parameters = {
        "id": uuid.uuid4(),
        "platform": message.platform,
        "channel_id": message.channel_id,
        "thread_key": message.thread_key,
        "channel_type": message.channel_type,
    }
    row = (await session.execute(_GET_OR_CREATE_CONVERSATION, parameters)).first()
    if row is None:
        row = (await session.execute(_GET_OR_CREATE_CONVERSATION, parameters)).first()
    conversation_id, created = row.id, row.created
    question = next((row for row in stored if row.role == "user"), None)
    if question is None:
        question = _new_question(conversation_id, message)
        session.add(question)
        await session.flush()
    # A conversation created for this question has no earlier turns.
    history = [] if created else await load_history(session, conversation_id, before=question, limit=history_limit)
    return OpenedExchange(None, conversation_id, history)


def _new_question(conversation_id: uuid.UUID, message: IncomingMessage) -> Message:
    return Message(
        conversation_id=conversation_id,
        role="user",
        text=message.text,
        user_id=message.user_id,
        event_key=message.event_key,
        platform_message_id=message.message_id,
    )


async def get_or_create_conversation(session: AsyncSession, message: IncomingMessage) -> Conversation:
    statement = (
        insert(Conversation)
        .values(
            id=uuid.uuid4(),
            platform=message.platform,
            channel_id=message.channel_id,
            thread_key=message.thread_key,
            channel_type=message.channel_type,
        )
        .on_conflict_do_nothing(constraint="uq_conversation_thread")
    )
    await session.execute(statement)
    return (
        await session.execute(
            select(Conversation).where(
                Conversation.platform == message.platform,
                Conversation.channel_id == message.channel_id,
                Conversation.thread_key == message.thread_key,
            )
        )
    ).scalar_one()


async def record_question(session: AsyncSession, conversation: Conversation, message: IncomingMessage) -> Message:
    """Store the employee's message once, however often its job runs."""
    existing = (
        await session.execute(
            select(Message).where(Message.event_key == message.event_key, Message.role == "user")
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    question = _new_question(conversation.id, message)
    session.add(question)
    await session.flush()
    return question


async def load_history(
    session: AsyncSession, conversation_id: uuid.UUID, *, before: Message, limit: int = 40
) -> list[HistoryTurn]:
    """Return up to ``limit`` earlier turns of the conversation, oldest first."""
    rows = (
        await session.execute(
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


async def record_answer(
    session: AsyncSession,
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
    """Store an answer as pending delivery; return None if this event already has one."""
    answer_id = uuid.uuid4()
    statement = (
        insert(Message)
        .values(
            id=answer_id,
            conversation_id=conversation_id,
            role="assistant",
            text=text,
            event_key=event_key,
            skill=skill,
            answer_path=answer_path,
            model_id=model_id,
            prompt_version=prompt_version,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            delivery_status="pending",
        )
        # The predicate must be literal SQL: Postgres cannot match a bound parameter
        # against the partial unique index uq_messages_answer_event.
        .on_conflict_do_nothing(index_elements=["event_key"], index_where=sql_text("role = 'assistant'"))
        # Returning the whole row saves a SELECT of the new message after the insert.
        .returning(Message)
    )
    answer = (await session.scalars(statement)).one_or_none()
    if answer is None:
        return None
    for source in sources:
        session.add(
            AnswerSource(
                message_id=answer_id,
                chunk_id=source.chunk_id,
                source_id=source.source_id,
                source_title=source.title,
                rank=source.rank,
                score=source.score,
                cited=source.cited,
                excerpt=source.excerpt,
            )
        )
    await session.flush()
    return answer


async def mark_delivered(session: AsyncSession, answer_id: uuid.UUID, platform_message_id: str) -> None:
    await session.execute(
        update(Message)
        .where(Message.id == answer_id)
        .values(delivery_status="posted", platform_message_id=platform_message_id)
    )
