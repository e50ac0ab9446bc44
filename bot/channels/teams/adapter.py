"""The Teams endpoint: verify the Bot Framework token, then hand the activity to the turn handler.

botbuilder's ``CloudAdapter.process`` returns 500 for a missing Authorization
header or a token signed with an unknown key, and lets some token errors escape
as exceptions. So the handler authenticates first through the adapter's own
``BotFrameworkAuthentication`` and turns every failure into 401, then runs the
turn with the authenticated result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING

import requests
from aiohttp import web
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity, CallerIdConstants
from botframework.connector.auth import AuthenticationConstants, ServiceClientCredentialsFactory
from msrest.authentication import Authentication

from bot.config import Settings

if TYPE_CHECKING:
    from bot.runtime import Runtime

logger = logging.getLogger(__name__)

TurnHandler = Callable[[TurnContext], Awaitable[None]]


def bot_framework_configuration(settings: Settings) -> SimpleNamespace:
    """Build the configuration object that ``ConfigurationBotFrameworkAuthentication`` reads.

    Every endpoint is given explicitly, so botbuilder always takes its parameterised
    path. The values are botbuilder's public-cloud constants except the OpenID
    metadata URL, which comes from CHATOPS_TEAMS_OPENID_METADATA_URL (by default
    the public one), so offline tests run the same validation code as production.
    """
    return SimpleNamespace(
        APP_ID=settings.teams_app_id,
        APP_PASSWORD=settings.teams_app_password,
        APP_TENANTID=settings.teams_app_tenant_id,
        APP_TYPE=settings.teams_app_type,
        TO_BOT_FROM_CHANNEL_TOKEN_ISSUER=AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER,
        TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=settings.teams_openid_metadata_url,
        TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL=AuthenticationConstants.TO_BOT_FROM_EMULATOR_OPENID_METADATA_URL,
        TO_CHANNEL_FROM_BOT_LOGIN_URL=AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX,
        TO_CHANNEL_FROM_BOT_OAUTH_SCOPE=AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
        OAUTH_URL=AuthenticationConstants.OAUTH_URL,
        CALLER_ID=CallerIdConstants.public_azure_channel,
        VALIDATE_AUTHORITY=True,
    )


class ReusedCredentialsFactory(ServiceClientCredentialsFactory):
    """A credentials factory that creates one credentials object per app id, scope and login endpoint.

    botbuilder 4.17.1 creates new credentials for every connector, that is for
    every post, and each new MicrosoftAppCredentials starts with an empty MSAL token
    cache, so every post would first request a new access token. Reusing the
    object lets MSAL serve the cached token until it expires.
    """

    def __init__(self, inner: ServiceClientCredentialsFactory) -> None:
        self.inner = inner
        self._credentials: dict[tuple, Authentication] = {}

    async def is_valid_app_id(self, app_id: str) -> bool:
        return await self.inner.is_valid_app_id(app_id)

    async def is_authentication_disabled(self) -> bool:
        return await self.inner.is_authentication_disabled()

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Authentication:
        key = (app_id, oauth_scope, login_endpoint, validate_authority)
        if key not in self._credentials:
            self._credentials[key] = await self.inner.create_credentials(app_id, oauth_scope, login_endpoint, validate_authority)
        return self._credentials[key]


def create_adapter(settings: Settings) -> CloudAdapter:
    """Create a CloudAdapter for the app in ``settings``; raise ConfigError when a credential is missing."""
    settings.require_teams()
    configuration = bot_framework_configuration(settings)
    credentials = ReusedCredentialsFactory(ConfigurationServiceClientCredentialFactory(configuration))
    authentication = ConfigurationBotFrameworkAuthentication(configuration, credentials_factory=credentials)
    return CloudAdapter(authentication)


def messages_handler(adapter: CloudAdapter, on_turn: TurnHandler):
    """The aiohttp handler for ``POST /api/messages``."""

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        activity, status, problem = await _read_activity(request)
        if activity is None:
            logger.info("Rejected Teams request with status %d: %s", status, problem)
            return web.json_response({"error": problem}, status=status)

        auth_header = request.headers.get("Authorization", "").strip()
        if not auth_header:
            logger.warning("Rejected Teams activity %s: no Authorization header", activity.id)
            return _unauthorized()
        try:
            # NOTE: botframework fetches the signing keys with a blocking requests.get. It does so about
            # once a day and when a token names an unknown key, and the event loop waits meanwhile.
            authenticated = await adapter.bot_framework_authentication.authenticate_request(activity, auth_header)
        except requests.RequestException as exc:
            # The signing keys could not be fetched, so 503 asks the Bot Connector to retry.
            logger.error("Could not fetch Bot Framework signing keys: %s", exc)
            return web.json_response({"error": "token validation unavailable"}, status=503)
        except Exception as exc:  # PermissionError, PyJWT errors, IndexError (unknown key id), bare Exception
            logger.warning("Rejected Teams activity %s: %s: %s", activity.id, type(exc).__name__, exc)
            return _unauthorized()

        invoke_response = await adapter.process_activity(authenticated, activity, on_turn)
        logger.info(
            "Handled Teams %s activity %s in %.0f ms", activity.type, activity.id, (time.perf_counter() - started) * 1000
        )
        if invoke_response is not None:
            return web.json_response(invoke_response.body, status=invoke_response.status)
        return web.Response(status=200)

    return handle


async def _read_activity(request: web.Request) -> tuple[Activity | None, int, str]:
    """Parse the request body; return (activity, 200, "") or (None, 4xx status, the problem)."""
    if request.content_type != "application/json":
        return None, 415, f"content type {request.content_type!r} is not application/json"
    try:
        body = json.loads(await request.text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, 400, "body is not valid JSON"
    if not isinstance(body, dict):
        return None, 400, "body is not a JSON object"
    try:
        activity = Activity().deserialize(body)
    except (ValueError, TypeError, AttributeError):
        return None, 400, "body is not a Bot Framework activity"
    if not activity.type:
        return None, 400, "activity has no type"
    if not activity.service_url:
        # Replies go to serviceUrl, and token validation checks the claim only when it is present.
        return None, 400, "activity has no serviceUrl"
    return activity, 200, ""


def _unauthorized() -> web.Response:
    return web.json_response({"error": "unauthorized"}, status=401)


def install(runtime: Runtime) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Register the Teams channel client on ``runtime`` and return the ``/api/messages`` handler."""
    from bot.channels.teams.client import TeamsChannelClient
    from bot.channels.teams.turns import TeamsTurnHandler

    settings = runtime.settings
    adapter = create_adapter(settings)
    # The pipeline uses this same dict object, so a client added after start-up is used for replies.
    runtime.channels[TeamsChannelClient.platform] = TeamsChannelClient(adapter, runtime.db, settings.teams_app_id)
    return messages_handler(adapter, TeamsTurnHandler(runtime.db).on_turn)
