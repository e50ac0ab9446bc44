"""Pure conversions between Slack payloads and the bot's IncomingMessage.

Events, edits, shared files, slash commands and message shortcuts each become an
IncomingMessage whose ``event_key`` stays the same across Slack's re-deliveries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bot.core.message import IncomingMessage

PLATFORM = "slack"

# Message subtypes that carry no new question from a person. Edits
# (message_changed) and shared files are converted by their own functions.
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
        "ekm_access_denied",
        "assistant_app_thread",
    }
)

EDIT_SUFFIX = ":edit"

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_MENTION = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^>]*))?>")
_GROUP_MENTION = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL_MENTION = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto|tel):[^|>]+)(?:\|([^>]*))?>")


def event_key(team_id: str | None, channel: str, ts: str) -> str:
    """Build one key per Slack message, so its ``message`` and ``app_mention`` events dedupe together."""
    return f"{PLATFORM}:{team_id or '-'}:{channel}:{ts}"


def strip_bot_mention(text: str, bot_user_id: str | None) -> str:
    """Remove the bot's own ``<@U…>`` token wherever it stands, then tidy spacing."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", " ", text)
    text = re.sub(r"[ \t]+([,.;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip(" \t,")


def mentioned_user_ids(text: str) -> list[str]:
    """Return the user ids of the ``<@U…>`` mentions in ``text``, each once, in order of appearance."""
    return list(dict.fromkeys(match.group(1) for match in _USER_MENTION.finditer(text)))


def to_plain_text(text: str, names: Mapping[str, str]) -> str:
    """Turn Slack's markup into what a person reads: names for mentions, labels for links.

    ``names`` maps user ids to display names; a user missing from it keeps the
    label Slack sent with the mention, or else the id.
    """
    text = _USER_MENTION.sub(lambda match: names.get(match.group(1)) or match.group(2) or match.group(1), text)
    text = _CHANNEL_MENTION.sub(lambda match: "#" + (match.group(2) or match.group(1)), text)
    text = _GROUP_MENTION.sub(lambda match: match.group(2) or "@" + match.group(1), text)
    text = _SPECIAL_MENTION.sub(lambda match: "@" + match.group(1), text)
    text = _LINK.sub(_link_text, text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _link_text(match: re.Match[str]) -> str:
    url, label = match.group(1), match.group(2)
    if url.startswith(("mailto:", "tel:")):
        return label or url.split(":", 1)[1]
    if not label or label == url:
        return url
    return f"{label} ({url})"


def is_from_bot(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """True for messages posted by this bot or any other bot or integration."""
    if event.get("subtype") == "bot_message" or event.get("bot_id") or event.get("bot_profile"):
        return True
    return bool(bot_user_id) and event.get("user") == bot_user_id


def is_thread_reply(event: Mapping[str, Any]) -> bool:
    thread_ts = event.get("thread_ts")
    return isinstance(thread_ts, str) and thread_ts != event.get("ts")


def to_incoming(
    event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    """Convert an ``app_mention`` or ``message`` event; None when it needs no answer."""
    if event.get("subtype") in _IGNORED_SUBTYPES or event.get("hidden") or is_from_bot(event, bot_user_id):
        return None
    user = event.get("user")
    channel = event.get("channel")
    ts = event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
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


def edit_to_incoming(
    event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    """Convert a ``message_changed`` event whose text a person changed; None otherwise.

    The result is keyed ``<original message's key>:edit``, so each edited message
    gets at most one more answer however often it is edited or re-delivered.
    Edits by bots, and changes that leave the text as it was (link previews being
    added, for example), give None.
    """
    edited = event.get("message")
    if not isinstance(edited, dict) or is_from_bot(edited, bot_user_id):
        return None
    previous = event.get("previous_message")
    if isinstance(previous, dict) and previous.get("text") == edited.get("text"):
        return None
    inner = {key: value for key, value in edited.items() if key not in {"subtype", "edited"}}
    inner["channel"] = event.get("channel")
    if "channel_type" in event:
        inner["channel_type"] = event["channel_type"]
    message = to_incoming(inner, team_id=team_id, bot_user_id=bot_user_id)
    if message is None:
        return None
    return replace(message, event_key=message.event_key + EDIT_SUFFIX)


def original_key(edit_key: str) -> str:
    """Return the key of the message whose edit has the key ``edit_key``."""
    return edit_key.removesuffix(EDIT_SUFFIX)


def file_share_to_incoming(
    event: dict[str, Any], *, team_id: str | None, bot_user_id: str | None
) -> IncomingMessage | None:
    """Convert a person's ``file_share`` message with at least one file; None otherwise.

    The files go into ``extra["files"]`` as plain dicts (id, name, size, filetype,
    url); the message text, if any, is kept as the caption.
    """
    if event.get("subtype") != "file_share" or is_from_bot(event, bot_user_id):
        return None
    shared = event.get("files")
    if not isinstance(shared, list):
        return None
    files = [_file_reference(item) for item in shared if isinstance(item, dict)]
    files = [item for item in files if item is not None]
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not files or not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    caption = strip_bot_mention(str(event.get("text") or ""), bot_user_id)
    thread_ts = event.get("thread_ts") if isinstance(event.get("thread_ts"), str) else None
    return IncomingMessage(
        platform=PLATFORM,
        event_key=event_key(team_id, channel, ts),
        channel_id=channel,
        thread_key=thread_ts or ts,
        user_id=user,
        text=caption or "Shared " + ", ".join(item["name"] for item in files),
        message_id=ts,
        channel_type=_channel_type(event),
        team_id=team_id,
        extra={"files": files},
    )


def _file_reference(item: dict[str, Any]) -> dict[str, Any] | None:
    file_id = item.get("id")
    if not isinstance(file_id, str):
        return None
    size = item.get("size")
    return {
        "id": file_id,
        "name": str(item.get("name") or item.get("title") or file_id),
        "size": size if isinstance(size, int) else None,
        "filetype": str(item.get("filetype") or ""),
        # Slack Connect files arrive without URLs, marked file_access: "check_file_info".
        "url": item.get("url_private_download") if isinstance(item.get("url_private_download"), str) else None,
    }


def command_to_incoming(command: Mapping[str, Any], *, text: str) -> IncomingMessage | None:
    """Convert a slash command; ``text`` is what the router receives, for example ``ask …``.

    The reply goes to the command's ``response_url`` so that only the asker sees
    it, and each command is a conversation of its own.
    """
    trigger_id, user, channel = command.get("trigger_id"), command.get("user_id"), command.get("channel_id")
    response_url = command.get("response_url")
    if not all(isinstance(value, str) and value for value in (trigger_id, user, channel, response_url)):
        return None
    team_id = command.get("team_id") if isinstance(command.get("team_id"), str) else None
    return IncomingMessage(
        platform=PLATFORM,
        event_key=f"{PLATFORM}-command:{team_id or '-'}:{trigger_id}",
        channel_id=channel,
        thread_key=f"command:{trigger_id}",
        user_id=user,
        text=text,
        message_id=trigger_id,
        channel_type=_command_channel_type(command.get("channel_name")),
        team_id=team_id,
        extra={"response_url": response_url, "command": str(command.get("command") or "")},
    )


def shortcut_to_incoming(shortcut: Mapping[str, Any], *, text: str) -> IncomingMessage | None:
    """Convert a message shortcut; ``extra["thread"]`` names the thread it was used on."""
    trigger_id, response_url = shortcut.get("trigger_id"), shortcut.get("response_url")
    user = _nested_id(shortcut, "user")
    channel = _nested_id(shortcut, "channel")
    target = shortcut.get("message") if isinstance(shortcut.get("message"), dict) else {}
    ts = target.get("thread_ts") or target.get("ts")
    if not all(isinstance(value, str) and value for value in (trigger_id, response_url, user, channel, ts)):
        return None
    team_id = _nested_id(shortcut, "team")
    return IncomingMessage(
        platform=PLATFORM,
        event_key=f"{PLATFORM}-shortcut:{team_id or '-'}:{trigger_id}",
        channel_id=channel,
        thread_key=f"shortcut:{trigger_id}",
        user_id=user,
        text=text,
        message_id=trigger_id,
        channel_type=_channel_type({"channel": channel}),
        team_id=team_id,
        extra={"response_url": response_url, "thread": {"channel": channel, "ts": ts}},
    )


def _nested_id(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _command_channel_type(channel_name: object) -> str:
    if channel_name == "directmessage":
        return "im"
    if channel_name == "privategroup":
        return "group"
    if isinstance(channel_name, str) and channel_name.startswith("mpdm-"):
        return "mpim"
    return "channel"


def _channel_type(event: Mapping[str, Any]) -> str:
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
