"""canonical schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store._types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("crm_account_id", sa.String(length=64), nullable=True),
        sa.Column("erp_customer_id", sa.String(length=64), nullable=True),
        sa.Column("legal_entity", sa.String(length=32), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_accounts")),
    )
    op.create_table(
        "invoices",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("customer_ref", sa.String(length=64), nullable=True),
        sa.Column("project_ref", sa.String(length=64), nullable=True),
        sa.Column("opportunity_ref", sa.String(length=64), nullable=True),
        sa.Column("psa_invoice_ref", sa.String(length=64), nullable=True),
        sa.Column("twin_ref", sa.String(length=64), nullable=True),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=True),
        sa.Column("tax_minor", sa.BigInteger(), nullable=True),
        sa.Column("total_minor", sa.BigInteger(), nullable=True),
        sa.Column("amount_remaining_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_invoices")),
    )
    op.create_table(
        "milestones",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("project_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("completed_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("invoice_ref", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_milestones")),
    )
    op.create_table(
        "opportunities",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("account_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("stage", sa.String(length=64), nullable=False),
        sa.Column("is_closed", sa.Boolean(), nullable=False),
        sa.Column("is_won", sa.Boolean(), nullable=False),
        sa.Column("won_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("close_date", sa.Date(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billing_model", sa.String(length=32), nullable=True),
        sa.Column("legal_entity", sa.String(length=32), nullable=True),
        sa.Column("created_at_source", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_opportunities")),
    )
    op.create_table(
        "payment_applications",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=True),
        sa.Column("invoice_ref", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("applied_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_payment_applications")),
    )
    op.create_table(
        "payments",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("customer_ref", sa.String(length=64), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("unapplied_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("received_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_payments")),
    )
    op.create_table(
        "probe_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=True),
        sa.Column("started_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("records_read", sa.BigInteger(), nullable=False),
        sa.Column("records_written", sa.BigInteger(), nullable=False),
        sa.Column("records_unchanged", sa.BigInteger(), nullable=False),
        sa.Column("stale_versions", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_probe_runs")),
    )
    with op.batch_alter_table("probe_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_probe_runs_source_system_started_at"),
            ["source_system", "started_at"],
            unique=False,
        )

    op.create_table(
        "projects",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("opportunity_ref", sa.String(length=64), nullable=True),
        sa.Column("account_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("budget_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billing_model", sa.String(length=32), nullable=True),
        sa.Column("created_at_source", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("activated_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_projects")),
    )
    op.create_table(
        "quarantine",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw_payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("probe_run_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_quarantine_source_system_stream"),
            ["source_system", "stream"],
            unique=False,
        )

    op.create_table(
        "source_cursors",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("cursor", sa.Text(), nullable=False),
        sa.Column("updated_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source_system", "stream", name=op.f("pk_source_cursors")),
    )
    op.create_table(
        "state_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("observed_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_state_changes")),
    )
    with op.batch_alter_table("state_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_state_changes_entity_source_system_source_id"),
            ["entity", "source_system", "source_id"],
            unique=False,
        )

    op.create_table(
        "time_entries",
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("source_modified_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", store._types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("is_deleted", sa.Boolean(), nullable=False),
        sa.Column("project_ref", sa.String(length=64), nullable=True),
        sa.Column("entry_date", sa.Date(), nullable=False),
        sa.Column("minutes", sa.BigInteger(), nullable=False),
        sa.Column("billable", sa.Boolean(), nullable=False),
        sa.Column("rate_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("approved_at", store._types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("invoice_ref", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("source_system", "source_id", name=op.f("pk_time_entries")),
    )


def downgrade() -> None:
    op.drop_table("time_entries")
    with op.batch_alter_table("state_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_state_changes_entity_source_system_source_id"))

    op.drop_table("state_changes")
    op.drop_table("source_cursors")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_source_system_stream"))

    op.drop_table("quarantine")
    op.drop_table("projects")
    with op.batch_alter_table("probe_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_probe_runs_source_system_started_at"))

    op.drop_table("probe_runs")
    op.drop_table("payments")
    op.drop_table("payment_applications")
    op.drop_table("opportunities")
    op.drop_table("milestones")
    op.drop_table("invoices")
    op.drop_table("accounts")
