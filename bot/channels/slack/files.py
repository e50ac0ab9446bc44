"""Adding a file that someone shares with the bot in a DM to the HR knowledge sources."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.message import IncomingMessage
from bot.core.roles import RoleDirectory
from bot.errors import SourceError
from bot.retrieval.store import MAX_SOURCE_BYTES, IngestResult

logger = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 60

NOT_ALLOWED = (
    "Only people with the HR or admin role can add documents to my knowledge sources, "
    "so I did not add this file. Please send it to your HR team."
)


class UploadStore(Protocol):
    """The part of SourceStore that stores an uploaded file."""

    async def add_upload(
        self, filename: str, data: bytes, *, owner: str | None, audience: str = "all"
    ) -> IngestResult: ...


class FileImporter:
    """Downloads files shared in a DM and stores them through ``add_upload``, for HR and admins only."""

    def __init__(self, client: AsyncWebClient, store: UploadStore, roles: RoleDirectory) -> None:
        self.client = client
        self.store = store
        self.roles = roles
        # Slack serves private files from files.<API host> (files.slack.com, files.slack-gov.com).
        # The bot token is sent to no other host, whatever URL an event carries.
        api_host = urlsplit(client.base_url).hostname or ""
        self._token_hosts = {api_host, f"files.{api_host}"}

    async def import_files(self, message: IncomingMessage) -> str:
        """Add each shared file as a source and return the reply text, one line per file."""
        if not self.roles.can_manage_sources(message):
            logger.info("User %s shared a file but has no role that manages sources", message.user_id)
            return NOT_ALLOWED
        lines = [await self._import_one(message, item) for item in message.extra.get("files") or ()]
        return "\n".join(lines)

    async def _import_one(self, message: IncomingMessage, item: dict[str, Any]) -> str:
        name = str(item.get("name") or item.get("id"))
        try:
            data = await self._download(item)
            result = await self.store.add_upload(name, data, owner=message.user_id, audience="all")
        except SourceError as exc:
            logger.info("Could not add shared file %s: %s", item.get("id"), exc)
            return f"I could not add {name}: {exc}"
        logger.info("Added shared file %s as source %s (%s)", item.get("id"), result.source_id, result.status)
        return _result_line(name, result)

    async def _download(self, item: dict[str, Any]) -> bytes:
        size = item.get("size")
        if isinstance(size, int) and size > MAX_SOURCE_BYTES:
            raise SourceError(f"the file is {size} bytes, above the {MAX_SOURCE_BYTES}-byte limit")
        url = item.get("url") or await self._url_from_file_info(str(item.get("id")))
        if urlsplit(url).hostname not in self._token_hosts:
            raise SourceError(f"Slack gave a download address on an unexpected host ({urlsplit(url).hostname})")
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {self.client.token}"}
        timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status != 200:
                    raise SourceError(f"downloading the file from Slack failed with HTTP {response.status}")
                data = await response.content.read(MAX_SOURCE_BYTES + 1)
        if len(data) > MAX_SOURCE_BYTES:
            raise SourceError(f"the file is above the {MAX_SOURCE_BYTES}-byte limit")
        logger.info("Downloaded Slack file %s (%d bytes) in %.0f ms", item.get("id"), len(data), (time.perf_counter() - started) * 1000)
        return data

    async def _url_from_file_info(self, file_id: str) -> str:
        try:
            response = await self.client.files_info(file=file_id)
        except SlackApiError as exc:
            raise SourceError(f"Slack did not return the file's details ({exc.response.get('error')})") from exc
        url = (response.get("file") or {}).get("url_private_download")
        if not isinstance(url, str):
            raise SourceError("Slack did not return a download address for the file")
        return url


def _result_line(name: str, result: IngestResult) -> str:
    if result.status == "unchanged":
        return f"{name} is already in my sources, unchanged ({result.chunk_count} chunks)."
    verb = "Replaced" if result.status == "replaced" else "Added"
    return f"{verb} *{result.title}* ({name}) in my sources: {result.chunk_count} chunks."
