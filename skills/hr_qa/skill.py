"""The HR question skill: retrieve, ask the model, check grounding, fall back to quoting."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from bot.core.message import Citation
from bot.llm import ChatMessage, fit_prompt
from bot.retrieval.search import SearchHit
from skills.base import Skill, SkillRequest, SkillResult, UsedSource
from skills.hr_qa.grounding import best_sentences, check_grounding

logger = logging.getLogger(__name__)

PROMPT_NAME = "hr_qa"
DECLINE_MARKER = "NOT_IN_SOURCES"


class HRQuestionSkill(Skill):
    name = "hr_qa"
    description = "Answers HR policy questions from the documents and FAQs HR maintains, with citations."
    commands = ("ask", "hr")

    async def handle(self, request: SkillRequest) -> SkillResult:
        settings = self.context.settings
        hits = await self.context.retriever.search(
            request.text, audiences=request.audiences, limit=settings.retrieval_top_k
        )
        relevant = [hit for hit in hits if hit.similarity >= settings.min_relevance]
        if not relevant:
            return self._not_found(hits)
        return await self._answer_from_sources(request, relevant)

    def _not_found(self, hits: Sequence[SearchHit]) -> SkillResult:
        contact = self.context.settings.hr_contact
        text = (
            "I couldn't find this in the HR sources I have, so I don't want to guess. "
            f"Please ask HR: {contact}."
        )
        best = max((hit.similarity for hit in hits), default=None)
        logger.info("No relevant HR source found (best similarity %s)", f"{best:.2f}" if best is not None else "none")
        return SkillResult(text=text, path="not_found")

    async def _answer_from_sources(self, request: SkillRequest, hits: Sequence[SearchHit]) -> SkillResult:
        model = self.context.model
        prompt = self.context.prompts.get(PROMPT_NAME)
        max_tokens = self.context.settings.max_answer_tokens
        history = [ChatMessage(role=turn.role, content=turn.text) for turn in request.history if turn.role in {"user", "assistant"}]

        def build(sources: Sequence[SearchHit], turns: Sequence[ChatMessage]) -> list[ChatMessage]:
            numbered = "\n\n".join(
                prompt.render("source", number=index, title=_label(hit), text=hit.text)
                for index, hit in enumerate(sources, start=1)
            )
            return [
                ChatMessage("system", prompt.render("system", company=self.context.settings.company_name)),
                *turns,
                ChatMessage("user", prompt.render("user", sources=numbered, question=request.text)),
            ]

        fitted = fit_prompt(model, build, list(hits), history, max_tokens=max_tokens)
        kept: list[SearchHit] = list(fitted.sources)
        started = time.perf_counter()
        completion = await model.complete(fitted.messages, max_tokens=max_tokens, temperature=0.1)
        logger.info("HR answer generated in %.0f ms with %d sources", (time.perf_counter() - started) * 1000, len(kept))

        texts = [hit.text for hit in kept]
        answer = completion.text.strip()
        report = check_grounding(answer, texts)
        path = "model"
        if DECLINE_MARKER in answer or not answer or not report.grounded:
            logger.info("Model answer failed the grounding check: %s", "; ".join(report.problems) or "declined")
            answer, cited = self._extractive(request.text, texts)
            path = "extractive"
            if not cited:
                return self._not_found(kept)
        else:
            cited = report.cited
        return SkillResult(
            text=answer,
            path=path,
            citations=tuple(
                Citation(number=n, title=kept[n - 1].title, heading=kept[n - 1].heading) for n in cited
            ),
            sources=tuple(
                UsedSource(
                    chunk_id=hit.chunk_id,
                    source_id=hit.source_id,
                    title=hit.title,
                    heading=hit.heading,
                    rank=rank,
                    score=hit.similarity,
                    cited=rank in cited,
                    excerpt=hit.text[:2000],
                )
                for rank, hit in enumerate(kept, start=1)
            ),
            model_id=completion.model_id,
            prompt_version=prompt.version,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )

    @staticmethod
    def _extractive(question: str, sources: Sequence[str]) -> tuple[str, tuple[int, ...]]:
        picked = best_sentences(question, sources, limit=2)
        if not picked:
            return "", ()
        text = " ".join(f"{sentence} [{number}]" for number, sentence in picked)
        return "From the HR sources: " + text, tuple(sorted({number for number, _ in picked}))


def _label(hit: SearchHit) -> str:
    return f"{hit.title} › {hit.heading}" if hit.heading else hit.title
