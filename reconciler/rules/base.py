"""The break-rule interface: a small class per break type that finds its breaks as a polars frame.

A rule only finds; the reconcile service decides what to do with the findings (ids, FX, SLA,
lifecycle). ``find`` returns a lazy frame with FINDING_SCHEMA's columns: ``key`` names the
problem's primary record (``entity:system:id``; with the break type it makes the stable id),
``records`` is a JSON list of every record involved, ``since`` is when the condition began.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import polars as pl

from reconciler._context import RuleContext

FINDING_SCHEMA: dict[str, pl.DataType] = {
    "key": pl.String(),
    "records": pl.String(),
    "systems": pl.String(),
    "legal_entity": pl.String(),
    "amount_minor": pl.Int64(),
    "currency": pl.String(),
    "since": pl.Datetime("us", "UTC"),
    "detail": pl.String(),
}

SEVERITIES = ("low", "medium", "high", "critical")
REMEDIATIONS = ("auto", "approval", "manual")

Record = tuple[pl.Expr, str, pl.Expr]
"""(source system, canonical entity, source id) of one record involved in a break."""


def record(system: str | pl.Expr, entity: str, source_id: str | pl.Expr) -> Record:
    s = pl.col(system) if isinstance(system, str) else system
    i = pl.col(source_id) if isinstance(source_id, str) else source_id
    return (s, entity, i)


def _escape(expr: pl.Expr) -> pl.Expr:
    return expr.str.replace_all("\\", "\\\\", literal=True).str.replace_all(
        '"', '\\"', literal=True
    )


def finding(
    *records: Record,
    legal_entity: pl.Expr,
    amount: pl.Expr,
    currency: pl.Expr,
    since: pl.Expr,
    detail: pl.Expr,
    suggested: tuple[int, ...] = (),
) -> list[pl.Expr]:
    """The finding columns; the first record is the primary one that names the problem.

    Records at the ``suggested`` positions are candidates from a suggested link, not from a
    reference: their JSON says ``"suggested":true``.
    """
    system, entity, source_id = records[0]
    key = pl.concat_str(pl.lit(f"{entity}:"), system, pl.lit(":"), source_id)
    items = [
        pl.when(i.is_not_null()).then(
            pl.concat_str(
                pl.lit('{"system":"'), _escape(s), pl.lit(f'","entity":"{e}","id":"'),
                _escape(i), pl.lit('","suggested":true}' if n in suggested else '"}'),
            )
        )
        for n, (s, e, i) in enumerate(records)
    ]  # fmt: skip
    systems = [pl.when(i.is_not_null()).then(s) for s, _, i in records]
    return [
        key.alias("key"),
        pl.concat_str(
            pl.lit("["), pl.concat_list(items).list.drop_nulls().list.join(","), pl.lit("]")
        ).alias("records"),
        pl.concat_list(systems)
        .list.drop_nulls()
        .list.unique()
        .list.sort()
        .list.join(",")
        .alias("systems"),
        legal_entity.alias("legal_entity"),
        amount.cast(pl.Int64).alias("amount_minor"),
        currency.alias("currency"),
        since.alias("since"),
        detail.alias("detail"),
    ]


class BreakRule(ABC):
    """Finds every break of one type in a run's data."""

    break_type: ClassVar[str]
    severity: ClassVar[str]
    remediation: ClassVar[str]
    """How a break of this type is repaired: an automatic resync, one needing approval, or manual."""
    reads: ClassVar[tuple[str, ...]] = ()
    """The context's shared frames and links this rule reads (``RuleContext`` attribute names).

    The engine lets a frame that only rules read go once its last reader has run, so a rule
    must name each one it reads; one it reads unnamed may already be gone and is then computed
    again (still correct, but the run's tests count every frame computed twice).
    """

    @abstractmethod
    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        """The findings (FINDING_SCHEMA columns), one row per distinct problem."""

    def findings(self, ctx: RuleContext) -> pl.LazyFrame:
        """``find``'s rows conformed to the schema, with the rule's type, severity, remediation."""
        return (
            self.find(ctx)
            .select([pl.col(c).cast(d) for c, d in FINDING_SCHEMA.items()])
            .unique("key", keep="first", maintain_order=True)
            .with_columns(
                pl.lit(self.break_type).alias("break_type"),
                pl.lit(self.severity).alias("severity"),
                pl.lit(self.remediation).alias("remediation"),
            )
        )
