"""roles and audit: users get a role, an environment allow-list and token expiry; the audit trail

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="user")
        )
        batch_op.add_column(sa.Column("envs", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(
            sa.Column("token_issued", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
    op.execute("UPDATE users SET role = 'admin' WHERE admin")
    op.execute("UPDATE users SET token_issued = created")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("admin")

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("login", sa.String(length=256), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("target", sa.String(length=1024), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_action", "audit", ["action"])
    op.create_index("ix_audit_login", "audit", ["login", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_login", table_name="audit")
    op.drop_index("ix_audit_action", table_name="audit")
    op.drop_index("ix_audit_at", table_name="audit")
    op.drop_table("audit")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE users SET admin = (role = 'admin')")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("token_issued")
        batch_op.drop_column("envs")
        batch_op.drop_column("role")
