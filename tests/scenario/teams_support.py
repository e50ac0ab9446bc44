"""Helpers for the Teams scenario tests: the bot's environment and signed POSTs to /api/messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import aiohttp
import psycopg

from bot.channels.teams.testing import FakeIdentityProvider
from tests.support import bot_env

APP_ID = "00000000-0000-4000-8000-00000000b07a"
TENANT_ID = "9c4f7c1e-0000-4000-8000-0000000000aa"
# No Slack event is sent in these tests; Slack settings only need a well-formed value.
UNUSED_SLACK_API_URL = "http://127.0.0.1:9/api/"


def teams_env(*, database_url: str, identity: FakeIdentityProvider, data_dir: Path, **overrides: str) -> dict[str, str]:
    """Settings of a bot that runs as a user-assigned managed identity.

    It is the one Bot Framework credential type whose token endpoint may be plain
    http on the local machine (Azure App Service's IDENTITY_ENDPOINT), so the
    outbound token request runs through botbuilder and MSAL unchanged. MSAL
    accepts only https authorities for password credentials, so SingleTenant's
    token request cannot be served offline; tests/unit/test_teams_settings.py
    checks that configuration instead.
    """
    return bot_env(
        database_url=database_url,
        slack_api_url=UNUSED_SLACK_API_URL,
        data_dir=data_dir,
        MicrosoftAppId=APP_ID,
        MicrosoftAppType="UserAssignedMSI",
        MicrosoftAppTenantId=TENANT_ID,
        CHATOPS_TEAMS_OPENID_METADATA_URL=identity.metadata_url,
        IDENTITY_ENDPOINT=identity.identity_endpoint,
        IDENTITY_HEADER=identity.identity_header,
        **overrides,
    )


def bearer(identity: FakeIdentityProvider, activity: dict, **token_args) -> str:
    """The Authorization header the Bot Connector would send with ``activity``."""
    token_args.setdefault("audience", APP_ID)
    token_args.setdefault("service_url", activity["serviceUrl"])
    return "Bearer " + identity.token(**token_args)


async def post_activity(
    bot_url: str,
    activity: dict | None,
    *,
    authorization: str | None,
    body: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, float, str]:
    """POST an activity (or a raw ``body``) to /api/messages; return (status, seconds taken, response text)."""
    headers = {"Content-Type": content_type}
    if authorization is not None:
        headers["Authorization"] = authorization
    data = body if body is not None else json.dumps(activity)
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot_url}/api/messages", data=data, headers=headers) as response:
            text = await response.text()
            return response.status, time.perf_counter() - started, text


def query(urls, sql: str, *params) -> list[tuple]:
    with psycopg.connect(urls.libpq) as conn:
        return conn.execute(sql, params).fetchall()
