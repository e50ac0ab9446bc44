"""Prompt templates kept as versioned files in ``prompts/``.

Each file is TOML with a ``version`` and one template per part; templates use
``{name}`` placeholders and are rendered with langchain-core's strict formatter,
the one its ``PromptTemplate`` uses for such templates. Importing ``PromptTemplate``
itself would load langchain-core's runnables and tracing: 25 MB more memory in
every process and half a second more start-up, for the same text.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from langchain_core.utils.formatting import formatter

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"


@dataclass(frozen=True)
class PromptSpec:
    """One versioned prompt file."""

    name: str
    version: str
    parts: dict[str, str]

    def render(self, part: str, **values: object) -> str:
        try:
            template = self.parts[part]
        except KeyError:
            raise KeyError(f"prompt {self.name} ({self.version}) has no part {part!r}") from None
        return formatter.format(template, **values)


class PromptLibrary:
    """Loads the newest file of each prompt name from a folder, once."""

    def __init__(self, folder: Path = PROMPTS_DIR) -> None:
        self.folder = folder

    @cached_property
    def _specs(self) -> dict[str, PromptSpec]:
        specs: dict[str, PromptSpec] = {}
        for path in sorted(self.folder.glob("*.toml"), key=_version_order):
            name = path.name.split(".", 1)[0]
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            version = data.pop("version", None)
            if not isinstance(version, str):
                raise ValueError(f"prompt file {path} has no version string")
            # Files are read in version order, so hr_qa.v10.toml replaces hr_qa.v9.toml.
            specs[name] = PromptSpec(name=name, version=version, parts={k: str(v) for k, v in data.items()})
        return specs

    def get(self, name: str) -> PromptSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise KeyError(f"no prompt named {name!r} in {self.folder}") from None


def _version_order(path: Path) -> tuple[str, int]:
    match = re.search(r"\.v(\d+)\.toml$", path.name)
    return (path.name.split(".", 1)[0], int(match.group(1)) if match else 0)
