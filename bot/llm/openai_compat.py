"""Chat model backend for servers with an OpenAI-compatible chat completions API."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from bot.llm.base import (
    ChatMessage,
    ChatModel,
    Completion,
    ModelError,
    StreamCleaner,
    clean_output,
    prepare_messages,
)

logger = logging.getLogger(__name__)

# Response bodies are logged at DEBUG only, cut to this many characters.
_MAX_LOGGED_BODY = 500


def chat_completions_url(base_url: str) -> str:
    """Return the chat completions endpoint for a base URL given with or without ``/v1``."""
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


class OpenAICompatibleModel(ChatModel):
    """Chat model served over HTTP by llama.cpp server, vLLM, Ollama or a similar server.

    The server applies the chat template, so ``supports_system_role`` must be set by the
    caller for models whose template lacks a system role.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        context_window: int = 4096,
        timeout_s: float = 120,
        supports_system_role: bool = True,
    ) -> None:
        self.url = chat_completions_url(base_url)
        self.model = model
        self.model_id = model
        self.context_window = context_window
        self.supports_system_role = supports_system_role
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"OpenAICompatibleModel(url={self.url!r}, model={self.model!r})"

    def count_tokens(self, text: str) -> int:
        # NOTE: an estimate, because the server's tokenizer is not available here. English
        # averages about 4 characters per token in common BPE vocabularies, so 3 characters
        # per token over-counts and keeps fitted prompts inside the real window.
        return math.ceil(len(text) / 3)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> Completion:
        payload = self._payload(messages, max_tokens, temperature, stream=False)
        started = time.monotonic()
        session = self._get_session()
        try:
            async with session.post(self.url, json=payload, headers=self._headers()) as response:
                await self._check_status(response)
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._request_error(exc) from exc

        try:
            data = json.loads(body)
            choice = data["choices"][0]
            content = choice["message"]["content"] or ""
            if not isinstance(content, str):
                raise TypeError("message content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            logger.debug("invalid response body from %s: %.*s", self.url, _MAX_LOGGED_BODY, body)
            raise ModelError(
                f"invalid chat completion response from {self.url} for model {self.model}: "
                f"{type(exc).__name__}"
            ) from exc

        text = clean_output(content)
        usage = data.get("usage") or {}
        completion = Completion(
            text=text,
            model_id=self.model_id,
            prompt_tokens=int(usage.get("prompt_tokens") or self.count_prompt_tokens(messages)),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )
        logger.info(
            "model %s completed at %s: prompt_tokens=%d completion_tokens=%d finish_reason=%s duration_ms=%d",
            self.model_id, self.url, completion.prompt_tokens, completion.completion_tokens,
            completion.finish_reason, (time.monotonic() - started) * 1000,
        )
        return completion

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> AsyncIterator[str]:
        payload = self._payload(messages, max_tokens, temperature, stream=True)
        started = time.monotonic()
        session = self._get_session()
        cleaner = StreamCleaner()
        pieces = 0
        try:
            async with session.post(self.url, json=payload, headers=self._headers()) as response:
                await self._check_status(response)
                async for raw_line in response.content:
                    content = self._parse_sse_line(raw_line)
                    if content is None:
                        break
                    if not content:
                        continue
                    pieces += 1
                    text = cleaner.feed(content)
                    if text:
                        yield text
                    if cleaner.done:
                        break
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # aiohttp raises ValueError for a line longer than its read buffer.
            raise self._request_error(exc) from exc

        tail = cleaner.finish()
        if tail:
            yield tail
        logger.info(
            "model %s streamed from %s: prompt_tokens_estimate=%d completion_pieces=%d duration_ms=%d",
            self.model_id, self.url, self.count_prompt_tokens(messages), pieces,
            (time.monotonic() - started) * 1000,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use because a session must be created inside a running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _headers(self) -> dict[str, str]:
        if not self._api_key:
            return {}
        return {"Authorization": f"Bearer {self._api_key}"}

    def _payload(
        self, messages: Sequence[ChatMessage], max_tokens: int, temperature: float, *, stream: bool
    ) -> dict[str, Any]:
        prepared = prepare_messages(messages, self.supports_system_role)
        return {
            "model": self.model,
            "messages": [{"role": message.role, "content": message.content} for message in prepared],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }

    async def _check_status(self, response: aiohttp.ClientResponse) -> None:
        if response.status < 300:
            return
        # The body may echo the request, so it goes to DEBUG only and never into the error.
        body = await response.text(errors="replace")
        logger.debug("error body from %s: %.*s", self.url, _MAX_LOGGED_BODY, body)
        raise ModelError(
            f"chat completion request to {self.url} for model {self.model} failed: "
            f"HTTP {response.status} {response.reason or ''}".rstrip()
        )

    def _parse_sse_line(self, raw_line: bytes) -> str | None:
        """Return the content delta of one server-sent event line, or None at ``[DONE]``."""
        line = raw_line.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            # Blank separators, comments and event or id fields carry no content.
            return ""
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return None
        try:
            chunk = json.loads(data)
            choices = chunk["choices"]
            if not choices:
                # Some servers send a final chunk with usage and no choices.
                return ""
            content = choices[0].get("delta", {}).get("content") or ""
            if not isinstance(content, str):
                raise TypeError("delta content is not a string")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.debug("invalid stream chunk from %s: %.*s", self.url, _MAX_LOGGED_BODY, data)
            raise ModelError(
                f"invalid chat completion stream chunk from {self.url} for model {self.model}: "
                f"{type(exc).__name__}"
            ) from exc
        return content

    def _request_error(self, exc: BaseException) -> ModelError:
        if isinstance(exc, TimeoutError):
            return ModelError(f"chat completion request to {self.url} for model {self.model} timed out")
        return ModelError(
            f"chat completion request to {self.url} for model {self.model} failed: {type(exc).__name__}: {exc}"
        )
