"""Settings of the C library's heap for the bot's long-running processes.

A server embeds texts with ONNX Runtime, generates with llama.cpp and reads
database rows, each from several threads. With glibc's defaults, much of the
memory those steps free stays in the process. Measured with the sample handbook
on 2 cores (glibc 2.36), from start-up through the background preparation of the
HR passages and five questions, the peak resident memory was 521 MiB:

- glibc gives a thread its own heap when another thread holds the lock of the
  shared one (up to 8 heaps per core), and memory freed in those heaps came back
  only in part. With one heap for all threads the peak was 474 MiB.
- glibc raises its threshold for serving a request from separate pages whenever a
  block that large is freed. After the models load, most of ONNX Runtime's
  activations then came from the shared heap and fragmented it. With a fixed
  128 KiB threshold, which returns each large block when it is freed, the peak
  was 475 MiB.

With both it was 469 MiB. Both are ordinary glibc tunables, and a variable set in
the environment (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``) takes
precedence over these defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

logger = logging.getLogger(__name__)

# Parameter numbers from glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_ARENAS = 1
_MMAP_THRESHOLD_BYTES = 128 * 1024


def _load_glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # Only glibc has this function. musl and other C libraries have no mallopt tunables.
        libc.gnu_get_libc_version
        return libc
    except (OSError, AttributeError):
        return None


_glibc = _load_glibc()


def configure_heap() -> bool:
    """Apply the heap settings above and return whether they apply (glibc only).

    Call it before the process starts threads: a thread that already has a heap
    of its own keeps it.
    """
    if _glibc is None:
        return False
    applied = []
    if "MALLOC_ARENA_MAX" not in os.environ and _glibc.mallopt(_M_ARENA_MAX, _ARENAS) == 1:
        applied.append(f"{_ARENAS} arena")
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ and _glibc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1:
        applied.append(f"mmap threshold {_MMAP_THRESHOLD_BYTES // 1024} KiB")
    logger.debug("glibc heap settings: %s", ", ".join(applied) or "left to the environment")
    return True


def release_free_memory() -> None:
    """Ask glibc to return freed heap pages to the operating system.

    Does nothing where the C library is not glibc.
    """
    if _glibc is not None:
        _glibc.malloc_trim(0)
