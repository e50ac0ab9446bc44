"""Profile the HR skill's work beside its model calls with pyinstrument.

Usage: python -m tests.bench.profile_hr [--questions N] [--html PATH] [--cold]

Indexes the sample handbook into a fresh database on an embedded server, then
lets the skill prepare as the worker does after start-up (unless ``--cold``), and
asks the first N answerable evaluation questions (after one warm-up question)
through the HR skill in this process with the bundled model, under pyinstrument.
The report shows where the skill spends its time; the model's share is printed
apart, from its own timings, so that what is left is the bot's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from bot.channels.slack.convert import to_incoming
from bot.channels.slack.testing import DEFAULT_BOT_USER_ID, app_mention_payload
from bot.llm import chat_model_from_settings
from bot.prompts import PromptLibrary
from bot.retrieval.embedder import get_embedder
from bot.retrieval.search import Retriever
from bot.storage.database import Database
from skills.base import SkillContext, SkillRequest
from skills.hr_qa.skill import HRQuestionSkill
from tests.bench.bench_e2e import WARM_UP_QUESTION, pick_questions
from tests.bench.harness import QUICK, BenchContext, index_handbook
from tests.bench.raw_llama import settings_from_env
from tests.support import bot_env


class TimedModel:
    """Wraps a chat model and adds up the seconds its calls take."""

    def __init__(self, model) -> None:
        self.model = model
        self.seconds = 0.0

    def __getattr__(self, name):
        return getattr(self.model, name)

    async def complete(self, messages, **kwargs):
        started = time.perf_counter()
        try:
            return await self.model.complete(messages, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


async def main(questions: int, html: Path | None, cold: bool, show_all: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="chatops-profile-") as root:
        ctx = BenchContext(Path(root), QUICK)
        try:
            urls = await asyncio.to_thread(ctx.create_database, "profile_hr")
            env = bot_env(database_url=urls.libpq, slack_api_url="http://127.0.0.1:9/api/", data_dir=Path(root))
            await index_handbook(env)
            settings = settings_from_env(env)
            model = TimedModel(chat_model_from_settings(settings))
            db = Database(urls)
            skill = HRQuestionSkill(
                SkillContext(settings=settings, model=model, retriever=Retriever(db, get_embedder()), prompts=PromptLibrary())
            )

            async def ask(text: str) -> None:
                payload = app_mention_payload(text, event_id="EvPROFILE")
                message = to_incoming(payload["event"], team_id=payload["team_id"], bot_user_id=DEFAULT_BOT_USER_ID)
                await skill.handle(SkillRequest(message=message, text=text))

            if not cold:
                # What the worker does in the background after start-up.
                await skill.prepare()
            await ask(WARM_UP_QUESTION)
            model.seconds = 0.0
            profiler = Profiler(async_mode="enabled")
            started = time.perf_counter()
            with profiler:
                for text in pick_questions(questions):
                    await ask(text)
            total = time.perf_counter() - started
            print(profiler.output_text(unicode=True, color=False, show_all=show_all))
            print(
                f"{questions} questions: {total * 1000 / questions:.0f} ms each, model "
                f"{model.seconds * 1000 / questions:.0f} ms, beside the model "
                f"{(total - model.seconds) * 1000 / questions:.0f} ms"
            )
            if html is not None:
                html.write_text(profiler.output_html())
            await db.dispose()
        finally:
            await ctx.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--html", type=Path)
    parser.add_argument("--cold", action="store_true", help="skip the skill's preparation, as before it has run")
    parser.add_argument("--all", action="store_true", help="show every frame, also those of libraries")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.questions, arguments.html, arguments.cold, arguments.all))
