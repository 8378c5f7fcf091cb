"""resync: requests, approvals, attempts, append-only audit, circuit state

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import store._types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> store._types.UTCDateTime:
    return store._types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "resync_approvals",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("decided_at", _utc(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resync_approvals")),
    )
    with op.batch_alter_table("resync_approvals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resync_approvals_request_id"), ["request_id"], unique=False
        )

    op.create_table(
        "resync_attempts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=128), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resync_attempts")),
    )
    with op.batch_alter_table("resync_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_resync_attempts_request_id"), ["request_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_resync_attempts_system_started_at"),
            ["system", "started_at"],
            unique=False,
        )

    op.create_table(
        "resync_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.Column("break_id", sa.String(length=40), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("call_id", sa.String(length=40), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resync_audit")),
    )
    with op.batch_alter_table("resync_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resync_audit_break_id"), ["break_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resync_audit_request_id"), ["request_id"], unique=False
        )

    op.create_table(
        "resync_circuits",
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", _utc(), nullable=True),
        sa.Column("probe_until", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("system", name=op.f("pk_resync_circuits")),
    )

    op.create_table(
        "resync_requests",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("break_id", sa.String(length=40), nullable=False),
        sa.Column("break_type", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("active_key", sa.String(length=128), nullable=True),
        sa.Column("idempotency_key", sa.String(length=80), nullable=False),
        sa.Column("requested_by", sa.String(length=128), nullable=False),
        sa.Column("requested_at", _utc(), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=True),
        sa.Column("approved_at", _utc(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _utc(), nullable=True),
        sa.Column("claimed_by", sa.String(length=128), nullable=True),
        sa.Column("lease_until", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("result_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resync_requests")),
        sa.UniqueConstraint("active_key", name=op.f("uq_resync_requests_active_key")),
    )
    with op.batch_alter_table("resync_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resync_requests_break_id"), ["break_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_resync_requests_status_system"), ["status", "system"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("resync_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resync_requests_status_system"))
        batch_op.drop_index(batch_op.f("ix_resync_requests_break_id"))
    op.drop_table("resync_requests")
    op.drop_table("resync_circuits")
    with op.batch_alter_table("resync_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resync_audit_request_id"))
        batch_op.drop_index(batch_op.f("ix_resync_audit_break_id"))
    op.drop_table("resync_audit")
    with op.batch_alter_table("resync_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resync_attempts_system_started_at"))
        batch_op.drop_index(batch_op.f("ix_resync_attempts_request_id"))
    op.drop_table("resync_attempts")
    with op.batch_alter_table("resync_approvals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resync_approvals_request_id"))
    op.drop_table("resync_approvals")
