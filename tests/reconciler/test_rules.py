"""Break rules, one truth table each, on hand-built canonical records (RULES is the registry)."""

from __future__ import annotations

from datetime import timedelta

import orjson
import polars as pl
import pytest

from reconciler import BREAK_TYPES, RULES, Calendar, ReconcileConfig, reconcile
from reconciler._context import RuleContext
from reconciler._engine import find_breaks, reconcile_in
from tests.reconciler.estate import AS_OF, Estate, ago, day


def found(
    estate: Estate, break_type: str, config: ReconcileConfig | None = None
) -> dict[str, int | None]:
    """{primary record key: amount at risk} of one break type."""
    result = reconcile(estate.canonical(), AS_OF, config, rules={break_type: RULES[break_type]})
    return dict(result.breaks.select("key", "amount_minor").iter_rows())


def base() -> Estate:
    e = Estate()
    e.account("A1")
    e.customer("C1", "A1")
    return e


def test_every_break_type_has_one_registered_rule() -> None:
    assert tuple(RULES) == BREAK_TYPES
    assert all(rule.break_type == name for name, rule in RULES.items())


def test_won_deal_without_project() -> None:
    e = base()
    e.deal("O-old", won_days_ago=30)  # break: won 30 days ago, no project
    e.deal("O-fresh", won_days_ago=13)  # within the 14-day grace
    e.deal("O-linked", won_days_ago=30)
    e.project("P1", "O-linked")
    e.deal("O-open", won_days_ago=None)  # not won
    e.deal("O-null", won_days_ago=None, is_won=True)  # won flag without a time: not measurable
    assert found(e, "won_deal_without_project") == {"opportunities:salesforce:O-old": 100_000}


def test_project_without_deal() -> None:
    e = base()
    e.deal("O1")
    e.project("P-ok", "O1")
    e.project("P-ghost", "O-missing", budget=7)
    e.project("P-null", None, budget=8)
    e.add("projects", "netsuite", "J1", opportunity_ref=None, status="x")  # ERP jobs: not PSA
    assert found(e, "project_without_deal") == {
        "projects:kantata:P-ghost": 7,
        "projects:kantata:P-null": 8,
    }


def test_project_value_mismatch_sums_a_deals_projects_in_its_currency() -> None:
    e = base()
    e.deal("O-equal", amount=100)
    e.project("P1", "O-equal", budget=60)
    e.project("P2", "O-equal", budget=40)
    e.deal("O-off", amount=100)
    e.project("P3", "O-off", budget=130)
    e.deal("O-eur", amount=100)
    e.project("P4", "O-eur", budget=999, currency="EUR")  # a currency break, not a value one
    e.deal("O-nobudget", amount=100)
    e.project("P5", "O-nobudget", budget=None)  # unknown budget sums to 0: a mismatch of 100
    assert found(e, "project_value_mismatch") == {
        "opportunities:salesforce:O-off": 30,
        "opportunities:salesforce:O-nobudget": 100,
    }
    tolerant = ReconcileConfig(amount_tolerance_minor=30)
    assert found(e, "project_value_mismatch", tolerant) == {
        "opportunities:salesforce:O-nobudget": 100
    }


def test_approved_time_not_invoiced_after_the_billing_run() -> None:
    e = base()
    e.deal("O1")
    e.project("P1", "O1")
    # May's time is due on the June run (June 11, 10:00 UTC); AS_OF is June 30.
    e.time("T-leak", "P1", worked=day(45), minutes=90, rate=10_001, approved_at=ago(44))
    e.time("T-billed", "P1", worked=day(45), approved_at=ago(44), invoice="K1")
    e.time("T-unapproved", "P1", worked=day(45))
    e.time("T-nonbillable", "P1", worked=day(45), approved_at=ago(44), billable=False)
    e.time("T-june", "P1", worked=day(5), approved_at=ago(4))  # its run is in July
    e.time("T-status", "P1", worked=day(45), status="approved")  # approved without a time
    assert found(e, "approved_time_not_invoiced") == {
        "time_entries:kantata:T-leak": 90 * 10_001 // 60,
        "time_entries:kantata:T-status": 10_000,
    }


def test_completed_milestone_not_invoiced() -> None:
    e = base()
    e.deal("O1")
    e.project("P1", "O1")
    e.milestone("M-leak", "P1", amount=5, completed_at=ago(11))
    e.milestone("M-grace", "P1", completed_at=ago(9))
    e.milestone("M-billed", "P1", completed_at=ago(30), invoice="K1")
    e.milestone("M-open", "P1")
    assert found(e, "completed_milestone_not_invoiced") == {"milestones:kantata:M-leak": 5}


def test_invoice_amount_mismatch_between_psa_and_erp() -> None:
    e = base()
    e.psa_invoice("K1", total=100)
    e.erp_invoice("E1", psa="K1", total=100)
    e.psa_invoice("K2", total=100)
    e.erp_invoice("E2", psa="K2", total=90)
    e.psa_invoice("K3", total=100)
    e.erp_invoice("E3", psa="K3", total=-100)  # a credit note raised against an invoice
    e.erp_invoice("E4", psa=None, total=1)  # no PSA invoice: nothing to compare
    assert found(e, "invoice_amount_mismatch") == {
        "invoices:netsuite:E2": 10,
        "invoices:netsuite:E3": 200,
    }


def test_invoice_missing_in_billing_either_side_may_hold_the_twin_reference() -> None:
    e = base()
    e.erp_invoice("E-twinned")
    e.billing_invoice("S1", erp="E-twinned")
    e.erp_invoice("E-claims", twin_ref="S2")
    e.billing_invoice("S2", erp=None)
    e.erp_invoice("E-missing", total=5)
    e.erp_invoice("E-fresh", issued=day(3))  # raised by the end of June 27: grace ends July 1
    e.erp_invoice("E-due", issued=day(4), total=6)  # by the end of June 26: grace ended June 30
    e.erp_invoice("E-void", status="void")
    assert found(e, "invoice_missing_in_billing") == {
        "invoices:netsuite:E-missing": 5,
        "invoices:netsuite:E-due": 6,
    }


def test_invoice_missing_in_erp_from_psa_and_from_billing() -> None:
    e = base()
    e.psa_invoice("K-ok")
    e.erp_invoice("E1", psa="K-ok")
    e.billing_invoice("S1", erp="E1")
    e.psa_invoice("K-missing", total=7)
    e.billing_invoice("S-of-k", erp=None, psa_invoice_ref="K-missing")  # same problem
    e.psa_invoice("K-draft", status="draft")
    e.psa_invoice("K-fresh", issued=day(1))
    e.billing_invoice(
        "S-orphan", erp="E-unknown", total=9
    )  # names an ERP invoice that is not there
    got = reconcile(e.canonical(), AS_OF, rules={"x": RULES["invoice_missing_in_erp"]}).breaks
    assert dict(got.select("key", "amount_minor").iter_rows()) == {
        "invoices:kantata:K-missing": 7,
        "invoices:stripe:S-orphan": 9,
    }
    records = orjson.loads(got.filter(pl.col("key") == "invoices:kantata:K-missing")["records"][0])
    assert [r["id"] for r in records] == ["K-missing", "S-of-k"]
    assert (
        got.filter(pl.col("key") == "invoices:kantata:K-missing")["systems"][0] == "kantata,stripe"
    )


def test_invoice_status_mismatch_after_normalising_vendor_words() -> None:
    e = base()
    e.erp_invoice("E1", status="B")  # NetSuite's "paid in full" code
    e.billing_invoice("S1", erp="E1", status="paid")
    e.erp_invoice("E2", status="open")
    e.billing_invoice("S2", erp="E2", status="void", total=3)
    e.erp_invoice("E3", status="open", total=4)
    e.billing_invoice("S3", erp="E3", status="uncollectible")
    assert found(e, "invoice_status_mismatch") == {
        "invoices:netsuite:E2": 100_000,
        "invoices:netsuite:E3": 4,
    }


def test_invoice_overdue_uses_remaining_or_the_applications() -> None:
    e = base()
    e.erp_invoice("E-due", issued=day(40), due_on=day(1), amount_remaining_minor=30)
    e.erp_invoice("E-today", issued=day(40), due_on=day(0))
    e.erp_invoice("E-paid", issued=day(40), due_on=day(5), status="paid", amount_remaining_minor=0)
    e.erp_invoice("E-null", issued=day(40), due_on=day(5), total=100, amount_remaining_minor=None)
    e.payment("PAY1", amount=60)
    e.apply("AP1", "PAY1", "E-null", 60)  # partial payment: 40 still owed
    e.erp_invoice("E-credit", issued=day(40), due_on=day(5), total=-50, amount_remaining_minor=-50)
    e.erp_invoice("E-nodue", issued=day(40), due_on=None)
    assert found(e, "invoice_overdue") == {
        "invoices:netsuite:E-due": 30,
        "invoices:netsuite:E-null": 40,
    }


def test_duplicate_payment_and_unapplied_cash() -> None:
    e = base()
    e.payment("PAY1", amount=100, reference="R1", received_days_ago=9)
    e.payment("PAY2", amount=100, reference="R1", received_days_ago=3, unapplied=100)  # repeat
    e.payment("PAY3", amount=100, reference="R1", customer="C2")  # another payer
    e.payment("PAY4", amount=101, reference="R1")  # another amount
    e.payment("PAY5", amount=80, unapplied=30)  # partly unapplied
    e.payment("PAY6", amount=50, unapplied=None)  # unknown: amount minus its applications
    e.apply("AP6", "PAY6", "E1", 20)
    e.payment("PAY7", amount=10, reference=None, unapplied=0)
    e.rows["payments"][-1]["reference"] = None
    e.payment("PAY8", amount=10, unapplied=0)
    e.rows["payments"][-1]["reference"] = None  # no reference: never a duplicate
    assert found(e, "duplicate_payment") == {"payments:netsuite:PAY2": 100}
    assert found(e, "unapplied_cash") == {
        "payments:netsuite:PAY5": 30,
        "payments:netsuite:PAY6": 30,
    }


def test_currency_mismatch_along_the_chain() -> None:
    e = base()
    e.deal("O1", amount=100)
    e.project("P-eur", "O1", currency="EUR")
    e.deal("O2")
    e.project("P-usd", "O2")
    e.erp_invoice("E1", total=5)
    e.billing_invoice("S1", erp="E1", currency="gbp")
    e.erp_invoice("E2")
    e.billing_invoice("S2", erp="E2", currency="usd")  # case differs only
    assert found(e, "currency_mismatch") == {
        "projects:kantata:P-eur": 100,
        "invoices:netsuite:E1": 5,
    }


def test_customer_missing_in_erp_amount_is_the_first_won_deal() -> None:
    e = Estate()
    e.account("A-linked")
    e.customer("C1", "A-linked")
    e.deal("O1", account="A-linked")
    e.account("A-missing")
    e.deal("O2", account="A-missing", amount=7, won_days_ago=40)
    e.deal("O3", account="A-missing", amount=9, won_days_ago=20)
    e.account("A-fresh")
    e.deal("O4", account="A-fresh", won_days_ago=10)
    e.account("A-prospect")
    e.deal("O5", account="A-prospect", won_days_ago=None)
    e.account("A-by-crm-field", erp_customer_id="C2")
    e.customer("C2", None, name="Other name")
    e.deal("O6", account="A-by-crm-field")
    assert found(e, "customer_missing_in_erp") == {"accounts:salesforce:A-missing": 7}


def test_customer_duplicated_in_erp_keeps_the_linked_one_as_original() -> None:
    e = Estate()
    e.customer("C9", "A1", name="Acme  Ltd")
    e.customer("C10", None, name="acme ltd")
    e.customer("C11", None, name="ACME LTD ")
    e.customer("C12", None, name="Other")
    e.customer("C13", None, name=None)
    got = reconcile(e.canonical(), AS_OF, rules={"x": RULES["customer_duplicated_in_erp"]}).breaks
    assert set(got["key"]) == {"accounts:netsuite:C10", "accounts:netsuite:C11"}
    records = orjson.loads(got["records"][0])
    assert [r["id"] for r in records] == ["C10", "C9", "A1"]


def test_stale_source() -> None:
    e = Estate()
    e.probe("salesforce", success_hours_ago=0.5)
    e.probe("kantata", success_hours_ago=2)
    e.probe("netsuite", success_hours_ago=None)  # every run failed
    e.probe("some-other-tool", success_hours_ago=99)  # not in the chain
    assert found(e, "stale_source") == {
        "sources:kantata:kantata": None,
        "sources:netsuite:netsuite": None,
    }


def test_duplicate_keys_are_data_quality_breaks_and_never_multiply_rows() -> None:
    e = base()
    e.psa_invoice("K1", total=100)
    e.erp_invoice("E1", psa="K1", total=100)
    e.erp_invoice("E2", psa="K1", total=50)  # a second ERP invoice for one PSA invoice
    result = reconcile(e.canonical(), AS_OF)
    dq = result.breaks.filter(pl.col("break_type") == "duplicate_key")
    assert dq["key"].to_list() == ["psa_erp_invoices.right:netsuite:K1"]
    assert [r["id"] for r in orjson.loads(dq["records"][0])] == ["E1", "E2"]
    # E1 (the lowest id) is the link; E2 is not compared, so there is no amount mismatch
    assert "invoice_amount_mismatch" not in set(result.breaks["break_type"])


def test_break_ids_are_stable_and_enrichment_is_exact() -> None:
    e = base()
    e.deal("O1", won_days_ago=30, amount=100_001, currency="EUR", legal_entity="DE01")
    config = ReconcileConfig(
        fx_rates={"EUR": "1.5"},  # type: ignore[dict-item]
        calendars={"DE01": Calendar(holidays=frozenset({day(5)}))},
    )
    first = reconcile(e.canonical(), AS_OF, config).breaks
    again = reconcile(e.canonical(), AS_OF + timedelta(days=3), config).breaks
    row = first.row(0, named=True)
    assert first["break_id"].to_list() == again["break_id"].to_list()
    assert row["amount_reporting_minor"] == 150_002  # 100,001 x 1.5 = 150,001.5, half-even
    assert (row["age_days"], row["ageing_bucket"]) == (16, "8-30")
    # [Sun June 14, Tue June 30): 11 weekdays, one of them (June 25) a DE01 holiday
    assert row["business_days_open"] == 10 and row["sla_breached"]
    assert again.row(0, named=True)["ageing_bucket"] == "8-30"


@pytest.mark.parametrize(("age", "bucket"), [(0, "0-1"), (1, "0-1"), (2, "2-7"), (7, "2-7"),
                                             (8, "8-30"), (30, "8-30"), (31, ">30")])  # fmt: skip
def test_ageing_buckets(age: int, bucket: str) -> None:
    e = base()
    e.deal("O1", won_days_ago=14 + age)
    got = reconcile(e.canonical(), AS_OF, rules={"x": RULES["won_deal_without_project"]}).breaks
    assert got.select("age_days", "ageing_bucket").row(0) == (age, bucket)


def test_billing_orphan_joins_the_one_psa_break_it_matches_else_stands_alone() -> None:
    e = base()
    e.account("A2")
    e.customer("C2", "A2")
    e.add("accounts", "stripe", "cus_2", erp_customer_id="C2", name="Customer A2")
    e.deal("O1", account="A1")
    e.deal("O2", account="A2")
    e.project("P1", "O1")
    e.project("P2", "O2")
    # two PSA invoices without ERP invoice, same amount and day, for different customers
    e.psa_invoice("K1", "P1", total=500, issued=day(20))
    e.psa_invoice("K2", "P2", total=500, issued=day(20))
    e.invoice("stripe", "S-of-A2", total=500, issued=day(20), customer_ref="cus_2")
    # and one billing invoice that could be either (its customer is not traceable): ambiguous
    e.psa_invoice("K3", "P1", total=700, issued=day(20))
    e.psa_invoice("K4", "P2", total=700, issued=day(21))
    e.invoice("stripe", "S-unknown", total=700, issued=day(20), customer_ref="cus_x")
    got = reconcile(e.canonical(), AS_OF, rules={"x": RULES["invoice_missing_in_erp"]}).breaks
    records = {k: [(r["id"], r.get("suggested", False)) for r in orjson.loads(v)]
               for k, v in got.select("key", "records").iter_rows()}  # fmt: skip
    assert records == {
        "invoices:kantata:K1": [("K1", False)],
        "invoices:kantata:K2": [("K2", False), ("S-of-A2", True)],
        "invoices:kantata:K3": [("K3", False)],
        "invoices:kantata:K4": [("K4", False)],
        "invoices:stripe:S-unknown": [("S-unknown", False)],
    }


def test_an_erp_subsidiary_name_is_reported_under_the_crm_code_of_its_legal_entity() -> None:
    e = base()
    e.customer("C9", None, legal_entity="Northwind Beratung GmbH")
    e.payment("PAY1", amount=100, customer="C9", unapplied=100, received_days_ago=30)
    aliases = {"Northwind Beratung GmbH": "DE01"}

    def entities(config: ReconcileConfig | None) -> list[str | None]:
        result = reconcile(
            e.canonical(), AS_OF, config, rules={"unapplied_cash": RULES["unapplied_cash"]}
        )
        return result.breaks.get_column("legal_entity").to_list()

    assert entities(None) == ["Northwind Beratung GmbH"]
    assert entities(ReconcileConfig(legal_entity_aliases=aliases)) == ["DE01"]


def test_a_billing_orphan_whose_account_agrees_is_not_made_ambiguous_by_an_untraced_one() -> None:
    # The scale-10 case: monthly fees of one amount on one day. K-untraced's project has no
    # deal, so its account is unknown and it could be either billing invoice's twin; S-of-A2's
    # account agrees with K-of-A2's, which settles that pair, and leaves S-of-A3 to K-untraced.
    e = base()
    for n in (2, 3):
        e.account(f"A{n}")
        e.customer(f"C{n}", f"A{n}")
        e.add("accounts", "stripe", f"cus_{n}", erp_customer_id=f"C{n}", name=f"Customer A{n}")
    e.deal("O2", account="A2")
    e.project("P2", "O2")
    e.project("P-no-deal", None)
    e.psa_invoice("K-of-A2", "P2", total=850, issued=day(20))
    e.psa_invoice("K-untraced", "P-no-deal", total=850, issued=day(20))
    e.invoice("stripe", "S-of-A2", total=850, issued=day(20), customer_ref="cus_2")
    e.invoice("stripe", "S-of-A3", total=850, issued=day(20), customer_ref="cus_3")
    got = reconcile(e.canonical(), AS_OF, rules={"x": RULES["invoice_missing_in_erp"]}).breaks
    records = {k: [(r["id"], r.get("suggested", False)) for r in orjson.loads(v)]
               for k, v in got.select("key", "records").iter_rows()}  # fmt: skip
    assert records == {
        "invoices:kantata:K-of-A2": [("K-of-A2", False), ("S-of-A2", True)],
        "invoices:kantata:K-untraced": [("K-untraced", False), ("S-of-A3", True)],
    }


def test_a_released_link_is_computed_again_when_read_and_reads_the_same() -> None:
    e = base()
    e.psa_invoice("K1", total=100)
    e.erp_invoice("E1", psa="K1", total=100)
    ctx = RuleContext(e.canonical(), AS_OF, ReconcileConfig())
    first = ctx.psa_erp
    ctx.release("psa_erp", "not_a_frame")  # a name never computed is no error
    again = ctx.psa_erp
    assert again is not first
    assert again.frame.collect().equals(first.frame.collect())


def _every_kind_of_record() -> Estate:
    e = base()
    e.account("B1", system="stripe")
    e.deal("O1", amount=100)
    e.deal("O2")
    e.project("P1", "O1", currency="EUR")
    e.project("P9", None)
    e.time("T1", "P1", worked=day(90), approved_at=ago(80))
    e.milestone("M1", "P1", completed_at=ago(30))
    e.psa_invoice("K1", "P1", total=100)
    e.psa_invoice("K2", "P1")
    e.erp_invoice("E1", psa="K1", total=90)
    e.erp_invoice("E2", status="paid")
    e.billing_invoice("S1", erp="E2", status="open")
    e.billing_invoice("S9", erp=None)
    e.payment("PAY1", amount=100, reference="R1", received_days_ago=9)
    e.payment("PAY2", amount=100, reference="R1", received_days_ago=3, unapplied=100)
    e.apply("AP1", "PAY1", "E1", 40)
    e.probe("netsuite", success_hours_ago=1)
    return e


def test_a_run_computes_each_shared_frame_once() -> None:
    ctx = RuleContext(_every_kind_of_record().canonical(), AS_OF, ReconcileConfig())
    result = reconcile_in(ctx)
    assert len(set(result.breaks["break_type"])) >= 10
    assert {"psa_erp", "erp_billing", "deal_projects", "duplicate_payments"} <= set(
        ctx.computations
    )
    twice = {name: n for name, n in ctx.computations.items() if n > 1}
    assert not twice  # a rule reads a frame it does not name in ``reads``


def test_a_frame_only_rules_read_is_released_after_its_last_reader() -> None:
    ctx = RuleContext(_every_kind_of_record().canonical(), AS_OF, ReconcileConfig())
    amounts = {"invoice_amount_mismatch": RULES["invoice_amount_mismatch"]}
    find_breaks(ctx, amounts)
    assert "psa_erp" not in ctx.__dict__  # its only reader has run
    assert "erp_invoices" in ctx.__dict__  # chains and KPIs read it after the rules
    assert ctx.duplicates.height == 0  # the released link's duplicates are still known
    assert ctx.computations["psa_erp"] == 1
