"""Stored conversation references: what the bot needs to message a Teams conversation later.

One row per conversation (a personal chat, a group chat or a channel), keyed by
the conversation id without its reply-chain suffix. A reply to a channel thread
adds the suffix when it is sent. References survive restarts, so the bot can
post before anyone writes again, for example a scheduled report.
"""

from __future__ import annotations

import logging

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ConversationReference
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from bot.channels.teams.convert import PLATFORM, base_conversation_id, tenant_id
from bot.storage.database import Database
from bot.storage.models import ConversationReference as StoredReference

logger = logging.getLogger(__name__)


def reference_from_activity(activity: Activity) -> ConversationReference:
    """Return the conversation reference of an inbound activity, addressed to the whole conversation."""
    reference = TurnContext.get_conversation_reference(activity)
    reference.activity_id = None
    reference.conversation.id = base_conversation_id(activity.conversation.id)
    reference.conversation.tenant_id = reference.conversation.tenant_id or tenant_id(activity)
    return reference


async def save_reference(db: Database, activity: Activity) -> bool:
    """Store the reference of ``activity``'s conversation; return whether a row was written.

    An existing row is rewritten only when the activity brings a different service
    URL (a conversation's service URL can change, and posts must use the latest) or
    bot account, so ordinary messages cost no write.
    """
    reference = reference_from_activity(activity)
    document = reference.serialize()
    statement = insert(StoredReference).values(
        platform=PLATFORM,
        conversation_id=reference.conversation.id,
        service_url=reference.service_url,
        tenant_id=reference.conversation.tenant_id,
        reference=document,
    )
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[StoredReference.platform, StoredReference.conversation_id],
        set_={
            "service_url": excluded.service_url,
            "tenant_id": excluded.tenant_id,
            "reference": excluded.reference,
            "updated_at": func.now(),
        },
        where=(StoredReference.service_url != excluded.service_url)
        | (StoredReference.reference["bot"] != excluded.reference["bot"]),
    ).returning(StoredReference.conversation_id)
    async with db.transaction() as session:
        written = (await session.execute(statement)).first() is not None
    if written:
        logger.info("Stored conversation reference for %s (service URL %s)", reference.conversation.id, reference.service_url)
    return written


async def load_reference(db: Database, conversation_id: str) -> ConversationReference | None:
    """Return the stored reference of ``conversation_id``, or None when the bot never heard from it."""
    async with db.transaction() as session:
        row = (
            await session.execute(
                select(StoredReference.reference).where(
                    StoredReference.platform == PLATFORM,
                    StoredReference.conversation_id == base_conversation_id(conversation_id),
                )
            )
        ).scalar_one_or_none()
    return ConversationReference().deserialize(row) if row is not None else None
