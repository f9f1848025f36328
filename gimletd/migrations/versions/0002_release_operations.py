"""release operations: write kinds, the release index, Flux commit statuses, holds, locks

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gitops_writes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="release")
        )
        batch_op.add_column(
            sa.Column("target_sha", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false())
        )

    op.create_table(
        "releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gitops_repo", sa.String(length=1024), nullable=False),
        sa.Column("env", sa.String(length=256), nullable=False),
        sa.Column("app", sa.String(length=256), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("artifact_id", sa.String(length=512), nullable=False),
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("triggered_by", sa.String(length=256), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("rolled_back", sa.Boolean(), nullable=False),
        sa.Column("release", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "gitops_repo", "commit_sha", "env", "app", name="uq_releases_commit_app"
        ),
    )
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_releases_app", ["gitops_repo", "env", "app", "position"], unique=False
        )
        batch_op.create_index("ix_releases_env", ["gitops_repo", "env", "position"], unique=False)

    op.create_table(
        "release_index_heads",
        sa.Column("gitops_repo", sa.String(length=1024), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("gitops_repo"),
    )
    op.create_table(
        "gitops_commit_statuses",
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("status_desc", sa.Text(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("sha"),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gitops_repo", sa.String(length=1024), nullable=False),
        sa.Column("env", sa.String(length=256), nullable=False),
        sa.Column("app", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.String(length=256), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gitops_repo", "env", "app", name="uq_holds_app"),
    )
    op.create_table(
        "env_locks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gitops_repo", sa.String(length=1024), nullable=False),
        sa.Column("env", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("locked_by", sa.String(length=256), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("gitops_repo", "env", name="uq_env_locks_env"),
    )


def downgrade() -> None:
    op.drop_table("env_locks")
    op.drop_table("holds")
    op.drop_table("gitops_commit_statuses")
    op.drop_table("release_index_heads")
    with op.batch_alter_table("releases", schema=None) as batch_op:
        batch_op.drop_index("ix_releases_env")
        batch_op.drop_index("ix_releases_app")
    op.drop_table("releases")
    with op.batch_alter_table("gitops_writes", schema=None) as batch_op:
        batch_op.drop_column("forced")
        batch_op.drop_column("target_sha")
        batch_op.drop_column("kind")
