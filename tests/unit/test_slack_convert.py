"""Converting Slack payloads: mentions, edits, bots, shared files, commands and shortcuts."""

from __future__ import annotations

import pytest

from bot.channels.slack.convert import (
    command_to_incoming,
    edit_to_incoming,
    file_share_to_incoming,
    mentioned_user_ids,
    original_key,
    shortcut_to_incoming,
    strip_bot_mention,
    to_incoming,
    to_plain_text,
)

BOT = "UBOT0001"
TEAM = "T0TEST001"


def message_event(text: str, **fields) -> dict:
    return {"type": "message", "user": "U0EMPLOYEE1", "text": text, "ts": "1700000300.000100", "channel": "D0DM0001", "channel_type": "im", **fields}


def test_bot_mention_removed_mid_sentence():
    text = "quick one <@UBOT0001>, how many carer days do we get? cc <@UHR00002>"

    assert strip_bot_mention(text, BOT) == "quick one, how many carer days do we get? cc <@UHR00002>"


def test_other_mentions_become_names():
    text = "quick one, how many carer days do we get? cc <@UHR00002>"

    plain = to_plain_text(text, {"UHR00002": "Priya Shah"})

    assert plain == "quick one, how many carer days do we get? cc Priya Shah"


def test_unknown_mention_keeps_label_or_id():
    assert to_plain_text("ask <@U1|sam> or <@U2>", {}) == "ask sam or U2"


def test_slack_markup_becomes_readable():
    text = "see <#C123|hr-news>, <!subteam^S1|@hr-team>, <!here>, <https://hr.example.com|the wiki>, <mailto:hr@example.com|hr@example.com> &amp; &lt;tag&gt;"

    plain = to_plain_text(text, {})

    assert plain == "see #hr-news, @hr-team, @here, the wiki (https://hr.example.com), hr@example.com & <tag>"


def test_mentioned_user_ids_in_order_once():
    assert mentioned_user_ids("<@U2> and <@U1|x> and <@U2>") == ["U2", "U1"]


@pytest.mark.parametrize(
    "event",
    [
        message_event("hello", subtype="bot_message", bot_id="B1"),
        message_event("hello", bot_id="B9"),
        message_event("hello", user=BOT),
        message_event("hello", subtype="message_deleted"),
        message_event("<@UBOT0001>"),
    ],
    ids=["bot_message", "other bot", "own message", "deleted", "only a mention"],
)
def test_messages_needing_no_answer(event):
    assert to_incoming(event, team_id=TEAM, bot_user_id=BOT) is None


def test_thread_reply_keyed_by_thread():
    event = message_event("and for part-timers?", ts="1700000200.000300", thread_ts="1700000100.000100", channel="C0TEST001", channel_type="channel")

    message = to_incoming(event, team_id=TEAM, bot_user_id=BOT)

    assert message.thread_key == "1700000100.000100"
    assert message.event_key == "slack:T0TEST001:C0TEST001:1700000200.000300"


def test_broadcast_thread_reply_converted():
    event = message_event("also for part-timers?", subtype="thread_broadcast", ts="1700000200.000400", thread_ts="1700000100.000100")

    message = to_incoming(event, team_id=TEAM, bot_user_id=BOT)

    assert message.thread_key == "1700000100.000100"


def test_top_level_message_starts_own_thread():
    message = to_incoming(message_event("sick days?"), team_id=TEAM, bot_user_id=BOT)

    assert message.thread_key == "1700000300.000100"


def edit_event(new_text: str, old_text: str, **inner) -> dict:
    return {
        "type": "message",
        "subtype": "message_changed",
        "channel": "D0DM0001",
        "channel_type": "im",
        "ts": "1700000399.000100",
        "message": {"type": "message", "user": "U0EMPLOYEE1", "text": new_text, "ts": "1700000300.000100", "edited": {"user": "U0EMPLOYEE1", "ts": "1700000399.000000"}, **inner},
        "previous_message": {"type": "message", "user": "U0EMPLOYEE1", "text": old_text, "ts": "1700000300.000100"},
    }


def test_edit_becomes_question_with_edit_key():
    message = edit_to_incoming(edit_event("sick days for part-timers?", "sick days?"), team_id=TEAM, bot_user_id=BOT)

    assert message.text == "sick days for part-timers?"
    assert message.event_key == "slack:T0TEST001:D0DM0001:1700000300.000100:edit"
    assert original_key(message.event_key) == "slack:T0TEST001:D0DM0001:1700000300.000100"
    assert message.thread_key == "1700000300.000100"


def test_edit_of_bot_message_with_unfurl_ignored():
    event = edit_event("Ten days. <https://hr.example.com>", "Ten days. <https://hr.example.com>", user=BOT, bot_id="B0TEST001", attachments=[{"title": "HR"}])

    assert edit_to_incoming(event, team_id=TEAM, bot_user_id=BOT) is None


def test_edit_with_same_text_ignored():
    assert edit_to_incoming(edit_event("sick days?", "sick days?", attachments=[{"title": "x"}]), team_id=TEAM, bot_user_id=BOT) is None


def test_file_share_lists_files():
    event = message_event(
        "",
        subtype="file_share",
        files=[{"id": "F1", "name": "policy.md", "size": 120, "filetype": "markdown", "url_private_download": "https://files.slack.com/files-pri/T1-F1/policy.md"}],
    )

    message = file_share_to_incoming(event, team_id=TEAM, bot_user_id=BOT)

    assert message.extra["files"] == [
        {"id": "F1", "name": "policy.md", "size": 120, "filetype": "markdown", "url": "https://files.slack.com/files-pri/T1-F1/policy.md"}
    ]
    assert message.text == "Shared policy.md"


def test_command_keyed_by_trigger_id():
    command = {
        "command": "/ask",
        "text": "notice period?",
        "trigger_id": "123.456.abc",
        "user_id": "U0EMPLOYEE1",
        "channel_id": "C0TEST001",
        "channel_name": "directmessage",
        "team_id": TEAM,
        "response_url": "https://hooks.slack.com/commands/T1/1/abc",
    }

    message = command_to_incoming(command, text="ask notice period?")

    assert message.event_key == "slack-command:T0TEST001:123.456.abc"
    assert message.thread_key == "command:123.456.abc"
    assert message.channel_type == "im"
    assert message.extra["response_url"] == command["response_url"]


def test_command_without_response_url_rejected():
    assert command_to_incoming({"trigger_id": "1", "user_id": "U1", "channel_id": "C1"}, text="help") is None


def test_shortcut_names_thread_root():
    shortcut = {
        "type": "message_action",
        "trigger_id": "9.9.xyz",
        "response_url": "https://hooks.slack.com/app/T1/2/def",
        "user": {"id": "U0EMPLOYEE1"},
        "channel": {"id": "C0TEST001"},
        "team": {"id": TEAM},
        "message": {"ts": "1700000200.000300", "thread_ts": "1700000100.000100"},
    }

    message = shortcut_to_incoming(shortcut, text="summarize")

    assert message.extra["thread"] == {"channel": "C0TEST001", "ts": "1700000100.000100"}
    assert message.event_key == "slack-shortcut:T0TEST001:9.9.xyz"
