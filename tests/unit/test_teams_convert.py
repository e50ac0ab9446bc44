"""Teams activities to IncomingMessage: mentions, reply chains, keys and identities."""

from __future__ import annotations

from botbuilder.schema import Activity

from bot.channels.teams.convert import (
    MAX_EVENT_KEY,
    MAX_ID_COLUMN,
    event_key,
    thread_root_id,
    to_incoming,
    to_markdown,
)
from bot.channels.teams.testing import message_activity

APP_ID = "00000000-0000-4000-8000-00000000b07a"
SERVICE_URL = "https://smba.trafficmanager.net/emea/"


def activity(text: str | None, **overrides) -> Activity:
    values = {
        "activity_id": "1700000000001",
        "conversation_id": "a:1personal-chat",
        "service_url": SERVICE_URL,
        "bot_app_id": APP_ID,
    }
    values.update(overrides)
    return Activity().deserialize(message_activity(text, **values))


def bot_mention(text: str | None = None, name: str = "HR Helper") -> dict:
    entity = {"type": "mention", "mentioned": {"id": f"28:{APP_ID}", "name": name}}
    if text is not None:
        entity["text"] = text
    return entity


def person_mention(name: str, text: str | None = None) -> dict:
    entity = {"type": "mention", "mentioned": {"id": "29:1sam-lee", "name": name}}
    if text is not None:
        entity["text"] = text
    return entity


def test_bot_mention_without_text_removed():
    incoming = to_incoming(
        activity(
            "<at>HR Helper</at> summarise ticket 4412 for <at>Sam Lee</at>",
            conversation_type="groupChat",
            conversation_id="19:group-chat@thread.v2",
            entities=[bot_mention(), person_mention("Sam Lee", "<at>Sam Lee</at>")],
        )
    )

    assert incoming is not None
    assert incoming.text == "summarise ticket 4412 for Sam Lee"


def test_bot_mention_with_text_removed_mid_sentence():
    incoming = to_incoming(
        activity("Hi <at>HR Helper</at>, how many sick days?", entities=[bot_mention("<at>HR Helper</at>")])
    )

    assert incoming.text == "Hi, how many sick days?"


def test_shortened_bot_mention_removed():
    incoming = to_incoming(
        activity(
            "<at>HR</at> ask <at>Sam Lee</at> about leave",
            entities=[bot_mention(name="HR Helper"), person_mention("Sam Lee", "<at>Sam Lee</at>")],
        )
    )

    assert incoming.text == "ask Sam Lee about leave"


def test_other_mentions_kept_as_names():
    incoming = to_incoming(
        activity("<at>HR Helper</at> cc <at>Sam Lee</at> and <at>Kim</at>", entities=[bot_mention("<at>HR Helper</at>")])
    )

    assert incoming.text == "cc Sam Lee and Kim"


def test_mentions_matched_in_any_entity_order():
    incoming = to_incoming(
        activity(
            "<at>HR Helper</at> tell <at>Sam Lee</at>",
            entities=[person_mention("Sam Lee", "<at>Sam Lee</at>"), bot_mention()],
        )
    )

    assert incoming.text == "tell Sam Lee"


def test_html_entities_unescaped():
    incoming = to_incoming(activity("Travel&nbsp;&amp; expenses &lt;EU&gt;"))

    assert incoming.text == "Travel & expenses <EU>"


def test_mention_only_needs_no_answer():
    assert to_incoming(activity("<at>HR Helper</at>", entities=[bot_mention()])) is None


def test_card_submit_without_text_needs_no_answer():
    assert to_incoming(activity(None, value={"action": "feedback"})) is None


def test_bot_own_message_ignored():
    own = activity("hello", user_id=f"28:{APP_ID}")

    assert to_incoming(own) is None


def test_personal_chat_is_one_thread():
    incoming = to_incoming(activity("How many sick days?"))

    assert incoming.platform == "teams"
    assert incoming.channel_type == "im"
    assert incoming.thread_key == "a:1personal-chat"
    assert incoming.extra["thread_root_id"] is None
    assert incoming.extra["conversation_id"] == "a:1personal-chat"


def test_channel_thread_root_from_conversation_id():
    reply = activity(
        "follow-up question",
        activity_id="1700000000200",
        conversation_type="channel",
        conversation_id="19:hr@thread.tacv2;messageid=1700000000100",
    )

    incoming = to_incoming(reply)

    assert thread_root_id(reply) == "1700000000100"
    assert incoming.thread_key == "1700000000100"
    assert incoming.channel_id == "19:hr@thread.tacv2"
    assert incoming.channel_type == "channel"
    assert incoming.extra["conversation_id"] == "19:hr@thread.tacv2"


def test_channel_thread_root_from_reply_to_id():
    reply = activity(
        "follow-up", activity_id="1700000000300", conversation_type="channel",
        conversation_id="19:hr@thread.tacv2", reply_to_id="1700000000100",
    )

    assert thread_root_id(reply) == "1700000000100"


def test_new_channel_post_is_own_root():
    post = activity("new question", activity_id="1700000000400", conversation_type="channel", conversation_id="19:hr@thread.tacv2")

    assert thread_root_id(post) == "1700000000400"


def test_group_chat_has_no_thread_root():
    chat = activity("question", conversation_type="groupChat", conversation_id="19:group@thread.v2", reply_to_id="1700000000001")

    assert thread_root_id(chat) is None
    assert to_incoming(chat).channel_type == "group"


def test_event_key_same_for_resent_activity():
    first = activity("q", conversation_type="channel", conversation_id="19:test@thread.tacv2;messageid=1700000000001")
    again = activity("q", conversation_type="channel", conversation_id="19:test@thread.tacv2;messageid=1700000000001")
    elsewhere = activity("q", conversation_type="channel", conversation_id="19:other@thread.tacv2;messageid=1700000000001")

    assert event_key(first) == event_key(again) == "teams:19:test@thread.tacv2:1700000000001"
    assert event_key(first) != event_key(elsewhere)


def test_long_conversation_id_fits_columns():
    long_id = "a:1" + "Xy9_" * 60
    other_long_id = long_id[:-1] + "Z"

    incoming = to_incoming(activity("q", conversation_id=long_id))
    other = to_incoming(activity("q", conversation_id=other_long_id))

    assert len(incoming.channel_id) <= MAX_ID_COLUMN
    assert len(incoming.thread_key) <= MAX_ID_COLUMN
    assert len(incoming.event_key) <= MAX_EVENT_KEY
    assert incoming.channel_id != other.channel_id
    assert incoming.extra["conversation_id"] == long_id


def test_user_id_is_entra_object_id():
    incoming = to_incoming(activity("q", aad_object_id="6f1c1a5e-0000-4000-8000-00000000a1ce"))

    assert incoming.user_id == "6f1c1a5e-0000-4000-8000-00000000a1ce"
    assert incoming.extra["aad_object_id"] == "6f1c1a5e-0000-4000-8000-00000000a1ce"
    assert incoming.team_id == "9c4f7c1e-0000-4000-8000-0000000000aa"


def test_markdown_keeps_single_line_breaks():
    assert to_markdown("Answer.\n\nSources:\n[1] A\n[2] B") == "Answer.\n\nSources:  \n[1] A  \n[2] B"
