"""indexes on the references one deal's chain is followed by (the console's deal page)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    "projects": ("opportunity_ref",),
    "time_entries": ("project_ref",),
    "milestones": ("project_ref",),
    "invoices": ("opportunity_ref", "project_ref", "psa_invoice_ref", "twin_ref"),
    "payment_applications": ("invoice_ref",),
}


def upgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.create_index(op.f(f"ix_{table}_{column}"), table, [column], unique=False)


def downgrade() -> None:
    for table, columns in INDEXES.items():
        for column in columns:
            op.drop_index(op.f(f"ix_{table}_{column}"), table_name=table)
