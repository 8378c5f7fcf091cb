"""completeness findings of the collector (source against store, per stream)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store._types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "completeness_findings",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=True),
        sa.Column("checked_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("source_records", sa.BigInteger(), nullable=True),
        sa.Column("store_records", sa.BigInteger(), nullable=True),
        sa.Column("amount_column", sa.String(length=64), nullable=True),
        sa.Column("source_amounts", sa.Text(), nullable=True),
        sa.Column("store_amounts", sa.Text(), nullable=True),
        sa.Column("amounts_match", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_completeness_findings")),
    )
    with op.batch_alter_table("completeness_findings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_completeness_findings_stream", ["source_system", "stream", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("completeness_findings", schema=None) as batch_op:
        batch_op.drop_index("ix_completeness_findings_stream")
    op.drop_table("completeness_findings")
