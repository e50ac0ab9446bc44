"""Add per-chunk audience, kind and metadata; add stored conversation references.

A CSV FAQ mixes rows for everyone and rows for managers, so the audience that
filters retrieval belongs to each chunk. Conversation references let the bot
message a Teams conversation after a restart, before anyone writes again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("knowledge_chunks", sa.Column("audience", sa.String(64), nullable=False, server_default="all"))
    op.add_column("knowledge_chunks", sa.Column("kind", sa.String(16), nullable=False, server_default="text"))
    op.add_column(
        "knowledge_chunks",
        sa.Column("metadata", postgresql.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.execute(
        "UPDATE knowledge_chunks c SET audience = s.audience FROM knowledge_sources s WHERE s.id = c.source_id"
    )
    op.create_index("ix_knowledge_chunks_audience", "knowledge_chunks", ["audience"])

    op.create_table(
        "conversation_references",
        sa.Column("platform", sa.String(16), primary_key=True),
        sa.Column("conversation_id", sa.String(512), primary_key=True),
        sa.Column("service_url", sa.Text, nullable=False),
        sa.Column("tenant_id", sa.String(128)),
        sa.Column("reference", postgresql.JSONB, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("conversation_references")
    op.drop_index("ix_knowledge_chunks_audience", table_name="knowledge_chunks")
    op.drop_column("knowledge_chunks", "metadata")
    op.drop_column("knowledge_chunks", "kind")
    op.drop_column("knowledge_chunks", "audience")
