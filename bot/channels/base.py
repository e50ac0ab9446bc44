"""The contract between the worker and a chat platform."""

from __future__ import annotations

import abc

from bot.core.message import IncomingMessage, Reply


class ChannelClient(abc.ABC):
    """Posts replies to one platform.

    An implementation MUST post ``reply`` into the thread named by
    ``message.thread_key`` and return the platform's id of the posted message. It
    MUST raise on failure rather than return, so that the queue retries the job.
    It MAY split a long reply into several posts, in order, and return the first id.
    It MAY show progress through :meth:`show_progress`; the default does nothing.
    """

    platform: str

    @abc.abstractmethod
    async def send_reply(self, message: IncomingMessage, reply: Reply) -> str: ...

    async def prepare(self, message: IncomingMessage) -> IncomingMessage:
        """Return ``message`` ready for a skill, with platform markup resolved.

        The worker calls this before routing, never before the platform's
        acknowledgement, so it MAY call the platform's API (to look up the names
        of mentioned people, for example). The default returns ``message``.
        """
        return message

    async def handle_directly(self, message: IncomingMessage) -> str | None:
        """Handle a platform action that needs no skill and return the reply text.

        For example, storing a file someone shared. None, the default, routes the
        message to a skill as usual.
        """
        return None

    async def show_progress(self, message: IncomingMessage) -> None:
        """Tell the asker that an answer is being prepared."""
        return None

    async def aclose(self) -> None:
        return None
