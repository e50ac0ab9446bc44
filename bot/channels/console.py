"""A terminal channel: talk to the same skills without Slack or Teams."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable

from bot.channels.base import ChannelClient
from bot.core.message import IncomingMessage, Reply
from bot.runtime import Runtime

PLATFORM = "console"


class ConsoleChannelClient(ChannelClient):
    platform = PLATFORM

    def __init__(self, write: Callable[[str], None] = print) -> None:
        self.write = write
        self._posted = 0

    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str:
        self.write(f"bot> {reply.text}\n")
        self._posted += 1
        return f"console-{self._posted}"


async def chat_loop(runtime: Runtime, *, user_id: str = "console-user", read=input) -> None:
    """Read questions from the terminal until EOF or ``exit``; each session is one thread."""
    session = uuid.uuid4().hex[:12]
    print("Ask an HR question (type 'help' for commands, 'exit' or Ctrl-D to quit).")
    turn = 0
    while True:
        try:
            line = await asyncio.to_thread(read, "you> ")
        except EOFError:
            print()
            return
        text = line.strip()
        if text.lower() in {"exit", "quit"}:
            return
        if not text:
            continue
        turn += 1
        message = IncomingMessage(
            platform=PLATFORM,
            event_key=f"{PLATFORM}:{session}:{turn}",
            channel_id="terminal",
            thread_key=session,
            user_id=user_id,
            text=text,
            message_id=str(turn),
            channel_type="im",
        )
        await runtime.pipeline.answer(message)
        sys.stdout.flush()
