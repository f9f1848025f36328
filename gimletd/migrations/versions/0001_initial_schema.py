"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.String(length=512), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("accepted_at", sa.Float(), nullable=False),
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("branch", sa.String(length=512), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("source_branch", sa.String(length=512), nullable=False),
        sa.Column("target_branch", sa.String(length=512), nullable=False),
        sa.Column("tag", sa.String(length=512), nullable=False),
        sa.Column("sha", sa.String(length=128), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_accepted_at"), ["accepted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_branch"), ["branch"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_created"), ["created"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_repository"), ["repository"], unique=False)
        batch_op.create_index(batch_op.f("ix_artifacts_sha"), ["sha"], unique=False)

    op.create_table(
        "events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_desc", sa.Text(), nullable=False),
        sa.Column("repository", sa.String(length=512), nullable=False),
        sa.Column("branch", sa.String(length=512), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("source_branch", sa.String(length=512), nullable=False),
        sa.Column("target_branch", sa.String(length=512), nullable=False),
        sa.Column("tag", sa.String(length=512), nullable=False),
        sa.Column("sha", sa.String(length=128), nullable=False),
        sa.Column("artifact_id", sa.String(length=512), nullable=False),
        sa.Column("triggered_by", sa.String(length=256), nullable=False),
        sa.Column("planned", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("touched_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_artifact_id"), ["artifact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_events_status"), ["status"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("login", sa.String(length=256), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("login"),
        sa.UniqueConstraint("token_hash"),
    )
    op.create_table(
        "gitops_writes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("gitops_repo", sa.String(length=1024), nullable=False),
        sa.Column("env", sa.String(length=256), nullable=False),
        sa.Column("app", sa.String(length=256), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_desc", sa.Text(), nullable=False),
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("release", sa.Text(), nullable=False),
        sa.Column("commit_sha", sa.String(length=64), nullable=False),
        sa.Column("base_sha", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.Float(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_seq"],
            ["events.seq"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "env", "app", name="uq_gitops_writes_event_env_app"),
    )
    with op.batch_alter_table("gitops_writes", schema=None) as batch_op:
        batch_op.create_index(
            "ix_gitops_writes_app", ["gitops_repo", "env", "app", "status"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_gitops_writes_event_id"), ["event_id"], unique=False)
        batch_op.create_index(
            "ix_gitops_writes_queue", ["gitops_repo", "env", "status"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("gitops_writes", schema=None) as batch_op:
        batch_op.drop_index("ix_gitops_writes_queue")
        batch_op.drop_index(batch_op.f("ix_gitops_writes_event_id"))
        batch_op.drop_index("ix_gitops_writes_app")

    op.drop_table("gitops_writes")
    op.drop_table("users")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_status"))
        batch_op.drop_index(batch_op.f("ix_events_artifact_id"))

    op.drop_table("events")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_sha"))
        batch_op.drop_index(batch_op.f("ix_artifacts_repository"))
        batch_op.drop_index(batch_op.f("ix_artifacts_created"))
        batch_op.drop_index(batch_op.f("ix_artifacts_branch"))
        batch_op.drop_index(batch_op.f("ix_artifacts_accepted_at"))

    op.drop_table("artifacts")
