"""Pure conversions between Bot Framework activities from Teams and the bot's IncomingMessage."""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from typing import Any

from botbuilder.schema import Activity, ActivityTypes

from bot.core.message import IncomingMessage

PLATFORM = "teams"

# conversations.channel_id and thread_key, messages.user_id and feedback.user_id hold
# 128 characters; event keys hold 256.
MAX_ID_COLUMN = 128
MAX_EVENT_KEY = 256

_MESSAGE_ID_MARKER = ";messageid="
_AT_TAG = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)
_CHANNEL_TYPES = {"personal": "im", "groupchat": "group", "channel": "channel"}


@dataclass(frozen=True)
class MentionEntity:
    """A ``mention`` entity: who was mentioned and, when Teams sends it, the ``<at>…</at>`` text."""

    account_id: str | None
    name: str | None
    text: str | None


def fit_key(value: str, limit: int) -> str:
    """Return ``value`` shortened to ``limit`` characters by replacing its tail with a digest.

    Personal-chat conversation ids are longer than the columns that key threads,
    so long ids keep a readable prefix and stay unique through the digest.
    """
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
    return f"{value[: limit - len(digest) - 1]}~{digest}"


def base_conversation_id(conversation_id: str) -> str:
    """Return the conversation id without the ``;messageid=`` suffix that names a channel reply chain."""
    return conversation_id.split(_MESSAGE_ID_MARKER, 1)[0]


def thread_root_id(activity: Activity) -> str | None:
    """Return the id of the channel post that starts the reply chain, or None outside channels.

    Teams names the chain in the conversation id (``19:…@thread.tacv2;messageid=170…``);
    older payloads carry it only as ``replyToId``. A new post is its own root.
    """
    if channel_type(activity) != "channel":
        return None
    conversation_id = activity.conversation.id
    if _MESSAGE_ID_MARKER in conversation_id:
        root = conversation_id.split(_MESSAGE_ID_MARKER, 1)[1].split(";", 1)[0]
        if root:
            return root
    return activity.reply_to_id or activity.id


def channel_type(activity: Activity) -> str:
    """Map Teams' ``conversationType`` onto the channel types IncomingMessage uses."""
    conversation = activity.conversation
    kind = (conversation.conversation_type or "").lower()
    if kind in _CHANNEL_TYPES:
        return _CHANNEL_TYPES[kind]
    return "group" if conversation.is_group else "im"


def tenant_id(activity: Activity) -> str | None:
    channel_data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = channel_data.get("tenant")
    if isinstance(tenant, dict) and isinstance(tenant.get("id"), str):
        return tenant["id"]
    extra = getattr(activity.conversation, "additional_properties", None) or {}
    value = activity.conversation.tenant_id or extra.get("tenantId")
    return value if isinstance(value, str) else None


def sender_id(activity: Activity) -> str:
    """Return the sender's Entra object id where Teams sends it (role settings list those), else the Teams user id."""
    sender = activity.from_property
    return sender.aad_object_id or sender.id


def event_key(activity: Activity) -> str:
    """Return the deduplication key: one per activity id within its conversation, so Teams' re-sends are dropped."""
    conversation = base_conversation_id(activity.conversation.id)
    return fit_key(f"{PLATFORM}:{conversation}:{activity.id}", MAX_EVENT_KEY)


def mention_entities(activity: Activity) -> list[MentionEntity]:
    mentions = []
    for entity in activity.entities or []:
        fields = _entity_fields(entity)
        if fields.get("type") != "mention":
            continue
        mentioned = fields.get("mentioned")
        if isinstance(mentioned, dict):
            account_id, name = mentioned.get("id"), mentioned.get("name")
        else:
            account_id, name = getattr(mentioned, "id", None), getattr(mentioned, "name", None)
        text = fields.get("text")
        mentions.append(
            MentionEntity(
                account_id=account_id if isinstance(account_id, str) else None,
                name=name if isinstance(name, str) else None,
                text=text if isinstance(text, str) and text.strip() else None,
            )
        )
    return mentions


def strip_bot_mention(text: str, mentions: list[MentionEntity], *, bot_id: str | None, bot_name: str | None) -> str:
    """Remove the bot's own ``<at>…</at>`` mention and turn everyone else's into their plain names.

    Each mention entity claims the first unclaimed tag with its text, or with
    ``<at>name</at>`` when Teams sent no text. A bot mention that matches no tag by
    either (a shortened name) claims the first tag no entity claimed.
    """
    tags = list(_AT_TAG.finditer(text))
    owners: list[str | None] = [None] * len(tags)
    unmatched_bot_mention = False
    for mention in mentions:
        is_bot = _same_account(mention.account_id, bot_id)
        label = _tag_label(mention.text) if mention.text else mention.name
        if is_bot and not label:
            label = bot_name
        index = _first_unclaimed(tags, owners, label)
        if index is not None:
            owners[index] = "bot" if is_bot else "person"
        elif is_bot:
            unmatched_bot_mention = True
    if unmatched_bot_mention and "bot" not in owners:
        index = next((i for i, owner in enumerate(owners) if owner is None), None)
        if index is not None:
            owners[index] = "bot"

    pieces, position = [], 0
    for tag, owner in zip(tags, owners):
        pieces.append(text[position : tag.start()])
        pieces.append(" " if owner == "bot" else tag.group(1))
        position = tag.end()
    pieces.append(text[position:])
    return _tidy("".join(pieces))


def to_incoming(activity: Activity) -> IncomingMessage | None:
    """Convert a message activity with text; None when there is nothing to answer."""
    if activity.type != ActivityTypes.message or not activity.id:
        return None
    sender = activity.from_property
    if sender is None or not sender.id or activity.conversation is None or not activity.conversation.id:
        return None
    if (sender.role or "").lower() == "bot" or _same_account(sender.id, _recipient_id(activity)):
        return None
    text = strip_bot_mention(
        activity.text or "",
        mention_entities(activity),
        bot_id=_recipient_id(activity),
        bot_name=activity.recipient.name if activity.recipient else None,
    )
    if not text:
        return None

    conversation = base_conversation_id(activity.conversation.id)
    root = thread_root_id(activity)
    return IncomingMessage(
        platform=PLATFORM,
        event_key=event_key(activity),
        channel_id=fit_key(conversation, MAX_ID_COLUMN),
        thread_key=fit_key(root or conversation, MAX_ID_COLUMN),
        user_id=fit_key(sender_id(activity), MAX_ID_COLUMN),
        text=text,
        message_id=activity.id,
        channel_type=channel_type(activity),
        team_id=tenant_id(activity),
        extra={
            "conversation_id": conversation,
            "thread_root_id": root,
            "aad_object_id": sender.aad_object_id,
            "teams_user_id": sender.id,
        },
    )


def to_markdown(text: str) -> str:
    """Keep the line breaks of a reply: Teams renders text as Markdown, which joins lines split by one newline."""
    return re.sub(r"(?<!\n)[ \t]*\n(?!\n)", "  \n", text)


def _entity_fields(entity: Any) -> dict[str, Any]:
    # botbuilder deserialises every entity as a plain Entity and keeps the
    # mention's fields in additional_properties.
    if isinstance(entity, dict):
        return entity
    fields = dict(getattr(entity, "additional_properties", None) or {})
    fields["type"] = getattr(entity, "type", None)
    for name in ("mentioned", "text"):
        value = getattr(entity, name, None)
        if value is not None:
            fields[name] = value
    return fields


def _recipient_id(activity: Activity) -> str | None:
    return activity.recipient.id if activity.recipient else None


def _same_account(first: str | None, second: str | None) -> bool:
    # A bot appears as "28:<app id>" in some places and as the bare app id in others.
    if not first or not second:
        return False
    return first.removeprefix("28:").lower() == second.removeprefix("28:").lower()


def _tag_label(mention_text: str) -> str:
    match = _AT_TAG.search(mention_text)
    return match.group(1) if match else mention_text


def _first_unclaimed(tags: list[re.Match], owners: list[str | None], label: str | None) -> int | None:
    if not label:
        return None
    wanted = _normalise(label)
    for index, tag in enumerate(tags):
        if owners[index] is None and _normalise(tag.group(1)) == wanted:
            return index
    return None


def _normalise(name: str) -> str:
    return " ".join(html.unescape(name).split()).casefold()


def _tidy(text: str) -> str:
    text = html.unescape(text).replace("\xa0", " ")
    text = re.sub(r"[ \t]+([,.;:!?])", r"\1", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip(" \t\r\n,")
