"""Add delivery_parts: which parts of each answer a platform has already accepted.

A long answer is posted as several messages. Recording each part as it is
accepted lets a retried job continue after the last posted part instead of
posting the earlier ones again, also after a worker crash.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_parts",
        sa.Column("event_key", sa.String(256), primary_key=True),
        sa.Column("part_index", sa.Integer, primary_key=True),
        sa.Column("platform_message_id", sa.String(128), nullable=False),
        # "placeholder" until the answer's text replaces the progress message, then "posted".
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("delivery_parts")
