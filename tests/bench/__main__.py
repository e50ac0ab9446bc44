"""Run the benchmarks, print one table and write bench-results.json.

Usage: python -m tests.bench [--quick] [--only e2e,ack,...] [--output PATH] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.bench import bench_ack, bench_concurrency, bench_e2e, bench_ingest, bench_retrieval, bench_startup
from tests.bench.harness import FULL, QUICK, REPO_ROOT, BenchContext, machine_info, remove_tree

# Start-up runs first, while nothing else of the benchmark is running; retrieval
# last, because it embeds the largest corpus.
BENCHMARKS = {
    "startup": bench_startup.run,
    "e2e": bench_e2e.run,
    "ack": bench_ack.run,
    "concurrency": bench_concurrency.run,
    "ingest": bench_ingest.run,
    "retrieval": bench_retrieval.run,
}

# The benchmarks that send questions to the shared bot of BenchContext.answer_bot.
ANSWER_BOT_USERS = frozenset({"e2e", "ack", "concurrency"})


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    goal: str
    meets: Callable[[float], bool] | None = None


FIGURES = [
    Figure("e2e_ratio", "End to end / raw llama.cpp, same prompts (median)", "<= 1.05", lambda value: value <= 1.05),
    Figure("e2e_ratio_of_totals", "  ratio of the totals", ""),
    Figure("e2e_ratio_to_bot_model", "  end to end / the bot's own model time", ""),
    Figure("e2e_overhead_ms_per_answer", "  bot's time beside its model calls, per answer (ms)", ""),
    Figure("e2e_raw_after_over_before", "  raw time after the bot's answer / before it (median)", ""),
    Figure("ack_p99_ms", "Acknowledgement p99, burst while generating (ms)", "<= 50", lambda value: value <= 50),
    Figure("ack_paced_p99_ms", "  same events paced over the burst window (ms)", ""),
    Figure("retrieval_p95_ms_100k", "Hybrid search p95, largest corpus, HNSW, rarest words (ms)", "<= 20", lambda value: value <= 20),
    Figure("retrieval_interleaved_p95_ms_100k", "  same, other modes' queries in between (ms)", ""),
    Figure("retrieval_exact_p95_ms_100k", "  same queries, exact search (ms)", ""),
    Figure("retrieval_question_p95_ms_100k", "  HNSW, full-text ranking on the whole question (ms)", ""),
    Figure("retrieval_default_ef_p95_ms_100k", "  HNSW with pgvector's default ef_search 40 (ms)", ""),
    Figure("recall_at_5", "HNSW vector top-5 recall against exact", ">= 0.95", lambda value: value >= 0.95),
    Figure("recall_at_5_default_ef", "  with pgvector's default ef_search 40", ""),
    Figure("content_recall_at_5", "  same handbook sentences as the exact top-5", ""),
    Figure("ingest_ratio", "chatops sources add / raw ONNX, chunks per second", ">= 0.8", lambda value: value >= 0.8),
    Figure("startup_s", "Start-up until /healthz answers (s)", "<= 5", lambda value: value <= 5),
    Figure("rss_mb", "Peak RSS of chatops serve while answering (MB)", "<= 500", lambda value: value <= 500),
    Figure("concurrency_ratio", "Throughput, all at once / one after another", ">= 0.9", lambda value: value >= 0.9),
]
HEADLINE_KEYS = [
    "e2e_ratio",
    "ack_p99_ms",
    "retrieval_p95_ms_100k",
    "recall_at_5",
    "ingest_ratio",
    "startup_s",
    "rss_mb",
    "concurrency_ratio",
]


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    selected = _selected(args.only)
    sizes = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = _run_record(args)
    root = Path(tempfile.mkdtemp(prefix="chatops-bench-"))

    try:
        results, errors, durations = asyncio.run(_run_all(root, sizes, selected))
    finally:
        if args.keep:
            print(f"kept the benchmark's files in {root}", file=sys.stderr)
        else:
            remove_tree(root)

    report.update(load_average_after=_load_average(), durations_s=durations, errors=errors)
    headline = {key: results.get(key) for key in HEADLINE_KEYS}
    details = {key: value for key, value in results.items() if key not in headline}
    output = {**headline, **report, "details": details}
    args.output.write_text(json.dumps(output, indent=2, default=str) + "\n", encoding="utf-8")

    print(_table(results, sizes))
    print(f"\nwrote {args.output}")
    for name, error in errors.items():
        print(f"benchmark {name} failed: {error}", file=sys.stderr)
    return 1 if errors else 0


def _run_record(args: argparse.Namespace) -> dict[str, Any]:
    """The command, date, machine and load that a result belongs to."""
    command = "python -m tests.bench"
    if args.quick:
        command += " --quick"
    if args.only:
        command += f" --only {args.only}"
    return {
        "command": command,
        "mode": "quick" if args.quick else "full",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "load_average_before": _load_average(),
    }


def _load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def _run_all(root: Path, sizes, selected: list[str]) -> tuple[dict[str, Any], dict[str, str], dict[str, float]]:
    context = BenchContext(root, sizes)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    try:
        for name in selected:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                results.update(await BENCHMARKS[name](context))
            except Exception as exc:
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            durations[name] = round(time.monotonic() - started, 1)
            print(f"  {name} took {durations[name]:.0f} s", file=sys.stderr, flush=True)
            if not ANSWER_BOT_USERS.intersection(selected[selected.index(name) + 1 :]):
                # Its idle worker would otherwise keep querying PostgreSQL during the next benchmarks.
                await context.close_answer_bot()
    finally:
        await context.aclose()
    return results, errors, durations


def _table(results: dict[str, Any], sizes) -> str:
    largest = f"{sizes.retrieval_chunks[1]:,} chunks"
    rows = [("Figure", "Measured", "Goal", "")]
    for figure in FIGURES:
        value = results.get(figure.key)
        label = figure.label.replace("largest corpus", largest)
        if value is None:
            rows.append((label, "n/a", figure.goal, "" if not figure.goal else "NOT RUN"))
            continue
        verdict = ""
        if figure.meets is not None:
            verdict = "met" if figure.meets(float(value)) else "MISSED"
        rows.append((label, f"{value:g}" if isinstance(value, float) else str(value), figure.goal, verdict))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = [" | ".join(cell.ljust(width) for cell, width in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(lines)


def _selected(only: str | None) -> list[str]:
    if not only:
        return list(BENCHMARKS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [name for name in BENCHMARKS if name in names]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for development (minutes, not a record)")
    parser.add_argument("--only", help=f"comma-separated benchmarks to run: {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "bench-results.json", help="where to write the JSON results"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data folder (logs, databases)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
