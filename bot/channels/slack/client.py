"""Posting answers to Slack through the Web API, and the worker-side preparation of questions."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.channels.base import ChannelClient
from bot.channels.slack.blocks import answer_blocks
from bot.channels.slack.convert import mentioned_user_ids, to_plain_text
from bot.channels.slack.delivery import PLACEHOLDER, POSTED, DeliveryLog
from bot.channels.slack.files import FileImporter, UploadStore
from bot.channels.slack.format import markdown_to_mrkdwn, split_text
from bot.channels.slack.threads import thread_transcript
from bot.channels.slack.users import UserNames
from bot.core.message import IncomingMessage, Reply
from bot.core.roles import RoleDirectory
from bot.storage.database import Database

logger = logging.getLogger(__name__)

PROGRESS_REACTION = "eyes"
PLACEHOLDER_TEXT = ":hourglass_flowing_sand: Looking into it…"
THREAD_PROGRESS_TEXT = ":hourglass_flowing_sand: Reading the thread… I'll post the summary here, visible only to you."
DEFAULT_PLACEHOLDER_AFTER_S = 1.5
# chat.update answers these when the placeholder is gone; the part is posted anew.
_PLACEHOLDER_GONE = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})


# slack_sdk's own limit for one call, which a shared session has to set itself.
WEB_API_TIMEOUT_S = 30


def create_web_client(token: str, base_url: str, *, keep_alive: bool = True) -> AsyncWebClient:
    """Create a Web API client that waits out HTTP 429 (honouring Retry-After) and retries dropped connections.

    With ``keep_alive``, inside a running event loop, the client gets one aiohttp
    session for all its calls, so they reuse open connections. Without it,
    slack_sdk opens a new session, and so a new TCP and TLS connection, for every
    call: three per reply (progress reaction, reply, removing the reaction).
    Close the session with :func:`close_web_client`. Bolt's lazy listeners
    deep-copy the client, which a session does not survive, so Bolt gets a
    client without one.
    """
    session = None
    if keep_alive:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEB_API_TIMEOUT_S))
    client = AsyncWebClient(token=token, base_url=base_url, session=session, timeout=WEB_API_TIMEOUT_S)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    return client


async def close_web_client(client: AsyncWebClient) -> None:
    """Close the client's shared session, if it has one."""
    if client.session is not None and not client.session.closed:
        await client.session.close()


def render_parts(text: str, answer_id: str | None) -> list[tuple[str, list[dict[str, Any]] | None]]:
    """The messages an answer is posted as: (mrkdwn text, blocks), buttons on the last one.

    Rendering is deterministic, so a retried job and a feedback click that
    redraws the last part produce the same messages.
    """
    parts = split_text(markdown_to_mrkdwn(text)) or ["…"]
    rendered: list[tuple[str, list[dict[str, Any]] | None]] = [(part, None) for part in parts[:-1]]
    rendered.append((parts[-1], answer_blocks(parts[-1], answer_id) if answer_id else None))
    return rendered


class SlackChannelClient(ChannelClient):
    """Posts answers into the asker's thread, or privately through a ``response_url``.

    Progress shows as a reaction on the question and, when the answer takes longer
    than ``placeholder_after_s``, a placeholder message that the answer's first part
    replaces. Parts already accepted by Slack are recorded in the database, so a
    retried job never posts them again. Call :meth:`attach` before the worker starts.
    """

    platform = "slack"

    def __init__(self, client: AsyncWebClient, *, placeholder_after_s: float = DEFAULT_PLACEHOLDER_AFTER_S) -> None:
        self.client = client
        self.placeholder_after_s = placeholder_after_s
        self.users = UserNames(client)
        self.deliveries: DeliveryLog | None = None
        self.files: FileImporter | None = None
        self._answer_ready: dict[str, asyncio.Event] = {}
        self._placeholders: dict[str, asyncio.Task[None]] = {}

    def attach(self, *, db: Database, sources: UploadStore, roles: RoleDirectory) -> None:
        """Give the client the database for delivery records, and the store and roles for shared files."""
        self.deliveries = DeliveryLog(db)
        self.files = FileImporter(self.client, sources, roles)

    async def aclose(self) -> None:
        await close_web_client(self.client)

    async def prepare(self, message: IncomingMessage) -> IncomingMessage:
        """Replace people's mentions with their display names; fetch the thread a shortcut names."""
        thread = message.extra.get("thread")
        if isinstance(thread, dict):
            try:
                transcript = await thread_transcript(self.client, self.users, channel=thread["channel"], ts=thread["ts"])
            except SlackApiError as exc:
                error = exc.response.get("error")
                logger.info("Could not read thread %s in %s: %s", thread["ts"], thread["channel"], error)
                return replace(message, extra={**message.extra, "direct_reply": _thread_unreadable(error)})
            return _with_text(message, f"{message.text} {transcript}")
        user_ids = mentioned_user_ids(message.text)
        names = await self.users.names(user_ids) if user_ids else {}
        return _with_text(message, to_plain_text(message.text, names))

    async def handle_directly(self, message: IncomingMessage) -> str | None:
        if isinstance(message.extra.get("direct_reply"), str):
            return message.extra["direct_reply"]
        if not message.extra.get("files"):
            return None
        if self.files is None:
            raise RuntimeError("SlackChannelClient.attach() was not called; shared files cannot be stored")
        return await self.files.import_files(message)

    async def show_progress(self, message: IncomingMessage) -> None:
        if _is_private_reply(message):
            if "thread" in message.extra:
                # A shortcut's acknowledgement cannot carry text, unlike a slash command's.
                await self._respond(message, THREAD_PROGRESS_TEXT, None)
            return
        try:
            await self.client.reactions_add(channel=message.channel_id, timestamp=message.message_id, name=PROGRESS_REACTION)
        except SlackApiError as exc:
            # already_reacted on a retried job is expected; anything else is only cosmetic.
            logger.info("Slack reactions.add failed: %s", exc.response.get("error"))
        if self.deliveries is None:
            return
        ready = asyncio.Event()
        self._answer_ready[message.event_key] = ready
        task = asyncio.create_task(self._post_placeholder(message, ready))
        self._placeholders[message.event_key] = task
        task.add_done_callback(lambda _: self._forget_placeholder(message.event_key, task))

    async def _post_placeholder(self, message: IncomingMessage, ready: asyncio.Event) -> None:
        """Post the placeholder unless the answer is ready within ``placeholder_after_s``.

        An answer's first part posted or a placeholder recorded by an earlier run of
        the job is looked up only when the time is up, which most answers never reach.
        """
        try:
            await asyncio.wait_for(ready.wait(), self.placeholder_after_s)
            return
        except asyncio.TimeoutError:
            pass
        try:
            if 0 in await self.deliveries.parts(message.event_key):
                return
            response = await self._post(message, PLACEHOLDER_TEXT, None)
            await self.deliveries.record_placeholder(message.event_key, str(response["ts"]))
        except Exception:
            logger.warning("Could not post the progress message for event %s", message.event_key, exc_info=True)

    def _forget_placeholder(self, event_key: str, task: asyncio.Task[None]) -> None:
        if self._placeholders.get(event_key) is task:
            del self._placeholders[event_key]
            self._answer_ready.pop(event_key, None)

    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str:
        await self._settle_placeholder(message.event_key)
        if self.deliveries is None:
            raise RuntimeError("SlackChannelClient.attach() was not called; answers cannot be delivered")
        delivered = await self.deliveries.parts(message.event_key)
        first_id: str | None = None
        for index, (text, blocks) in enumerate(render_parts(reply.text, reply.answer_id)):
            part = delivered.get(index)
            if part is not None and part.state == POSTED:
                message_id = part.message_id
            else:
                placeholder = part.message_id if part is not None and part.state == PLACEHOLDER else None
                message_id = await self._deliver_part(message, text, blocks, placeholder, index)
                await self.deliveries.record_posted(message.event_key, index, message_id)
            first_id = first_id or message_id
        await self._clear_progress(message)
        return first_id

    async def _settle_placeholder(self, event_key: str) -> None:
        """Stop a pending placeholder, or wait until one being posted is recorded."""
        ready = self._answer_ready.get(event_key)
        if ready is not None:
            ready.set()
        task = self._placeholders.get(event_key)
        if task is not None:
            await asyncio.shield(task)

    async def _deliver_part(self, message, text: str, blocks, placeholder_ts: str | None, index: int) -> str:
        if _is_private_reply(message):
            await self._respond(message, text, blocks)
            return f"response:{message.message_id}:{index}"
        if placeholder_ts is not None:
            try:
                await self._update(message.channel_id, placeholder_ts, text, blocks)
                return placeholder_ts
            except SlackApiError as exc:
                if exc.response.get("error") not in _PLACEHOLDER_GONE:
                    raise
                logger.info("The progress message for event %s is gone; posting the answer anew", message.event_key)
        response = await self._post(message, text, blocks)
        return str(response["ts"])

    async def _post(self, message: IncomingMessage, text: str, blocks):
        started = time.perf_counter()
        response = await self.client.chat_postMessage(
            channel=message.channel_id,
            thread_ts=message.thread_key,
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        logger.info(
            "Slack chat.postMessage to %s thread %s took %.0f ms",
            message.channel_id,
            message.thread_key,
            (time.perf_counter() - started) * 1000,
        )
        return response

    async def _update(self, channel: str, ts: str, text: str, blocks) -> None:
        started = time.perf_counter()
        # An empty block list removes blocks the placeholder might carry.
        await self.client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks or [])
        logger.info("Slack chat.update of %s in %s took %.0f ms", ts, channel, (time.perf_counter() - started) * 1000)

    async def _respond(self, message: IncomingMessage, text: str, blocks) -> None:
        """Post one part privately to the asker through the command's response_url."""
        started = time.perf_counter()
        webhook = AsyncWebhookClient(message.extra["response_url"], retry_handlers=list(self.client.retry_handlers))
        response = await webhook.send(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)
        if response.status_code != 200:
            raise SlackApiError(f"response_url returned HTTP {response.status_code}", {"error": response.body})
        logger.info("Slack response_url post for %s took %.0f ms", message.event_key, (time.perf_counter() - started) * 1000)

    async def _clear_progress(self, message: IncomingMessage) -> None:
        if _is_private_reply(message):
            return
        try:
            await self.client.reactions_remove(channel=message.channel_id, timestamp=message.message_id, name=PROGRESS_REACTION)
        except SlackApiError as exc:
            logger.info("Slack reactions.remove failed: %s", exc.response.get("error"))


def _is_private_reply(message: IncomingMessage) -> bool:
    return bool(message.extra.get("response_url"))


def _thread_unreadable(error: object) -> str:
    if error in {"not_in_channel", "channel_not_found"}:
        return "I can't read this thread because I'm not a member of the channel. Add me to the channel and try again."
    return "I couldn't read this thread from Slack, so there is nothing to summarize. Please try again later."


def _with_text(message: IncomingMessage, text: str) -> IncomingMessage:
    return replace(message, text=text)
