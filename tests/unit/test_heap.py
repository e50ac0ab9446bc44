"""Tests of the glibc heap settings of the long-running processes."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bot import heap

REPO_ROOT = Path(__file__).resolve().parents[2]

needs_glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc tunables")


class RecordingLibc:
    """Stands in for the C library to record which tunables are set."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.trims = 0

    def mallopt(self, parameter: int, value: int) -> int:
        self.calls.append((parameter, value))
        return 1

    def malloc_trim(self, pad: int) -> int:
        self.trims += 1
        return 1


def test_settings_apply_to_glibc(monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(heap, "_glibc", libc)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)

    assert heap.configure_heap() is True
    assert libc.calls == [(heap._M_ARENA_MAX, 1), (heap._M_MMAP_THRESHOLD, 128 * 1024)]


def test_environment_variables_take_precedence(monkeypatch):
    libc = RecordingLibc()
    monkeypatch.setattr(heap, "_glibc", libc)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)

    heap.configure_heap()

    assert libc.calls == [(heap._M_MMAP_THRESHOLD, 128 * 1024)]


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(heap, "_glibc", None)

    assert heap.configure_heap() is False
    heap.release_free_memory()


@needs_glibc
def test_real_glibc_accepts_the_settings():
    code = (
        "from bot import heap\n"
        "assert heap.configure_heap()\n"
        "blocks = [bytearray(1 << 20) for _ in range(8)]\n"
        "del blocks\n"
        "heap.release_free_memory()\n"
        "print('ok')"
    )
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
