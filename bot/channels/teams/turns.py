"""Handling of each authenticated Teams activity, while Teams waits for the HTTP response.

Nothing here calls the model: a question is stored as a job and answered later
through the stored conversation reference, and a card submit is stored as
feedback at once.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.schema import Activity, ActivityTypes

from bot.channels.teams.cards import RATING_LABELS, FeedbackSubmit, InvalidSubmitError, parse_feedback_submit
from bot.channels.teams.convert import MAX_ID_COLUMN, fit_key, sender_id, to_incoming
from bot.channels.teams.references import save_reference
from bot.core.intake import accept_message
from bot.storage.database import Database
from bot.storage.feedback import UnknownAnswerError, record_feedback

logger = logging.getLogger(__name__)

UNKNOWN_ANSWER_REPLY = (
    "I could not find the answer this card belongs to, so your feedback was not saved. "
    "Please rate the answer again from its own card."
)
INVALID_SUBMIT_REPLY = "I could not read that card submit, so nothing was saved."


class TeamsTurnHandler:
    """Stores each conversation's reference, queues questions and records card feedback."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if activity.conversation and activity.conversation.id and activity.service_url and activity.recipient:
            await save_reference(self.db, activity)
        if activity.type == ActivityTypes.message:
            await self._on_message(turn_context)
        elif activity.type == ActivityTypes.invoke:
            await self._reject_invoke(turn_context)
        else:
            logger.debug("Ignored Teams %s activity %s", activity.type, activity.id)

    async def _on_message(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if activity.value is not None:
            # A card submit: no text, the payload in value. It never reaches a skill.
            await self._on_submit(turn_context)
            return
        message = to_incoming(activity)
        if message is None:
            logger.debug("Ignored Teams message %s: nothing to answer", activity.id)
            return
        await accept_message(self.db, message)

    async def _on_submit(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        try:
            submit = parse_feedback_submit(activity.value)
        except InvalidSubmitError as exc:
            logger.warning("Rejected card submit %s: %s", activity.id, exc)
            await self._reply(turn_context, INVALID_SUBMIT_REPLY)
            return
        if submit is None:
            logger.info("Ignored card submit %s with no known action", activity.id)
            return
        await self._reply(turn_context, await self._record(activity, submit))

    async def _record(self, activity: Activity, submit: FeedbackSubmit) -> str:
        """Store the feedback and return the confirmation to post."""
        user_id = fit_key(sender_id(activity), MAX_ID_COLUMN)
        try:
            async with self.db.transaction() as session:
                await record_feedback(
                    session, answer_id=submit.answer_id, user_id=user_id, rating=submit.rating, comment=submit.comment
                )
        except UnknownAnswerError:
            logger.info("Card submit %s names unknown answer %r; nothing stored", activity.id, submit.answer_id)
            return UNKNOWN_ANSWER_REPLY
        logger.info("Stored %s feedback on answer %s from card submit %s", submit.rating, submit.answer_id, activity.id)
        if submit.rating:
            return f"Thanks for your feedback ({RATING_LABELS[submit.rating]}). It is saved with the answer for HR to review."
        return "Thanks for your comment. It is saved with the answer for HR to review."

    async def _reply(self, turn_context: TurnContext, text: str) -> None:
        # The feedback is already stored; a failed confirmation should not make Teams send the submit again.
        try:
            await turn_context.send_activity(text)
        except Exception:
            logger.warning("Could not post the reply to card submit %s", turn_context.activity.id, exc_info=True)

    async def _reject_invoke(self, turn_context: TurnContext) -> None:
        # The bot's cards use Action.Submit, which arrives as a message; no invoke is expected.
        name = turn_context.activity.name
        logger.info("Rejected unsupported Teams invoke %r", name)
        response = InvokeResponse(status=HTTPStatus.BAD_REQUEST, body={"error": f"unsupported invoke {name!r}"})
        await turn_context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))
