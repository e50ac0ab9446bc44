"""The HR question skill and its answer policy.

In order:

1. A question that tries to change the assistant's behaviour is declined.
2. A curated FAQ entry that confidently matches is returned as HR wrote it (path ``faq``).
3. Otherwise the passages that answer the question are picked from the retrieved
   chunks. When none is relevant enough the reply says so and names the HR
   contact (path ``not_found``).
4. The model answers from those passages, numbered and delimited, and the
   grounding check runs (path ``model``).
5. If the check fails, the passages themselves are quoted with citations (path
   ``extractive``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.core.message import Citation
from bot.llm import ChatMessage, ModelError, fit_prompt
from bot.retrieval.search import SearchHit
from skills.base import Skill, SkillRequest, SkillResult, UsedSource
from skills.hr_qa.corpus import CorpusStatistics, TermStatistics, is_common_english
from skills.hr_qa.evidence import (
    Candidate,
    QuestionTerms,
    Selection,
    analyse_question,
    best_for,
    build_candidates,
    has_figure,
    parse_locations,
    score_candidates,
    select_passages,
    split_question,
)
from skills.hr_qa.faq import FaqMatch, best_faq_match, faq_fields
from skills.hr_qa.grounding import check_grounding, strip_citations
from skills.hr_qa.injection import find_injection, neutralise
from skills.hr_qa.screening import asks_for_secret, benefit_object, conflicting_time, unknown_site
from skills.hr_qa.text import Passage, content_words, split_passages, stem

logger = logging.getLogger(__name__)

PROMPT_NAME = "hr_qa"
DECLINE_MARKER = "NOT_IN_SOURCES"

PATH_FAQ = "faq"
PATH_MODEL = "model"
PATH_EXTRACTIVE = "extractive"
PATH_NOT_FOUND = "not_found"
PATH_REFUSED = "refused"

# Chunks whose passages are kept in memory; a chunk's passages take a few KiB.
_CHUNK_PASSAGES_KEPT = 4096

# Unknown words shorter than this ("yrs", "wen") are chat abbreviations, not topics.
MIN_UNKNOWN_WORD_LENGTH = 4
# Cosine similarity of two single-word embeddings at which the words count as
# meaning the same ("kid" and "child" 0.81, "resign" and "contract" 0.38, measured
# with all-MiniLM-L6-v2).
WORD_MATCH = 0.5


@dataclass
class AnswerOutcome:
    """A result and the measurements behind the decisions that produced it."""

    result: SkillResult
    signals: dict[str, object] = field(default_factory=dict)


class HRQuestionSkill(Skill):
    name = "hr_qa"
    description = "Answers HR policy questions from the documents and FAQs HR maintains, with citations."
    commands = ("ask", "hr")

    def __init__(self, context) -> None:
        super().__init__(context)
        self._statistics: tuple[object, CorpusStatistics] | None = None
        self._statistics_lock = asyncio.Lock()
        self._locations = parse_locations(context.settings.hr_locations)
        self._faq_version: object = None
        self._chunk_passages: OrderedDict[tuple[int, str, str], tuple[Passage, ...]] = OrderedDict()
        self._faq_cache: dict[frozenset[str], tuple[list[tuple[SearchHit, str, str]], np.ndarray]] = {}

    async def handle(self, request: SkillRequest) -> SkillResult:
        return (await self.answer(request)).result

    async def answer(self, request: SkillRequest) -> AnswerOutcome:
        """Answer ``request`` and return the measurements the policy decided on."""
        signals: dict[str, object] = {}
        attempt = find_injection(request.text)
        if attempt:
            logger.warning(
                "Declined a question on event %s that tries to change the assistant's behaviour (%s)",
                request.message.event_key,
                ", ".join(attempt),
            )
            return AnswerOutcome(self._refused(), {"injection": list(attempt)})

        if asks_for_secret(request.text):
            return AnswerOutcome(self._not_found(()), {"decline": "asks for a credential"})
        site = unknown_site(request.text, self._locations)
        if site is not None:
            return AnswerOutcome(self._not_found(()), {"decline": "names an office the sources do not cover"})

        statistics, question, question_vector = await self._analyse(request)

        faq = await self._faq_entries(request)
        match = self._faq_match(faq, question, question_vector)
        if match is not None:
            signals.update(faq_similarity=round(match.similarity, 3), faq_coverage=round(match.coverage, 3))
            if self._faq_is_confident(match):
                return AnswerOutcome(self._faq_result(match), signals)

        selection, hits = await self._select(request, question, question_vector, signals, statistics, faq)
        if selection is not None:
            reason = await self._decline_reason(request.text, question, selection, match, statistics, signals)
            if reason is None:
                return AnswerOutcome(await self._compose(request, selection), signals)
            signals["decline"] = reason
            logger.info("Referred event %s to HR: %s", request.message.event_key, reason)
        return AnswerOutcome(self._not_found(hits), signals)

    async def _analyse(self, request: SkillRequest) -> tuple[TermStatistics, QuestionTerms, np.ndarray]:
        """Analyse the question and embed it, with the term statistics of the current knowledge base.

        The knowledge base rarely changes between questions, so the question is
        analysed and embedded with the statistics at hand while its version is read,
        and again only when the version turns out to have changed.
        """
        cached = self._statistics
        version_read = asyncio.ensure_future(self.context.retriever.corpus_version())
        try:
            if cached is not None:
                statistics = cached[1].view(request.audiences)
                question = analyse_question(request.text, statistics, self._locations)
                vector = (await self._embed([question.repaired_text or request.text], store=False))[0]
                if await version_read == cached[0]:
                    return statistics, question, vector
            version = await version_read
        finally:
            version_read.cancel()
        statistics = (await self._corpus_statistics(version)).view(request.audiences)
        question = analyse_question(request.text, statistics, self._locations)
        vector = (await self._embed([question.repaired_text or request.text], store=False))[0]
        return statistics, question, vector

    # Decisions

    def _faq_is_confident(self, match: FaqMatch) -> bool:
        settings = self.context.settings
        return match.similarity >= settings.hr_faq_min_similarity and match.coverage >= settings.hr_faq_min_coverage

    async def _decline_reason(
        self,
        text: str,
        question: QuestionTerms,
        selection: Selection,
        match: FaqMatch | None,
        statistics: TermStatistics,
        signals: dict[str, object],
    ) -> str | None:
        """Return why the chosen passages do not answer the question, or None when they do."""
        settings = self.context.settings
        best = selection.candidates[0]
        uncovered = await self._uncovered_share(question, selection, statistics)
        signals["uncovered_share"] = round(uncovered, 3)
        if selection.best_score < settings.hr_min_passage_score:
            return "no passage is relevant enough"
        if selection.coverage < settings.hr_min_coverage:
            return "the passages leave most of the question uncovered"
        if uncovered > settings.hr_max_unknown_share:
            return "the question turns on words the sources never use"
        if question.expects_figure and not has_figure(best.passage.text):
            return "the question asks for a figure and the best passage states none"
        provided = benefit_object(text)
        if provided and not any(set(provided) <= c.text_terms | c.context_terms for c in selection.candidates):
            return "no passage names what the question asks the company to provide"
        if conflicting_time(text, best.passage.text):
            return "the best passage is about another time than the question"
        if (
            match is not None
            and match.similarity >= settings.hr_faq_topic_similarity
            and best.hit.chunk_id == match.hit.chunk_id
        ):
            # The FAQ entry on this topic was judged not to answer the question,
            # so quoting its sentences would answer a question nobody asked.
            return "the FAQ entry on this topic does not answer it"
        return None

    async def _uncovered_share(self, question: QuestionTerms, selection: Selection, statistics: TermStatistics) -> float:
        """Share of the question's term weight held by words that neither the sources nor,
        in meaning, the chosen passages contain ("resign" against "end the contract")."""
        unknown = [word for word in dict.fromkeys(question.unknown) if len(word) >= MIN_UNKNOWN_WORD_LENGTH]
        if not unknown:
            return 0.0
        passage_words = sorted({word for candidate in selection.candidates for word in _passage_words(candidate.passage)})
        if not passage_words:
            return 1.0
        # The question's words are kept in memory only; the passages' words are stored.
        unknown_vectors = await self._embed(unknown, store=False)
        passage_vectors = await self._embed(passage_words)
        closest = (unknown_vectors @ passage_vectors.T).max(axis=1)
        missing = sum(statistics.idf(stem(word)) for word, similarity in zip(unknown, closest) if similarity < WORD_MATCH)
        known = sum(question.weights.values())
        return missing / (missing + known) if missing + known else 0.0

    # Retrieval and passage selection

    async def _faq_entries(self, request: SkillRequest) -> tuple[list[tuple[SearchHit, str, str]], np.ndarray]:
        """Return the FAQ entries the asker may see, with the embeddings of their questions.

        They are kept per audience set until the knowledge base changes.
        """
        version = self._statistics[0] if self._statistics is not None else None
        key = frozenset(request.audiences)
        if version is None or self._faq_version != version:
            self._faq_cache.clear()
            self._faq_version = version
        cached = self._faq_cache.get(key)
        if cached is None:
            cached = self._faq_cache[key] = await self._load_faq_entries(request)
        return cached

    async def _load_faq_entries(self, request: SkillRequest) -> tuple[list[tuple[SearchHit, str, str]], np.ndarray]:
        entries = []
        for hit in await self.context.retriever.faq_entries(request.audiences):
            fields = faq_fields(hit)
            if fields is None or find_injection(" ".join(fields)):
                continue
            entries.append((hit, *fields))
        vectors = await self._embed([entry_question for _, entry_question, _ in entries])
        return entries, vectors

    @staticmethod
    def _faq_match(faq, question: QuestionTerms, question_vector: np.ndarray) -> FaqMatch | None:
        entries, vectors = faq
        return best_faq_match(entries, question_vector, vectors, question) if entries else None

    async def _select(
        self,
        request: SkillRequest,
        question: QuestionTerms,
        question_vector: np.ndarray,
        signals: dict[str, object],
        statistics: TermStatistics,
        faq,
    ) -> tuple[Selection | None, list[SearchHit]]:
        settings = self.context.settings
        hits = await self.context.retriever.search(
            request.text,
            audiences=request.audiences,
            limit=settings.hr_candidate_chunks,
            keywords=question.keywords,
            vector=question_vector,
        )
        signals["best_similarity"] = round(max((hit.similarity for hit in hits), default=-1.0), 3)
        relevant = [hit for hit in hits if hit.similarity >= settings.min_relevance]
        parts = await self._parts(request.text, statistics, faq)
        for _, _, match in parts:
            if (
                match is not None
                and match.similarity >= settings.hr_faq_topic_similarity
                and all(hit.chunk_id != match.hit.chunk_id for hit in relevant)
            ):
                relevant.append(match.hit)
        if not relevant:
            return None, hits
        candidates = build_candidates([(hit, self._passages(hit)) for hit in relevant], self._locations)
        if not candidates:
            return None, hits
        vectors = await self._embed([candidate.embedding_text for candidate in candidates])
        score_candidates(candidates, question, question_vector, vectors)
        seeds = self._best_per_part(parts, candidates, vectors)
        selection = select_passages(
            candidates, question, self._locations, max_chars=settings.hr_max_answer_chars - 60, seeds=seeds
        )
        if selection is not None:
            signals.update(
                passage_score=round(selection.best_score, 3),
                passage_lexical=round(selection.best_lexical, 3),
                passage_semantic=round(selection.best_semantic, 3),
                coverage=round(selection.coverage, 3),
            )
        return selection, hits

    async def _parts(self, text: str, statistics: TermStatistics, faq) -> list[tuple[QuestionTerms, np.ndarray, FaqMatch | None]]:
        """Each part of a question that asks several things, with the FAQ entry closest to it."""
        parts = split_question(text)
        if not parts:
            return []
        analysed = [analyse_question(part, statistics, self._locations) for part in parts]
        vectors = await self._embed([terms.repaired_text or part for part, terms in zip(parts, analysed)], store=False)
        return [(terms, vector, self._faq_match(faq, terms, vector)) for terms, vector in zip(analysed, vectors)]

    def _best_per_part(self, parts, candidates: Sequence[Candidate], vectors: np.ndarray) -> list[Candidate]:
        seeds: list[Candidate] = []
        for terms, part_vector, match in parts:
            pool, pool_vectors = list(candidates), vectors
            if match is not None and self._faq_is_confident(match):
                # A part that an FAQ entry answers confidently is answered from that entry.
                indexes = [index for index, candidate in enumerate(candidates) if candidate.hit.chunk_id == match.hit.chunk_id]
                pool, pool_vectors = [candidates[index] for index in indexes], vectors[indexes]
            # Each part gets its own passage: one that already answers an earlier
            # part is passed over, so "how long to appeal" and "when is the
            # decision" do not both settle on the decision sentence.
            best = best_for(pool, terms, part_vector, pool_vectors, exclude=seeds)
            if best is not None:
                seeds.append(best)
        return seeds

    def _passages(self, hit: SearchHit) -> list[Passage]:
        """The passages of ``hit`` that answers may quote.

        Splitting and screening a chunk takes a few milliseconds, and questions
        retrieve the same chunks again and again, so the result is kept per chunk
        text; instruction-like text left out of a chunk is logged when it is first split.
        """
        key = (hit.chunk_id, hit.kind, hit.text)
        cached = self._chunk_passages.get(key)
        if cached is not None:
            self._chunk_passages.move_to_end(key)
            return list(cached)
        passages = self._split_passages(hit)
        self._chunk_passages[key] = tuple(passages)
        while len(self._chunk_passages) > _CHUNK_PASSAGES_KEPT:
            self._chunk_passages.popitem(last=False)
        return passages

    def _split_passages(self, hit: SearchHit) -> list[Passage]:
        fields = faq_fields(hit) if hit.kind == "faq" else None
        if fields is not None:
            entry_question, answer = fields
            findings = find_injection(entry_question + "\n\n" + answer)
            if findings:
                self._log_source_injection(hit, findings)
                return []
            return [
                Passage(passage.text, context=entry_question, kind=passage.kind, position=passage.position)
                for passage in split_passages(answer)
            ]
        cleaned = neutralise(hit.text)
        if cleaned.findings:
            self._log_source_injection(hit, cleaned.findings)
        return split_passages(cleaned.text)

    @staticmethod
    def _log_source_injection(hit: SearchHit, findings: Sequence[str]) -> None:
        logger.warning(
            "Left out instruction-like text in chunk %s of source %s (%s)", hit.chunk_id, hit.source_id, ", ".join(findings)
        )

    # Answers

    async def _compose(self, request: SkillRequest, selection: Selection) -> SkillResult:
        hits, numbered = _number_sources(selection.candidates)
        extractive = _quote(numbered)
        if not self.context.settings.hr_model_answers:
            return self._result(PATH_EXTRACTIVE, extractive, hits, numbered)
        prompt = self.context.prompts.get(PROMPT_NAME)
        source_texts = [" ".join(_quoted_text(candidate) for candidate, number in numbered if number == index) for index in range(1, len(hits) + 1)]
        try:
            completion = await self._ask_model(request, prompt, hits, source_texts)
        except ModelError:
            logger.exception("The model failed on event %s; quoting the sources instead", request.message.event_key)
            return self._result(PATH_EXTRACTIVE, extractive, hits, numbered, prompt_version=prompt.version)
        answer = _without_labels(completion.text, [_label(hit) for hit in hits])
        report = check_grounding(answer, source_texts)
        usage = dict(
            model_id=completion.model_id,
            prompt_version=prompt.version,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
        )
        too_long = (
            len(strip_citations(answer)) > self.context.settings.hr_max_answer_chars or completion.finish_reason == "length"
        )
        if answer and DECLINE_MARKER not in answer and report.grounded and not too_long:
            cited = set(report.cited)
            return self._result(PATH_MODEL, answer, hits, [(c, n) for c, n in numbered if n in cited], **usage)
        logger.info(
            "Model answer on event %s failed the grounding check (%s); quoting the sources",
            request.message.event_key,
            "; ".join(report.problems) or ("too long" if too_long else "declined"),
        )
        return self._result(PATH_EXTRACTIVE, extractive, hits, numbered, **usage)

    async def _ask_model(self, request: SkillRequest, prompt, hits: Sequence[SearchHit], texts: Sequence[str]):
        model = self.context.model
        settings = self.context.settings
        max_tokens = min(settings.max_answer_tokens, settings.hr_answer_tokens)

        def build(sources: Sequence[int], turns: Sequence[ChatMessage]) -> list[ChatMessage]:
            numbered = "\n".join(
                prompt.render("source", number=index, title=_label(hits[index - 1]), text=texts[index - 1])
                for index in sources
            )
            return [
                ChatMessage("system", prompt.render("system", company=settings.company_name)),
                ChatMessage("user", prompt.render("user", sources=numbered, question=request.text)),
            ]

        fitted = fit_prompt(model, build, list(range(1, len(hits) + 1)), [], max_tokens=max_tokens)
        started = time.perf_counter()
        completion = await model.complete(fitted.messages, max_tokens=max_tokens, temperature=0.0)
        logger.info(
            "HR answer generated by %s in %.0f ms from %d sources",
            completion.model_id,
            (time.perf_counter() - started) * 1000,
            len(fitted.sources),
        )
        return completion

    def _result(
        self,
        path: str,
        text: str,
        hits: Sequence[SearchHit],
        numbered: Sequence[tuple[Candidate, int]],
        **usage,
    ) -> SkillResult:
        cited = sorted({number for _, number in numbered})
        return SkillResult(
            text=text,
            path=path,
            citations=tuple(Citation(number=n, title=hits[n - 1].title, heading=hits[n - 1].heading) for n in cited),
            sources=tuple(
                UsedSource(
                    chunk_id=hit.chunk_id,
                    source_id=hit.source_id,
                    title=hit.title,
                    heading=hit.heading,
                    rank=rank,
                    score=hit.similarity,
                    cited=rank in cited,
                    excerpt=" ".join(_quoted_text(c) for c, n in numbered if n == rank)[:2000],
                )
                for rank, hit in enumerate(hits, start=1)
            ),
            **usage,
        )

    def _faq_result(self, match: FaqMatch) -> SkillResult:
        hit = match.hit
        return SkillResult(
            text=f"{match.answer} [1]",
            path=PATH_FAQ,
            citations=(Citation(number=1, title=hit.title, heading=match.question),),
            sources=(
                UsedSource(
                    chunk_id=hit.chunk_id,
                    source_id=hit.source_id,
                    title=hit.title,
                    heading=match.question,
                    rank=1,
                    score=match.similarity,
                    cited=True,
                    excerpt=match.answer[:2000],
                ),
            ),
        )

    def _not_found(self, hits: Sequence[SearchHit]) -> SkillResult:
        contact = self.context.settings.hr_contact
        text = (
            "I couldn't find this in the HR sources I have, so I won't guess. "
            f"Please ask {contact}."
        )
        best = max((hit.similarity for hit in hits), default=None)
        logger.info("No HR source answers the question (best similarity %s)", f"{best:.2f}" if best is not None else "none")
        return SkillResult(text=text, path=PATH_NOT_FOUND)

    def _refused(self) -> SkillResult:
        contact = self.context.settings.hr_contact
        text = (
            "I answer HR policy questions from the HR sources only, and I can't change how I work "
            f"or share my instructions. For anything else, please ask {contact}."
        )
        return SkillResult(text=text, path=PATH_REFUSED)

    # Caches

    async def _corpus_statistics(self, version: tuple | None = None) -> CorpusStatistics:
        """Return the term statistics of the knowledge base at ``version`` (read now when None)."""
        retriever = self.context.retriever
        if version is None:
            version = await retriever.corpus_version()
        async with self._statistics_lock:
            if self._statistics is None or self._statistics[0] != version:
                started = time.perf_counter()
                statistics = CorpusStatistics.from_texts(await retriever.chunk_texts())
                self._statistics = (version, statistics)
                logger.info("Built HR term statistics in %.0f ms", (time.perf_counter() - started) * 1000)
            return self._statistics[1]

    async def _embed(self, texts: Sequence[str], *, store: bool = True) -> np.ndarray:
        """Embed ``texts``, reusing vectors embedded before by this or another process.

        Texts from the knowledge base are stored for reuse; texts from a question
        (``store=False``) stay in this process's memory only.
        """
        return await self.context.retriever.vectors.embed(texts, store=store)

    async def prepare(self) -> None:
        """Store the vectors of every passage, FAQ question and passage word that answers compare.

        Questions then spend their time on retrieval and the model instead of
        embedding about twenty passages each. A knowledge base of more than
        ``CHATOPS_HR_PREPARE_MAX_CHUNKS`` chunks is left to embedding on demand.
        """
        retriever = self.context.retriever
        limit = self.context.settings.hr_prepare_max_chunks
        # The term statistics and the English word list are built here rather than
        # on the first question (the word list alone takes about 150 ms to load).
        await self._corpus_statistics()
        await asyncio.to_thread(is_common_english, "policy")
        chunk_count = (await retriever.corpus_version())[1]
        if chunk_count > limit:
            logger.info(
                "Not preparing HR passages: %d chunks are more than CHATOPS_HR_PREPARE_MAX_CHUNKS (%d)", chunk_count, limit
            )
            return
        started = time.perf_counter()
        stored = total = 0
        async for page in retriever.chunk_pages():
            texts: list[str] = []
            for hit in page:
                fields = faq_fields(hit) if hit.kind == "faq" else None
                if fields is not None and not find_injection(" ".join(fields)):
                    texts.append(fields[0])
                passages = self._passages(hit)
                texts.extend(candidate.embedding_text for candidate in build_candidates([(hit, passages)], ()))
                texts.extend(sorted({word for passage in passages for word in _passage_words(passage)}))
            total += len(texts)
            stored += await retriever.vectors.store_missing(texts)
        logger.info(
            "Prepared HR passages of %d chunks: %d vectors, %d of them new, in %.1f s",
            chunk_count,
            total,
            stored,
            time.perf_counter() - started,
        )


def _passage_words(passage: Passage) -> list[str]:
    """List the words of a passage and its context, which a question's unknown words are compared with."""
    return [word for word in content_words(passage.text + " " + passage.context) if word.isalpha()]


def _number_sources(candidates: Sequence[Candidate]) -> tuple[list[SearchHit], list[tuple[Candidate, int]]]:
    """Number the chunks of the chosen passages 1, 2, … in order of first use."""
    hits: list[SearchHit] = []
    numbers: dict[int, int] = {}
    numbered = []
    for candidate in candidates:
        chunk_id = candidate.hit.chunk_id
        if chunk_id not in numbers:
            hits.append(candidate.hit)
            numbers[chunk_id] = len(hits)
        numbered.append((candidate, numbers[chunk_id]))
    return hits, numbered


def _quoted_text(candidate: Candidate) -> str:
    """Return a passage as quoted, prefixed with its location when only its context names the location."""
    text = candidate.passage.text
    if len(candidate.locations) == 1 and candidate.locations[0].lower() not in text.lower():
        return f"{candidate.locations[0]}: {text}"
    return text


def _quote(numbered: Sequence[tuple[Candidate, int]]) -> str:
    return " ".join(f"{_quoted_text(candidate)} [{number}]" for candidate, number in numbered)


def _without_labels(text: str, labels: Sequence[str]) -> str:
    """Remove source labels that a small model copies from the prompt, such as "(Sick Leave › Berlin)"."""
    for label in labels:
        text = text.replace(f"({label})", " ")
    return " ".join(text.split())


def _label(hit: SearchHit) -> str:
    return f"{hit.title} › {hit.heading}" if hit.heading else hit.title
