"""Term statistics of the indexed HR sources: how rare each word is, and spelling repair.

Statistics are kept per audience, so that words occurring only in sources an asker
may not see never influence the answer they get.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.resources
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from skills.hr_qa.text import STOP_WORDS, content_words, stem

# Spelling repair only touches words of at least this many letters: shorter
# ones ("yrs", "wen") are too ambiguous to correct safely.
_MIN_REPAIR_LENGTH = 4
_REPAIR_CUTOFF = 0.8
# Count in pyspellchecker's English word-frequency list (0.9.1) above which a
# word is taken as meant: "daycare" has 1,235, "mach" 440, "vacaton" 0.
_COMMON_WORD_FREQUENCY = 1000
_ALPHANUMERIC = re.compile(r"^(\d+)([a-z]+)$")


@dataclass
class _AudienceCounts:
    documents: int = 0
    stem_frequency: Counter = field(default_factory=Counter)
    word_frequency: Counter = field(default_factory=Counter)


class CorpusStatistics:
    """Document frequencies of stems and the surface vocabulary, per audience."""

    def __init__(self) -> None:
        self._by_audience: dict[str, _AudienceCounts] = {}

    @classmethod
    def from_texts(cls, rows: Iterable[tuple[str, str]]) -> CorpusStatistics:
        """Build statistics from ``(audience, text)`` pairs, one pair per chunk."""
        statistics = cls()
        for audience, text in rows:
            counts = statistics._by_audience.setdefault(audience, _AudienceCounts())
            found = content_words(text)
            counts.documents += 1
            counts.stem_frequency.update({stem(word) for word in found})
            counts.word_frequency.update(found)
        return statistics

    def view(self, audiences: Collection[str]) -> TermStatistics:
        """Return the statistics of the chunks an asker with ``audiences`` may see."""
        documents = 0
        stem_frequency: Counter = Counter()
        word_frequency: Counter = Counter()
        for audience in audiences:
            counts = self._by_audience.get(audience)
            if counts is None:
                continue
            documents += counts.documents
            stem_frequency.update(counts.stem_frequency)
            word_frequency.update(counts.word_frequency)
        return TermStatistics(documents, stem_frequency, word_frequency)


class TermStatistics:
    """Inverse document frequencies and spelling repair over one set of chunks."""

    def __init__(self, documents: int, stem_frequency: Counter, word_frequency: Counter) -> None:
        self.documents = documents
        self.stem_frequency = stem_frequency
        self.word_frequency = word_frequency
        self._by_initial: dict[str, list[str]] = {}
        for word in word_frequency:
            if len(word) >= _MIN_REPAIR_LENGTH - 1 and word.isalpha():
                self._by_initial.setdefault(word[0], []).append(word)

    def known(self, term_stem: str) -> bool:
        return self.stem_frequency.get(term_stem, 0) > 0

    def idf(self, term_stem: str) -> float:
        """Smoothed inverse document frequency; a word absent from the sources gets the maximum."""
        frequency = self.stem_frequency.get(term_stem, 0)
        return math.log((self.documents + 1) / (frequency + 1)) + 1.0

    def repair(self, word: str) -> list[str]:
        """Return the source words that ``word`` most likely means, or ``[word]``.

        A word found in the sources is kept, and so is a correctly spelt English
        word. ``401k`` becomes ``401`` and ``k`` when the sources write ``401(k)``.
        A misspelt word becomes the most frequent source
        word with the same first letter at an edit distance of 1 (one letter added,
        missing, changed, or two swapped).
        """
        if word in STOP_WORDS or self.known(stem(word)):
            return [word]
        split = _ALPHANUMERIC.match(word)
        if split and self.known(stem(split.group(1))):
            return [split.group(1), split.group(2)]
        if len(word) < _MIN_REPAIR_LENGTH or not word.isalpha() or is_common_english(word):
            # A common word the sources never use ("resign", "stock") is a topic
            # they do not cover, not a typo of a word they do use. A rare one
            # ("mach" next to "match") is more likely a typo.
            return [word]
        candidates = [
            candidate
            for candidate in difflib.get_close_matches(word, self._by_initial.get(word[0], []), n=8, cutoff=_REPAIR_CUTOFF)
            if edit_distance(word, candidate) <= 1
        ]
        if not candidates:
            return [word]
        return [max(candidates, key=lambda candidate: self.word_frequency[candidate])]


@lru_cache(maxsize=1)
def _common_english_words() -> frozenset[str]:
    # pyspellchecker ships an English word-frequency list of about 160,000 words
    # (the file its SpellChecker loads for "en"). Only the words counted at least
    # _COMMON_WORD_FREQUENCY times are kept, about 19,000 of them. Reading the
    # file directly peaked 7 MiB above the process's size; a SpellChecker peaked
    # 36 MiB above it while building its own structures.
    resource = importlib.resources.files("spellchecker").joinpath("resources/en.json.gz")
    frequencies = json.loads(gzip.decompress(resource.read_bytes()))
    common = "\n".join(word.lower() for word, count in frequencies.items() if count >= _COMMON_WORD_FREQUENCY)
    # Split only once the full list is gone: the new strings then lie together in
    # memory, and the pages of the full list can be given back.
    del frequencies
    return frozenset(common.split("\n"))


def is_common_english(word: str) -> bool:
    """Return whether pyspellchecker's English word-frequency list counts ``word`` as common."""
    return word in _common_english_words()


def edit_distance(first: str, second: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps."""
    previous_row: list[int] | None = None
    row = list(range(len(second) + 1))
    for i, first_char in enumerate(first, start=1):
        before, previous_row, row = previous_row, row, [i] + [0] * len(second)
        for j, second_char in enumerate(second, start=1):
            cost = 0 if first_char == second_char else 1
            row[j] = min(previous_row[j] + 1, row[j - 1] + 1, previous_row[j - 1] + cost)
            if (
                before is not None
                and i > 1
                and j > 1
                and first_char == second[j - 2]
                and first[i - 2] == second_char
            ):
                row[j] = min(row[j], before[j - 2] + 1)
    return row[-1]
