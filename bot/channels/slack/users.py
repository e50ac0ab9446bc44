"""Display names of Slack users, from ``users.info`` with an in-process cache."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

logger = logging.getLogger(__name__)

DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_ENTRIES = 10_000


class UserNames:
    """Looks up display names, remembering each for ``ttl_s`` seconds.

    A failed lookup is remembered too (as None), so a deleted user or a missing
    scope costs one call per TTL rather than one per message.
    """

    def __init__(
        self, client: AsyncWebClient, *, ttl_s: float = DEFAULT_TTL_S, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Display names of the users that could be looked up, keyed by user id."""
        found: dict[str, str] = {}
        for user_id in user_ids:
            name = await self.display_name(user_id)
            if name:
                found[user_id] = name
        return found

    async def display_name(self, user_id: str) -> str | None:
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        name = await self._fetch(user_id)
        self._remember(user_id, name)
        return name

    async def _fetch(self, user_id: str) -> str | None:
        started = time.perf_counter()
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            logger.warning("Slack users.info failed for %s: %s", user_id, exc.response.get("error"))
            return None
        logger.info("Slack users.info for %s took %.0f ms", user_id, (time.perf_counter() - started) * 1000)
        user = response.get("user")
        return display_name_of(user) if isinstance(user, dict) else None

    def _remember(self, user_id: str, name: str | None) -> None:
        self._cache[user_id] = (time.monotonic() + self.ttl_s, name)
        self._cache.move_to_end(user_id)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)


def display_name_of(user: dict) -> str | None:
    """Return the name Slack shows for ``user``: display name, then real name, then user name."""
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    for candidate in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None
