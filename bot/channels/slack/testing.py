"""A stand-in for Slack's Web API on 127.0.0.1 and helpers to sign Events API requests.

Used by the test suite and by ``chatops slack test-event``. The server records
every call it receives so a test can check exactly what the bot sent to Slack.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

DEFAULT_BOT_USER_ID = "UBOT0001"


@dataclass
class RecordedCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class FakeSlackApi:
    """Serves ``/api/<method>`` like Slack's Web API and records each call.

    ``rate_limits`` maps a method to a queue of Retry-After values: each call to that
    method pops one and answers HTTP 429 with it.
    """

    def __init__(self, *, bot_user_id: str = DEFAULT_BOT_USER_ID, team_id: str = "T0TEST001") -> None:
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self.calls: list[RecordedCall] = []
        self.rate_limits: dict[str, list[int]] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ts_counter = 0
        self.port: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    async def start(self, port: int = 0) -> FakeSlackApi:
        app = web.Application()
        app.router.add_post("/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[RecordedCall]:
        """Wait until ``method`` was called at least ``count`` times; raise TimeoutError otherwise."""

        def enough() -> bool:
            return len(self.calls_to(method)) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout)
        return self.calls_to(method)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        headers = {key: value for key, value in request.headers.items() if key.lower() != "authorization"}
        headers["authorization-present"] = str("Authorization" in request.headers)
        pending = self.rate_limits.get(method)
        if pending:
            retry_after = pending.pop(0)
            self.calls.append(RecordedCall(method + ":rate_limited", params, headers))
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)})
        async with self._changed:
            self.calls.append(RecordedCall(method, params, headers))
            self._changed.notify_all()
        return web.json_response(self._response(method, params))

    def _response(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": self.bot_user_id, "bot_id": "B0TEST001", "team_id": self.team_id, "user": "hrbot"}
        if method == "chat.postMessage":
            self._ts_counter += 1
            ts = f"{int(time.time())}.{self._ts_counter:06d}"
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": {"text": params.get("text"), "ts": ts}}
        return {"ok": True}


async def _read_params(request: web.Request) -> dict[str, Any]:
    body = await request.text()
    if request.content_type == "application/json":
        return json.loads(body or "{}")
    return dict(parse_qsl(body))


def signed_headers(body: str, signing_secret: str, *, timestamp: int | None = None, **extra: str) -> dict[str, str]:
    """Headers of an Events API request signed the way Slack signs them."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        **extra,
    }


def app_mention_payload(
    text: str,
    *,
    event_id: str,
    channel: str = "C0TEST001",
    user: str = "U0EMPLOYEE1",
    ts: str | None = None,
    thread_ts: str | None = None,
    bot_user_id: str = DEFAULT_BOT_USER_ID,
    team_id: str = "T0TEST001",
    event_type: str = "app_mention",
    channel_type: str | None = None,
) -> dict[str, Any]:
    """An Events API ``event_callback`` body as Slack sends it."""
    ts = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {
        "type": event_type,
        "user": user,
        "text": text if event_type != "app_mention" else f"<@{bot_user_id}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    if channel_type:
        event["channel_type"] = channel_type
    return {
        "token": "unused-verification-token",
        "team_id": team_id,
        "api_app_id": "A0TEST001",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(float(ts)),
        "authorizations": [{"team_id": team_id, "user_id": bot_user_id, "is_bot": True}],
    }
