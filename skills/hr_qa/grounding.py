"""Checks that a model's answer stays within its sources, and the extractive fallback."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_CITATION = re.compile(r"\[(\d{1,2})\]")
# Numbers, amounts and dates as they appear in text: 25, 1,500, 2.5, 90%, €500, 1 March.
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_WORD = re.compile(r"[a-z0-9]+")

STOP_WORDS = frozenset(
    "a an and are as at be by can do does for from get have how i if in is it me my of on or our "
    "should so that the their there this to was we what when where which who will with you your "
    "many much any".split()
)


@dataclass(frozen=True)
class GroundingReport:
    """Outcome of the grounding check; ``problems`` says why it failed."""

    cited: tuple[int, ...]
    problems: tuple[str, ...]

    @property
    def grounded(self) -> bool:
        return not self.problems


def cited_numbers(answer: str) -> tuple[int, ...]:
    return tuple(sorted({int(match) for match in _CITATION.findall(answer)}))


def check_grounding(answer: str, sources: Sequence[str]) -> GroundingReport:
    """Every citation must name a source, and every number in the answer must occur in a cited source."""
    problems: list[str] = []
    cited = cited_numbers(answer)
    if not cited:
        problems.append("no citation")
    invalid = [number for number in cited if not 1 <= number <= len(sources)]
    if invalid:
        problems.append(f"citation of missing source {invalid}")
    valid = [number for number in cited if 1 <= number <= len(sources)]
    cited_text = " ".join(sources[number - 1] for number in valid)
    source_numbers = {_normalise_number(value) for value in _NUMBER.findall(cited_text)}
    answer_body = _CITATION.sub(" ", answer)
    for value in _NUMBER.findall(answer_body):
        if _normalise_number(value) not in source_numbers:
            problems.append(f"number {value} not in the cited sources")
    return GroundingReport(cited=cited, problems=tuple(problems))


def _normalise_number(value: str) -> str:
    return value.replace(",", "").rstrip(".")


def content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS and len(word) > 1}


def split_sentences(text: str) -> list[str]:
    cleaned = re.sub(r"[*_`#>]+", "", text)
    return [part.strip(" -\t") for part in _SENTENCE_END.split(cleaned) if len(part.strip()) > 3]


def best_sentences(question: str, sources: Sequence[str], *, limit: int = 2) -> list[tuple[int, str]]:
    """Return up to ``limit`` (source number, sentence) pairs sharing the most words with the question."""
    wanted = content_words(question)
    scored: list[tuple[float, int, int, str]] = []
    for number, source in enumerate(sources, start=1):
        for position, sentence in enumerate(split_sentences(source)):
            overlap = len(wanted & content_words(sentence))
            if overlap:
                # Earlier sources rank higher; within a source, earlier sentences win ties.
                scored.append((overlap - 0.01 * number, -position, number, sentence))
    scored.sort(reverse=True)
    if not scored:
        return []
    # A second sentence must be nearly as relevant as the best one, or it is noise.
    floor = scored[0][0] * 0.75
    return [(number, sentence) for score, _, number, sentence in scored[:limit] if score >= floor]
