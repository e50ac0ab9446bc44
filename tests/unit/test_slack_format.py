"""Markdown to mrkdwn conversion and splitting long answers for Slack."""

from __future__ import annotations

import re

import pytest

from bot.channels.slack.format import (
    MESSAGE_TEXT_LIMIT,
    markdown_to_mrkdwn,
    split_text,
    utf16_length,
)

FAMILY = "👩\u200d👩\u200d👧"
FLAG = "🇩🇪"
THUMB_MEDIUM = "👍🏽"


def long_answer() -> str:
    """A 9,500-character answer whose code block runs across character 4,000, with emoji near the cuts."""
    paragraphs = []
    for number in range(11):
        words = f"Paragraph {number} explains one rule of the carer leave policy in plain words. " * 4
        paragraphs.append(words.strip()[:294] + f" {THUMB_MEDIUM}")
    code_lines = [f"carer_days[{line:03d}] = allowance({line}, region='DE')  # {FLAG} {FAMILY}" for line in range(75)]
    code = "```python\n" + "\n".join(code_lines) + "\n```"
    tail = []
    number = 11
    text = "\n\n".join(paragraphs) + "\n\n" + code
    while len(text) + sum(len(item) + 2 for item in tail) < 9500 - 300:
        tail.append((f"Closing paragraph {number} repeats where to ask HR. " * 6).strip()[:296] + f" {FAMILY}")
        number += 1
    text = text + "\n\n" + "\n\n".join(tail)
    padding = 9500 - len(text)
    return text + " " + "x" * (padding - 1)


def test_long_answer_input_matches_case():
    text = long_answer()

    assert len(text) == 9500
    start = text.index("```")
    end = text.index("```", start + 3)
    assert start < 4000 < end


def test_long_answer_split_in_three_ordered_parts():
    text = long_answer()

    parts = split_text(text)

    assert len(parts) == 3
    assert all(utf16_length(part) <= MESSAGE_TEXT_LIMIT for part in parts)
    assert parts[0].startswith("Paragraph 0")
    assert parts[-1].endswith("x")


def test_cut_code_block_closed_and_reopened():
    parts = split_text(long_answer())

    fenced = [part for part in parts if "```" in part]
    assert len(fenced) == 2
    assert fenced[0].rstrip().endswith("```")
    assert fenced[1].startswith("```python\n")
    assert all(part.count("```") % 2 == 0 for part in parts)


def test_code_lines_kept_exactly_across_parts():
    text = long_answer()

    parts = split_text(text)

    code_in_parts = []
    for part in parts:
        code_in_parts.extend(re.findall(r"```(?:python)?\n(.*?)\n```", part, flags=re.S))
    original = re.search(r"```python\n(.*?)\n```", text, flags=re.S).group(1)
    assert "\n".join(code_in_parts) == original


def test_emoji_intact_in_long_answer():
    text = long_answer()

    parts = split_text(text)

    joined = "".join(parts)
    for emoji in (FAMILY, FLAG, THUMB_MEDIUM):
        assert joined.count(emoji) == text.count(emoji)


@pytest.mark.parametrize("emoji", [FAMILY, FLAG, THUMB_MEDIUM, "e\u0301", "1\ufe0f\u20e3"])
def test_hard_cut_never_splits_emoji(emoji):
    for offset in range(0, 8):
        text = "a" * (30 - offset) + emoji * 6 + "b" * 40

        parts = split_text(text, limit=32)

        assert "".join(parts) == text
        for part in parts:
            assert utf16_length(part) <= 32
            stripped = part.strip("ab")
            assert stripped == emoji * (len(stripped) // len(emoji)), (offset, parts)


def test_short_text_is_one_part():
    assert split_text("Ten days.\n") == ["Ten days."]


def test_blank_text_gives_no_parts():
    assert split_text("\n\n") == []


def test_split_prefers_paragraph_boundary():
    first = "a " * 600
    second = "b " * 600
    text = f"{first.strip()}\n\n{second.strip()}"

    parts = split_text(text, limit=1500)

    assert parts == [first.strip(), second.strip()]


def test_split_counts_utf16_units():
    text = "😀" * 3000

    parts = split_text(text)

    assert len(parts) == 2
    assert all(utf16_length(part) <= MESSAGE_TEXT_LIMIT for part in parts)
    assert "".join(parts) == text


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("You get **10 days** of leave.", "You get *10 days* of leave."),
        ("This is *important* and _this_ too.", "This is _important_ and _this_ too."),
        ("~~old rule~~ new rule", "~old rule~ new rule"),
        ("See [the handbook](https://hr.example.com/leave?a=1&b=2).", "See <https://hr.example.com/leave?a=1&amp;b=2|the handbook>."),
        ("Docs: <https://hr.example.com>", "Docs: <https://hr.example.com>"),
        ("# Carer leave", "*Carer leave*"),
        ("- first\n* second\n+ third", "• first\n• second\n• third"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted & kept", "> quoted &amp; kept"),
        ("Ping <!channel> now", "Ping &lt;!channel&gt; now"),
        ("Use `a < b` inline", "Use `a < b` inline"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
    ],
)
def test_markdown_converted_to_mrkdwn(markdown, mrkdwn):
    assert markdown_to_mrkdwn(markdown) == mrkdwn


def test_code_block_left_byte_for_byte():
    code = 'if a < b and c > d:\n    print("**not bold** & <@U123>")\n\n  indented_line = [x](y)'
    markdown = f"Run this:\n```python\n{code}\n```\nDone **now**."

    converted = markdown_to_mrkdwn(markdown)

    assert converted == f"Run this:\n```\n{code}\n```\nDone *now*."


def test_unclosed_code_block_closed():
    assert markdown_to_mrkdwn("```\nx = 1") == "```\nx = 1\n```"
