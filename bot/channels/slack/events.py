"""The Slack Events API endpoint: verify, convert, queue, acknowledge."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.slack.convert import to_incoming
from bot.core.intake import accept_message
from bot.storage.database import Database

logger = logging.getLogger(__name__)


def create_bolt_app(*, signing_secret: str, client: AsyncWebClient, db: Database) -> AsyncApp:
    """A Bolt app whose listeners only queue work, so Slack gets its answer in milliseconds.

    ``process_before_response`` makes Bolt acknowledge after the listener returns:
    the message is in the queue before Slack hears 200, and a failure to queue
    returns an error so that Slack delivers the event again.
    """
    app = AsyncApp(
        signing_secret=signing_secret,
        client=client,
        process_before_response=True,
        # The bot's own messages are dropped in to_incoming, with other bots' ones.
        ignoring_self_events_enabled=True,
    )

    async def queue_event(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any]) -> None:
        message = to_incoming(event, team_id=body.get("team_id"), bot_user_id=context.get("bot_user_id"))
        if message is None:
            return
        if event.get("type") == "message" and message.channel_type != "im":
            # In channels the bot answers when mentioned; that arrives as app_mention.
            return
        await accept_message(db, message)

    app.event("app_mention")(queue_event)
    app.event("message")(queue_event)
    return app


def slack_events_handler(bolt_app: AsyncApp):
    async def handle(request: web.Request) -> web.Response:
        bolt_response = await bolt_app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(bolt_response)

    return handle
