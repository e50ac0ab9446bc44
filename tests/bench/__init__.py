"""Benchmarks of the bot against the raw components it is built on.

Run them with ``make bench`` (or ``python -m tests.bench --quick`` while developing).
Every module is named ``bench_*.py`` so that pytest never collects it: benchmarks
measure, tests assert behaviour, and no test asserts a timing.
"""
