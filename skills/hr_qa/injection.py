"""Recognising text that tries to instruct the assistant instead of informing the reader.

Sources are data, not instructions. A retrieved passage that addresses the
assistant ("ignore all prior instructions", "SYSTEM OVERRIDE") is removed before
anything is quoted or sent to the model, and HTML comments are always removed
because no reader of the rendered page sees them. A question that tries the same
is declined.

The patterns catch the common phrasings, not every possible attack. The
delimited prompt, the grounding check and the audience filter in retrieval are
the other layers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skills.hr_qa.text import strip_html_comments

_FLAGS = re.IGNORECASE | re.DOTALL

# Each pattern names a kind of attempt; the name, never the text, goes to the log.
PATTERNS: dict[str, re.Pattern[str]] = {
    "override instructions": re.compile(
        r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:instructions?|rules|prompts?|guidelines|directions)\b",
        _FLAGS,
    ),
    "addresses the assistant": re.compile(
        r"\b(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+)?(?:assistant|ai|bot|model|llm|chatbot)\b", _FLAGS
    ),
    "system override": re.compile(r"\bsystem\s+(?:override|prompt|message|instructions?)\b", _FLAGS),
    "role change": re.compile(
        r"\byou\s+are\s+now\b|\b(?:admin|developer|god|debug|jailbreak|unrestricted)\s+mode\b|\bact\s+as\s+(?:an?\s+)?(?:admin|administrator|system|developer)\b",
        _FLAGS,
    ),
    "reveal instructions": re.compile(
        r"\b(?:print|reveal|show|repeat|output|display|tell\s+me|list)\b[^.\n]{0,30}?\b(?:hidden|secret|system|initial|original|internal)\b[^.\n]{0,15}?\b(?:instructions?|prompts?|rules|configuration)\b",
        _FLAGS,
    ),
    "hidden behaviour": re.compile(r"\bdo\s+not\s+(?:mention|reveal|disclose)\s+(?:this|these)\s+(?:note|instructions?|message)\b", _FLAGS),
    "credential request": re.compile(
        r"\b(?:send|give|share|provide|confirm|email|e-mail)\b[^.\n]{0,60}?\b(?:password|passphrase|passcode|credentials?|pin)\b[^.\n]{0,60}?(?:@|\bto\b)",
        _FLAGS,
    ),
}

# A paragraph is the unit removed from a source: attacks usually fill one, and
# what remains of a paragraph after cutting one sentence can still carry orders.
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Neutralised:
    """Source text with instruction-like paragraphs and HTML comments removed."""

    text: str
    findings: tuple[str, ...]


def find_injection(text: str) -> tuple[str, ...]:
    """Return the names of the patterns that ``text`` matches, in a stable order."""
    return tuple(name for name, pattern in PATTERNS.items() if pattern.search(text))


def neutralise(text: str) -> Neutralised:
    """Remove HTML comments that try to instruct, and every paragraph that does."""
    findings: list[str] = []
    for comment in re.findall(r"<!--.*?-->", text, re.DOTALL):
        findings.extend(find_injection(comment))
    kept: list[str] = []
    for paragraph in _PARAGRAPH_BREAK.split(strip_html_comments(text)):
        found = find_injection(paragraph)
        if found:
            findings.extend(found)
            continue
        kept.append(paragraph)
    return Neutralised(text="\n\n".join(kept), findings=tuple(dict.fromkeys(findings)))
