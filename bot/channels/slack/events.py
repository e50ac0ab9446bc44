"""The Slack Events API endpoint: verify, convert, queue, acknowledge."""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier
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


def slack_events_handler(bolt_app: AsyncApp, signing_secret: str):
    """The aiohttp handler: reject what Bolt would crash on, then let Bolt dispatch.

    Bolt verifies signatures too, but it raises (and aiohttp answers 500) on a
    non-numeric timestamp or a body that is not the JSON or form it expects.
    """
    verifier = SignatureVerifier(signing_secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp.isdigit() or not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            logger.info("Rejected a Slack request with a missing, stale or invalid signature")
            return web.json_response({"error": "invalid signature"}, status=401)
        problem = _malformed(body, request.content_type)
        if problem:
            logger.info("Rejected a signed Slack request: %s", problem)
            return web.json_response({"error": problem}, status=400)
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        return await to_aiohttp_response(await bolt_app.async_dispatch(bolt_request))

    return handle


def _malformed(body: str, content_type: str) -> str | None:
    """Say what is wrong with a body Bolt cannot handle; None when it is fine."""
    if content_type == "application/x-www-form-urlencoded":
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return "body is not valid JSON"
    if not isinstance(payload, dict):
        return "body is not a JSON object"
    if "event" in payload and not isinstance(payload["event"], dict):
        return "event is not an object"
    return None
