"""an index on when each canonical version was written (the reconciler's reads of the changes)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLES = (
    "accounts", "opportunities", "projects", "time_entries", "milestones", "invoices",
    "payments", "payment_applications",
)  # fmt: skip


def upgrade() -> None:
    for table in TABLES:
        op.create_index(op.f(f"ix_{table}_last_seen_at"), table, ["last_seen_at"], unique=False)


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(op.f(f"ix_{table}_last_seen_at"), table_name=table)
