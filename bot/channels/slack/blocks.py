"""Block Kit for answers: text sections, the 👍/👎 feedback buttons and the correction modal."""

from __future__ import annotations

import json
from typing import Any

from bot.channels.slack.format import SECTION_TEXT_LIMIT, split_text

FEEDBACK_BLOCK_ID = "answer_feedback"
FEEDBACK_STATUS_BLOCK_ID = "answer_feedback_status"
ACTION_HELPFUL = "feedback_up"
ACTION_NOT_HELPFUL = "feedback_down"
FEEDBACK_MODAL_ID = "feedback_modal"
PROBLEM_BLOCK_ID = "problem"
CORRECTION_BLOCK_ID = "correction"
INPUT_ACTION_ID = "text"

# Slack's maximum lengths for a plain-text input and a view's private_metadata.
COMMENT_MAX_CHARS = 3000
PRIVATE_METADATA_MAX_CHARS = 3000


def answer_blocks(text: str, answer_id: str | None, *, feedback: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Sections holding ``text`` (mrkdwn), then the feedback buttons when the answer is stored.

    ``feedback`` is the (helpful, not helpful) count to show once someone has rated
    the answer.
    """
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
        for piece in split_text(text, SECTION_TEXT_LIMIT)
    ]
    if answer_id is None:
        return blocks
    blocks.append(feedback_buttons(answer_id))
    if feedback is not None:
        blocks.append(feedback_status(*feedback))
    return blocks


def feedback_buttons(answer_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "block_id": FEEDBACK_BLOCK_ID,
        "elements": [
            _button("👍 Helpful", ACTION_HELPFUL, answer_id),
            _button("👎 Not helpful", ACTION_NOT_HELPFUL, answer_id),
        ],
    }


def _button(label: str, action_id: str, answer_id: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "value": answer_id,
        "text": {"type": "plain_text", "text": label, "emoji": True},
    }


def feedback_status(helpful: int, not_helpful: int) -> dict[str, Any]:
    text = f"Feedback recorded, thank you. 👍 {helpful} · 👎 {not_helpful}. Click again to change your rating."
    return {
        "type": "context",
        "block_id": FEEDBACK_STATUS_BLOCK_ID,
        "elements": [{"type": "mrkdwn", "text": text}],
    }


def feedback_modal(private_metadata: dict[str, Any]) -> dict[str, Any]:
    """Build the modal that requests what was wrong with an answer and what the right answer is."""
    metadata = json.dumps(private_metadata, separators=(",", ":"))
    if len(metadata) > PRIVATE_METADATA_MAX_CHARS:
        raise ValueError(f"private_metadata is {len(metadata)} characters; Slack allows {PRIVATE_METADATA_MAX_CHARS}")
    return {
        "type": "modal",
        "callback_id": FEEDBACK_MODAL_ID,
        "private_metadata": metadata,
        "title": {"type": "plain_text", "text": "Improve this answer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            _text_input(PROBLEM_BLOCK_ID, "What was wrong?", "For example: it quoted the old policy"),
            _text_input(CORRECTION_BLOCK_ID, "What is the right answer?", "HR reviews corrections before using them"),
        ],
    }


def _text_input(block_id: str, label: str, hint: str) -> dict[str, Any]:
    return {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": {"type": "plain_text", "text": label},
        "hint": {"type": "plain_text", "text": hint},
        "element": {
            "type": "plain_text_input",
            "action_id": INPUT_ACTION_ID,
            "multiline": True,
            "max_length": COMMENT_MAX_CHARS,
        },
    }


def submitted_text(view: dict[str, Any], block_id: str) -> str | None:
    """Return the stripped text typed into one of the modal's inputs, or None when it is empty."""
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(block_id) if isinstance(values, dict) else None
    field = block.get(INPUT_ACTION_ID) if isinstance(block, dict) else None
    value = field.get("value") if isinstance(field, dict) else None
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip()
