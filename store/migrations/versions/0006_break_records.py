"""break_records: the records each break names, so the console finds a deal's breaks by index

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import polars as pl
import sqlalchemy as sa
from alembic import op

from store._reconcile import break_record_rows

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BATCH = 5_000  # breaks read per round trip while filling the table from the register


def upgrade() -> None:
    op.create_table(
        "break_records",
        sa.Column("break_id", sa.String(length=40), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("source_system", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "break_id", "entity", "source_system", "source_id", name=op.f("pk_break_records")
        ),
    )
    op.create_index(op.f("ix_break_records_source_id"), "break_records", ["source_id"])
    _fill_from_register()


def _fill_from_register() -> None:
    conn = op.get_bind()
    table = sa.table(
        "break_records",
        sa.column("break_id"), sa.column("entity"), sa.column("source_system"),
        sa.column("source_id"),
    )  # fmt: skip
    after = ""
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT break_id, records FROM breaks WHERE break_id > :after "
                "ORDER BY break_id LIMIT :n"
            ),
            {"after": after, "n": _BATCH},
        ).all()
        if not rows:
            return
        frame = pl.DataFrame(
            [tuple(r) for r in rows],
            schema={"break_id": pl.String(), "records": pl.String()},
            orient="row",
        )
        pairs = break_record_rows(frame)
        if pairs.height:
            conn.execute(sa.insert(table), pairs.to_dicts())
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_index(op.f("ix_break_records_source_id"), table_name="break_records")
    op.drop_table("break_records")
