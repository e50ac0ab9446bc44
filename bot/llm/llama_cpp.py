"""In-process chat model backend on llama-cpp-python."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.llm.base import (
    END_OF_TURN_TOKENS,
    ChatMessage,
    ChatModel,
    Completion,
    ContextOverflowError,
    ModelError,
    StreamCleaner,
    clean_output,
    prepare_messages,
)
from bot.threads import lower_thread_priority

if TYPE_CHECKING:
    import llama_cpp

logger = logging.getLogger(__name__)

# Chat format that llama-cpp-python registers for the GGUF's own Jinja template.
_GGUF_TEMPLATE_FORMAT = "chat_template.default"

# Probe conversation for detecting whether a template has a system role.
_PROBE_MESSAGES = [
    {"role": "system", "content": "system probe"},
    {"role": "user", "content": "user probe"},
]

# Items that the worker thread sends to the event loop while streaming.
_PIECE = "piece"
_ERROR = "error"
_END = "end"


class LlamaCppModel(ChatModel):
    """Chat model that runs a GGUF file in this process through llama-cpp-python.

    A ``Llama`` object is not safe for concurrent calls, so each model object runs every
    native call on its own single worker thread. An ``asyncio.Lock`` queues callers, and
    a stream holds it until the stream finishes or is closed. The worker thread is what
    keeps native calls one at a time even when a caller is cancelled mid-call.
    """

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        model_id: str | None = None,
        seed: int = 0,
        nice: int = 0,
    ) -> None:
        """Load the GGUF file at ``model_path``.

        ``nice`` lowers the scheduling priority of generation by that many steps
        (Linux nice values, 0 to 19). Other work of the process, such as
        acknowledging chat events within Slack's 3 seconds, is then not starved
        while the model keeps every core busy.
        """
        import llama_cpp

        self.model_path = Path(model_path)
        self.model_id = model_id or self.model_path.stem
        if not self.model_path.is_file():
            raise ModelError(f"model file not found for model {self.model_id}: {self.model_path}")

        def load(context_size: int) -> llama_cpp.Llama:
            try:
                return llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=context_size,
                    n_threads=n_threads,
                    verbose=False,
                    seed=seed,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelError(
                    f"failed to load model {self.model_id} from {self.model_path}: {exc}"
                ) from exc

        llm = load(n_ctx)
        trained_context = llama_cpp.llama_model_n_ctx_train(llm.model)
        if 0 < trained_context < n_ctx:
            # The context size is fixed at load time, so a larger request means a reload.
            logger.info(
                "model %s: n_ctx %d exceeds the trained context %d, reloading with %d",
                self.model_id, n_ctx, trained_context, trained_context,
            )
            llm.close()
            llm = load(trained_context)

        self._llm = llm
        self.context_window = llm.n_ctx()
        self._formatter, self.supports_system_role = _select_chat_format(llm)
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"llama-{self.model_id}", initializer=lower_thread_priority, initargs=(nice,)
        )
        logger.info(
            "model %s loaded from %s: context_window=%d system_role=%s chat_format=%s",
            self.model_id, self.model_path, self.context_window,
            self.supports_system_role, llm.chat_format,
        )

    def count_tokens(self, text: str) -> int:
        # NOTE: tokenising runs outside the worker thread because llama_tokenize reads only
        # the vocabulary, never the context that generation changes.
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_prompt_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """Return the exact prompt size by rendering the chat template that calls use.

        Falls back to the estimate of ``ChatModel`` when the model has no known template.
        """
        if self._formatter is None:
            return super().count_prompt_tokens(messages)
        prepared = _to_llama_messages(prepare_messages(messages, self.supports_system_role))
        try:
            rendered = self._formatter(messages=prepared)
        except Exception:
            # Calls would fail on the same template, so the estimate is good enough here.
            logger.debug("model %s: chat template failed while counting tokens", self.model_id, exc_info=True)
            return super().count_prompt_tokens(messages)
        tokens = self._llm.tokenize(
            rendered.prompt.encode("utf-8"),
            add_bos=not rendered.added_special,
            special=True,
        )
        return len(tokens)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> Completion:
        request = _to_llama_messages(prepare_messages(messages, self.supports_system_role))
        loop = asyncio.get_running_loop()
        async with self._lock:
            started = time.monotonic()
            response = await loop.run_in_executor(
                self._executor, self._run_completion, request, max_tokens, temperature
            )
            duration = time.monotonic() - started

        choice = response["choices"][0]
        usage = response.get("usage") or {}
        completion = Completion(
            text=clean_output(choice["message"].get("content") or ""),
            model_id=self.model_id,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )
        logger.info(
            "model %s completed: prompt_tokens=%d completion_tokens=%d finish_reason=%s duration_ms=%d",
            self.model_id, completion.prompt_tokens, completion.completion_tokens,
            completion.finish_reason, duration * 1000,
        )
        return completion

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
    ) -> AsyncIterator[str]:
        prepared = prepare_messages(messages, self.supports_system_role)
        request = _to_llama_messages(prepared)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop_event = threading.Event()

        def send(kind: str, value: Any) -> None:
            # Runs on the worker thread. A closed loop means the reader is gone, so decoding stops.
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:
                stop_event.set()

        async with self._lock:
            started = time.monotonic()
            loop.run_in_executor(
                self._executor, self._run_stream, request, max_tokens, temperature, send, stop_event
            )
            cleaner = StreamCleaner()
            pieces = 0
            try:
                while not cleaner.done:
                    kind, value = await queue.get()
                    if kind == _ERROR:
                        raise value
                    if kind == _END:
                        break
                    pieces += 1
                    text = cleaner.feed(value)
                    if text:
                        yield text
                tail = cleaner.finish()
                if tail:
                    yield tail
            finally:
                stop_event.set()
                logger.info(
                    "model %s streamed: prompt_tokens=%d completion_pieces=%d duration_ms=%d",
                    self.model_id, self.count_prompt_tokens(prepared), pieces,
                    (time.monotonic() - started) * 1000,
                )

    async def aclose(self) -> None:
        """Wait for the running call to finish, then free the native model."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._llm.close)
            self._executor.shutdown(wait=False)

    def _run_completion(
        self, request: list[dict[str, str]], max_tokens: int, temperature: float
    ) -> dict[str, Any]:
        try:
            return self._llm.create_chat_completion(
                messages=request,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(END_OF_TURN_TOKENS),
            )
        except Exception as exc:
            raise self._model_error(exc) from exc

    def _run_stream(
        self,
        request: list[dict[str, str]],
        max_tokens: int,
        temperature: float,
        send: Callable[[str, Any], None],
        stop_event: threading.Event,
    ) -> None:
        chunks = None
        try:
            chunks = self._llm.create_chat_completion(
                messages=request,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(END_OF_TURN_TOKENS),
                stream=True,
            )
            for chunk in chunks:
                if stop_event.is_set():
                    break
                content = chunk["choices"][0]["delta"].get("content")
                if content:
                    send(_PIECE, content)
        except Exception as exc:
            error = self._model_error(exc)
            error.__cause__ = exc
            send(_ERROR, error)
            return
        finally:
            if chunks is not None:
                # Closing the generator stops decoding at once when the reader went away.
                chunks.close()
        send(_END, None)

    def _model_error(self, exc: Exception) -> ModelError:
        # llama-cpp-python reports an oversized prompt as a ValueError. Its messages carry
        # token counts and template errors, never the prompt text.
        if isinstance(exc, ValueError) and "exceed context window" in str(exc):
            return ContextOverflowError(f"prompt does not fit model {self.model_id}: {exc}")
        return ModelError(f"model {self.model_id} failed: {type(exc).__name__}: {exc}")


def _to_llama_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    return [{"role": message.role, "content": message.content} for message in messages]


def _select_chat_format(llm: llama_cpp.Llama) -> tuple[Callable[..., Any] | None, bool]:
    """Pick the chat format calls use and detect whether it has a system role.

    Returns the formatter that renders prompts exactly as calls do (None when unknown) and
    whether the system role is supported. The GGUF's own template is preferred over the
    format llama-cpp-python guesses from it, so that counting and calls render the same.
    Gemma GGUFs may ship no template, so Gemma models use llama-cpp-python's built-in
    "gemma" format, which has no system role.
    """
    from llama_cpp import llama_chat_format

    template = llm.metadata.get("tokenizer.chat_template")
    architecture = llm.metadata.get("general.architecture", "")
    is_gemma = architecture.startswith("gemma") or (template is not None and "<start_of_turn>" in template)

    if template is None:
        if is_gemma:
            llm.chat_format = "gemma"
            return llama_chat_format.format_gemma, False
        # Without a template llama-cpp-python falls back to its Llama 2 format.
        return None, False

    eos_id = llm.token_eos()
    bos_id = llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llm, eos_id),
        bos_token=_token_text(llm, bos_id),
        stop_token_ids=[eos_id],
    )
    llm.chat_format = _GGUF_TEMPLATE_FORMAT
    return formatter, _template_has_system_role(formatter, template, is_gemma)


def _token_text(llm: llama_cpp.Llama, token_id: int) -> str:
    if token_id == -1:
        return ""
    return llm.detokenize([token_id], special=True).decode("utf-8", errors="replace")


def _template_has_system_role(formatter: Callable[..., Any], template: str, is_gemma: bool) -> bool:
    if is_gemma or "system" not in template:
        return False
    try:
        formatter(messages=_PROBE_MESSAGES)
    except Exception:
        return False
    return True
