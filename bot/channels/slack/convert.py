"""Pure conversions between Slack event payloads and the bot's IncomingMessage."""

from __future__ import annotations

import re
from typing import Any

from bot.core.message import IncomingMessage

PLATFORM = "slack"

# Message subtypes that carry no new question from a person.
_IGNORED_SUBTYPES = frozenset(
    {
        "bot_message",
        "message_changed",
        "message_deleted",
        "message_replied",
        "channel_join",
        "channel_leave",
        "channel_topic",
        "channel_purpose",
        "channel_name",
        "thread_broadcast",
        "ekm_access_denied",
    }
)


def event_key(team_id: str | None, channel: str, ts: str) -> str:
    """One key per Slack message, so its ``message`` and ``app_mention`` events dedupe together."""
    return f"{PLATFORM}:{team_id or '-'}:{channel}:{ts}"


def strip_bot_mention(text: str, bot_user_id: str | None) -> str:
    """Remove the bot's own ``<@U…>`` token wherever it stands, then tidy spacing."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = re.sub(r"[ \t]+([,.;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip(" \t,")


def to_incoming(
    event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    """Convert an ``app_mention`` or ``message`` event; None when it needs no answer."""
    if event.get("subtype") in _IGNORED_SUBTYPES or event.get("bot_id") or event.get("bot_profile"):
        return None
    user = event.get("user")
    channel = event.get("channel")
    ts = event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    if bot_user_id and user == bot_user_id:
        return None
    text = strip_bot_mention(str(event.get("text") or ""), bot_user_id)
    if not text:
        return None
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
    return IncomingMessage(
        platform=PLATFORM,
        event_key=event_key(team_id, channel, ts),
        channel_id=channel,
        thread_key=thread_ts or ts,
        user_id=user,
        text=text,
        message_id=ts,
        channel_type=_channel_type(event),
        team_id=team_id,
    )


def _channel_type(event: dict[str, Any]) -> str:
    channel_type = event.get("channel_type")
    if isinstance(channel_type, str):
        return channel_type
    channel = str(event.get("channel") or "")
    # app_mention events carry no channel_type; the id prefix tells DMs (D) from channels.
    if channel.startswith("D"):
        return "im"
    if channel.startswith("G"):
        return "group"
    return "channel"
