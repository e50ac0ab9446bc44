"""Posting replies to Slack through the Web API."""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.base import ChannelClient
from bot.core.message import IncomingMessage, Reply

logger = logging.getLogger(__name__)

PROGRESS_REACTION = "eyes"


def create_web_client(token: str, base_url: str) -> AsyncWebClient:
    """A Web API client that waits out HTTP 429 (honouring Retry-After) and retries dropped connections."""
    client = AsyncWebClient(token=token, base_url=base_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=3))
    client.retry_handlers.append(AsyncConnectionErrorRetryHandler(max_retry_count=2))
    return client


class SlackChannelClient(ChannelClient):
    platform = "slack"

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str:
        started = time.perf_counter()
        response = await self.client.chat_postMessage(
            channel=message.channel_id,
            thread_ts=message.thread_key,
            text=reply.text,
            unfurl_links=False,
            unfurl_media=False,
        )
        ts = str(response["ts"])
        logger.info(
            "Slack chat.postMessage to %s thread %s took %.0f ms",
            message.channel_id,
            message.thread_key,
            (time.perf_counter() - started) * 1000,
        )
        return ts

    async def show_progress(self, message: IncomingMessage) -> None:
        try:
            await self.client.reactions_add(channel=message.channel_id, timestamp=message.message_id, name=PROGRESS_REACTION)
        except SlackApiError as exc:
            # already_reacted on a retried job is expected; anything else is only cosmetic.
            logger.info("Slack reactions.add failed: %s", exc.response.get("error"))
