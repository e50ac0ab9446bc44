"""Start-up and shutdown of the shared parts: database, queue, model, retrieval, skills, channels."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import procrastinate

from bot.channels.base import ChannelClient
from bot.config import Settings
from bot.core.pipeline import Pipeline
from bot.core.roles import RoleDirectory
from bot.core.router import Router, load_skills
from bot.llm import ChatModel, chat_model_from_settings
from bot.prompts import PromptLibrary
from bot.queue import bind_queue
from bot.retrieval.embedder import Embedder, get_embedder
from bot.retrieval.search import Retriever
from bot.retrieval.store import SourceStore
from bot.storage import migrate
from bot.storage.database import Database, DatabaseUrls, resolve_database
from skills.base import SkillContext

logger = logging.getLogger(__name__)


def prepare_database(settings: Settings, *, apply_migrations: bool = True) -> DatabaseUrls:
    """Start the embedded server if no DATABASE_URL is set, and bring the schema up to date."""
    urls = resolve_database(settings.database_url, settings.data_dir)
    if apply_migrations:
        migrate.upgrade(urls)
    return urls


@dataclass
class Runtime:
    """Everything a web process or worker shares, created once per process."""

    settings: Settings
    urls: DatabaseUrls
    db: Database
    queue: procrastinate.App
    embedder: Embedder
    retriever: Retriever
    sources: SourceStore
    model: ChatModel | None = None
    router: Router | None = None
    pipeline: Pipeline | None = None
    channels: dict[str, ChannelClient] = field(default_factory=dict)

    @classmethod
    async def start(
        cls,
        settings: Settings,
        urls: DatabaseUrls,
        *,
        with_model: bool = True,
        channels: dict[str, ChannelClient] | None = None,
        bulk_embedding: bool = False,
    ) -> Runtime:
        """Open the database, queue and embedder, and load the model unless ``with_model`` is false.

        ``bulk_embedding`` is for commands that embed many texts at once, such as
        ``chatops sources add``: the embedder then keeps ONNX Runtime's memory arena
        and runs larger batches (see ``Embedder``'s ``bulk``). A server embeds a
        question at a time and saves the memory.
        """
        db = Database(urls)
        queue = bind_queue(urls.libpq)
        await queue.open_async()
        # A server embeds questions and, in the background, passages; like generation,
        # that yields to acknowledging events. A bulk command runs at full priority.
        embedder = get_embedder(bulk=bulk_embedding, nice=0 if bulk_embedding else settings.model_nice)
        runtime = cls(
            settings=settings,
            urls=urls,
            db=db,
            queue=queue,
            embedder=embedder,
            retriever=Retriever.from_settings(db, embedder, settings),
            sources=SourceStore(db, embedder),
            channels=dict(channels or {}),
        )
        if with_model:
            runtime.load_model()
        return runtime

    def load_model(self) -> None:
        started = time.perf_counter()
        settings = self.settings
        self.model = chat_model_from_settings(settings)
        context = SkillContext(settings=settings, model=self.model, retriever=self.retriever, prompts=PromptLibrary())
        self.router = Router(load_skills(context))
        self.pipeline = Pipeline(self.db, self.router, self.channels, RoleDirectory.from_settings(settings))
        logger.info("Loaded model %s in %.1f s", self.model.model_id, time.perf_counter() - started)

    async def aclose(self) -> None:
        for channel in self.channels.values():
            await channel.aclose()
        if self.model is not None:
            await self.model.aclose()
        await self.queue.close_async()
        await self.db.dispose()
