"""Trust breaks: a source whose probe has not succeeded recently, and duplicate link keys."""

from __future__ import annotations

from dataclasses import astuple

import polars as pl

from reconciler._context import RuleContext
from reconciler.rules.base import BreakRule, finding, record


class StaleSource(BreakRule):
    """A system in the chain whose last successful probe run is older than ``stale_after``.

    Systems never probed at all are not reported (nothing says they are meant to be); a system
    whose runs all failed is.
    """

    break_type = "stale_source"
    severity = "critical"
    remediation = "auto"

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        after = ctx.config.stale_after
        last_good = pl.col("last_success_at")
        return ctx.data.probe_health.filter(
            pl.col("source_system").is_in(list(astuple(ctx.systems)))
            & (last_good.is_null() | (last_good < ctx.as_of - after))
        ).select(
            finding(
                record("source_system", "sources", "source_system"),
                legal_entity=pl.lit(None, pl.String),
                amount=pl.lit(None, pl.Int64),
                currency=pl.lit(None, pl.String),
                since=pl.coalesce(last_good, pl.col("last_attempt_at")) + after,
                detail=pl.concat_str(
                    pl.lit("No successful probe run since "),
                    last_good.cast(pl.String).fill_null("ever"),
                ),
            )
        )


class DuplicateKey(BreakRule):
    """A link that must be unique met one key on several records (data quality).

    E.g. two ERP invoices naming the same PSA invoice, or two billing invoices naming one ERP
    invoice. The link used the lowest id and ignored the others; this break lists them all.
    """

    break_type = "duplicate_key"
    severity = "low"
    remediation = "manual"
    reads = ("duplicates",)

    def find(self, ctx: RuleContext) -> pl.LazyFrame:
        item = pl.concat_str(
            pl.lit('{"system":"'), pl.col("source_system"), pl.lit('","entity":"'),
            pl.col("_entity"), pl.lit('","id":"'), pl.col("source_id"), pl.lit('"}'),
        )  # fmt: skip
        return (
            ctx.duplicates.lazy()
            .with_columns(pl.concat_str("link", pl.lit("."), "side").alias("_entity"))
            .sort("source_id")
            .group_by("link", "side", "key")
            .agg(
                pl.col("source_system").first(),
                pl.col("_entity").first(),
                item.alias("_items"),
                pl.col("source_id").alias("_ids"),
            )
            .select(
                pl.concat_str(
                    pl.col("_entity"),
                    pl.lit(":"),
                    pl.col("source_system"),
                    pl.lit(":"),
                    pl.col("key"),
                ).alias("key"),
                pl.concat_str(pl.lit("["), pl.col("_items").list.join(","), pl.lit("]")).alias(
                    "records"
                ),
                pl.col("source_system").alias("systems"),
                pl.lit(None, pl.String).alias("legal_entity"),
                pl.lit(None, pl.Int64).alias("amount_minor"),
                pl.lit(None, pl.String).alias("currency"),
                pl.lit(None, pl.Datetime("us", "UTC")).alias("since"),
                pl.concat_str(
                    pl.lit("Key "),
                    pl.col("key"),
                    pl.lit(" shared by "),
                    pl.col("_ids").list.join(", "),
                ).alias("detail"),
            )
        )
