"""Links: the side indicator, cardinality checks and duplicate keys, and suggested links."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest

from reconciler import BOTH, LEFT_ONLY, RIGHT_ONLY, SIDE, Cardinality, link, suggest_links
from tests.reconciler.estate import AS_OF


def _frame(ids: list[str], keys: list[str | None], key: str) -> pl.LazyFrame:
    return pl.LazyFrame(
        {"source_system": ["s"] * len(ids), "source_id": ids, key: keys},
        schema={"source_system": pl.String, "source_id": pl.String, key: pl.String},
    )


@pytest.mark.parametrize(
    ("cardinality", "rows", "sides", "duplicate_ids"),
    [
        # left L1..L4 keyed a, b, b, null; right R1..R4 keyed b, c, null, c
        (Cardinality.MANY_TO_MANY, 7, {BOTH: 2, LEFT_ONLY: 2, RIGHT_ONLY: 3}, set()),
        # the "one" side keeps its lowest id per key, the others are reported, never joined
        (Cardinality.ONE_TO_MANY, 6, {BOTH: 1, LEFT_ONLY: 2, RIGHT_ONLY: 3}, {"L2", "L3"}),
        (Cardinality.MANY_TO_ONE, 6, {BOTH: 2, LEFT_ONLY: 2, RIGHT_ONLY: 2}, {"R2", "R4"}),
        (
            Cardinality.ONE_TO_ONE,
            5,
            {BOTH: 1, LEFT_ONLY: 2, RIGHT_ONLY: 2},
            {"L2", "L3", "R2", "R4"},
        ),
    ],
)
def test_link_sides_and_duplicates_truth_table(
    cardinality: Cardinality, rows: int, sides: dict[str, int], duplicate_ids: set[str]
) -> None:
    left = _frame(["L1", "L2", "L3", "L4"], ["a", "b", "b", None], "lk")
    right = _frame(["R1", "R2", "R3", "R4"], ["b", "c", None, "c"], "rk")

    result = link("t", left, right, left_on="lk", right_on="rk", cardinality=cardinality)
    frame = result.frame.collect()
    dups = result.duplicates.collect()

    assert frame.height == rows
    assert dict(frame.group_by(SIDE).len().iter_rows()) == sides
    assert set(dups["source_id"]) == duplicate_ids
    # a null key never matches anything, on either side
    assert frame.filter(pl.col("source_id") == "L4")[SIDE].to_list() == [LEFT_ONLY]
    assert frame.filter(pl.col("source_id_right") == "R3")[SIDE].to_list() == [RIGHT_ONLY]


def test_link_keeps_the_lowest_id_of_a_duplicated_key() -> None:
    left = _frame(["L9", "L1"], ["k", "k"], "lk")
    right = _frame(["R1"], ["k"], "rk")
    result = link("t", left, right, left_on="lk", right_on="rk", cardinality=Cardinality.ONE_TO_ONE)
    both = result.frame.filter(pl.col(SIDE) == BOTH).collect()
    assert both["source_id"].to_list() == ["L1"]
    assert result.duplicates.collect()["copies"].to_list() == [2, 2]


def _candidates(
    ids: list[str], accounts: list[str], amounts: list[int], days: list[int]
) -> pl.LazyFrame:
    return pl.LazyFrame(
        {
            "source_id": ids,
            "account": accounts,
            "amount": amounts,
            "at": [AS_OF - timedelta(days=d) for d in days],
        }
    )


def test_suggestions_rank_filter_and_flag_ties_as_ambiguous() -> None:
    left = _candidates(["P1", "P2", "P3"], ["A", "A", "B"], [1000, 500, 700], [10, 10, 10])
    right = _candidates(
        ["O1", "O2", "O3", "O4", "O5"],
        ["A", "A", "A", "B", "C"],
        [1000, 1010, 500, 9999, 700],  # O4: amount too far; O5: other account
        [10, 12, 10, 10, 10],
    )
    got = suggest_links(
        "t", left, right, account=("account", "account"), amount=("amount", "amount"),
        time=("at", "at"), amount_ratio=Decimal("0.02"), window=timedelta(days=30),
    ).collect()  # fmt: skip
    pairs = {(r["left_id"], r["right_id"]): (r["rank"], r["ambiguous"]) for r in got.to_dicts()}
    assert pairs == {("P1", "O1"): (1, False), ("P1", "O2"): (2, False), ("P2", "O3"): (1, False)}


def test_suggestions_tie_and_shared_best_are_ambiguous() -> None:
    left = _candidates(["P1", "P2"], ["A", "A"], [1000, 1000], [10, 10])
    right = _candidates(["O1", "O2"], ["A", "A"], [1000, 1000], [10, 10])
    got = suggest_links(
        "t", left, right, account=("account", "account"), amount=("amount", "amount"),
        time=("at", "at"), amount_ratio=Decimal("0"), window=timedelta(days=1),
    ).collect()  # fmt: skip
    assert got.height == 4 and got["ambiguous"].all()
