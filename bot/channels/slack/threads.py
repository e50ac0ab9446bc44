"""Reading a Slack thread as plain text, for the "Summarize thread" shortcut."""

from __future__ import annotations

import logging
import time

from slack_sdk.web.async_client import AsyncWebClient

from bot.channels.slack.convert import mentioned_user_ids, to_plain_text
from bot.channels.slack.users import UserNames

logger = logging.getLogger(__name__)

MAX_THREAD_MESSAGES = 500
# Keeps the newest messages when a thread is longer; the skill fits its prompt to the model anyway.
MAX_TRANSCRIPT_CHARS = 12_000
_PAGE_SIZE = 200


async def thread_transcript(client: AsyncWebClient, users: UserNames, *, channel: str, ts: str) -> str:
    """Return the thread that starts at ``ts`` as ``Name: text`` lines, oldest first."""
    messages = await _thread_messages(client, channel=channel, ts=ts)
    user_ids = [str(message.get("user")) for message in messages if message.get("user")]
    for message in messages:
        user_ids.extend(mentioned_user_ids(str(message.get("text") or "")))
    names = await users.names(dict.fromkeys(user_ids))
    lines = [_line(message, names) for message in messages if str(message.get("text") or "").strip()]
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        size += len(line) + 1
        if size > MAX_TRANSCRIPT_CHARS and kept:
            break
        kept.append(line)
    return "\n".join(reversed(kept))


async def _thread_messages(client: AsyncWebClient, *, channel: str, ts: str) -> list[dict]:
    started = time.perf_counter()
    messages: list[dict] = []
    cursor: str | None = None
    while len(messages) < MAX_THREAD_MESSAGES:
        response = await client.conversations_replies(channel=channel, ts=ts, cursor=cursor, limit=_PAGE_SIZE)
        messages.extend(item for item in response.get("messages") or () if isinstance(item, dict))
        cursor = (response.get("response_metadata") or {}).get("next_cursor")
        if not cursor:
            break
    logger.info(
        "Slack conversations.replies for %s in %s returned %d messages in %.0f ms",
        ts,
        channel,
        len(messages),
        (time.perf_counter() - started) * 1000,
    )
    return messages[:MAX_THREAD_MESSAGES]


def _line(message: dict, names: dict[str, str]) -> str:
    user = str(message.get("user") or "")
    author = names.get(user) or (message.get("bot_profile") or {}).get("name") or message.get("username") or user or "someone"
    text = to_plain_text(str(message.get("text") or ""), names)
    return f"{author}: {text.strip()}"
