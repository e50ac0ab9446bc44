"""Stand-ins for the Microsoft services around a Teams bot, all on 127.0.0.1, for tests.

* :class:`FakeIdentityProvider` publishes an OpenID metadata document and the
  signing keys for Bot Framework tokens, signs such tokens, and answers
  managed-identity token requests the way Azure App Service's local endpoint
  does (``IDENTITY_ENDPOINT``). botframework fetches the keys with a blocking
  ``requests.get``, so it is served from its own thread.
* :class:`FakeBotConnector` is the Bot Connector service behind an activity's
  ``serviceUrl``: it records every activity the bot posts.
* :func:`message_activity` builds the activities Teams posts to a bot.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

TEAMS_CHANNEL = "msteams"


def new_signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeIdentityProvider:
    """Signing keys, OpenID metadata and a managed-identity token endpoint on 127.0.0.1.

    Each instance serves its metadata under a random path, because botframework
    caches signing keys per metadata URL for the life of the process.
    """

    def __init__(self, *, issuer: str = "https://api.botframework.com") -> None:
        self.issuer = issuer
        self.key = new_signing_key()
        self.key_id = f"test-key-{secrets.token_hex(4)}"
        self.access_token = f"fake-bot-access-token-{secrets.token_hex(8)}"
        self.identity_header = secrets.token_hex(16)
        self.token_requests: list[dict[str, Any]] = []
        self._path = f"/{uuid.uuid4().hex}"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{self._path}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/openidconfiguration"

    @property
    def identity_endpoint(self) -> str:
        """Where managed-identity tokens come from; pass as IDENTITY_ENDPOINT with IDENTITY_HEADER."""
        return f"{self.base_url}/msi/token"

    def start(self) -> FakeIdentityProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                provider._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-identity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def token(
        self,
        *,
        audience: str,
        service_url: str,
        issuer: str | None = None,
        expires_in_s: int = 3600,
        key: rsa.RSAPrivateKey | None = None,
        key_id: str | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A Bot Framework channel token; each argument can be made wrong on purpose."""
        now = int(time.time())
        payload = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + expires_in_s,
            **(claims or {}),
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": key_id or self.key_id})

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        url = urlsplit(request.path)
        if url.path == f"{self._path}/openidconfiguration":
            self._send_json(request, {"issuer": self.issuer, "jwks_uri": f"{self.base_url}/keys", "id_token_signing_alg_values_supported": ["RS256"]})
        elif url.path == f"{self._path}/keys":
            self._send_json(request, {"keys": [self._public_jwk()]})
        elif url.path == f"{self._path}/msi/token":
            self._issue_access_token(request, parse_qs(url.query))
        else:
            self._send_json(request, {"error": "not found"}, status=404)

    def _public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.key_id, "use": "sig", "endorsements": [TEAMS_CHANNEL]})
        return jwk

    def _issue_access_token(self, request: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        record = {key: values[0] for key, values in query.items()}
        record["identity_header_valid"] = request.headers.get("X-IDENTITY-HEADER") == self.identity_header
        self.token_requests.append(record)
        if not record["identity_header_valid"]:
            self._send_json(request, {"statusCode": 401, "message": "invalid X-IDENTITY-HEADER"}, status=401)
            return
        self._send_json(
            request,
            {
                "access_token": self.access_token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": record.get("resource"),
                "token_type": "Bearer",
                "client_id": record.get("client_id"),
            },
        )

    @staticmethod
    def _send_json(request: BaseHTTPRequestHandler, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)


@dataclass
class PostedActivity:
    """One activity the bot posted to the fake connector."""

    region: str
    conversation_id: str
    reply_to_id: str | None
    activity: dict[str, Any]
    authorization: str | None
    at: float = field(default_factory=time.monotonic)

    @property
    def type(self) -> str | None:
        return self.activity.get("type")

    @property
    def text(self) -> str:
        return self.activity.get("text") or ""

    def card(self) -> dict[str, Any] | None:
        for attachment in self.activity.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return attachment.get("content")
        return None


_CONNECTOR_PATH = re.compile(r"^/(?P<region>.*?)/?v3/conversations/(?P<conversation>[^/]+)/activities(?:/(?P<reply_to>[^/]+))?$")


class FakeBotConnector:
    """Records ``POST {serviceUrl}/v3/conversations/{id}/activities[/{replyToId}]``.

    Any path before ``v3`` is accepted and recorded as the region, so one server can
    stand in for several service URLs (``…/emea/``, ``…/amer/``).
    """

    def __init__(self) -> None:
        self.posted: list[PostedActivity] = []
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._counter = 0
        self._changed = asyncio.Condition()

    def service_url(self, region: str = "emea") -> str:
        return f"http://127.0.0.1:{self.port}/{region}/"

    def messages(self, conversation_id: str | None = None) -> list[PostedActivity]:
        return [
            posted
            for posted in self.posted
            if posted.type == "message" and (conversation_id is None or posted.conversation_id == conversation_id)
        ]

    async def start(self) -> FakeBotConnector:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for_messages(self, conversation_id: str, count: int = 1, timeout: float = 60.0) -> list[PostedActivity]:
        """Wait until ``count`` messages reached ``conversation_id``; raise TimeoutError otherwise."""

        def enough() -> bool:
            return len(self.messages(conversation_id)) >= count

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(enough), timeout)
        return self.messages(conversation_id)

    async def _handle(self, request: web.Request) -> web.Response:
        match = _CONNECTOR_PATH.match(request.path)
        if request.method != "POST" or match is None:
            return web.json_response({"error": {"code": "NotFound", "message": request.path}}, status=404)
        body = await request.json()
        reply_to = match.group("reply_to")
        async with self._changed:
            self.posted.append(
                PostedActivity(
                    region=match.group("region").strip("/"),
                    conversation_id=unquote(match.group("conversation")),
                    reply_to_id=unquote(reply_to) if reply_to else None,
                    activity=body,
                    authorization=request.headers.get("Authorization"),
                )
            )
            self._counter += 1
            self._changed.notify_all()
        return web.json_response({"id": f"posted-{self._counter}"}, status=201)


def message_activity(
    text: str | None,
    *,
    activity_id: str,
    conversation_id: str,
    service_url: str,
    bot_app_id: str,
    conversation_type: str = "personal",
    bot_name: str = "HR Helper",
    user_id: str = "29:1employee-teams-id",
    user_name: str = "Alex Employee",
    aad_object_id: str = "6f1c1a5e-0000-4000-8000-00000000a1ce",
    tenant_id: str = "9c4f7c1e-0000-4000-8000-0000000000aa",
    entities: list[dict[str, Any]] | None = None,
    value: Any = None,
    reply_to_id: str | None = None,
) -> dict[str, Any]:
    """A message activity as Teams posts it to ``/api/messages``."""
    activity: dict[str, Any] = {
        "type": "message",
        "id": activity_id,
        "timestamp": "2026-12-04T10:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": TEAMS_CHANNEL,
        "from": {"id": user_id, "name": user_name, "aadObjectId": aad_object_id},
        "conversation": {
            "id": conversation_id,
            "conversationType": conversation_type,
            "tenantId": tenant_id,
        },
        "recipient": {"id": f"28:{bot_app_id}", "name": bot_name},
        "textFormat": "plain",
        "locale": "en-US",
        "entities": entities or [{"type": "clientInfo", "locale": "en-US", "country": "US", "platform": "Web"}],
        "channelData": {"tenant": {"id": tenant_id}},
    }
    # A card submit carries "text": null, as Teams sends it.
    activity["text"] = text
    if conversation_type != "personal":
        activity["conversation"]["isGroup"] = True
    if value is not None:
        activity["value"] = value
    if reply_to_id is not None:
        activity["replyToId"] = reply_to_id
    if conversation_type == "channel":
        activity["channelData"].update({"teamsChannelId": conversation_id.split(";")[0], "team": {"id": "19:team@thread.tacv2"}})
    return activity
