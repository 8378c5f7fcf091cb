"""reconciler: runs, break register and transitions, KPI snapshots

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store._types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "break_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("break_id", sa.String(length=40), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=True),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_break_transitions")),
    )
    with op.batch_alter_table("break_transitions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_break_transitions_break_id"), ["break_id"], unique=False
        )

    op.create_table(
        "breaks",
        sa.Column("break_id", sa.String(length=40), nullable=False),
        sa.Column("break_type", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("remediation", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("records", sa.Text(), nullable=False),
        sa.Column("systems", sa.String(length=255), nullable=False),
        sa.Column("legal_entity", sa.String(length=32), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("amount_reporting_minor", sa.BigInteger(), nullable=True),
        sa.Column("reporting_currency", sa.String(length=3), nullable=True),
        sa.Column("since", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("first_detected_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_since", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("accepted_note", sa.Text(), nullable=True),
        sa.Column("accepted_until", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("accepted_by", sa.String(length=128), nullable=True),
        sa.Column("updated_run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("break_id", name=op.f("pk_breaks")),
    )
    with op.batch_alter_table("breaks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_breaks_status_break_type"), ["status", "break_type"], unique=False
        )

    op.create_table(
        "kpi_snapshots",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("as_of", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("kpi", sa.String(length=64), nullable=False),
        sa.Column("dimension", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("value_minor", sa.BigInteger(), nullable=True),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kpi_snapshots")),
    )
    with op.batch_alter_table("kpi_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_kpi_snapshots_kpi_as_of"), ["kpi", "as_of"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_kpi_snapshots_run_id"), ["run_id"], unique=False)

    op.create_table(
        "reconcile_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("as_of", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("breaks_detected", sa.BigInteger(), nullable=False),
        sa.Column("breaks_new", sa.BigInteger(), nullable=False),
        sa.Column("breaks_resolved", sa.BigInteger(), nullable=False),
        sa.Column("breaks_reopened", sa.BigInteger(), nullable=False),
        sa.Column("transitions", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconcile_runs")),
    )
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reconcile_runs_as_of"), ["as_of"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reconcile_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconcile_runs_as_of"))

    op.drop_table("reconcile_runs")
    with op.batch_alter_table("kpi_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_kpi_snapshots_run_id"))
        batch_op.drop_index(batch_op.f("ix_kpi_snapshots_kpi_as_of"))

    op.drop_table("kpi_snapshots")
    with op.batch_alter_table("breaks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_breaks_status_break_type"))

    op.drop_table("breaks")
    with op.batch_alter_table("break_transitions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_break_transitions_break_id"))

    op.drop_table("break_transitions")
