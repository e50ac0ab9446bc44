"""The platform-neutral message that every channel adapter produces."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class IncomingMessage:
    """A question from an employee, as stored in the job queue.

    ``event_key`` identifies the platform event across re-deliveries; ``thread_key``
    is the thread that the reply goes to and that keys the conversation history.
    """

    platform: str
    event_key: str
    channel_id: str
    thread_key: str
    user_id: str
    text: str
    message_id: str
    channel_type: str = "im"
    team_id: str | None = None
    user_groups: tuple[str, ...] = field(default_factory=tuple)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_public(self) -> bool:
        """True where anyone in the workspace may read the reply."""
        return self.channel_type in {"channel", "public"}

    def to_job_args(self) -> dict[str, Any]:
        # A shallow copy is enough: the queue serialises the arguments to JSON at once,
        # and dataclasses.asdict's deep copy was a tenth of the time to accept an event.
        args = {item.name: getattr(self, item.name) for item in fields(self)}
        args["user_groups"] = list(self.user_groups)
        return args

    @classmethod
    def from_job_args(cls, args: dict[str, Any]) -> IncomingMessage:
        values = dict(args)
        values["user_groups"] = tuple(values.get("user_groups") or ())
        return cls(**values)


@dataclass(frozen=True)
class HistoryTurn:
    """An earlier message in the same thread: ``role`` is ``user`` or ``assistant``."""

    role: str
    text: str


@dataclass(frozen=True)
class Citation:
    """A source that an answer cites, numbered as in the answer text."""

    number: int
    title: str
    heading: str | None = None


@dataclass(frozen=True)
class Reply:
    """What a channel adapter posts back."""

    text: str
    citations: tuple[Citation, ...] = ()
    answer_id: str | None = None
