"""preview cleanup: application repositories polled for branches, branch state, event dedupe keys

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dedupe_key", sa.String(length=512), nullable=True))
        batch_op.create_unique_constraint("uq_events_dedupe_key", ["dedupe_key"])

    op.create_table(
        "app_repos",
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("polled_at", sa.Float(), nullable=True),
        sa.Column("poll_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("repository"),
    )
    op.create_table(
        "branches",
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("branch", sa.String(length=512), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=True),
        sa.Column("deleted_at", sa.Float(), nullable=True),
        sa.Column("deletion_event_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("repository", "branch"),
    )


def downgrade() -> None:
    op.drop_table("branches")
    op.drop_table("app_repos")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_events_dedupe_key", type_="unique")
        batch_op.drop_column("dedupe_key")
