"""Slash commands: acknowledged at once, answered by a worker through the command's response_url."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.channels.slack.convert import command_to_incoming
from bot.core.intake import accept_message
from bot.storage.database import Database

logger = logging.getLogger(__name__)

# Each command and the router command word its text is prefixed with; None sends the text as typed.
COMMAND_WORDS: dict[str, str | None] = {
    "/ask": "ask",
    "/summarize": "summarize",
    "/report": "report",
    "/chatops": None,
}
USAGE = {
    "/ask": "Type your question after the command, for example `/ask how many sick days do I get?`",
    "/summarize": (
        "Paste the text or ticket to summarize after the command, or use the *Summarize thread* "
        "shortcut on a message to summarize its thread."
    ),
    "/report": "Say which report to draft after the command, for example `/report weekly HR questions`.",
}
WORKING = ":hourglass_flowing_sand: Working on it… I'll answer here, visible only to you."


def routed_text(command: str, text: str) -> str | None:
    """Return the text the router receives for ``command``, or None when the command needs text and has none."""
    text = text.strip()
    if command == "/chatops":
        return text or "help"
    if not text:
        return None
    return f"{COMMAND_WORDS[command]} {text}"


def register_commands(app: AsyncApp, db: Database) -> None:
    async def queue_command(ack, command: dict[str, Any]) -> None:
        name = str(command.get("command") or "")
        text = routed_text(name, str(command.get("text") or ""))
        if text is None:
            await ack(text=USAGE[name])
            return
        message = command_to_incoming(command, text=text)
        if message is None:
            logger.info("Ignored slash command %s without trigger_id, user, channel or response_url", name)
            await ack(text="Slack sent this command without the details I need to answer it. Please try again.")
            return
        if await accept_message(db, message):
            await ack(text=WORKING)
        else:
            # A re-delivered command is already being answered; say nothing more.
            await ack()

    for name in COMMAND_WORDS:
        app.command(name)(queue_command)
