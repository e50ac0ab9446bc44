"""Choosing the passages that answer a question, and judging whether any do.

Each passage of the retrieved chunks gets two scores against the question. The
lexical score is the share of the question's weighted terms the passage contains:
rare words weigh more, and a number in the question matches a range such as
"6–9" that contains it. The semantic score is the cosine similarity of the two
embeddings, blended with the similarity of the passage's whole chunk.

The best passage is picked first, then the best passage for each part of a
question that asks several things, then passages that cover words the others
leave open. When the question names no location, the best passage for each
other location the sources distinguish is added.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from bot.retrieval.search import SearchHit
from skills.hr_qa.corpus import TermStatistics
from skills.hr_qa.text import Passage, content_words, normalise, number_ranges, stem, stems

# How much a question term found only in a passage's context (its table header,
# list lead-in or section headings) counts, compared with one in its text.
CONTEXT_MATCH = 0.6
# A later passage must score at least this share of the best passage's score.
RELATIVE_SCORE_FLOOR = 0.55
# And add at least this share of the question's term weight that is still uncovered.
MIN_COVERAGE_GAIN = 0.12
MAX_PASSAGES = 3
# A passage scoring at least this share of the best one is quoted too when it
# adds at least NEAR_EQUAL_NEW_TERMS words, because two near-equal passages
# often state one rule twice, once with the date or place and once without.
NEAR_EQUAL_SCORE = 0.9
NEAR_EQUAL_NEW_TERMS = 2
# Words of the question that the full-text ranking uses.
KEYWORD_COUNT = 5


@dataclass(frozen=True)
class Location:
    """An office or entity whose policies can differ, with the words that name it."""

    name: str
    aliases: frozenset[str]

    def named_in(self, text_stems: set[str]) -> bool:
        return bool(self.aliases & text_stems)


def parse_locations(value: str) -> tuple[Location, ...]:
    """Parse ``Berlin=Germany|GmbH,Austin=Texas|Inc`` into locations with their aliases."""
    locations = []
    for entry in value.split(","):
        name, _, alias_text = entry.partition("=")
        name = name.strip()
        if not name:
            continue
        aliases = {name, *(alias.strip() for alias in alias_text.split("|") if alias.strip())}
        locations.append(Location(name=name, aliases=frozenset(stem(word) for alias in aliases for word in content_words(alias))))
    return tuple(locations)


@dataclass(frozen=True)
class QuestionTerms:
    """The question as weighted stems after spelling repair."""

    weights: dict[str, float]
    unknown: tuple[str, ...]
    numbers: tuple[float, ...]
    keywords: str
    locations: tuple[str, ...]
    repaired_text: str = ""
    expects_figure: bool = False

    @property
    def total_weight(self) -> float:
        return sum(self.weights.values()) or 1.0


def analyse_question(text: str, statistics: TermStatistics, locations: Sequence[Location]) -> QuestionTerms:
    weights: dict[str, float] = {}
    unknown: list[str] = []
    repaired_words: list[str] = []
    repairs: dict[str, str] = {}
    for word in content_words(text):
        replacement = statistics.repair(word)
        if replacement != [word]:
            repairs[word] = " ".join(replacement)
        for repaired in replacement:
            if len(repaired) < 2 and not repaired.isdigit():
                continue
            repaired_words.append(repaired)
            term = stem(repaired)
            if not statistics.known(term):
                if not any(term in location.aliases for location in locations):
                    unknown.append(repaired)
                continue
            weights[term] = max(weights.get(term, 0.0), statistics.idf(term))
    numbers = tuple(float(value) for value in re.findall(r"(?<![\d.,])\d{1,4}(?![\d,])", normalise(text)))
    stemmed = set(weights) | {stem(word) for word in unknown}
    named = tuple(location.name for location in locations if location.named_in(stemmed))
    return QuestionTerms(
        weights=weights,
        unknown=tuple(unknown),
        numbers=numbers,
        keywords=_keywords(repaired_words, weights),
        locations=named,
        repaired_text=_apply_repairs(text, repairs),
        expects_figure=bool(_ASKS_FOR_FIGURE.search(text)),
    )


def _apply_repairs(text: str, repairs: dict[str, str]) -> str:
    if not repairs:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, repairs)) + r")\b", re.IGNORECASE)
    return pattern.sub(lambda match: repairs[match.group(1).lower()], text)


# Questions whose answer is a count, an amount, a duration or a date.
_ASKS_FOR_FIGURE = re.compile(
    r"\bhow\s+(?:many|much|long|often|soon|fast|quickly|late|early)\b|\bwhen\b|\bby\s+when\b|"
    r"\bwhat\s+(?:date|day|time|percentage)\b|\b(?:deadline|amount|rate|percentage)\b|"
    r"\bwhat(?:'s|\s+is|\s+are)\s+(?:the|my|our)\s+(?:[\w-]+\s+){0,3}?"
    r"(?:deductibles?|premiums?|fees?|costs?|prices?|salary|salaries|budgets?|allowances?|subsid(?:y|ies)|"
    r"bonus(?:es)?|caps?|limits?|stipends?|per-diems?|entitlements?|multipliers?|bands?|ranges?)\b",
    re.IGNORECASE,
)
_FIGURE_WORDS = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twice|half|daily|weekly|monthly|"
    r"annually|quarterly|yearly|immediately|january|february|march|april|may|june|july|august|september|"
    r"october|november|december)\b",
    re.IGNORECASE,
)


def has_figure(text: str) -> bool:
    """True when ``text`` states a number, a frequency or a date."""
    return bool(_FIGURE_WORDS.search(text))


def _keywords(repaired_words: Sequence[str], weights: dict[str, float]) -> str:
    """Return the rarest known words of the question, for full-text search.

    Full-text ranking rewards chunks that match many query words, whatever their
    rarity; leaving common words out lets the one chunk with "G3" or "Tokyo" win.
    """
    known = [word for word in dict.fromkeys(repaired_words) if stem(word) in weights]
    known.sort(key=lambda word: -weights[stem(word)])
    return " ".join(known[:KEYWORD_COUNT])


@dataclass
class Candidate:
    """A passage of a retrieved chunk, with its scores."""

    passage: Passage
    hit: SearchHit
    hit_rank: int
    heading: str
    text_terms: set[str]
    context_terms: set[str]
    locations: tuple[str, ...] = ()
    lexical: float = 0.0
    semantic: float = 0.0
    score: float = 0.0
    matched: set[str] = field(default_factory=set)

    @property
    def embedding_text(self) -> str:
        context = " › ".join(part for part in (self.heading, self.passage.context) if part)
        return f"{context}: {self.passage.text}" if context else self.passage.text


def build_candidates(
    hits: Sequence[tuple[SearchHit, Sequence[Passage]]], locations: Sequence[Location]
) -> list[Candidate]:
    candidates = []
    for rank, (hit, passages) in enumerate(hits):
        heading = " › ".join(dict.fromkeys([hit.title, *hit.heading_path]))
        heading_terms = stems(heading)
        for passage in passages:
            text_terms = stems(passage.text)
            context_terms = (stems(passage.context) | heading_terms) - text_terms
            candidates.append(
                Candidate(
                    passage=passage,
                    hit=hit,
                    hit_rank=rank,
                    heading=heading,
                    text_terms=text_terms,
                    context_terms=context_terms,
                    locations=_locations_of(text_terms, context_terms, locations),
                )
            )
    return candidates


def _locations_of(text_terms: set[str], context_terms: set[str], locations: Sequence[Location]) -> tuple[str, ...]:
    """Locations a passage is about: those its text names, else those its context names."""
    in_text = tuple(location.name for location in locations if location.named_in(text_terms))
    if in_text:
        return in_text
    return tuple(location.name for location in locations if location.named_in(context_terms))


@dataclass(frozen=True)
class ScoringWeights:
    """Weights that combine the lexical and semantic scores into one passage score."""

    lexical: float = 0.3
    semantic: float = 0.7
    # A passage about another location than the one the question names.
    other_location_penalty: float = 0.5
    # A passage without any figure, for a question asking how many, how long or when.
    no_figure_penalty: float = 0.85
    # A sentence of an FAQ answer: when it only repeats a policy, quote the policy.
    faq_passage_factor: float = 0.95
    # Share of the chunk's similarity in a passage's semantic score.
    chunk_share: float = 0.3


DEFAULT_WEIGHTS = ScoringWeights()


def score_candidates(
    candidates: Sequence[Candidate],
    question: QuestionTerms,
    question_vector: np.ndarray,
    passage_vectors: np.ndarray,
    weights: ScoringWeights | None = None,
) -> None:
    """Fill in each candidate's lexical, semantic and combined score."""
    for candidate, vector in zip(candidates, passage_vectors):
        candidate.matched, value = _lexical_match(candidate, question)
        candidate.lexical = value / question.total_weight
        candidate.semantic = _semantic(candidate, float(np.dot(question_vector, vector)))
        candidate.score = _combined(candidate, question, candidate.lexical, candidate.semantic, weights or DEFAULT_WEIGHTS)


def _semantic(candidate: Candidate, passage_similarity: float) -> float:
    """Blend the passage's similarity with its whole chunk's: a short sentence such as
    "Browser extensions count as software." means more in its section than alone."""
    share = DEFAULT_WEIGHTS.chunk_share
    return (1 - share) * passage_similarity + share * max(candidate.hit.similarity, passage_similarity)


def _combined(candidate: Candidate, question: QuestionTerms, lexical: float, semantic: float, weights: ScoringWeights) -> float:
    score = weights.lexical * lexical + weights.semantic * semantic
    if question.locations and candidate.locations and not set(candidate.locations) & set(question.locations):
        score *= weights.other_location_penalty
    if question.expects_figure and not has_figure(candidate.passage.text):
        score *= weights.no_figure_penalty
    if candidate.hit.kind == "faq":
        score *= weights.faq_passage_factor
    return score


def _lexical_match(candidate: Candidate, question: QuestionTerms) -> tuple[set[str], float]:
    matched: set[str] = set()
    value = 0.0
    ranges = None
    for term, weight in question.weights.items():
        if term in candidate.text_terms:
            matched.add(term)
            value += weight
        elif term in candidate.context_terms:
            value += CONTEXT_MATCH * weight
        elif term.replace(".", "", 1).isdigit() and question.numbers:
            if ranges is None:
                ranges = number_ranges(candidate.passage.text)
            number = float(term)
            if any(low <= number <= high for low, high in ranges):
                matched.add(term)
                value += weight
    return matched, value


@dataclass(frozen=True)
class Selection:
    """The passages chosen to answer a question, and how well they cover it."""

    candidates: tuple[Candidate, ...]
    coverage: float
    best_score: float
    best_lexical: float
    best_semantic: float


_SUB_QUESTION_BREAK = re.compile(
    r",?\s+and\s+(?=(?:how|when|where|who|whom|what|which|why|do|does|did|can|could|is|are|will|would|"
    r"should|may|must|am)\b)",
    re.IGNORECASE,
)
_SENTENCE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


def split_question(text: str) -> list[str]:
    """Split a question that asks several things into one question per thing.

    "How many days a week do I come in, and how long can I work abroad?" gives two
    parts. Statements around the questions ("I'm a Berlin employee.") are kept in
    front of every part. A question that asks one thing gives an empty list.
    """
    sentences = [sentence.strip() for sentence in _SENTENCE.findall(text) if sentence.strip()]
    questions = [sentence for sentence in sentences if sentence.endswith("?")]
    statements = [sentence for sentence in sentences if not sentence.endswith("?")]
    if not questions:
        return []
    prefix = " ".join(statements) + " " if statements else ""
    parts = [
        part.strip(" ,?")
        for question in questions
        for part in _SUB_QUESTION_BREAK.split(question)
        if part.strip(" ,?")
    ]
    if len(parts) < 2:
        return []
    # Later parts keep the first part after their own words: "who do I talk to
    # first" still means "about the improvement plan" asked before it.
    return [prefix + parts[0], *(f"{prefix}{part}, {parts[0]}" for part in parts[1:])]


def best_for(
    candidates: Sequence[Candidate],
    question: QuestionTerms,
    question_vector: np.ndarray,
    passage_vectors: np.ndarray,
    *,
    exclude: Sequence[Candidate] = (),
) -> Candidate | None:
    """Return the candidate that scores best against ``question`` without changing any scores."""
    best: Candidate | None = None
    best_score = float("-inf")
    for candidate, vector in zip(candidates, passage_vectors):
        if any(candidate is other for other in exclude):
            continue
        _, value = _lexical_match(candidate, question)
        semantic = _semantic(candidate, float(np.dot(question_vector, vector)))
        score = _combined(candidate, question, value / question.total_weight, semantic, DEFAULT_WEIGHTS)
        if score > best_score:
            best, best_score = candidate, score
    return best


def select_passages(
    candidates: Sequence[Candidate],
    question: QuestionTerms,
    locations: Sequence[Location],
    *,
    max_chars: int,
    seeds: Sequence[Candidate] = (),
) -> Selection | None:
    """Pick the best passage and the ``seeds`` (the best for each part of the question), then
    passages that add uncovered terms, figures of a nearly equal score, or missing locations."""
    ranked = sorted(candidates, key=lambda candidate: (-candidate.score, candidate.hit_rank, candidate.passage.position))
    ranked = _unique_texts(ranked)
    if not ranked:
        return None
    best = ranked[0]
    floor = best.score * RELATIVE_SCORE_FLOOR
    chosen = [best]
    for seed in seeds:
        if seed.score >= floor and all(normalise(seed.passage.text) != normalise(c.passage.text) for c in chosen):
            chosen.append(seed)
    covered = set().union(*(candidate.matched for candidate in chosen))
    quoted_terms = set().union(*(candidate.text_terms for candidate in chosen))
    length = sum(len(candidate.passage.text) for candidate in chosen)
    total = question.total_weight

    while len(chosen) < MAX_PASSAGES:
        pick = None
        pick_value = 0.0
        for candidate in ranked:
            if candidate in chosen or candidate.score < floor or length + len(candidate.passage.text) > max_chars:
                continue
            gain = sum(question.weights[term] for term in candidate.matched - covered) / total
            if (
                candidate.score >= best.score * NEAR_EQUAL_SCORE
                and len(candidate.text_terms - quoted_terms) >= NEAR_EQUAL_NEW_TERMS
                and not _same_table(candidate, chosen)
            ):
                gain = max(gain, MIN_COVERAGE_GAIN)
            if gain < MIN_COVERAGE_GAIN:
                continue
            value = candidate.score + gain
            if value > pick_value:
                pick, pick_value = candidate, value
        if pick is None:
            break
        chosen.append(pick)
        covered |= pick.matched
        quoted_terms |= pick.text_terms
        length += len(pick.passage.text)

    if not question.locations and locations:
        chosen = _add_missing_locations(chosen, ranked, floor, max_chars - length)

    coverage = _coverage(chosen, question)
    return Selection(
        candidates=tuple(chosen),
        coverage=coverage,
        best_score=best.score,
        best_lexical=best.lexical,
        best_semantic=best.semantic,
    )


def _same_table(candidate: Candidate, chosen: Sequence[Candidate]) -> bool:
    """True for a table row when a row of the same table is chosen: its other rows are other cases."""
    return candidate.passage.kind == "row" and any(
        other.passage.kind == "row" and other.passage.context == candidate.passage.context for other in chosen
    )


def _unique_texts(ranked: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    unique = []
    for candidate in ranked:
        key = normalise(candidate.passage.text)
        if key in seen:
            continue
        seen.add(key)
        unique.append(candidate)
    return unique


def _add_missing_locations(chosen: list[Candidate], ranked: list[Candidate], floor: float, room: int) -> list[Candidate]:
    """Add the best passage for each location that the chosen passages leave out."""
    named = {name for candidate in chosen for name in candidate.locations}
    if len(named) != 1:
        return chosen
    all_names = {name for candidate in ranked for name in candidate.locations}
    result = list(chosen)
    for name in sorted(all_names - named):
        for candidate in ranked:
            if candidate.score < floor:
                break
            if name in candidate.locations and len(candidate.passage.text) <= room:
                result.append(candidate)
                room -= len(candidate.passage.text)
                break
    return result


def _coverage(chosen: Sequence[Candidate], question: QuestionTerms) -> float:
    """Share of the question's term weight found in the chosen passages or their context."""
    value = 0.0
    for term, weight in question.weights.items():
        if any(term in candidate.matched for candidate in chosen):
            value += weight
        elif any(term in candidate.context_terms for candidate in chosen):
            value += CONTEXT_MATCH * weight
    return value / question.total_weight


__all__ = [
    "Candidate",
    "Location",
    "QuestionTerms",
    "ScoringWeights",
    "Selection",
    "analyse_question",
    "build_candidates",
    "parse_locations",
    "score_candidates",
    "select_passages",
]
