"""The HR skill run in this process, with its model calls served by a plain ``llama_cpp.Llama``.

The end-to-end benchmark needs the exact prompts the bot sent to its model. They
are rebuilt here by the skill's own code: the same settings, the same retrieval
over the same database and the same prompt fitting, which counts tokens with the
bot's own ``LlamaCppModel``. Only the generation itself goes to a separate
``Llama`` object created with the bot's settings, and only that call is timed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import llama_cpp

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
    clean_output,
    create_chat_model,
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


class RawLlamaModel(ChatModel):
    """A ChatModel whose calls go straight to ``Llama.create_chat_completion``.

    Token counting is delegated to the bot's ``LlamaCppModel`` so that prompt
    fitting keeps exactly the sources and history that the bot kept.
    """

    def __init__(self, counting: LlamaCppModel, llm: llama_cpp.Llama) -> None:
        self.counting = counting
        self.llm = llm
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
        request = [
            {"role": message.role, "content": message.content}
            for message in prepare_messages(messages, self.supports_system_role)
        ]

        def generate() -> tuple[dict, float]:
            started = time.perf_counter()
            response = self.llm.create_chat_completion(
                messages=request, max_tokens=max_tokens, temperature=temperature, stop=list(END_OF_TURN_TOKENS)
            )
            return response, time.perf_counter() - started

        response, seconds = await asyncio.to_thread(generate)
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
        self.llm.close()
        await self.counting.aclose()


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings that ``chatops serve`` reads from ``env``."""
    aliases = {field.alias for field in Settings.model_fields.values() if field.alias}
    return load_settings(**{name: value for name, value in env.items() if name in aliases})


class RawReplayer:
    """Asks the HR skill a question in this process and returns its timed raw model calls."""

    def __init__(self, settings: Settings, urls: DatabaseUrls) -> None:
        self.settings = settings
        self.db = Database(urls)
        # The worker lets the Slack client prepare each question before routing it, for
        # example turning mentions into names. The same client prepares it here.
        self.slack_client = SlackChannelClient(create_web_client(settings.slack_bot_token, settings.slack_api_url))
        counting = create_chat_model(
            model=settings.model,
            data_dir=settings.data_dir,
            context_window=settings.context_window,
            n_threads=settings.model_threads,
        )
        if not isinstance(counting, LlamaCppModel):
            raise RuntimeError("the end-to-end benchmark needs an in-process GGUF model, not CHATOPS_LLM_BASE_URL")
        llm = llama_cpp.Llama(
            model_path=str(counting.model_path),
            n_ctx=counting.context_window,
            n_threads=settings.model_threads,
            seed=0,
            verbose=False,
            chat_format=GGUF_TEMPLATE_FORMAT,
        )
        if "tokenizer.chat_template" not in llm.metadata:
            raise RuntimeError(f"{counting.model_path} has no chat template; the raw run would format prompts differently")
        self.model = RawLlamaModel(counting, llm)
        context = SkillContext(
            settings=settings, model=self.model, retriever=Retriever(self.db, get_embedder()), prompts=PromptLibrary()
        )
        self.router = Router(load_skills(context))
        self.roles = RoleDirectory.from_settings(settings)

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
