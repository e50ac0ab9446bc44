"""A process that runs plain ``llama_cpp.Llama`` chat completions, one JSON request per line.

Usage: python -m tests.bench.raw_worker MODEL_PATH N_CTX N_THREADS CHAT_FORMAT [NICE]

Each request line is ``{"messages": [...], "max_tokens": n, "temperature": t,
"stop": [...]}``; each reply line is ``{"seconds": s, "response": {...}}``, where
``seconds`` times ``create_chat_completion`` alone. The model runs in a process of
its own, as the bot's model does, so that nothing of the benchmark's own process
(its event loop, the fake Slack Web API, the embedder's threads) shares its CPU
time. ``NICE`` lowers the process's priority by as many steps as the bot lowers
its generation (``CHATOPS_MODEL_NICE``), so that other load on the machine
slows both sides alike.
"""

from __future__ import annotations

import json
import os
import sys
import time

import llama_cpp


def main(argv: list[str]) -> int:
    model_path, n_ctx, n_threads, chat_format, *rest = argv
    if rest and int(rest[0]) > 0:
        os.nice(int(rest[0]))
    llm = llama_cpp.Llama(
        model_path=model_path,
        n_ctx=int(n_ctx),
        n_threads=int(n_threads) if n_threads != "default" else None,
        seed=0,
        verbose=False,
        chat_format=chat_format,
    )
    if "tokenizer.chat_template" not in llm.metadata:
        print(json.dumps({"error": f"{model_path} has no chat template"}), flush=True)
        return 1
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        started = time.perf_counter()
        response = llm.create_chat_completion(
            messages=request["messages"],
            max_tokens=request["max_tokens"],
            temperature=request["temperature"],
            stop=request["stop"],
        )
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": seconds, "response": response}), flush=True)
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
