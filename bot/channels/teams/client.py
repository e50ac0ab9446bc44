"""Posting answers to Teams as proactive messages through the stored conversation reference.

The worker posts its reply long after Teams' HTTP request has ended, possibly in
another process or after a restart, so every post starts from the reference
stored in PostgreSQL rather than from an inbound turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity, ActivityTypes, ConversationReference

from bot.channels.base import ChannelClient
from bot.channels.teams.cards import feedback_attachment
from bot.channels.teams.convert import PLATFORM, to_markdown
from bot.channels.teams.references import load_reference
from bot.core.message import IncomingMessage, Reply
from bot.storage.database import Database

logger = logging.getLogger(__name__)

# A typing indicator shows only briefly, so it is sent again at this interval until the reply is posted.
TYPING_INTERVAL_S = 3.0
# Stop repeating it after this long, in case the reply is never posted.
TYPING_MAX_S = 120.0


class TeamsChannelClient(ChannelClient):
    """Posts replies and typing indicators into Teams conversations."""

    platform = PLATFORM

    def __init__(self, adapter: CloudAdapter, db: Database, app_id: str) -> None:
        self.adapter = adapter
        self.db = db
        self.app_id = app_id
        self._typing: dict[str, asyncio.Task] = {}

    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str:
        self._stop_typing(message.event_key)
        activity = Activity(type=ActivityTypes.message, text=to_markdown(reply.text), text_format="markdown")
        if reply.answer_id:
            activity.attachments = [feedback_attachment(reply.answer_id)]
        started = time.perf_counter()
        posted_id = await self._post(message, activity)
        logger.info(
            "Teams reply for event %s posted as %s in %.0f ms",
            message.event_key,
            posted_id,
            (time.perf_counter() - started) * 1000,
        )
        return posted_id

    async def show_progress(self, message: IncomingMessage) -> None:
        """Show a typing indicator until :meth:`send_reply` posts the answer."""
        await self._post(message, Activity(type=ActivityTypes.typing))
        self._stop_typing(message.event_key)
        self._typing[message.event_key] = asyncio.create_task(self._keep_typing(message))

    async def aclose(self) -> None:
        for event_key in list(self._typing):
            self._stop_typing(event_key)

    async def _keep_typing(self, message: IncomingMessage) -> None:
        deadline = time.monotonic() + TYPING_MAX_S
        try:
            while time.monotonic() < deadline:
                await asyncio.sleep(TYPING_INTERVAL_S)
                await self._post(message, Activity(type=ActivityTypes.typing))
        except Exception as exc:
            logger.info("Stopped the typing indicator for event %s: %s", message.event_key, exc)
        finally:
            if self._typing.get(message.event_key) is asyncio.current_task():
                del self._typing[message.event_key]

    def _stop_typing(self, event_key: str) -> None:
        task = self._typing.pop(event_key, None)
        if task is not None:
            task.cancel()

    async def _post(self, message: IncomingMessage, activity: Activity) -> str:
        """Send ``activity`` into the message's conversation or channel reply chain; return its id."""
        reference = await self._reference_for(message)
        TurnContext.apply_conversation_reference(activity, reference)
        posted: list[str] = []

        async def send(turn_context: TurnContext) -> None:
            # The adapter sends exactly this activity; TurnContext.send_activity would
            # address it as a reply to the continuation event's random id.
            responses = await turn_context.adapter.send_activities(turn_context, [activity])
            posted.append(responses[0].id or "")

        # NOTE: botbuilder's credentials fetch the outbound access token with a blocking call.
        # That happens when no cached token is valid (about hourly), and the event loop waits meanwhile.
        await self.adapter.continue_conversation(reference, send, bot_app_id=self.app_id)
        return posted[0]

    async def _reference_for(self, message: IncomingMessage) -> ConversationReference:
        conversation_id = message.extra.get("conversation_id") or message.channel_id
        reference = await load_reference(self.db, conversation_id)
        if reference is None:
            raise LookupError(f"no stored Teams conversation reference for {conversation_id!r}")
        root = message.extra.get("thread_root_id")
        if root:
            # A reply into a channel thread: the reply chain is named in the conversation id.
            reference.conversation.id = f"{reference.conversation.id};messageid={root}"
            reference.activity_id = root
        return reference
