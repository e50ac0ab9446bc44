"""Deterministic chat model for tests that need exact reply text."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence

from bot.llm.base import (
    ChatMessage,
    ChatModel,
    Completion,
    ContextOverflowError,
    clean_output,
)


class ScriptedChatModel(ChatModel):
    """Test double that returns scripted replies in order and records what it received.

    A reply that is an exception instance is raised instead, so tests can simulate
    backend failures such as ``ModelError``. Replies pass through ``clean_output`` like a
    real backend's. ``count_tokens`` is an estimate of 1.3 tokens per whitespace-separated
    word, rounded up. A prompt larger than ``context_window`` raises
    ``ContextOverflowError``, as a real backend would.
    """

    def __init__(
        self,
        replies: Sequence[str | BaseException] = (),
        *,
        context_window: int = 4096,
        delay_s: float = 0.0,
        model_id: str = "scripted",
        supports_system_role: bool = True,
    ) -> None:
        self.model_id = model_id
        self.context_window = context_window
        self.supports_system_role = supports_system_role
        self.delay_s = delay_s
        self._replies = list(replies)
        self.calls: list[list[ChatMessage]] = []
        """Messages of each call, in call order, as the caller passed them."""
        self.closed = False

    @property
    def last_messages(self) -> list[ChatMessage]:
        """Messages of the most recent call."""
        if not self.calls:
            raise AssertionError("ScriptedChatModel has not been called")
        return self.calls[-1]

    def add_reply(self, reply: str | BaseException) -> None:
        """Append a reply to the end of the script."""
        self._replies.append(reply)

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text.split()) * 1.3)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> Completion:
        reply, prompt_tokens = await self._next_reply(messages)
        return Completion(
            text=reply,
            model_id=self.model_id,
            prompt_tokens=prompt_tokens,
            completion_tokens=self.count_tokens(reply),
            finish_reason="stop",
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> AsyncIterator[str]:
        reply, _ = await self._next_reply(messages)
        words = reply.split(" ")
        for index, word in enumerate(words):
            yield word if index == 0 else " " + word

    async def aclose(self) -> None:
        self.closed = True

    async def _next_reply(self, messages: Sequence[ChatMessage]) -> tuple[str, int]:
        self.calls.append(list(messages))
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

        prompt_tokens = self.count_prompt_tokens(messages)
        if prompt_tokens > self.context_window:
            raise ContextOverflowError(
                f"prompt of {prompt_tokens} tokens exceeds the context window of "
                f"{self.context_window} tokens of model {self.model_id}"
            )

        if not self._replies:
            raise RuntimeError(
                f"ScriptedChatModel has no scripted reply left for call {len(self.calls)}; "
                "pass more replies or call add_reply"
            )
        reply = self._replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return clean_output(reply), prompt_tokens
