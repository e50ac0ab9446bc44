"""Interactivity: the 👍/👎 buttons on answers, the correction modal and the "Summarize thread" shortcut.

Ratings and corrections are stored before Slack gets its acknowledgement. The
cosmetic work that calls Slack (opening the modal, redrawing the message with
the feedback counts) runs right after the acknowledgement, as Bolt lazy
listeners, so a slow or rate-limited Web API cannot delay it.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient
from sqlalchemy import func, select

from bot.channels.slack.blocks import (
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    CORRECTION_BLOCK_ID,
    FEEDBACK_MODAL_ID,
    PROBLEM_BLOCK_ID,
    answer_blocks,
    feedback_modal,
    submitted_text,
)
from bot.channels.slack.client import render_parts
from bot.channels.slack.convert import shortcut_to_incoming
from bot.core.intake import accept_message
from bot.storage.database import Database
from bot.storage.feedback import UnknownAnswerError, record_feedback
from bot.storage.models import Feedback, Message

logger = logging.getLogger(__name__)

SUMMARIZE_THREAD_SHORTCUT = "summarize_thread"
RATINGS = {ACTION_HELPFUL: "up", ACTION_NOT_HELPFUL: "down"}
EMPTY_FEEDBACK = "Tell us what was wrong or what the right answer is, or press Cancel."


def register_interactivity(app: AsyncApp, db: Database) -> None:
    async def store_rating(ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        await _store_rating(db, body, action)
        await ack()

    async def open_correction_modal(body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await _open_correction_modal(body, action, client)

    async def redraw_answer(body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await _redraw_answer(db, body, action, client)

    async def store_correction(ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        problem = submitted_text(view, PROBLEM_BLOCK_ID)
        correction = submitted_text(view, CORRECTION_BLOCK_ID)
        if problem is None and correction is None:
            await ack(response_action="errors", errors={PROBLEM_BLOCK_ID: EMPTY_FEEDBACK})
            return
        await _store_correction(db, body, view, problem, correction)
        await ack()

    async def queue_thread_summary(ack, shortcut: dict[str, Any]) -> None:
        message = shortcut_to_incoming(shortcut, text="summarize")
        if message is None:
            logger.info("Ignored a %s shortcut without trigger_id, user, channel or message", SUMMARIZE_THREAD_SHORTCUT)
        else:
            await accept_message(db, message)
        await ack()

    app.action(ACTION_HELPFUL)(ack=store_rating, lazy=[redraw_answer])
    app.action(ACTION_NOT_HELPFUL)(ack=store_rating, lazy=[open_correction_modal, redraw_answer])
    app.view(FEEDBACK_MODAL_ID)(store_correction)
    app.shortcut(SUMMARIZE_THREAD_SHORTCUT)(queue_thread_summary)


def _user_id(body: dict[str, Any]) -> str | None:
    user = body.get("user")
    return user.get("id") if isinstance(user, dict) and isinstance(user.get("id"), str) else None


async def _store_rating(db: Database, body: dict[str, Any], action: dict[str, Any]) -> None:
    """Store the click as the user's rating of the answer, replacing an earlier rating of theirs."""
    answer_id, user_id = action.get("value"), _user_id(body)
    rating = RATINGS.get(str(action.get("action_id")))
    if not isinstance(answer_id, str) or user_id is None or rating is None:
        logger.info("Ignored a feedback click without an answer id or user")
        return
    try:
        async with db.transaction() as session:
            await record_feedback(session, answer_id=answer_id, user_id=user_id, rating=rating)
    except UnknownAnswerError:
        logger.info("Ignored feedback on answer %s, which is not stored", answer_id)
        return
    logger.info("Stored rating %s from %s on answer %s", rating, user_id, answer_id)


async def _store_correction(
    db: Database, body: dict[str, Any], view: dict[str, Any], problem: str | None, correction: str | None
) -> None:
    metadata = _metadata(view)
    answer_id, user_id = metadata.get("answer_id"), _user_id(body)
    if not isinstance(answer_id, str) or user_id is None:
        logger.info("Ignored a feedback form without an answer id or user")
        return
    try:
        async with db.transaction() as session:
            await record_feedback(
                session, answer_id=answer_id, user_id=user_id, rating="down", comment=problem, correction=correction
            )
    except UnknownAnswerError:
        logger.info("Ignored a correction of answer %s, which is not stored", answer_id)
        return
    logger.info("Stored a correction from %s on answer %s", user_id, answer_id)


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    raw = view.get("private_metadata")
    if not isinstance(raw, str):
        return {}
    try:
        metadata = json.loads(raw)
    except ValueError:
        return {}
    return metadata if isinstance(metadata, dict) else {}


async def _open_correction_modal(body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
    trigger_id, answer_id = body.get("trigger_id"), action.get("value")
    if not isinstance(trigger_id, str) or not isinstance(answer_id, str):
        return
    await client.views_open(trigger_id=trigger_id, view=feedback_modal({"answer_id": answer_id}))
    logger.info("Opened the correction form for answer %s", answer_id)


async def _redraw_answer(db: Database, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
    """Redraw the answer's last message with the current feedback counts."""
    answer_id = action.get("value")
    container = body.get("container") if isinstance(body.get("container"), dict) else {}
    loaded = await _answer_and_counts(db, answer_id)
    if loaded is None:
        return
    answer, counts = loaded
    text, _ = render_parts(answer.text, str(answer.id))[-1]
    blocks = answer_blocks(text, str(answer.id), feedback=counts)
    if container.get("is_ephemeral"):
        response_url = body.get("response_url")
        if isinstance(response_url, str):
            await AsyncWebhookClient(response_url).send(text=text, blocks=blocks, replace_original=True)
        return
    channel, ts = container.get("channel_id"), container.get("message_ts")
    if isinstance(channel, str) and isinstance(ts, str):
        await client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        logger.info("Redrew answer %s with its feedback in %s", answer.id, channel)


async def _answer_and_counts(db: Database, answer_id: object) -> tuple[Message, tuple[int, int]] | None:
    try:
        answer_uuid = uuid.UUID(str(answer_id))
    except ValueError:
        return None
    async with db.sessions() as session:
        answer = await session.get(Message, answer_uuid)
        if answer is None or answer.role != "assistant":
            return None
        rows = (
            await session.execute(
                select(Feedback.rating, func.count()).where(Feedback.message_id == answer_uuid).group_by(Feedback.rating)
            )
        ).all()
    counts = dict(rows)
    return answer, (counts.get("up", 0), counts.get("down", 0))
