"""Which parts of an answer Slack has already accepted, kept in the ``delivery_parts`` table.

Each part is recorded by one statement of its own right after Slack accepts it,
so a job retried after a failure or a worker crash continues with the first part
that is not recorded. Every method sends a single statement in autocommit mode:
one round trip instead of three with BEGIN and COMMIT (or ROLLBACK).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from bot.storage.database import Database

PLACEHOLDER = "placeholder"
POSTED = "posted"

_SELECT_PARTS = text(
    "SELECT part_index, platform_message_id, state FROM delivery_parts WHERE event_key = :event_key"
)
_UPSERT_PART = text(
    "INSERT INTO delivery_parts (event_key, part_index, platform_message_id, state) "
    "VALUES (:event_key, :part_index, :platform_message_id, :state) "
    "ON CONFLICT (event_key, part_index) DO UPDATE SET "
    "platform_message_id = EXCLUDED.platform_message_id, state = EXCLUDED.state, updated_at = now()"
)
_INSERT_PLACEHOLDER = text(
    "INSERT INTO delivery_parts (event_key, part_index, platform_message_id, state) "
    "VALUES (:event_key, 0, :platform_message_id, 'placeholder') ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class DeliveredPart:
    """One message of an answer on Slack: ``state`` is ``placeholder`` or ``posted``."""

    index: int
    message_id: str
    state: str


class DeliveryLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def parts(self, event_key: str) -> dict[int, DeliveredPart]:
        async with self.db.autocommit() as conn:
            rows = (await conn.execute(_SELECT_PARTS, {"event_key": event_key})).all()
        return {row.part_index: DeliveredPart(row.part_index, row.platform_message_id, row.state) for row in rows}

    async def record_posted(self, event_key: str, index: int, message_id: str) -> None:
        async with self.db.autocommit() as conn:
            await conn.execute(
                _UPSERT_PART,
                {"event_key": event_key, "part_index": index, "platform_message_id": message_id, "state": POSTED},
            )

    async def record_placeholder(self, event_key: str, message_id: str) -> None:
        """Record the progress message that the answer's first part will replace; keeps an earlier record."""
        async with self.db.autocommit() as conn:
            await conn.execute(_INSERT_PLACEHOLDER, {"event_key": event_key, "platform_message_id": message_id})
