"""Checks that decline a question the HR sources cannot answer, however close a passage looks.

Retrieval always finds something, so these checks catch the near-misses where the
closest passage is about a neighbouring case. Examples are a password the sources
must never contain, an office they do not cover, or the same event at another
time ("after probation" in the question, "during probation" in the source).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from skills.hr_qa.evidence import Location
from skills.hr_qa.text import content_words, normalise, stem

_SECRET = re.compile(
    r"\b(?:password|passphrase|passcode|pin|credentials?|login|api\s+key|access\s+code)\s+(?:for|of|to)\b|"
    r"\b(?:what|tell|give|send|share)\b[^?.]{0,30}\b(?:the|a|my|our)\s+(?:[\w-]+\s+){0,2}"
    r"(?:password|passphrase|passcode|pin|credentials)\b(?!\s+(?:policy|policies|rules?|length|requirements?|minimum))",
    re.IGNORECASE,
)

# "the Munich office", "our Paris site": a named place of work.
_NAMED_SITE = re.compile(r"\b([A-Z][a-zA-Z]+)\s+(?:office|site|entity|branch|campus|plant|location|hub)\b")
_GENERIC_NAMES = frozenset({"the", "our", "my", "your", "this", "that", "home", "main", "head", "back", "front", "each", "every", "any", "which", "what"})

_TIME_QUALIFIERS = ("before", "after", "during", "until", "outside")
_QUALIFIED = re.compile(r"\b(" + "|".join(_TIME_QUALIFIERS) + r")\s+(?:(?:my|the|your|their|our|a|an)\s+)?([a-z][a-z-]+)")


def asks_for_secret(question: str) -> bool:
    """True when the question asks for a password or similar credential itself.

    Questions about password rules ("minimum password length") do not count.
    """
    return bool(_SECRET.search(question))


def unknown_site(question: str, locations: Sequence[Location]) -> str | None:
    """Return the name of an office or site the question names that is none of ``locations``.

    Only meaningful when locations are configured; returns None otherwise.
    """
    if not locations:
        return None
    for match in _NAMED_SITE.finditer(question):
        name = match.group(1)
        if name.lower() in _GENERIC_NAMES or match.start() == 0:
            continue
        if not any(location.named_in({stem(word) for word in content_words(name)}) for location in locations):
            return name
    return None


def conflicting_time(question: str, passage: str) -> str | None:
    """Return the event that ``question`` and ``passage`` place at different times, if any.

    "resign after my probation" asked and "during probation … notice" written give
    ``probation``: the passage answers another case than the one asked.
    """
    asked = {(stem(noun), qualifier) for qualifier, noun in _QUALIFIED.findall(normalise(question))}
    if not asked:
        return None
    written: dict[str, set[str]] = {}
    for qualifier, noun in _QUALIFIED.findall(normalise(passage)):
        written.setdefault(stem(noun), set()).add(qualifier)
    for noun, qualifier in asked:
        if noun in written and qualifier not in written[noun]:
            return noun
    return None


_BENEFIT_QUESTION = re.compile(
    r"\b(?:does|do|will|would|can|could|is|are)\s+(?:\w+\s+){0,2}?"
    r"(?:provide|provides|offer|offers|give|gives|pay\s+for|pays\s+for|reimburse|reimburses|cover|covers|"
    r"subsidi[sz]e|subsidi[sz]es|fund|funds)\s+(?:the\s+|a\s+|an\s+|any\s+|my\s+|our\s+)?"
    r"(?P<object>[^?.,]+?)(?:\s+(?:for|to|in|at|of|when|if)\b[^?]*)?[?.]?$",
    re.IGNORECASE,
)


def benefit_object(question: str) -> list[str]:
    """Return the stems of what a "does the company provide X?" question asks about.

    The answer to such a question must name X; a passage about another benefit
    of the same provider answers nothing. Returns [] for other questions.
    """
    match = _BENEFIT_QUESTION.search(question.strip())
    if match is None:
        return []
    return [stem(word) for word in content_words(match.group("object"))]
