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

    async def show_progress(self, message: IncomingMessage) -> None:
        """Tell the asker that an answer is being prepared."""
        return None

    async def aclose(self) -> None:
        return None
