"""Create conversations, messages, sources, chunks, feedback and processed events.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

EMBEDDING_DIM = 384


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")

    op.create_table(
        "conversations",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("channel_id", sa.String(128), nullable=False),
        sa.Column("thread_key", sa.String(128), nullable=False),
        sa.Column("channel_type", sa.String(32)),
        *_timestamps(),
        sa.UniqueConstraint("platform", "channel_id", "thread_key", name="uq_conversation_thread"),
    )

    op.create_table(
        "knowledge_sources",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False, unique=True),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("audience", sa.String(64), nullable=False, server_default="all"),
        sa.Column("owner", sa.String(128)),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        *_timestamps(),
    )

    op.create_table(
        "knowledge_chunks",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "source_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("knowledge_sources.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("heading_path", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", Vector(EMBEDDING_DIM), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR,
            sa.Computed("to_tsvector('english', text)", persisted=True),
        ),
    )
    op.create_index(
        "ix_knowledge_chunks_embedding_hnsw",
        "knowledge_chunks",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    op.create_index("ix_knowledge_chunks_search", "knowledge_chunks", ["search_vector"], postgresql_using="gin")
    op.create_index("ix_knowledge_chunks_source_ordinal", "knowledge_chunks", ["source_id", "ordinal"])

    op.create_table(
        "messages",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "conversation_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("conversations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("user_id", sa.String(128)),
        sa.Column("event_key", sa.String(256)),
        sa.Column("platform_message_id", sa.String(128)),
        sa.Column("skill", sa.String(64)),
        sa.Column("answer_path", sa.String(32)),
        sa.Column("model_id", sa.String(256)),
        sa.Column("prompt_version", sa.String(64)),
        sa.Column("latency_ms", sa.Integer),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("delivery_status", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_messages_conversation_created", "messages", ["conversation_id", "created_at"])
    op.create_index(
        "uq_messages_answer_event",
        "messages",
        ["event_key"],
        unique=True,
        postgresql_where=sa.text("role = 'assistant'"),
    )

    op.create_table(
        "answer_sources",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("chunk_id", sa.BigInteger, sa.ForeignKey("knowledge_chunks.id", ondelete="SET NULL")),
        sa.Column(
            "source_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("knowledge_sources.id", ondelete="SET NULL"),
        ),
        sa.Column("source_title", sa.Text, nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("cited", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("excerpt", sa.Text, nullable=False),
    )
    op.create_index("ix_answer_sources_message_id", "answer_sources", ["message_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("correction", sa.Text),
        *_timestamps(),
        sa.UniqueConstraint("message_id", "user_id", name="uq_feedback_message_user"),
    )

    op.create_table(
        "processed_events",
        sa.Column("event_key", sa.String(256), primary_key=True),
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("job_id", sa.BigInteger),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "processed_events",
        "feedback",
        "answer_sources",
        "messages",
        "knowledge_chunks",
        "knowledge_sources",
        "conversations",
    ):
        op.drop_table(table)
