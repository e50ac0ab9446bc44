"""Add text_embeddings: vectors of texts that skills embed, kept across questions.

The HR skill compares a question with each sentence-sized passage of the chunks
it retrieved. Embedding those passages for every question cost more than
everything else the bot does beside the model; computing them once, when the
knowledge base changes, and storing them here takes that off the question path.
Rows are keyed by the embedding model and a digest of the text, so a changed
passage gets a new row and a new model never reads another model's vectors.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

EMBEDDING_DIM = 384


def upgrade() -> None:
    op.create_table(
        "text_embeddings",
        sa.Column("model", sa.String(128), primary_key=True),
        # SHA-1 of the UTF-8 text: 20 bytes instead of the text itself.
        sa.Column("digest", postgresql.BYTEA, primary_key=True),
        sa.Column("embedding", Vector(EMBEDDING_DIM), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("text_embeddings")
