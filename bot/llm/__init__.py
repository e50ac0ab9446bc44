"""Chat model backends behind one async contract, and prompt fitting for them."""

from bot.llm.base import (
    END_OF_TURN_TOKENS,
    ChatMessage,
    ChatModel,
    Completion,
    ContextOverflowError,
    ModelError,
    clean_output,
    prepare_messages,
)
from bot.llm.fitting import FittedPrompt, fit_prompt
from bot.llm.llama_cpp import LlamaCppModel
from bot.llm.openai_compat import OpenAICompatibleModel
from bot.llm.registry import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    chat_model_from_settings,
    create_chat_model,
    resolve_model_path,
)
from bot.llm.testing import ScriptedChatModel

__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "END_OF_TURN_TOKENS",
    "ChatMessage",
    "ChatModel",
    "Completion",
    "ContextOverflowError",
    "FittedPrompt",
    "LlamaCppModel",
    "ModelError",
    "OpenAICompatibleModel",
    "clean_output",
    "chat_model_from_settings",
    "create_chat_model",
    "fit_prompt",
    "prepare_messages",
    "resolve_model_path",
    "ScriptedChatModel",
]
