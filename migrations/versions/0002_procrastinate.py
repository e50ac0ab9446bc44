"""Create the procrastinate job queue schema.

The queue lives in the same database so that accepting a platform event and
queueing its job commit in one transaction. The SQL comes from the installed
procrastinate package (pinned in pyproject.toml); a procrastinate upgrade that
changes its schema needs a new revision applying procrastinate's own migration files.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op
from procrastinate.schema import SchemaManager

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(SchemaManager.get_schema())


def downgrade() -> None:
    # procrastinate ships no uninstall script; dropping its tables and types with
    # CASCADE also removes the functions and triggers that depend on them.
    op.execute(
        """
        DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers,
            procrastinate_jobs, procrastinate_workers CASCADE;
        DROP TYPE IF EXISTS procrastinate_job_event_type, procrastinate_job_status,
            procrastinate_job_to_defer_v1 CASCADE;
        """
    )
