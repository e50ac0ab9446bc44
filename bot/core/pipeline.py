"""Answering one accepted message: the work a queue worker does for each job."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from bot.channels.base import ChannelClient
from bot.core.message import Citation, IncomingMessage, Reply
from bot.core.roles import RoleDirectory
from bot.core.router import Router
from bot.errors import SkillError
from bot.storage import exchanges
from bot.storage.database import Database
from bot.storage.models import Message
from skills.base import SkillRequest, SkillResult

logger = logging.getLogger(__name__)

HISTORY_TURNS = 40


class Pipeline:
    """Routes a message to a skill, stores the exchange and posts the reply once.

    Database transactions are short and never span the skill's model call. The
    answer is stored before it is posted, so a retried job re-posts the stored
    answer instead of generating a second one, and a posted answer is never posted
    again. NOTE: a crash between the platform accepting the post and the
    ``posted`` mark being committed can still post the stored answer twice.
    """

    def __init__(
        self, db: Database, router: Router, channels: dict[str, ChannelClient], roles: RoleDirectory | None = None
    ) -> None:
        self.db = db
        self.router = router
        self.channels = channels
        self.roles = roles or RoleDirectory()

    async def answer(self, message: IncomingMessage) -> None:
        channel = self._channel(message.platform)
        message = await channel.prepare(message)
        async with self.db.autocommit() as conn:
            opened = await exchanges.open_exchange(conn, message, history_limit=HISTORY_TURNS)

        answer = opened.answer
        if answer is not None and answer.delivery_status == "posted":
            logger.info("Event %s was already answered by message %s", message.event_key, answer.id)
            return
        if answer is None:
            answer = await self._generate(message, opened.conversation_id, opened.history, channel)
        await self._deliver(message, answer, channel)

    async def _generate(self, message, conversation_id, history, channel: ChannelClient) -> Message:
        started = time.perf_counter()
        route = self.router.route(message.text)
        # The progress indicator is a platform round trip, which the skill need not wait
        # for. Delivery may replace a progress message, so it waits for it below.
        progress = asyncio.create_task(self._show_progress(channel, message))
        try:
            direct = await channel.handle_directly(message)
            if direct is not None:
                result, skill_name = SkillResult(text=direct, path="direct"), f"{channel.platform}_action"
            else:
                result, skill_name = await self._run_skill(message, route, history)
        finally:
            await progress
        latency_ms = int((time.perf_counter() - started) * 1000)
        async with self.db.autocommit() as conn:
            stored = await exchanges.record_answer(
                conn,
                conversation_id=conversation_id,
                event_key=message.event_key,
                text=_render(result),
                skill=skill_name,
                answer_path=result.path,
                model_id=result.model_id,
                prompt_version=result.prompt_version,
                latency_ms=latency_ms,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                sources=[
                    exchanges.StoredSource(
                        chunk_id=source.chunk_id,
                        source_id=source.source_id,
                        title=source.title,
                        rank=source.rank,
                        score=source.score,
                        cited=source.cited,
                        excerpt=source.excerpt,
                    )
                    for source in result.sources
                ],
            )
        if stored is None:
            # Another worker stored an answer for this event first; deliver that one.
            async with self.db.transaction() as session:
                stored = await exchanges.find_answer(session, message.event_key)
        logger.info(
            "Answered event %s with skill %s via %s in %d ms", message.event_key, skill_name, result.path, latency_ms
        )
        return stored

    @staticmethod
    async def _show_progress(channel: ChannelClient, message: IncomingMessage) -> None:
        try:
            await channel.show_progress(message)
        except Exception:
            logger.warning("Could not show progress for event %s", message.event_key, exc_info=True)

    async def _run_skill(self, message: IncomingMessage, route, history) -> tuple[SkillResult, str]:
        if route.unavailable is not None:
            return SkillResult(text=self.router.unavailable_text(route.unavailable), path="unavailable"), route.unavailable
        if route.skill is None:
            return SkillResult(text=self.router.help_text(), path="help"), "help"
        request = SkillRequest(message=message, text=route.text, history=tuple(history), audiences=self.roles.audiences_for(message))
        try:
            return await route.skill.handle(request), route.skill.name
        except SkillError as exc:
            return SkillResult(text=str(exc), path="skill_error"), route.skill.name
        except Exception:
            incident = secrets.token_hex(4)
            logger.exception("Skill %s failed on event %s (incident %s)", route.skill.name, message.event_key, incident)
            text = f"Sorry, something went wrong while answering. Please try again later (incident {incident})."
            return SkillResult(text=text, path="error"), route.skill.name

    async def _deliver(self, message: IncomingMessage, answer: Message, channel: ChannelClient) -> None:
        reply = Reply(text=answer.text, answer_id=str(answer.id))
        platform_id = await channel.send_reply(message, reply)
        async with self.db.autocommit() as conn:
            await exchanges.mark_delivered(conn, answer.id, platform_id)

    def _channel(self, platform: str) -> ChannelClient:
        try:
            return self.channels[platform]
        except KeyError:
            raise LookupError(f"no channel client configured for platform {platform!r}") from None


def _render(result: SkillResult) -> str:
    """Render the answer text as stored and posted: the answer, then its cited sources."""
    if not result.citations:
        return result.text
    lines = [result.text, "", "Sources:"]
    lines.extend(_citation_line(citation) for citation in result.citations)
    return "\n".join(lines)


def _citation_line(citation: Citation) -> str:
    heading = f" › {citation.heading}" if citation.heading else ""
    return f"[{citation.number}] {citation.title}{heading}"
