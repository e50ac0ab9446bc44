"""Helpers for scenario tests: start ``chatops serve`` as a real process and talk to it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.channels.slack.testing import signed_headers

SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token"
HR_CONTACT = "hr@northwind.example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class BotProcess:
    """A ``chatops serve`` subprocess with its own log file."""

    env: dict[str, str]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> BotProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"chatops serve exited with {self.process.returncode}:\n{self.log()}")
                try:
                    async with session.get(f"{self.url}/healthz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"chatops serve did not answer /healthz within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    async def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.process.wait, 20)
            except subprocess.TimeoutExpired:
                self.kill()


def bot_env(*, database_url: str, slack_api_url: str, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLACK_", "CHATOPS_", "DATABASE_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_api_url,
            "CHATOPS_DATA_DIR": str(data_dir),
            "CHATOPS_HR_CONTACT": HR_CONTACT,
            "CHATOPS_MODEL_THREADS": "2",
            "CHATOPS_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


async def post_event(
    bot_url: str, payload: dict, *, secret: str = SIGNING_SECRET, timestamp: int | None = None, headers: dict | None = None
) -> tuple[int, float, str]:
    """POST a signed Events API body; return (status, seconds taken, response text)."""
    body = json.dumps(payload)
    request_headers = signed_headers(body, secret, timestamp=timestamp, **(headers or {}))
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{bot_url}/slack/events", data=body, headers=request_headers) as response:
            text = await response.text()
            return response.status, time.perf_counter() - started, text
