"""Feedback cards: object-valued submit data, and reading what a submit carries."""

from __future__ import annotations

import pytest

from bot.channels.teams.cards import (
    MAX_COMMENT_CHARS,
    FeedbackSubmit,
    InvalidSubmitError,
    assert_submit_data_are_objects,
    feedback_attachment,
    feedback_card,
    parse_feedback_submit,
    submit_actions,
)

ANSWER_ID = "c7db5f1a-8b89-41e5-86dc-92216e2822c6"


def test_feedback_card_submit_data_are_objects():
    card = feedback_card(ANSWER_ID)

    assert_submit_data_are_objects(card)
    ratings = [action["data"]["rating"] for action in submit_actions(card)]
    assert sorted(ratings) == ["down", "up"]
    assert {action["data"]["answer_id"] for action in submit_actions(card)} == {ANSWER_ID}


def test_feedback_card_has_comment_input():
    inputs = [element for element in feedback_card(ANSWER_ID)["body"] if element["type"] == "Input.Text"]

    assert [element["id"] for element in inputs] == ["comment"]
    assert inputs[0]["maxLength"] == MAX_COMMENT_CHARS


def test_feedback_attachment_is_adaptive_card():
    attachment = feedback_attachment(ANSWER_ID)

    assert attachment.content_type == "application/vnd.microsoft.card.adaptive"
    assert_submit_data_are_objects(attachment.content)


@pytest.mark.parametrize("data", ["feedback:up", None, ["up"]])
def test_check_rejects_non_object_data(data):
    card = {
        "type": "AdaptiveCard",
        "actions": [
            {"type": "Action.ShowCard", "card": {"type": "AdaptiveCard", "actions": [{"type": "Action.Submit", "title": "Send", "data": data}]}}
        ],
    }
    if data is None:
        del card["actions"][0]["card"]["actions"][0]["data"]

    with pytest.raises(AssertionError, match="Send"):
        assert_submit_data_are_objects(card)


def test_submit_from_report_parsed():
    value = {"action": "feedback", "answer_id": "ans-77", "rating": "down", "comment": "Link is out of date"}

    assert parse_feedback_submit(value) == FeedbackSubmit(answer_id="ans-77", rating="down", comment="Link is out of date")


def test_empty_comment_is_none():
    submit = parse_feedback_submit({"action": "feedback", "answer_id": ANSWER_ID, "rating": "up", "comment": "  "})

    assert submit.comment is None


def test_long_comment_cut_to_card_limit():
    submit = parse_feedback_submit({"action": "feedback", "answer_id": ANSWER_ID, "rating": "down", "comment": "x" * 5000})

    assert len(submit.comment) == MAX_COMMENT_CHARS


@pytest.mark.parametrize("value", [None, "feedback", {"action": "something-else"}, {"comment": "hi"}])
def test_other_values_are_not_feedback(value):
    assert parse_feedback_submit(value) is None


@pytest.mark.parametrize(
    "value",
    [
        {"action": "feedback", "rating": "down"},
        {"action": "feedback", "answer_id": 77, "rating": "down"},
        {"action": "feedback", "answer_id": ANSWER_ID, "rating": "meh"},
        {"action": "feedback", "answer_id": ANSWER_ID},
    ],
)
def test_malformed_feedback_rejected(value):
    with pytest.raises(InvalidSubmitError):
        parse_feedback_submit(value)
