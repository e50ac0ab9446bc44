"""A stand-in for Slack on 127.0.0.1, and helpers to build and sign what Slack sends.

Used by the test suite and by ``chatops slack test-event``. The server answers
the Web API methods the bot calls, keeps the messages it posts (so a test reads
a thread as a person would see it), serves private file downloads and
``response_url`` posts, and runs a Socket Mode WebSocket endpoint that
``apps.connections.open`` points to. It records every call it receives, so a
test can check exactly what the bot sent to Slack.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from bot.channels.slack.client import PLACEHOLDER_TEXT
from bot.channels.slack.testing_payloads import (
    DEFAULT_BOT_USER_ID,
    DEFAULT_TEAM_ID,
    app_mention_payload,
    block_action_payload,
    event_callback,
    form_body,
    interactivity_body,
    message_shortcut_payload,
    signed_headers,
    slash_command_fields,
    view_submission_payload,
)

# The payload builders are re-exported so that tests import everything from one module.
__all__ = [
    "DEFAULT_BOT_USER_ID",
    "DEFAULT_TEAM_ID",
    "FakeSlackApi",
    "RecordedCall",
    "SocketAck",
    "app_mention_payload",
    "block_action_payload",
    "event_callback",
    "form_body",
    "interactivity_body",
    "message_shortcut_payload",
    "signed_headers",
    "slash_command_fields",
    "view_submission_payload",
]

DEFAULT_BOT_ID = "B0TEST001"


@dataclass
class RecordedCall:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)
    # The caller's (host, port): calls on one kept-alive connection share it.
    peer: tuple[str, int] | None = None


@dataclass
class SocketAck:
    """An acknowledgement the bot sent over the Socket Mode connection."""

    envelope_id: str
    payload: dict[str, Any] | None
    at: float = field(default_factory=time.monotonic)


class FakeSlackApi:
    """Serves ``/api/<method>`` like Slack's Web API and records each call.

    ``rate_limits`` maps a method to a queue of Retry-After values: each call to
    that method pops one and answers HTTP 429 with it, or answers normally when
    the value is None. ``errors`` works the same way with Slack error codes,
    answered as ``{"ok": false, "error": ...}``.
    """

    def __init__(
        self, *, bot_user_id: str = DEFAULT_BOT_USER_ID, team_id: str = DEFAULT_TEAM_ID, bot_token: str | None = None
    ) -> None:
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        # When set, API calls and downloads must carry this token, as Slack would require.
        self.bot_token = bot_token
        self.calls: list[RecordedCall] = []
        self.rate_limits: dict[str, list[int | None]] = {}
        self.errors: dict[str, list[str | None]] = {}
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.acks: list[SocketAck] = []
        self.envelopes_sent: dict[str, float] = {}
        self._sockets: set[web.WebSocketResponse] = set()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ts_counter = 0
        self.port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    async def start(self, port: int = 0) -> FakeSlackApi:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/files-pri/{file_id}/{name}", self._handle_download)
        app.router.add_post("/response/{token}", self._handle_response_url)
        app.router.add_get("/socket", self._handle_socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for socket in list(self._sockets):
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- What a test sets up ---------------------------------------------------

    def add_user(self, user_id: str, display_name: str, real_name: str | None = None) -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": display_name.lower().replace(" ", "."),
            "real_name": real_name or display_name,
            "profile": {"display_name": display_name, "real_name": real_name or display_name},
        }

    def add_message(self, channel: str, ts: str, text: str, *, user: str, thread_ts: str | None = None) -> None:
        """Put a person's message into a channel, as if it had been posted before the test."""
        message = {"type": "message", "user": user, "text": text, "ts": ts, "channel": channel}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.messages[(channel, ts)] = message

    def add_file(self, file_id: str, name: str, data: bytes, *, filetype: str = "markdown") -> dict[str, Any]:
        """Serve a private file and return the file object an event carries for it."""
        info = {
            "id": file_id,
            "name": name,
            "title": name,
            "filetype": filetype,
            "size": len(data),
            "url_private_download": f"{self.base_url}/files-pri/{file_id}/{name}",
        }
        self.files[file_id] = (info, data)
        return dict(info)

    def response_url(self, token: str | None = None) -> str:
        return f"{self.base_url}/response/{token or uuid.uuid4().hex}"

    # -- What a test reads back ------------------------------------------------

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Return the thread's messages as they are now (updates applied), oldest first."""
        found = [
            message
            for (message_channel, ts), message in self.messages.items()
            if message_channel == channel and (ts == thread_ts or message.get("thread_ts") == thread_ts)
        ]
        return sorted(found, key=lambda message: message["ts"])

    def bot_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        return [message for message in self.thread(channel, thread_ts) if message.get("user") == self.bot_user_id]

    def answers(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Return the bot's messages in the thread, leaving out a progress placeholder not yet replaced."""
        return [message for message in self.bot_messages(channel, thread_ts) if message.get("text") != PLACEHOLDER_TEXT]

    async def wait_for_answers(
        self, channel: str, thread_ts: str, count: int = 1, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Wait until the thread contains ``count`` answer messages; return what is there after ``timeout``."""
        try:
            await self.wait_until(lambda: len(self.answers(channel, thread_ts)) >= count, timeout)
        except TimeoutError:
            pass
        return self.answers(channel, thread_ts)

    def responses(self, response_url: str) -> list[RecordedCall]:
        """Return the posts the bot made to one ``response_url``, in order."""
        token = response_url.rstrip("/").rsplit("/", 1)[-1]
        return [call for call in self.calls_to("response_url") if call.params.get("token") == token]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 60.0) -> list[RecordedCall]:
        """Wait until ``method`` was called at least ``count`` times; raise TimeoutError otherwise."""
        await self.wait_until(lambda: len(self.calls_to(method)) >= count, timeout)
        return self.calls_to(method)

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait until ``condition()`` is true after some call; raise TimeoutError otherwise."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(condition), timeout)

    # -- Socket Mode -----------------------------------------------------------

    async def send_envelope(
        self, kind: str, payload: dict[str, Any], *, envelope_id: str | None = None, retry_attempt: int = 0
    ) -> str:
        """Send one envelope (``events_api``, ``slash_commands`` or ``interactive``) to every connected bot."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        self.envelopes_sent[envelope_id] = time.monotonic()
        for socket in list(self._sockets):
            await socket.send_str(json.dumps(envelope))
        return envelope_id

    async def wait_for_connection(self, timeout: float = 30.0) -> None:
        await self.wait_until(lambda: bool(self._sockets), timeout)

    def acks_for(self, envelope_id: str) -> list[SocketAck]:
        return [ack for ack in self.acks if ack.envelope_id == envelope_id]

    # -- Request handlers ------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await _read_params(request)
        headers = {key: value for key, value in request.headers.items() if key.lower() != "authorization"}
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        headers["authorization-present"] = str(bool(token))
        retry_after = _pop(self.rate_limits, method)
        if retry_after is not None:
            await self._record(RecordedCall(method + ":rate_limited", params, headers))
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)}
            )
        await self._record(RecordedCall(method, params, headers, peer=_peer(request)))
        error = _pop(self.errors, method) or self._token_error(method, token)
        if error:
            return web.json_response({"ok": False, "error": error})
        return web.json_response(self._response(method, params))

    def _token_error(self, method: str, token: str) -> str | None:
        if method == "apps.connections.open":
            return None if token.startswith("xapp-") else "not_allowed_token_type"
        if self.bot_token is not None and token != self.bot_token:
            return "invalid_auth"
        return None

    async def _handle_download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        await self._record(RecordedCall("file_download", {"file": file_id}, {"authorization-present": str(bool(token))}))
        if file_id not in self.files:
            return web.Response(status=404)
        if not token or (self.bot_token is not None and token != self.bot_token):
            # Slack answers an unauthenticated download with its sign-in page.
            return web.Response(status=302, headers={"Location": f"{self.base_url}/signin"})
        return web.Response(body=self.files[file_id][1], content_type="application/octet-stream")

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        params = json.loads(await request.text() or "{}")
        params["token"] = request.match_info["token"]
        await self._record(RecordedCall("response_url", params, dict(request.headers)))
        return web.Response(text="ok")

    async def _handle_socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.send_str(json.dumps({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0TEST001"}}))
        async with self._changed:
            self._sockets.add(socket)
            self._changed.notify_all()
        try:
            async for frame in socket:
                if frame.type == WSMsgType.TEXT:
                    await self._record_ack(json.loads(frame.data))
        finally:
            self._sockets.discard(socket)
        return socket

    async def _record_ack(self, message: dict[str, Any]) -> None:
        async with self._changed:
            self.acks.append(SocketAck(str(message.get("envelope_id")), message.get("payload")))
            self._changed.notify_all()

    async def _record(self, call: RecordedCall) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def _response(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "users.info": self._user_info,
            "conversations.replies": self._replies,
            "files.info": self._file_info,
            "views.open": self._open_view,
            "apps.connections.open": self._open_connection,
        }.get(method)
        return handler(params) if handler else {"ok": True}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "user_id": self.bot_user_id, "bot_id": DEFAULT_BOT_ID, "team_id": self.team_id, "user": "hrbot"}

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        self._ts_counter += 1
        ts = f"{int(time.time())}.{self._ts_counter:06d}"
        channel = str(params.get("channel"))
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": DEFAULT_BOT_ID,
            "text": params.get("text"),
            "blocks": _json_field(params.get("blocks")),
            "ts": ts,
            "channel": channel,
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        self.messages[(channel, ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": params.get("text"), "ts": ts}}

    def _update_message(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (str(params.get("channel")), str(params.get("ts")))
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        self.messages[key].update(text=params.get("text"), blocks=_json_field(params.get("blocks")), edited=True)
        return {"ok": True, "channel": key[0], "ts": key[1], "text": params.get("text")}

    def _user_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(params.get("user")))
        return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(params.get("channel")), str(params.get("ts"))
        if (channel, ts) not in self.messages:
            return {"ok": False, "error": "thread_not_found"}
        return {"ok": True, "messages": self.thread(channel, ts), "has_more": False}

    def _file_info(self, params: dict[str, Any]) -> dict[str, Any]:
        found = self.files.get(str(params.get("file")))
        return {"ok": True, "file": found[0]} if found else {"ok": False, "error": "file_not_found"}

    def _open_view(self, params: dict[str, Any]) -> dict[str, Any]:
        view = _json_field(params.get("view")) or {}
        return {"ok": True, "view": {"id": f"V{uuid.uuid4().hex[:10].upper()}", **view}}

    def _open_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4().hex}"}


def _pop(queues: dict[str, list], method: str):
    pending = queues.get(method)
    return pending.pop(0) if pending else None


def _json_field(value: Any) -> Any:
    """Slack accepts structured fields as JSON or as JSON-encoded strings; return them decoded."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _read_params(request: web.Request) -> dict[str, Any]:
    params: dict[str, Any] = dict(request.query)
    body = await request.text()
    if request.content_type == "application/json":
        params.update(json.loads(body or "{}"))
    elif body:
        params.update(parse_qsl(body))
    return params


def _peer(request: web.Request) -> tuple[str, int] | None:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    return (peername[0], peername[1]) if peername else None
