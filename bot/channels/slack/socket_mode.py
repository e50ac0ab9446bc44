"""Socket Mode: the bot opens a WebSocket to Slack and receives events over it, with no inbound port."""

from __future__ import annotations

import logging
import time

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError

logger = logging.getLogger(__name__)


async def connect_socket_mode(bolt_app: AsyncApp, *, app_token: str, client: AsyncWebClient) -> AsyncSocketModeHandler:
    """Connect to Slack with the app-level token and dispatch what arrives to ``bolt_app``.

    ``client`` requests the WebSocket address from the Web API (``apps.connections.open``),
    so a rejected token fails here with ConfigError instead of being retried for
    ever. Each envelope is acknowledged after its listener has returned, as over
    HTTP; the handler reconnects by itself when Slack asks it to or the connection drops.
    """
    started = time.perf_counter()
    try:
        response = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise ConfigError(
            f"Slack rejected SLACK_APP_TOKEN ({exc.response.get('error')}): create an app-level token "
            "with the connections:write scope under 'Basic Information' → 'App-Level Tokens'"
        ) from exc
    handler = AsyncSocketModeHandler(bolt_app, app_token=app_token, web_client=client)
    # The address just issued is valid for one connection; hand it over instead of asking again.
    handler.client.wss_uri = str(response["url"])
    await handler.connect_async()
    logger.info("Connected to Slack in Socket Mode in %.0f ms", (time.perf_counter() - started) * 1000)
    return handler
