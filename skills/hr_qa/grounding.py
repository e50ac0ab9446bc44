"""The grounding check: a model's answer may state only what its cited sources state."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from skills.hr_qa.injection import find_injection
from skills.hr_qa.text import normalise, numbers_in, stems

_CITATION = re.compile(r"\[(\d{1,2})\]")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PROMPT_ECHO = re.compile(
    r"</?sources>|^\s*question\s*:|\banswer with citations\b|\bthe (?:passage|answer|source) is\b|\bpassages?\b",
    re.IGNORECASE | re.MULTILINE,
)
# A small model stuck in a loop repeats itself; four words in a row seen twice is a loop.
_REPEAT_WORDS = 4
MIN_ANSWER_TERMS = 3
MIN_SUPPORTED_SHARE = 0.7
_LINK = re.compile(r"\b(?:https?://)?(?:[\w-]+\.)+(?:com|org|net|io|de|invalid|example)(?:/\S*)?", re.IGNORECASE)


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


def strip_citations(answer: str) -> str:
    return " ".join(_CITATION.sub(" ", answer).split())


def _repeats(text: str) -> bool:
    words = normalise(text).split()
    seen = set()
    for start in range(len(words) - _REPEAT_WORDS + 1):
        window = tuple(words[start : start + _REPEAT_WORDS])
        if window in seen:
            return True
        seen.add(window)
    return False


def check_grounding(answer: str, sources: Sequence[str]) -> GroundingReport:
    """Check ``answer`` against the numbered ``sources`` (``[1]`` is ``sources[0]``).

    The answer must cite at least one source, every citation must name a source,
    and every number, amount, date, e-mail address and link in the answer must
    occur in a cited source. It must also keep every number of the sources it
    cites, use mostly words of those sources (MIN_SUPPORTED_SHARE of its content
    words) and have at least MIN_ANSWER_TERMS of them. An answer that repeats the
    prompt's wording, repeats itself or gives instructions to an assistant fails.
    Problems are described without quoting the answer.
    """
    problems: list[str] = []
    cited = cited_numbers(answer)
    if not cited:
        problems.append("no citation")
    invalid = [number for number in cited if not 1 <= number <= len(sources)]
    if invalid:
        problems.append(f"citation of missing source {invalid}")
    cited_text = " ".join(sources[number - 1] for number in cited if 1 <= number <= len(sources))
    body = strip_citations(answer)

    unsupported = numbers_in(body) - numbers_in(cited_text)
    if unsupported:
        problems.append(f"{len(unsupported)} number(s) not in the cited sources")
    dropped = numbers_in(cited_text) - numbers_in(body)
    if dropped:
        # The sources are the short passages chosen to answer the question, so a
        # figure left out is usually the one that mattered (the 20 % breakfast cut).
        problems.append(f"{len(dropped)} number(s) of the cited sources left out")
    answer_terms = stems(body)
    if len(answer_terms) < MIN_ANSWER_TERMS:
        problems.append("too few words")
    elif len(answer_terms - stems(cited_text)) > (1 - MIN_SUPPORTED_SHARE) * len(answer_terms):
        problems.append("words not in the cited sources")
    if _PROMPT_ECHO.search(body):
        problems.append("prompt text in the answer")
    if _repeats(body):
        problems.append("repeated text")
    plain_sources = normalise(cited_text)
    emails = _EMAIL.findall(body)
    links = _LINK.findall(_EMAIL.sub(" ", body))
    addresses = [value for value in emails + links if value.lower() not in plain_sources]
    if addresses:
        problems.append(f"{len(addresses)} address(es) not in the cited sources")
    if find_injection(body):
        problems.append("instruction-like text")
    return GroundingReport(cited=cited, problems=tuple(problems))
