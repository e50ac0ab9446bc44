"""The HR skill run in this process, with its model calls served by a plain ``llama_cpp.Llama``.

The end-to-end benchmark needs the exact prompts the bot sent to its model. They
are rebuilt here by the skill's own code: the same settings, the same retrieval
over the same database and the same prompt fitting, which counts tokens with the
bot's own ``LlamaCppModel``. Only the generation itself goes to a ``Llama`` object
created with the bot's settings in a separate process (raw_worker.py), at the
same lowered priority as the bot's generation, and only that call is timed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from bot.channels.slack.client import SlackChannelClient, create_web_client
from bot.channels.slack.convert import to_incoming
from bot.channels.slack.testing import DEFAULT_BOT_USER_ID, app_mention_payload
from bot.config import Settings, load_settings
from bot.core.roles import RoleDirectory
from bot.core.router import Router, load_skills
from bot.errors import SkillError
from bot.llm import (
    END_OF_TURN_TOKENS,
    ChatMessage,
    ChatModel,
    Completion,
    LlamaCppModel,
    chat_model_from_settings,
    clean_output,
    prepare_messages,
)
from bot.prompts import PromptLibrary
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.storage.database import Database, DatabaseUrls
from skills.base import SkillContext, SkillRequest

# Chat format name that llama-cpp-python gives the GGUF's own template; LlamaCppModel uses it too.
GGUF_TEMPLATE_FORMAT = "chat_template.default"


@dataclass(frozen=True)
class RawCall:
    """One timed ``create_chat_completion`` call."""

    seconds: float
    prompt_tokens: int
    completion_tokens: int


class RawWorker:
    """The raw_worker.py process: one request at a time over its stdin and stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, model_path: str, n_ctx: int, n_threads: int | None, nice: int = 0) -> RawWorker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bench.raw_worker", model_path, str(n_ctx),
            str(n_threads) if n_threads else "default", GGUF_TEMPLATE_FORMAT, str(nice),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=16 * 1024 * 1024,
        )
        worker = cls(process)
        reply = await worker._read()
        if not reply.get("ready"):
            raise RuntimeError(f"the raw llama.cpp worker did not start: {reply}")
        return worker

    async def complete(self, request: dict) -> tuple[dict, float]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode("utf-8"))
        await self.process.stdin.drain()
        reply = await self._read()
        return reply["response"], reply["seconds"]

    async def _read(self) -> dict:
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the raw llama.cpp worker exited with {await self.process.wait()}")
        return json.loads(line)

    async def aclose(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        await self.process.wait()


class RawLlamaModel(ChatModel):
    """A ChatModel whose calls go straight to ``Llama.create_chat_completion`` in the raw worker.

    Token counting is delegated to the bot's ``LlamaCppModel`` so that prompt
    fitting keeps exactly the sources and history that the bot kept.
    """

    def __init__(self, counting: LlamaCppModel, worker: RawWorker) -> None:
        self.counting = counting
        self.worker = worker
        self.model_id = counting.model_id
        self.context_window = counting.context_window
        self.supports_system_role = counting.supports_system_role
        self.calls: list[RawCall] = []

    def count_tokens(self, text: str) -> int:
        return self.counting.count_tokens(text)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        return self.counting.count_prompt_tokens(messages)

    async def complete(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 256, temperature: float = 0.2
    ) -> Completion:
        request = {
            "messages": [
                {"role": message.role, "content": message.content}
                for message in prepare_messages(messages, self.supports_system_role)
            ],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stop": list(END_OF_TURN_TOKENS),
        }
        response, seconds = await self.worker.complete(request)
        usage = response.get("usage") or {}
        choice = response["choices"][0]
        call = RawCall(seconds, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))
        self.calls.append(call)
        return Completion(
            text=clean_output(choice["message"].get("content") or ""),
            model_id=self.model_id,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    async def stream(
        self, messages: Sequence[ChatMessage], *, max_tokens: int = 256, temperature: float = 0.2
    ) -> AsyncIterator[str]:
        # NOTE: a streaming skill is timed as one non-streaming call, which llama.cpp
        # decodes the same way; the pieces arrive all at once at the end.
        completion = await self.complete(messages, max_tokens=max_tokens, temperature=temperature)
        yield completion.text

    async def aclose(self) -> None:
        await self.worker.aclose()
        await self.counting.aclose()


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings that ``chatops serve`` reads from ``env``."""
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    return load_settings(**{name: value for name, value in env.items() if name in aliases})


class RawReplayer:
    """Asks the HR skill a question in this process and returns its timed raw model calls.

    Create it with :meth:`start`, which also starts the raw worker process.
    """

    def __init__(self, settings: Settings, urls: DatabaseUrls, counting: LlamaCppModel, worker: RawWorker) -> None:
        self.settings = settings
        self.db = Database(urls)
        # The worker lets the Slack client prepare each question before routing it, for
        # example turning mentions into names. The same client prepares it here.
        self.slack_client = SlackChannelClient(create_web_client(settings.slack_bot_token, settings.slack_api_url))
        self.model = RawLlamaModel(counting, worker)
        context = SkillContext(
            settings=settings, model=self.model, retriever=Retriever(self.db, get_embedder()), prompts=PromptLibrary()
        )
        self.router = Router(load_skills(context))
        self.roles = RoleDirectory.from_settings(settings)

    @classmethod
    async def start(cls, settings: Settings, urls: DatabaseUrls) -> RawReplayer:
        counting = await asyncio.to_thread(chat_model_from_settings, settings)
        if not isinstance(counting, LlamaCppModel):
            raise RuntimeError("the end-to-end benchmark needs an in-process GGUF model, not CHATOPS_LLM_BASE_URL")
        worker = await RawWorker.start(
            str(counting.model_path), counting.context_window, settings.model_threads, settings.model_nice
        )
        return cls(settings, urls, counting, worker)

    async def replay(self, text: str, ts: str) -> list[RawCall]:
        """Run the skill that the router picks for ``text``; return the model calls it made."""
        payload = app_mention_payload(text, event_id="EvREPLAY", ts=ts)
        message = to_incoming(payload["event"], team_id=payload["team_id"], bot_user_id=DEFAULT_BOT_USER_ID)
        assert message is not None
        message = await self.slack_client.prepare(message)
        route = self.router.route(message.text)
        self.model.calls = []
        if route.skill is None:
            return []
        request = SkillRequest(message=message, text=route.text, audiences=self.roles.audiences_for(message))
        try:
            await route.skill.handle(request)
        except SkillError:
            pass
        return list(self.model.calls)

    async def aclose(self) -> None:
        await self.slack_client.aclose()
        await self.model.aclose()
        await self.db.dispose()
