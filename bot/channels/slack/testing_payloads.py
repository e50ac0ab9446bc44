"""Payloads as Slack sends them, signed or ready to sign, for tests and ``chatops slack test-event``."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

DEFAULT_BOT_USER_ID = "UBOT0001"
DEFAULT_TEAM_ID = "T0TEST001"


def signed_headers(
    body: str,
    signing_secret: str,
    *,
    timestamp: int | None = None,
    content_type: str = "application/json",
    **extra: str,
) -> dict[str, str]:
    """Headers of an Events API, interactivity or slash command request, signed the way Slack signs them."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=ts, body=body)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
        **extra,
    }


def event_callback(event: dict[str, Any], *, event_id: str, team_id: str = DEFAULT_TEAM_ID, bot_user_id: str = DEFAULT_BOT_USER_ID) -> dict[str, Any]:
    """Wrap ``event`` in the ``event_callback`` body the Events API and Socket Mode deliver."""
    return {
        "token": "unused-verification-token",
        "team_id": team_id,
        "api_app_id": "A0TEST001",
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(float(event.get("event_ts") or event.get("ts") or time.time())),
        "authorizations": [{"team_id": team_id, "user_id": bot_user_id, "is_bot": True}],
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
    team_id: str = DEFAULT_TEAM_ID,
    event_type: str = "app_mention",
    channel_type: str | None = None,
) -> dict[str, Any]:
    """Build an Events API ``event_callback`` body as Slack sends it.

    For ``app_mention`` the bot's mention is put before ``text``; for ``message``
    the text is sent as given.
    """
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
    return event_callback(event, event_id=event_id, team_id=team_id, bot_user_id=bot_user_id)


def slash_command_fields(
    command: str,
    text: str,
    *,
    response_url: str,
    trigger_id: str | None = None,
    user: str = "U0EMPLOYEE1",
    channel: str = "C0TEST001",
    channel_name: str = "general",
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, str]:
    """Build the fields of a slash command request (form-encoded over HTTP, a dict in Socket Mode)."""
    return {
        "token": "unused-verification-token",
        "team_id": team_id,
        "team_domain": "northwind",
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0TEST001",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:20]}",
    }


def block_action_payload(
    action_id: str,
    value: str,
    *,
    message_ts: str,
    response_url: str,
    channel: str = "C0TEST001",
    user: str = "U0EMPLOYEE1",
    ephemeral: bool = False,
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """Build a ``block_actions`` payload for a click on a button of a bot message."""
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "northwind"},
        "user": {"id": user, "username": user.lower(), "team_id": team_id},
        "api_app_id": "A0TEST001",
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:20]}",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": ephemeral},
        "channel": {"id": channel, "name": "general"},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "answer_feedback",
                "value": value,
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission_payload(
    callback_id: str, private_metadata: str, values: dict[str, str | None], *, user: str = "U0EMPLOYEE1", team_id: str = DEFAULT_TEAM_ID
) -> dict[str, Any]:
    """Build a ``view_submission`` payload; ``values`` maps each input block id to the text typed into it."""
    state = {
        block_id: {"text": {"type": "plain_text_input", "value": value}} for block_id, value in values.items()
    }
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": "northwind"},
        "user": {"id": user, "username": user.lower(), "team_id": team_id},
        "api_app_id": "A0TEST001",
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:20]}",
        "view": {
            "id": "V0TEST001",
            "type": "modal",
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": state},
        },
    }


def message_shortcut_payload(
    callback_id: str,
    *,
    message_ts: str,
    response_url: str,
    thread_ts: str | None = None,
    channel: str = "C0TEST001",
    user: str = "U0EMPLOYEE1",
    team_id: str = DEFAULT_TEAM_ID,
) -> dict[str, Any]:
    """Build a ``message_action`` payload: a message shortcut used on one message."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "user": user, "text": "…"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    return {
        "type": "message_action",
        "callback_id": callback_id,
        "team": {"id": team_id, "domain": "northwind"},
        "user": {"id": user, "name": user.lower()},
        "channel": {"id": channel, "name": "general"},
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:20]}",
        "response_url": response_url,
        "message_ts": message_ts,
        "message": message,
    }


def form_body(fields: dict[str, str]) -> str:
    return urlencode(fields)


def interactivity_body(payload: dict[str, Any]) -> str:
    """Build the form body Slack posts for interactivity: one ``payload`` field that contains JSON."""
    return urlencode({"payload": json.dumps(payload)})
