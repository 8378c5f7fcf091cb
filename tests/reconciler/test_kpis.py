"""KPIs against a plain, independent computation on one hand-built estate.

The estate has multi-currency deals and invoices (GBP at 1.25, CHF without a rate), a partial
payment, one payment split over two invoices and one invoice paid by two payments, a credit
note, an overdue invoice, leaked time and a leaked milestone. Every expected number below is
worked out by hand from the records, not by the code under test.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import polars as pl
import pytest

from reconciler import ReconcileConfig, countback_dso, reconcile
from tests.reconciler.estate import AS_OF, Estate, ago, day

CONFIG = ReconcileConfig(fx_rates={"GBP": Decimal("1.25")})


def quantile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), written out."""
    s = sorted(values)
    pos = (len(s) - 1) * p
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def estate() -> Estate:
    e = Estate()
    e.account("A1", legal_entity="US01")
    e.account("A2", legal_entity="UK01", currency="GBP")
    e.customer("C1", "A1")
    e.customer("C2", "A2", currency="GBP")
    e.deal("O1", account="A1", amount=100_000, won_days_ago=60)
    e.deal("O2", account="A2", amount=50_000, won_days_ago=20, currency="GBP")
    e.deal("O3", account="A1", amount=30_000, won_days_ago=100)
    e.deal("O4", account="A1", won_days_ago=None)
    e.deal("O5", account="A1", amount=10_000, won_days_ago=40)  # no project: stuck at "won"
    e.project("P1", "O1", budget=100_000, created_at_source=ago(55), activated_at=ago(50))
    e.project("P2", "O2", budget=50_000, currency="GBP", created_at_source=ago(15),
              activated_at=ago(12))  # fmt: skip
    e.project("P3", "O3", budget=30_000, created_at_source=ago(95), activated_at=None)
    e.time("T1", "P1", worked=day(45), approved_at=ago(40), invoice="K1")
    e.time("T2", "P1", worked=day(45), approved_at=ago(35), invoice="K1")
    e.time("T3", "P1", worked=day(45), approved_at=ago(35))  # leaked: 60 min x 100.00
    e.milestone("M1", "P2", currency="GBP", completed_at=ago(14), invoice="K2")
    e.milestone("M2", "P2", currency="GBP", amount=50_000, completed_at=ago(20))  # leaked
    e.psa_invoice("K1", "P1", total=40_000, issued=day(30))
    e.psa_invoice("K2", "P2", total=25_000, issued=day(10), currency="GBP")
    e.psa_invoice("K4", "P1", total=30_000, issued=day(50))
    e.erp_invoice("E1", psa="K1", total=40_000, issued=day(30), due_on=day(0),
                  amount_remaining_minor=10_000)  # fmt: skip
    e.erp_invoice("E2", psa="K2", total=25_000, issued=day(10), due_on=day(-20),
                  currency="GBP", customer="C2")  # fmt: skip
    e.erp_invoice("E3", opportunity_ref="O3", total=30_000, issued=day(95), due_on=day(65),
                  status="paid", amount_remaining_minor=0)  # fmt: skip
    e.erp_invoice("E4", psa="K4", project_ref="P1", total=20_000, issued=day(50), due_on=day(20))
    e.erp_invoice("E5", opportunity_ref="O1", total=-5_000, issued=day(20), due_on=day(20))
    e.erp_invoice("E6", total=1_000, issued=day(5), due_on=day(-25), currency="CHF")
    e.payment("PAY1", amount=35_000, received_days_ago=60)
    e.apply("AP1", "PAY1", "E1", 30_000, applied_days_ago=10)
    e.apply("AP2", "PAY1", "E3", 5_000, applied_days_ago=60)
    e.payment("PAY2", amount=25_000, received_days_ago=70)
    e.apply("AP3", "PAY2", "E3", 25_000, applied_days_ago=70)
    for sid in ("E1", "E2", "E3", "E4", "E5", "E6"):
        e.billing_invoice(f"S{sid}", erp=sid, status=None)
        row = e.rows["invoices"][-1]
        erp = next(r for r in e.rows["invoices"] if r["source_id"] == sid)
        row.update(status=erp["status"], currency=erp["currency"], total_minor=erp["total_minor"])
    return e


@pytest.fixture(scope="module")
def kpis() -> dict[tuple[str, str], float | int | None]:
    result = reconcile(estate().canonical(), AS_OF, CONFIG)
    return {
        (r["kpi"], r["dimension"]): r["value_minor"] if r["unit"] == "minor" else r["value"]
        for r in result.kpis.to_dicts()
    }


def test_project_setup_cycle_time_by_legal_entity(kpis: dict) -> None:  # type: ignore[type-arg]
    # P1: won 60 days ago, active 50 days ago -> 10; P2: 20 -> 12 -> 8; P3 never active.
    assert kpis["project_setup_cycle_time_p50_days", "all"] == pytest.approx(quantile([10, 8], 0.5))
    assert kpis["project_setup_cycle_time_p90_days", "all"] == pytest.approx(quantile([10, 8], 0.9))
    assert kpis["project_setup_cycle_time_p50_days", "legal_entity=US01"] == pytest.approx(10)
    assert kpis["project_setup_cycle_time_p90_days", "legal_entity=UK01"] == pytest.approx(8)


def test_billing_lags(kpis: dict) -> None:  # type: ignore[type-arg]
    # K1 issued 30 days before the as-of date, i.e. 30.5 days before 12:00 on it.
    time_lags = [40 - 30.5, 35 - 30.5]
    assert kpis["billing_lag_time_p50_days", "all"] == pytest.approx(quantile(time_lags, 0.5))
    assert kpis["billing_lag_time_p90_days", "all"] == pytest.approx(quantile(time_lags, 0.9))
    assert kpis["billing_lag_milestone_p50_days", "all"] == pytest.approx(14 - 10.5)


def test_time_to_cash_counts_fully_paid_invoices_only(kpis: dict) -> None:  # type: ignore[type-arg]
    # E3: issued 95 days back (00:00), paid by two payments, the last 60 days back (12:00).
    assert kpis["time_to_cash_p50_days", "all"] == pytest.approx(95.5 - 60)


AR = {"E1": 10_000, "E2": 25_000 * 1.25, "E4": 20_000, "E5": -5_000}  # E6: CHF, no rate
SALES_90D = 40_000 + 25_000 * 1.25 + 20_000 - 5_000  # E3 was issued 95 days back


def test_receivables_dso_and_ageing(kpis: dict) -> None:  # type: ignore[type-arg]
    ar = sum(AR.values())
    current = AR["E1"] + AR["E2"]  # due today or later
    assert kpis["ar_total_minor", "all"] == ar == 56_250
    assert kpis["dso_days", "all"] == pytest.approx(ar / (SALES_90D / 90))
    assert kpis["best_possible_dso_days", "all"] == pytest.approx(current / (SALES_90D / 90))
    # June (30 days, as-of June 30) sold E2 + E5 = 26,250: consumed whole; May sold 60,000
    # (E1, E4) and covers the remaining 30,000 with half its 31 days.
    assert kpis["dso_countback_days", "all"] == pytest.approx(30 + 31 * 30_000 / 60_000)
    assert kpis["ar_ageing_minor", "bucket=current"] == current
    assert kpis["ar_ageing_minor", "bucket=1-30"] == AR["E4"] + AR["E5"]
    assert kpis["ar_ageing_minor", "bucket=31-60"] == 0
    assert kpis["fx_missing_amounts_count", "all"] == 1


def test_leakage_accuracy_bookings_backlog_and_stuck(kpis: dict) -> None:  # type: ignore[type-arg]
    assert kpis["revenue_leakage_minor", "all"] == 10_000 + 50_000 * 1.25
    assert kpis["revenue_leakage_minor", "type=approved_time_not_invoiced"] == 10_000
    # five ERP invoices issued in the window; E4 disagrees with its PSA invoice K4
    assert kpis["invoice_accuracy_ratio", "all"] == pytest.approx(1 - 1 / 5)
    bookings = 100_000 + 50_000 * 1.25 + 10_000  # O1, O2, O5; O3 was won 100 days back
    assert kpis["bookings_minor", "all"] == bookings
    assert kpis["bookings_to_billings_ratio", "all"] == pytest.approx(bookings / SALES_90D)
    # O1: 100,000 - (E1 40,000 + E4 20,000 - E5 5,000); O2: (50,000 - 25,000) GBP; O3 billed; O5
    assert kpis["backlog_minor", "all"] == 45_000 + 25_000 * 1.25 + 10_000
    assert kpis["stuck_transactions_count", "stage=won"] == 1
    assert kpis["stuck_transactions_count", "stage=invoiced"] == 0


def test_chains_one_row_per_deal_with_money_and_stage() -> None:
    chains = reconcile(estate().canonical(), AS_OF, CONFIG).chains
    rows = {r["opportunity_id"]: r for r in chains.to_dicts()}
    assert set(rows) == {"O1", "O2", "O3", "O4", "O5"}
    assert {k: r["stage"] for k, r in rows.items()} == {
        "O1": "invoiced", "O2": "invoiced", "O3": "collected", "O4": "open", "O5": "won",
    }  # fmt: skip
    o1 = rows["O1"]
    assert (o1["booked_minor"], o1["billed_minor"], o1["collected_minor"]) == (
        100_000,
        55_000,
        30_000,
    )
    assert o1["first_invoiced_at"] == AS_OF.replace(hour=0) - timedelta(days=50)
    assert rows["O3"]["stage_since"] == ago(60) and rows["O3"]["collected_minor"] == 30_000
    assert rows["O5"]["stuck"] and rows["O5"]["stage_age_days"] == pytest.approx(40)


@pytest.mark.parametrize(
    ("ar", "months", "expected"),
    [
        (0, [(30, 100)], 0.0),
        (50, [(30, 100)], 15.0),
        (150, [(30, 100), (31, 100)], 30 + 15.5),
        (150, [(30, 0), (31, 300)], 30 + 15.5),  # a month without sales adds its days
        (500, [(30, 100), (31, 100)], 61.0),  # AR older than the history: all of it
    ],
)
def test_countback_dso_truth_table(ar: int, months: list[tuple[int, int]], expected: float) -> None:
    assert countback_dso(ar, months) == pytest.approx(expected)


def test_kpis_on_an_empty_estate_are_null_not_errors() -> None:
    kpis = reconcile(Estate().canonical(), AS_OF, CONFIG).kpis
    assert kpis.filter(pl.col("kpi") == "dso_days")["value"].to_list() == [None]
    assert kpis.filter(pl.col("kpi") == "ar_total_minor")["value_minor"].to_list() == [0]


def test_duplicate_keys_never_multiply_amounts() -> None:
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    e.deal("O1", amount=100_000)
    e.project("P1", "O1")
    e.psa_invoice("K1", "P1", total=40_000, issued=day(10))
    e.erp_invoice("E1", psa="K1", total=40_000, issued=day(10), due_on=day(-20))
    e.billing_invoice("S1", erp="E1", total=40_000)
    e.billing_invoice("S2", erp="E1", total=40_000)  # a second billing twin of E1
    result = reconcile(e.canonical(), AS_OF, CONFIG)
    kpis = {(r["kpi"], r["dimension"]): r for r in result.kpis.to_dicts()}
    assert kpis["ar_total_minor", "all"]["value_minor"] == 40_000
    assert kpis["backlog_minor", "all"]["value_minor"] == 60_000
    chain = result.chains.filter(pl.col("opportunity_id") == "O1").row(0, named=True)
    assert (chain["invoices"], chain["billed_minor"]) == (1, 40_000)
    assert result.breaks.filter(pl.col("break_type") == "duplicate_key")["key"].to_list() == [
        "erp_billing_invoices.right:stripe:E1"
    ]
