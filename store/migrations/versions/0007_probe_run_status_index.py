"""an index on probe runs by system, status and finish time (the exporter's source health)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_probe_runs_source_system_status_finished_at"),
        "probe_runs",
        ["source_system", "status", "finished_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_probe_runs_source_system_status_finished_at"), table_name="probe_runs")
