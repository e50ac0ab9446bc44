"""Scheduling priority of the threads that run model work."""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)


def lower_thread_priority(steps: int) -> None:
    """Raise the calling thread's nice value by ``steps``; the threads it starts inherit it.

    Native libraries start their compute threads from the thread that first calls
    them (llama.cpp) or that creates their session (ONNX Runtime), so lowering that
    thread lowers their work as a whole. Linux keeps a nice value per thread;
    elsewhere this would lower the whole process, so it is skipped there.
    """
    if steps <= 0 or not sys.platform.startswith("linux"):
        return
    thread_id = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, thread_id, min(19, os.getpriority(os.PRIO_PROCESS, thread_id) + steps))
    except OSError as exc:
        logger.warning("Could not lower the priority of a model thread: %s", exc)
