"""Tests of OpenAICompatibleModel against a fake chat completions server on 127.0.0.1."""

import asyncio
import json
import socket
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp import test_utils

from bot.llm import ChatMessage, ModelError, OpenAICompatibleModel, create_chat_model
from bot.llm.openai_compat import chat_completions_url

SECRET_PROMPT = "confidential salary band for employee 4711"
MESSAGES = [
    ChatMessage("system", "Be brief."),
    ChatMessage("user", SECRET_PROMPT),
]


class FakeServer:
    """Chat completions endpoint whose next reply the test sets."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.reply_text = "Paris."
        self.stream_pieces: list[str] = []
        self.status = 200
        self.raw_body: bytes | None = None
        self.delay_s = 0.0
        self.finish_reason = "stop"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append({"headers": dict(request.headers), "json": await request.json()})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.json_response({"error": {"message": f"failed on {SECRET_PROMPT}"}}, status=self.status)
        if self.raw_body is not None:
            return web.Response(body=self.raw_body, content_type="application/json")
        if self.requests[-1]["json"].get("stream"):
            return await self._stream(request)
        return web.json_response(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.reply_text},
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
            }
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keep-alive comment\n\n")
        for piece in self.stream_pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(final)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@pytest.fixture
async def fake():
    fake_server = FakeServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake_server.handle)
    server = test_utils.TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake_server.base_url = str(server.make_url("")).rstrip("/")
    yield fake_server
    await server.close()


@pytest.fixture
async def model(fake):
    chat_model = OpenAICompatibleModel(fake.base_url, "smollm2", timeout_s=5)
    yield chat_model
    await chat_model.aclose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8000", "http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1/"],
)
def test_url_accepts_optional_v1(base_url):
    assert chat_completions_url(base_url) == "http://127.0.0.1:8000/v1/chat/completions"


async def test_complete_returns_completion(fake, model):
    fake.reply_text = "  Paris.<|im_end|>\n<|im_start|>user\nnext"

    completion = await model.complete(MESSAGES, max_tokens=16, temperature=0.1)

    assert completion.text == "Paris."
    assert completion.model_id == "smollm2"
    assert completion.prompt_tokens == 11
    assert completion.completion_tokens == 3
    assert completion.finish_reason == "stop"
    sent = fake.requests[-1]["json"]
    assert sent["model"] == "smollm2"
    assert sent["max_tokens"] == 16
    assert sent["temperature"] == 0.1
    assert sent["stream"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": SECRET_PROMPT},
    ]


async def test_complete_reports_length_finish(fake, model):
    fake.finish_reason = "length"

    completion = await model.complete(MESSAGES, max_tokens=3)

    assert completion.finish_reason == "length"


async def test_stream_yields_clean_pieces(fake, model):
    fake.stream_pieces = [" Par", "is", " is", " the capital.", "<|im", "_end|>", "junk"]

    pieces = [piece async for piece in model.stream(MESSAGES, max_tokens=16)]

    assert "".join(pieces) == "Paris is the capital."
    assert all(pieces)
    assert fake.requests[-1]["json"]["stream"] is True


async def test_stream_cleans_gemma_tokens(fake, model):
    fake.stream_pieces = ["<bos>Hello", " world", "<end_of_turn>", "\n<start_of_turn>user"]

    text = "".join([piece async for piece in model.stream(MESSAGES)])

    assert text == "Hello world"


async def test_server_error_raises_model_error(fake, model):
    fake.status = 500

    with pytest.raises(ModelError) as error:
        await model.complete(MESSAGES)

    message = str(error.value)
    assert "HTTP 500" in message
    assert fake.base_url in message
    assert SECRET_PROMPT not in message


async def test_stream_server_error_raises_model_error(fake, model):
    fake.status = 503

    with pytest.raises(ModelError, match="HTTP 503"):
        async for _ in model.stream(MESSAGES):
            pass


async def test_connection_refused_raises_model_error():
    url = f"http://127.0.0.1:{free_port()}"
    chat_model = OpenAICompatibleModel(url, "smollm2", timeout_s=5)
    try:
        with pytest.raises(ModelError) as error:
            await chat_model.complete(MESSAGES)
        with pytest.raises(ModelError):
            async for _ in chat_model.stream(MESSAGES):
                pass
    finally:
        await chat_model.aclose()

    assert url in str(error.value)
    assert SECRET_PROMPT not in str(error.value)
    assert error.value.__cause__ is not None


async def test_timeout_raises_model_error(fake):
    fake.delay_s = 2.0
    chat_model = OpenAICompatibleModel(fake.base_url, "smollm2", timeout_s=0.3)
    try:
        with pytest.raises(ModelError, match="timed out"):
            await chat_model.complete(MESSAGES)
    finally:
        await chat_model.aclose()


@pytest.mark.parametrize(
    "body",
    [b"not json", b"{}", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}'],
)
async def test_malformed_response_raises_model_error(fake, model, body):
    fake.raw_body = body

    with pytest.raises(ModelError, match="invalid chat completion response"):
        await model.complete(MESSAGES)


async def test_api_key_sent_as_bearer(fake):
    chat_model = OpenAICompatibleModel(fake.base_url + "/v1/", "smollm2", api_key="sk-test-key")
    try:
        await chat_model.complete(MESSAGES)
    finally:
        await chat_model.aclose()

    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer sk-test-key"
    assert "sk-test-key" not in repr(chat_model)


async def test_no_authorization_without_key(fake, model):
    await model.complete(MESSAGES)

    assert "Authorization" not in fake.requests[-1]["headers"]


async def test_system_merged_when_unsupported(fake):
    chat_model = OpenAICompatibleModel(fake.base_url, "gemma", supports_system_role=False)
    try:
        await chat_model.complete(MESSAGES)
    finally:
        await chat_model.aclose()

    assert fake.requests[-1]["json"]["messages"] == [
        {"role": "user", "content": f"Be brief.\n\n{SECRET_PROMPT}"}
    ]


def test_count_tokens_overestimates():
    chat_model = OpenAICompatibleModel("http://127.0.0.1:1", "smollm2")

    assert chat_model.count_tokens("abcdefg") == 3
    assert chat_model.count_tokens("") == 0


async def test_create_chat_model_with_base_url(tmp_path: Path):
    chat_model = create_chat_model(
        model="served-model",
        data_dir=tmp_path,
        llm_base_url="http://127.0.0.1:9/v1",
        context_window=8192,
    )

    assert isinstance(chat_model, OpenAICompatibleModel)
    assert chat_model.model_id == "served-model"
    assert chat_model.context_window == 8192
    assert chat_model.url == "http://127.0.0.1:9/v1/chat/completions"
    await chat_model.aclose()
