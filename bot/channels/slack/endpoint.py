"""The HTTP endpoint for Slack: events, interactivity and slash commands on one handler."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.channels.slack.events import QUEUED_EVENT_TYPES, EventIntake

logger = logging.getLogger(__name__)


def slack_events_handler(bolt_app: AsyncApp, signing_secret: str, intake: EventIntake | None = None):
    """The aiohttp handler: reject what Bolt would crash on, then let Bolt dispatch.

    Bolt verifies signatures too, but it raises (and aiohttp answers 500) on a
    non-numeric timestamp or a body that is not the JSON or form it expects.

    With ``intake``, message events skip Bolt once Bolt has reported the bot's
    user id: the signature is checked here already, and the Events API callback
    needs nothing else from Bolt's middleware. Bolt's dispatch took most of the
    CPU time of an acknowledgement, which bounds how fast a burst of events is
    acknowledged while the model keeps the cores busy.
    """
    verifier = SignatureVerifier(signing_secret)

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not timestamp.isdigit() or not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            logger.info("Rejected a Slack request with a missing, stale or invalid signature")
            return web.json_response({"error": "invalid signature"}, status=401)
        problem, payload = _malformed(body, request.content_type)
        if problem:
            logger.info("Rejected a signed Slack request: %s", problem)
            return web.json_response({"error": problem}, status=400)
        if intake is not None and intake.bot_user_id is not None and payload is not None:
            event = payload.get("event")
            if payload.get("type") == "event_callback" and isinstance(event, dict) and event.get("type") in QUEUED_EVENT_TYPES:
                await intake.queue(event, team_id=payload.get("team_id"), bot_user_id=intake.bot_user_id)
                return web.Response(status=200)
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        return await to_aiohttp_response(await bolt_app.async_dispatch(bolt_request))

    return handle


def _malformed(body: str, content_type: str) -> tuple[str | None, dict | None]:
    """Return what is wrong with a body Bolt cannot handle (None when it is fine), and the body parsed when it is JSON."""
    if content_type == "application/x-www-form-urlencoded":
        return _malformed_form(body), None
    try:
        payload = json.loads(body)
    except ValueError:
        return "body is not valid JSON", None
    if not isinstance(payload, dict):
        return "body is not a JSON object", None
    if "event" in payload and not isinstance(payload["event"], dict):
        return "event is not an object", None
    return _shape_problem(payload) or _shape_problem(payload.get("event") or {}), payload


def _malformed_form(body: str) -> str | None:
    """Interactivity arrives as a form with one ``payload`` field holding JSON; slash commands as plain fields."""
    form = parse_qs(body)
    if "payload" not in form:
        return None
    try:
        payload = json.loads(form["payload"][0])
    except ValueError:
        return "payload is not valid JSON"
    if not isinstance(payload, dict):
        return "payload is not a JSON object"
    return _shape_problem(payload)


# Fields that slack-bolt 1.30 reads without checking their type; a signed body
# with another type there makes Bolt raise, which aiohttp would answer with 500.
_ID_OR_OBJECT_FIELDS = ("user", "team", "channel", "enterprise")
_OBJECT_FIELDS = ("view", "container", "message", "previous_message", "item", "assistant_thread", "function_data", "state")
_OBJECT_LIST_FIELDS = ("authorizations", "actions")


def _shape_problem(payload: dict) -> str | None:
    """Name the first field whose type Bolt cannot handle; None when all are usable."""
    for name in _ID_OR_OBJECT_FIELDS:
        if payload.get(name) is not None and not isinstance(payload[name], (str, dict)):
            return f"{name} is neither an id nor an object"
    for name in _OBJECT_FIELDS:
        if payload.get(name) is not None and not isinstance(payload[name], dict):
            return f"{name} is not an object"
    for name in _OBJECT_LIST_FIELDS:
        value = payload.get(name)
        if value is not None and not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
            return f"{name} is not a list of objects"
    if payload.get("type") == "block_actions" and not payload.get("actions"):
        return "block_actions payload has no actions"
    view = payload.get("view")
    if payload.get("type") in {"view_submission", "view_closed"} and not (
        isinstance(view, dict) and isinstance(view.get("type"), str) and isinstance(view.get("callback_id"), str)
    ):
        return "view has no type or callback_id"
    return None
