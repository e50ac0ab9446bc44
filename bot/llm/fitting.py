"""Fitting prompts into a model's context window by dropping history and sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bot.llm.base import ChatMessage, ChatModel, ContextOverflowError

T = TypeVar("T")


@dataclass(frozen=True)
class FittedPrompt(Generic[T]):
    """A prompt that leaves room for the reply in the model's context window."""

    messages: list[ChatMessage]
    sources: list[T]
    """Sources kept, a prefix of the ranked input, highest rank first."""
    history_kept: int
    """Number of history messages kept, counted from the newest."""
    prompt_tokens: int


def fit_prompt(
    model: ChatModel,
    build: Callable[[Sequence[T], Sequence[ChatMessage]], list[ChatMessage]],
    sources: Sequence[T],
    history: Sequence[ChatMessage],
    *,
    max_tokens: int,
) -> FittedPrompt[T]:
    """Build the largest prompt for which prompt tokens + ``max_tokens`` fit the context window.

    ``build(sources, history)`` renders the messages for a subset of the inputs. The oldest
    history turns are dropped first, and the kept history starts at a user turn where the
    history has one, because some templates reject a conversation that starts with the
    assistant. Then the lowest-ranked sources are dropped from the end of ``sources``.
    Both searches are binary searches that assume more input never makes the prompt
    shorter, so a fit takes O(log n) renderings and token counts.

    Raises ContextOverflowError when the prompt does not fit without history and sources.
    """
    budget = model.context_window - max_tokens
    history_starts = _history_starts(history)
    all_sources = len(sources)

    measured: dict[tuple[int, int], tuple[list[ChatMessage], int]] = {}

    def measure(source_count: int, history_start: int) -> tuple[list[ChatMessage], int]:
        key = (source_count, history_start)
        if key not in measured:
            messages = build(sources[:source_count], history[history_start:])
            measured[key] = (messages, model.count_prompt_tokens(messages))
        return measured[key]

    # history_starts runs from the full history to none, so a later index keeps less.
    history_index = _first_fitting(
        len(history_starts), lambda index: measure(all_sources, history_starts[index])[1] <= budget
    )
    if history_index is not None:
        return _fitted(measure, all_sources, history_starts[history_index], len(history), list(sources))

    # Without history, search for the largest number of sources that fits.
    source_count = _last_fitting(all_sources + 1, lambda count: measure(count, len(history))[1] <= budget)
    if source_count is None:
        _, minimal_tokens = measure(0, len(history))
        raise ContextOverflowError(
            f"prompt of {minimal_tokens} tokens without history and sources plus max_tokens "
            f"{max_tokens} exceeds the context window of {model.context_window} tokens "
            f"of model {model.model_id}"
        )
    return _fitted(measure, source_count, len(history), len(history), list(sources[:source_count]))


def _fitted(
    measure: Callable[[int, int], tuple[list[ChatMessage], int]],
    source_count: int,
    history_start: int,
    history_length: int,
    kept_sources: list[T],
) -> FittedPrompt[T]:
    messages, tokens = measure(source_count, history_start)
    return FittedPrompt(
        messages=messages,
        sources=kept_sources,
        history_kept=history_length - history_start,
        prompt_tokens=tokens,
    )


def _history_starts(history: Sequence[ChatMessage]) -> list[int]:
    """Return the indexes where the kept history may start, from oldest to none kept."""
    starts = [0]
    starts.extend(index for index in range(1, len(history)) if history[index].role == "user")
    if len(history) > 0:
        starts.append(len(history))
    return starts


def _first_fitting(count: int, fits: Callable[[int], bool]) -> int | None:
    """Return the smallest index in range(count) that fits, given fits() is monotone rising."""
    if count > 0 and fits(0):
        # Most prompts fit whole, which this answers with one measurement.
        return 0
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    return low if low < count else None


def _last_fitting(count: int, fits: Callable[[int], bool]) -> int | None:
    """Return the largest index in range(count) that fits, given fits() is monotone falling."""
    low, high = 0, count
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            low = middle + 1
        else:
            high = middle
    return low - 1 if low > 0 else None
