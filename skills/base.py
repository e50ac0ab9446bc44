"""The contract every skill implements, built-in or added by a company.

A skill registers under the ``chatops.skills`` entry-point group (see
pyproject.toml), the way the built-in ones do, so a company can add one without
forking the bot.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from bot.core.message import Citation, HistoryTurn, IncomingMessage

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.llm import ChatModel
    from bot.prompts import PromptLibrary
    from bot.retrieval.search import Retriever


@dataclass(frozen=True)
class SkillRequest:
    """One question for a skill.

    ``text`` is the message with the routing command removed; ``audiences`` are the
    source audiences the asker may see in this channel.
    """

    message: IncomingMessage
    text: str
    history: Sequence[HistoryTurn] = ()
    audiences: frozenset[str] = frozenset({"all"})


@dataclass(frozen=True)
class UsedSource:
    """A retrieved chunk that an answer was built from."""

    chunk_id: int | None
    source_id: uuid.UUID | None
    title: str
    heading: str | None
    rank: int
    score: float
    cited: bool
    excerpt: str


@dataclass(frozen=True)
class SkillResult:
    """An answer and everything needed to store and audit it.

    ``path`` names how the answer was produced (for example ``model``,
    ``extractive`` or ``not_found``) and is stored with it.
    """

    text: str
    path: str
    citations: tuple[Citation, ...] = ()
    sources: tuple[UsedSource, ...] = ()
    model_id: str | None = None
    prompt_version: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class SkillContext:
    """What the bot hands every skill when it is created."""

    settings: Settings
    model: ChatModel
    retriever: Retriever
    prompts: PromptLibrary
    extras: dict[str, object] = field(default_factory=dict)


class Skill(abc.ABC):
    """A capability the router can send a message to.

    An implementation MUST set ``name`` (stored with every answer) and
    ``description`` (shown by ``help``), and MUST return a :class:`SkillResult` from
    :meth:`handle`. It MUST NOT open a database transaction across a model call.
    It MAY list ``commands``: leading words such as ``ask`` that route a message to
    it. It MAY raise :class:`bot.errors.SkillError` with a message safe to show the
    employee.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    commands: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: SkillContext) -> None:
        self.context = context

    @abc.abstractmethod
    async def handle(self, request: SkillRequest) -> SkillResult: ...

    async def prepare(self) -> None:
        """Compute ahead of time what answers will need from the knowledge base.

        The worker calls this in the background after it starts and whenever the
        knowledge base changes, never while holding a transaction, and at most one
        process at a time. It MUST be safe to call again and MUST NOT be required:
        :meth:`handle` works, more slowly, before it has run. The default does nothing.
        """
