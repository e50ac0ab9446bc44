"""Storing employees' ratings and corrections of answers."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import Feedback, Message

RATINGS = ("up", "down")


class UnknownAnswerError(LookupError):
    """The feedback names an answer that does not exist."""


async def record_feedback(
    session: AsyncSession,
    *,
    answer_id: uuid.UUID | str,
    user_id: str,
    rating: str | None = None,
    comment: str | None = None,
    correction: str | None = None,
) -> Feedback:
    """Store or change one person's feedback on one answer.

    A second rating by the same person replaces the first; a comment or correction
    given without a rating keeps the earlier rating, or counts as ``down`` when
    there is none, since people correct answers they found wrong.
    """
    if rating is not None and rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}, not {rating!r}")
    try:
        answer_uuid = answer_id if isinstance(answer_id, uuid.UUID) else uuid.UUID(str(answer_id))
    except ValueError:
        raise UnknownAnswerError(f"no answer with id {answer_id!r}") from None
    answer = await session.get(Message, answer_uuid)
    if answer is None or answer.role != "assistant":
        raise UnknownAnswerError(f"no answer with id {answer_id!r}")

    if rating is None and comment is None and correction is None:
        raise ValueError("feedback needs a rating, a comment or a correction")
    changes = {
        key: value
        for key, value in {"rating": rating, "comment": comment, "correction": correction}.items()
        if value is not None
    }
    statement = insert(Feedback).values(
        message_id=answer_uuid, user_id=user_id, rating=rating or "down", comment=comment, correction=correction
    )
    statement = statement.on_conflict_do_update(
        constraint="uq_feedback_message_user", set_={**changes, "updated_at": func.now()}
    )
    await session.execute(statement)
    return (
        await session.execute(select(Feedback).where(Feedback.message_id == answer_uuid, Feedback.user_id == user_id))
    ).scalar_one()
