"""Events API listeners: decide which messages the bot answers, and queue them.

The bot answers:

* every ``app_mention``;
* every message a person sends it in a DM;
* messages in a channel thread where it has answered before, without a mention;
* an edited question once more, in the same thread, the first time a person
  changes the text of a message the bot accepted. Later edits of that message,
  and changes that leave its text as it was, are ignored.

A file shared in a DM is queued too; the worker adds it to the knowledge sources
when the sender has the HR or admin role. Messages from bots (this one included),
deletions and link previews are ignored. A message that arrives both as
``message`` and as ``app_mention`` has one key and gets one reply.
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from sqlalchemy import text

from bot.channels.slack.convert import (
    PLATFORM,
    edit_to_incoming,
    file_share_to_incoming,
    is_thread_reply,
    original_key,
    to_incoming,
)
from bot.core.intake import accept_message
from bot.core.message import IncomingMessage
from bot.storage.database import Database

logger = logging.getLogger(__name__)

_BOT_ANSWERED_IN_THREAD = text(
    "SELECT 1 FROM conversations c JOIN messages m ON m.conversation_id = c.id "
    "WHERE c.platform = :platform AND c.channel_id = :channel AND c.thread_key = :thread "
    "AND m.role = 'assistant' LIMIT 1"
)
_EVENT_ACCEPTED = text("SELECT 1 FROM processed_events WHERE event_key = :event_key")


# Event types that EventIntake queues; Bolt dispatches every other event.
QUEUED_EVENT_TYPES = frozenset({"app_mention", "message"})


class EventIntake:
    """The gate for Events API messages: decides whether one gets an answer, and queues it.

    Bolt's listeners call it, and so does the HTTP endpoint for the callbacks it
    handles without Bolt (see ``bot.channels.slack.endpoint``). ``bot_user_id`` is
    the bot's own user id as Bolt's authorization found it, recorded from the
    first event that went through Bolt. None until then.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.bot_user_id: str | None = None

    async def queue(self, event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None) -> None:
        message = await _message_to_answer(self.db, event, team_id=team_id, bot_user_id=bot_user_id)
        if message is not None:
            await accept_message(self.db, message)


def register_event_listeners(app: AsyncApp, intake: EventIntake) -> None:
    async def queue_event(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        bot_user_id = context.get("bot_user_id")
        if bot_user_id:
            intake.bot_user_id = bot_user_id
        await intake.queue(event, team_id=body.get("team_id"), bot_user_id=bot_user_id)

    for event_type in QUEUED_EVENT_TYPES:
        app.event(event_type)(queue_event)


async def _message_to_answer(
    db: Database, event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    """Return the message to queue for ``event``, or None when the bot stays silent."""
    subtype = event.get("subtype")
    if event.get("type") == "message" and subtype == "message_changed":
        return await _edit_to_answer(db, event, team_id=team_id, bot_user_id=bot_user_id)
    if event.get("type") == "message" and subtype == "file_share" and event.get("channel_type") == "im":
        return file_share_to_incoming(event, team_id=team_id, bot_user_id=bot_user_id)
    message = to_incoming(event, team_id=team_id, bot_user_id=bot_user_id)
    if message is None or event.get("type") == "app_mention" or message.channel_type == "im":
        return message
    # A channel message without a mention: answered only in a thread the bot is part of.
    if is_thread_reply(event) and await _bot_answered_in_thread(db, message):
        return message
    return None


async def _edit_to_answer(
    db: Database, event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    message = edit_to_incoming(event, team_id=team_id, bot_user_id=bot_user_id)
    if message is None:
        return None
    async with db.engine.connect() as conn:
        accepted = (await conn.execute(_EVENT_ACCEPTED, {"event_key": original_key(message.event_key)})).first()
    if accepted is None:
        logger.info("Ignored an edit of message %s, which the bot did not answer", message.message_id)
        return None
    return message


async def _bot_answered_in_thread(db: Database, message: IncomingMessage) -> bool:
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                _BOT_ANSWERED_IN_THREAD,
                {"platform": PLATFORM, "channel": message.channel_id, "thread": message.thread_key},
            )
        ).first()
    return row is not None
