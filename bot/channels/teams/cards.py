"""Adaptive Cards the bot posts in Teams, and reading what their buttons submit.

Every ``Action.Submit`` carries an object in ``data``: Teams merges the card's
input values into that object, and it drops a submit whose ``data`` is a string.
A submit arrives as a message activity with no text and the merged object in
``activity.value``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botbuilder.core import CardFactory
from botbuilder.schema import Attachment

FEEDBACK_ACTION = "feedback"
COMMENT_INPUT_ID = "comment"
ADAPTIVE_CARD_VERSION = "1.4"
# The card stops typing at this length; a longer comment did not come from the card, so it is cut.
MAX_COMMENT_CHARS = 1000
RATING_LABELS = {"up": "👍", "down": "👎"}


@dataclass(frozen=True)
class FeedbackSubmit:
    """A feedback card's submit: which answer, the rating and an optional comment."""

    answer_id: str
    rating: str | None
    comment: str | None


class InvalidSubmitError(ValueError):
    """A card submit whose payload is not one the bot's cards produce."""


def feedback_card(answer_id: str) -> dict[str, Any]:
    """An Adaptive Card asking whether answer ``answer_id`` helped, with a comment field."""
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": ADAPTIVE_CARD_VERSION,
        "body": [
            {"type": "TextBlock", "text": "Was this answer helpful?", "wrap": True, "weight": "Bolder"},
            {
                "type": "Input.Text",
                "id": COMMENT_INPUT_ID,
                "placeholder": "Optional: what was wrong or missing?",
                "isMultiline": True,
                "maxLength": MAX_COMMENT_CHARS,
            },
        ],
        "actions": [
            _rating_action(answer_id, "up", "👍 Helpful"),
            _rating_action(answer_id, "down", "👎 Not helpful"),
        ],
    }


def feedback_attachment(answer_id: str) -> Attachment:
    return CardFactory.adaptive_card(feedback_card(answer_id))


def submit_actions(card: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Yield every ``Action.Submit`` in ``card``, including those nested in containers and show-cards."""
    stack: list[Any] = [card]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "Action.Submit":
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def assert_submit_data_are_objects(card: dict[str, Any]) -> None:
    """Raise AssertionError naming the first ``Action.Submit`` whose ``data`` is not an object."""
    for action in submit_actions(card):
        if not isinstance(action.get("data"), dict):
            raise AssertionError(f"Action.Submit {action.get('title')!r} has non-object data {action.get('data')!r}")


def parse_feedback_submit(value: Any) -> FeedbackSubmit | None:
    """Read a feedback submit from ``activity.value``; None when ``value`` is not a feedback submit.

    Raises InvalidSubmitError when it claims to be feedback but lacks an answer id
    or carries an unknown rating.
    """
    if not isinstance(value, dict) or value.get("action") != FEEDBACK_ACTION:
        return None
    answer_id = value.get("answer_id")
    if not isinstance(answer_id, str) or not answer_id.strip():
        raise InvalidSubmitError("feedback submit without an answer_id")
    rating = value.get("rating")
    if rating is not None and rating not in RATING_LABELS:
        raise InvalidSubmitError(f"feedback submit with unknown rating {rating!r}")
    comment = value.get(COMMENT_INPUT_ID)
    comment = comment.strip()[:MAX_COMMENT_CHARS] if isinstance(comment, str) and comment.strip() else None
    if rating is None and comment is None:
        raise InvalidSubmitError("feedback submit with neither a rating nor a comment")
    return FeedbackSubmit(answer_id=answer_id.strip(), rating=rating, comment=comment)


def _rating_action(answer_id: str, rating: str, title: str) -> dict[str, Any]:
    return {
        "type": "Action.Submit",
        "title": title,
        "data": {"action": FEEDBACK_ACTION, "answer_id": answer_id, "rating": rating},
    }
