"""Tests of the int8 token-table rewrite against the bundled all-MiniLM-L6-v2 export."""

import logging

import numpy as np
import onnxruntime
import pytest

from bot.retrieval import embedder as embedder_module
from bot.retrieval.embedder import Embedder
from bot.retrieval.onnx_graph import ModelFormatError, gather_before_dequantize

WORD_TABLE = "inner.embeddings.word_embeddings.weight_q"
POSITION_TABLE = "inner.embeddings.position_embeddings.weight_q"


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    path = embedder_module._find_package_file(
        embedder_module._ONNX_PACKAGE, embedder_module._ONNX_DISTRIBUTION, "model.onnx"
    )
    return path.read_bytes()


def _session(model: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _token_vectors(session: onnxruntime.InferenceSession, input_ids: np.ndarray) -> np.ndarray:
    feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
    if "token_type_ids" in {item.name for item in session.get_inputs()}:
        feed["token_type_ids"] = np.zeros_like(input_ids)
    return session.run(None, feed)[0]


def test_rewrite_keeps_the_token_and_position_tables(model_bytes):
    rewritten, tables = gather_before_dequantize(model_bytes)

    assert tables == [WORD_TABLE, POSITION_TABLE]
    assert rewritten != model_bytes


def test_rewrite_keeps_vectors_bit_identical(model_bytes):
    rewritten, _ = gather_before_dequantize(model_bytes)
    # The first and last rows of the table, and every position up to 40.
    input_ids = np.array([[101, 0, 30521, 2054, 2003, 1996, 5022, 2681, 3343, 102] * 4, [101] * 40], dtype=np.int64)

    original = _token_vectors(_session(model_bytes), input_ids)
    lean = _token_vectors(_session(rewritten), input_ids)

    assert lean.shape == original.shape
    assert np.array_equal(lean, original)


def test_rewrite_leaves_a_rewritten_model_alone(model_bytes):
    rewritten, _ = gather_before_dequantize(model_bytes)

    again, tables = gather_before_dequantize(rewritten)

    assert tables == []
    assert again is rewritten


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x3a\xff\xff\xff\x0f", id="graph longer than the data"),
        pytest.param(b"\x08\x07", id="no graph"),
        pytest.param(b"\x0b\x00", id="group wire type"),
        pytest.param(b"\x08\xff", id="truncated varint"),
    ],
)
def test_rewrite_rejects_unreadable_bytes(data):
    with pytest.raises(ModelFormatError):
        gather_before_dequantize(data)


def test_truncated_model_is_rejected(model_bytes):
    with pytest.raises(ModelFormatError):
        gather_before_dequantize(model_bytes[: len(model_bytes) // 2])


def test_lean_embedder_falls_back_to_original(monkeypatch, caplog):
    def unreadable(data):
        raise ModelFormatError("field 7 runs past the end of its message")

    monkeypatch.setattr(embedder_module, "gather_before_dequantize", unreadable)
    with caplog.at_level(logging.WARNING, logger="bot.retrieval.embedder"):
        lean = Embedder(bulk=False)

    assert "loads unchanged" in caplog.text
    vectors = lean.embed(["How many sick days do I get?"])
    assert vectors.shape == (1, 384)
    assert np.isclose(np.linalg.norm(vectors[0]), 1.0)


def test_lean_embedder_without_temp_folder(monkeypatch, caplog):
    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/tmp")

    monkeypatch.setattr(embedder_module.tempfile, "NamedTemporaryFile", read_only)
    with caplog.at_level(logging.WARNING, logger="bot.retrieval.embedder"):
        lean = Embedder(bulk=False)

    assert "cannot write its rewritten copy" in caplog.text
    assert lean.embed(["Where do I report sick leave?"]).shape == (1, 384)
