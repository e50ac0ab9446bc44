"""Backend-neutral contract for chat models, plus prompt and output helpers."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]

# Markers that end the assistant turn in common chat templates: ChatML (SmolLM2, Qwen),
# Gemma, Llama 2 and 3, and Phi-3. A start-of-turn marker in the output also means the
# model has started writing the next turn, so it ends the reply as well.
END_OF_TURN_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|im_start|>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<start_of_turn>",
    "<eos>",
    "</s>",
    "<|eot_id|>",
    "<|end|>",
)

# Special tokens that are removed wherever they appear without ending the reply.
_REMOVED_TOKENS: tuple[str, ...] = ("<bos>",)

_SPECIAL_TOKENS: tuple[str, ...] = END_OF_TURN_TOKENS + _REMOVED_TOKENS


@dataclass(frozen=True)
class ChatMessage:
    """One turn of a chat conversation."""

    role: Role
    content: str


@dataclass(frozen=True)
class Completion:
    """Result of one non-streaming model call."""

    text: str
    """Reply text without special or end-of-turn tokens, stripped of surrounding whitespace."""
    model_id: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    """"stop" when the model ended its turn, "length" when max_tokens cut the reply."""


class ModelError(Exception):
    """A model backend failed: server down, invalid response, native library error.

    Messages name the model or URL and never contain prompt or reply text.
    """


class ContextOverflowError(ModelError):
    """The prompt does not fit the model's context window, even in its minimal form."""


class ChatModel(abc.ABC):
    """Chat model backend used by the bot.

    Implementations MUST:
    - set ``model_id``, ``context_window`` (prompt plus completion tokens) and
      ``supports_system_role`` before the first call;
    - accept messages with any of the three roles, passing them through
      ``prepare_messages`` when the chat template has no system role;
    - return text cleaned with ``clean_output`` from ``complete`` and yield cleaned pieces
      from ``stream``, so callers never see special or end-of-turn tokens;
    - raise ``ModelError`` (or ``ContextOverflowError``) for backend failures, with a
      message that names the model or URL but never the prompt;
    - be safe to call from several coroutines at once and never block the event loop.

    Implementations MAY:
    - override ``count_prompt_tokens`` with an exact count from the chat template;
    - hold resources such as sessions or native handles, released in ``aclose``.
    """

    model_id: str
    context_window: int
    supports_system_role: bool

    @abc.abstractmethod
    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> Completion:
        """Generate one reply to ``messages``."""

    @abc.abstractmethod
    def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> AsyncIterator[str]:
        """Generate one reply to ``messages`` and yield it as cleaned text pieces.

        Close the iterator (for example with ``contextlib.aclosing``) when stopping early,
        so the backend can release the model at once.
        """

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Return the number of tokens ``text`` takes in this model's vocabulary."""

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Return the tokens the rendered prompt takes, including template overhead.

        The default adds an estimated 8 tokens per message for role markers.
        """
        return sum(self.count_tokens(message.content) + 8 for message in messages)

    async def aclose(self) -> None:
        """Release resources held by the backend. The default does nothing."""


def prepare_messages(
    messages: Sequence[ChatMessage], supports_system_role: bool
) -> list[ChatMessage]:
    """Adapt ``messages`` to a chat template, merging system text into the first user turn.

    When the template has a system role the messages are returned unchanged. Otherwise all
    system texts are joined and put before the first user turn's text, separated by a blank
    line. Without a user turn, the system text becomes a user turn in the first system
    message's position.
    """
    if supports_system_role:
        return list(messages)

    system_texts = [message.content for message in messages if message.role == "system"]
    if not system_texts:
        return list(messages)
    system_text = "\n\n".join(system_texts)

    has_user_turn = any(message.role == "user" for message in messages)
    prepared: list[ChatMessage] = []
    system_placed = False
    for message in messages:
        if message.role == "system":
            if not has_user_turn and not system_placed:
                prepared.append(ChatMessage(role="user", content=system_text))
                system_placed = True
            continue
        if message.role == "user" and not system_placed:
            prepared.append(ChatMessage(role="user", content=f"{system_text}\n\n{message.content}"))
            system_placed = True
            continue
        prepared.append(message)
    return prepared


def clean_output(text: str) -> str:
    """Cut ``text`` at the first end-of-turn token, remove other special tokens and strip it."""
    end = _find_end_of_turn(text)
    if end is not None:
        text = text[:end]
    for token in _REMOVED_TOKENS:
        text = text.replace(token, "")
    return text.strip()


def _find_end_of_turn(text: str) -> int | None:
    positions = [text.find(token) for token in END_OF_TURN_TOKENS]
    found = [position for position in positions if position >= 0]
    return min(found) if found else None


def _partial_token_start(text: str) -> int | None:
    """Return where a suffix of ``text`` that could begin a special token starts."""
    longest = max(len(token) for token in _SPECIAL_TOKENS)
    window_start = max(0, len(text) - longest + 1)
    for start in range(window_start, len(text)):
        suffix = text[start:]
        if any(token.startswith(suffix) for token in _SPECIAL_TOKENS):
            return start
    return None


class StreamCleaner:
    """Incremental ``clean_output`` for streamed pieces.

    Text that may still turn into a special token, and trailing whitespace, is held back
    until the next piece shows what it is. The emitted pieces join to exactly
    ``clean_output`` of the joined input.
    """

    def __init__(self) -> None:
        self._raw = ""
        self._emitted = ""
        self.done = False
        """True once an end-of-turn token has been seen; later input is ignored."""

    def feed(self, piece: str) -> str:
        """Add ``piece`` and return the cleaned text that is now safe to emit."""
        if self.done:
            return ""
        self._raw += piece
        end = _find_end_of_turn(self._raw)
        if end is not None:
            self.done = True
            return self._advance(clean_output(self._raw[:end]))

        held_from = _partial_token_start(self._raw)
        settled = self._raw if held_from is None else self._raw[:held_from]
        for token in _REMOVED_TOKENS:
            settled = settled.replace(token, "")
        return self._advance(settled.lstrip().rstrip())

    def finish(self) -> str:
        """Return the cleaned text still held back at the end of the stream."""
        if self.done:
            return ""
        self.done = True
        return self._advance(clean_output(self._raw))

    def _advance(self, cleaned: str) -> str:
        # The cleaned text only grows at its end because held-back text never reaches it
        # before it is known, so the new part is whatever follows what was emitted.
        if not cleaned.startswith(self._emitted):
            raise AssertionError("stream cleaning emitted text that it later changed")
        new_text = cleaned[len(self._emitted):]
        self._emitted = cleaned
        return new_text
