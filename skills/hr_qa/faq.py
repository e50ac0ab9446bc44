"""Matching a question against the curated FAQ entries HR wrote.

An entry matches confidently when its question means the same as the asker's
(cosine similarity of the two embeddings) and its question and answer together
contain most of the asker's weighted terms. The second test keeps a near-miss
such as "relocation bonus amount" from being answered by an entry about
transfers that merely mentions relocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.retrieval.search import SearchHit
from skills.hr_qa.evidence import CONTEXT_MATCH, QuestionTerms
from skills.hr_qa.text import stems


@dataclass(frozen=True)
class FaqMatch:
    """The best FAQ entry for a question and how closely it matches."""

    hit: SearchHit
    question: str
    answer: str
    similarity: float
    coverage: float


def faq_fields(hit: SearchHit) -> tuple[str, str] | None:
    """Return an FAQ chunk's (question, answer), or None when its metadata lacks them."""
    metadata = hit.metadata or {}
    question = metadata.get("question")
    answer = metadata.get("answer")
    if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
        return None
    return question.strip(), answer.strip()


def best_faq_match(
    entries: Sequence[tuple[SearchHit, str, str]],
    question_vector: np.ndarray,
    entry_vectors: np.ndarray,
    question: QuestionTerms,
) -> FaqMatch | None:
    """Return the entry whose question is most similar to the asker's, or None without entries."""
    best: FaqMatch | None = None
    for (hit, entry_question, answer), vector in zip(entries, entry_vectors):
        similarity = float(np.dot(question_vector, vector))
        if best is not None and similarity <= best.similarity:
            continue
        best = FaqMatch(hit, entry_question, answer, similarity, _coverage(question, entry_question, answer))
    return best


def _coverage(question: QuestionTerms, entry_question: str, answer: str) -> float:
    in_question = stems(entry_question)
    in_answer = stems(answer)
    value = 0.0
    for term, weight in question.weights.items():
        if term in in_question:
            value += weight
        elif term in in_answer:
            value += CONTEXT_MATCH * weight
    return value / question.total_weight
