"""The simulated firm: deterministic, typed as the contract says, realistic, linear in scale, and alive."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from sandbox.estate import ID_COLUMN, MODIFIED_COLUMN, SCHEMAS, VENDORS, Estate
from sandbox.estate.checks import detect, truth_keys
from sandbox.estate.schema import CREATED_COLUMN, DEFAULT_DEFECT_RATES

SEED = 7
SCALE = 0.05


@pytest.fixture(scope="module")
def estate() -> Estate:
    return Estate.generate(SEED, SCALE)


def _frames(e: Estate) -> dict[tuple[str, str], pl.DataFrame]:
    return {(v, o): e.frame(v, o) for v in VENDORS for o in e.objects(v)}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


# --- determinism and the export format ---------------------------------------------------------


def test_the_same_seed_exports_byte_identical_files(tmp_path: Path) -> None:
    Estate.generate(SEED, SCALE).export(tmp_path / "a")
    Estate.generate(SEED, SCALE).export(tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert [name for name in a if a[name] != b[name]] == []


def test_a_different_seed_gives_a_different_firm() -> None:
    one = Estate.generate(1, SCALE).frame("salesforce", "Opportunity")
    two = Estate.generate(2, SCALE).frame("salesforce", "Opportunity")
    assert not one.equals(two)


def test_an_export_loads_back_to_the_same_frames_and_the_same_bytes(
    estate: Estate, tmp_path: Path
) -> None:
    estate.export(tmp_path / "first")
    loaded = Estate.load(tmp_path / "first")
    assert loaded.now == estate.now
    for (vendor, obj), frame in _frames(estate).items():
        assert loaded.frame(vendor, obj).equals(frame), (vendor, obj)
    assert loaded.ground_truth.equals(estate.ground_truth)
    loaded.export(tmp_path / "second")
    assert _files(tmp_path / "first") == _files(tmp_path / "second")


def test_the_manifest_describes_every_object_file(estate: Estate, tmp_path: Path) -> None:
    manifest = json.loads(estate.export(tmp_path).read_text())
    assert manifest["format"] == "o2c-sandbox-estate"
    assert manifest["seed"] == SEED
    for vendor in VENDORS:
        for obj in SCHEMAS[vendor]:
            entry = manifest["objects"][vendor][obj]
            rows = json.loads((tmp_path / entry["file"]).read_text())
            assert len(rows) == entry["rows"] == estate.frame(vendor, obj).height
            assert list(entry["columns"]) == list(SCHEMAS[vendor][obj])
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert len(truth) == estate.ground_truth.height
    assert all(isinstance(row["records"], list) for row in truth)


# --- the contract ------------------------------------------------------------------------------


def test_every_frame_has_exactly_the_contract_columns_and_types(estate: Estate) -> None:
    for (vendor, obj), frame in _frames(estate).items():
        assert frame.schema == pl.Schema(SCHEMAS[vendor][obj]), (vendor, obj)


def test_ids_are_unique_within_each_object(estate: Estate) -> None:
    for (vendor, obj), frame in _frames(estate).items():
        ids = frame[ID_COLUMN[vendor]]
        assert ids.null_count() == 0, (vendor, obj)
        assert ids.n_unique() == frame.height, (vendor, obj)


def test_ids_look_like_each_vendors_ids(estate: Estate) -> None:
    assert estate.frame("salesforce", "Account")["Id"].str.len_chars().unique().to_list() == [18]
    assert estate.frame("salesforce", "Opportunity")["Id"].str.starts_with("006").all()
    assert estate.frame("kantata", "workspaces")["id"].str.contains(r"^\d+$").all()
    assert estate.frame("netsuite", "transaction")["id"].str.contains(r"^\d+$").all()
    assert estate.frame("stripe", "invoices")["id"].str.starts_with("in_").all()
    assert estate.frame("stripe", "payment_intents")["id"].str.starts_with("pi_").all()


def test_nothing_is_created_or_modified_after_now(estate: Estate) -> None:
    for (vendor, obj), frame in _frames(estate).items():
        for col in {MODIFIED_COLUMN[(vendor, obj)], CREATED_COLUMN[(vendor, obj)]}:
            latest = frame[col].max()
            assert latest is None or latest <= estate.now, (vendor, obj, col)


def test_the_clock_starts_at_a_fixed_instant_with_two_years_of_history(estate: Estate) -> None:
    assert estate.now == datetime(2026, 1, 1, tzinfo=UTC)
    first = estate.frame("salesforce", "Opportunity")["CreatedDate"].min()
    assert estate.now - timedelta(days=740) < first < estate.now - timedelta(days=700)


def test_clean_records_reference_records_that_exist(estate: Estate) -> None:
    f = _frames(estate)
    truth = estate.ground_truth
    implicated = {
        r["id"] for recs in truth["records"].to_list() for r in json.loads(recs) if r["id"] != "*"
    }

    def dangling(child: pl.DataFrame, col: str, parent: pl.DataFrame, key: str) -> set[str]:
        refs = child.select(pl.col(col).alias("ref"), pl.all()).drop_nulls("ref")
        missing = refs.join(parent.select(pl.col(key).alias("ref")), on="ref", how="anti")
        return set(missing["ref"].to_list())

    sf = ("salesforce",)
    assert dangling(f[*sf, "Opportunity"], "AccountId", f[*sf, "Account"], "Id") == set()
    assert dangling(f[*sf, "OpportunityHistory"], "OpportunityId", f[*sf, "Opportunity"], "Id") <= (
        set()
    )
    ws = f["kantata", "workspaces"]
    xref = f["kantata", "external_references"]
    assert dangling(xref, "subject_id", ws, "id") == set()
    # an opportunity missing behind a workspace is exactly a project_without_deal defect
    lost = xref.filter(
        pl.col("service_model_ref").is_in(
            list(dangling(xref, "service_model_ref", f[*sf, "Opportunity"], "Id"))
        )
    )
    assert set(lost["subject_id"].to_list()) <= implicated
    assert dangling(f["kantata", "time_entries"], "workspace_id", ws, "id") == set()
    assert (
        dangling(f["kantata", "time_entries"], "invoice_id", f["kantata", "invoices"], "id")
        == set()
    )
    assert dangling(f["kantata", "stories"], "invoice_id", f["kantata", "invoices"], "id") == set()
    ns_cust = f["netsuite", "customer"]
    txn = f["netsuite", "transaction"]
    assert dangling(ns_cust, "externalid", f[*sf, "Account"], "Id") == set()
    assert dangling(f["netsuite", "job"], "parent", ns_cust, "id") == set()
    assert dangling(f["netsuite", "job"], "externalid", ws, "id") == set()
    assert dangling(txn, "entity", ns_cust, "id") == set()
    assert dangling(txn, "job", f["netsuite", "job"], "id") == set()
    assert dangling(txn, "externalid", f["kantata", "invoices"], "id") == set()
    links = f["netsuite", "nexttransactionlinelink"]
    assert dangling(links, "previousdoc", txn, "id") == set()
    assert dangling(links, "nextdoc", txn, "id") == set()
    s_inv = f["stripe", "invoices"].with_columns(ns=pl.col("metadata").struct.field("netsuite_id"))
    assert dangling(s_inv, "customer", f["stripe", "customers"], "id") == set()
    assert dangling(s_inv, "ns", txn, "id") == set()
    # a billing invoice without an ERP twin is exactly an invoice_missing_in_erp defect
    assert set(s_inv.filter(pl.col("ns").is_null())["id"].to_list()) <= implicated
    ipay = f["stripe", "invoice_payments"].with_columns(
        pi=pl.col("payment").struct.field("payment_intent")
    )
    assert dangling(ipay, "invoice", f["stripe", "invoices"], "id") == set()
    assert dangling(ipay, "pi", f["stripe", "payment_intents"], "id") == set()
    pis = f["stripe", "payment_intents"].with_columns(
        ns=pl.col("metadata").struct.field("netsuite_id")
    )
    assert dangling(pis, "ns", txn, "id") == set()
    events = f["stripe", "events"]
    for obj_type, frame in (("invoice", "invoices"), ("customer", "customers")):
        of_type = events.filter(pl.col("data_object_type") == obj_type)
        assert dangling(of_type, "data_object_id", f["stripe", frame], "id") == set()


# --- realism -----------------------------------------------------------------------------------


def test_three_legal_entities_with_their_currencies_terms_fx_and_holidays(estate: Estate) -> None:
    assert sorted(estate.legal_entities["currency"].to_list()) == ["EUR", "GBP", "USD"]
    assert estate.payment_terms["days"].to_list() == [30, 45, 60]
    assert set(estate.frame("salesforce", "Account")["CurrencyIsoCode"]) == {"USD", "GBP", "EUR"}
    fx = estate.fx_rates
    assert set(fx["currency"]) == {"GBP", "EUR"}
    assert fx["date"].max() == estate.now.date()
    assert fx.schema["usd_per_unit"] == pl.Decimal(18, 6)
    assert (
        Decimal("1.0")
        < fx.filter(pl.col("currency") == "GBP")["usd_per_unit"].mean()
        < Decimal("1.6")
    )
    christmas = estate.holidays.filter(pl.col("date") == datetime(2025, 12, 25).date())
    assert set(christmas["calendar"]) == {"US", "GB", "DE"}


def test_every_billing_model_bills_its_own_way(estate: Estate) -> None:
    opp = estate.frame("salesforce", "Opportunity")
    assert set(opp["Billing_Model__c"]) == {"Time and Materials", "Fixed Fee", "Retainer"}
    ws = (
        estate.frame("kantata", "workspaces")
        .join(
            estate.frame("kantata", "external_references").select(
                pl.col("subject_id").alias("id"), pl.col("service_model_ref").alias("Id")
            ),
            on="id",
        )
        .join(opp.select("Id", "Billing_Model__c"), on="Id")
    )
    te = estate.frame("kantata", "time_entries").join(
        ws.select(pl.col("id").alias("workspace_id"), "Billing_Model__c"), on="workspace_id"
    )
    # only time-and-materials time is billable, and it is invoiced
    assert te.filter(pl.col("billable"))["Billing_Model__c"].unique().to_list() == [
        "Time and Materials"
    ]
    assert te.filter(pl.col("is_invoiced")).height > 0.5 * te.filter(pl.col("billable")).height
    # weekly entries, submitted then approved
    assert (te["date_performed"].dt.weekday() == 5).all()
    approved = te.filter(pl.col("approved"))
    assert (approved["approved_at"] > approved["created_at"]).all()
    # fixed fee: milestones with prices summing to the contract
    stories = estate.frame("kantata", "stories")
    assert (stories["story_type"] == "milestone").all()
    assert {"completed", "not started"} <= set(stories["state"])
    # retainers: one invoice a month of the same amount
    inv = estate.frame("kantata", "invoices").with_columns(
        workspace_id=pl.col("workspace_ids").list.first()
    )
    retainer_ws = ws.filter(pl.col("Billing_Model__c") == "Retainer")["id"]
    per_ws = (
        inv.filter(pl.col("workspace_id").is_in(retainer_ws.to_list()))
        .group_by("workspace_id")
        .agg(pl.col("balance_in_cents").n_unique().alias("amounts"), pl.len().alias("invoices"))
    )
    assert (per_ws["amounts"] == 1).all()
    assert per_ws["invoices"].max() > 3


def test_projects_are_created_a_few_business_days_after_the_deal_is_won(estate: Estate) -> None:
    won = estate.frame("salesforce", "OpportunityHistory").filter(
        pl.col("StageName") == "Closed Won"
    )
    ws = (
        estate.frame("kantata", "workspaces")
        .join(
            estate.frame("kantata", "external_references").select(
                pl.col("subject_id").alias("id"), pl.col("service_model_ref").alias("OpportunityId")
            ),
            on="id",
        )
        .join(
            won.select("OpportunityId", pl.col("CreatedDate").alias("won_at")), on="OpportunityId"
        )
    )
    lag = (ws["created_at"].dt.date() - ws["won_at"].dt.date()).dt.total_days()
    assert lag.min() >= 1
    assert lag.max() <= 14
    assert (ws["created_at"].dt.weekday() <= 5).all()


def test_erp_and_billing_invoices_are_linked_twins(estate: Estate) -> None:
    inv = estate.frame("netsuite", "transaction").filter(pl.col("type") == "CustInvc")
    assert inv["job"].null_count() == 0
    assert inv["externalid"].null_count() == 0
    twins = estate.frame("stripe", "invoices").with_columns(
        id=pl.col("metadata").struct.field("netsuite_id")
    )
    paired = inv.join(twins.select("id", pl.col("total").alias("s_total")), on="id")
    assert paired.height > 0.95 * inv.height
    mismatched = paired.filter((pl.col("foreigntotal") * 100).cast(pl.Int64) != pl.col("s_total"))
    assert mismatched.height == 0


def test_payers_pay_late_in_part_and_several_invoices_at_once(estate: Estate) -> None:
    links = estate.frame("netsuite", "nexttransactionlinelink")
    per_payment = links.group_by("nextdoc").len()
    per_invoice = links.group_by("previousdoc").len()
    assert per_payment["len"].max() > 1, "some payments cover several invoices"
    assert per_invoice["len"].max() > 1, "some invoices are paid in parts"
    inv = estate.frame("netsuite", "transaction").filter(pl.col("type") == "CustInvc")
    paid = links.join(inv.select(pl.col("id").alias("previousdoc"), "duedate"), on="previousdoc")
    late = paid.filter(pl.col("linkdate") > pl.col("duedate")).height
    assert 0.1 * paid.height < late < 0.7 * paid.height
    assert set(inv["status"]) == {"A", "B"}


def test_the_stripe_events_feed_covers_the_last_thirty_days(estate: Estate) -> None:
    events = estate.frame("stripe", "events")
    assert events["created"].min() > estate.now - timedelta(days=30)
    assert {"invoice.created", "invoice.paid", "payment_intent.succeeded"} <= set(events["type"])
    assert events["id"].str.starts_with("evt_").all()


# --- scale -------------------------------------------------------------------------------------


def test_volumes_grow_linearly_with_scale(estate: Estate) -> None:
    bigger = Estate.generate(SEED, SCALE * 4)
    for vendor, obj in [
        ("salesforce", "Account"),
        ("salesforce", "Opportunity"),
        ("kantata", "workspaces"),
        ("kantata", "time_entries"),
        ("netsuite", "transaction"),
        ("stripe", "invoices"),
    ]:
        ratio = bigger.frame(vendor, obj).height / estate.frame(vendor, obj).height
        assert 3.0 < ratio < 5.0, (vendor, obj, ratio)


@pytest.mark.slow
def test_scale_one_is_a_mid_size_firm() -> None:
    e = Estate.generate(SEED, 1.0)

    def n(vendor: str, obj: str) -> int:
        return e.frame(vendor, obj).height

    assert 1_800 <= n("salesforce", "Account") <= 2_200
    assert 18_000 <= n("salesforce", "Opportunity") <= 22_000
    assert 6_000 <= n("kantata", "workspaces") <= 8_000
    assert 250_000 <= n("kantata", "time_entries") <= 350_000
    assert 35_000 <= n("kantata", "invoices") <= 45_000


# --- the clock ---------------------------------------------------------------------------------


def test_advancing_the_clock_grows_the_firm_with_stamps_inside_the_window() -> None:
    e = Estate.generate(SEED, SCALE)
    before = _frames(e)
    truth_before = e.ground_truth
    start = e.now
    e.advance(timedelta(days=20))
    assert e.now == start + timedelta(days=20)
    after = _frames(e)
    for key in [
        ("salesforce", "Opportunity"),
        ("kantata", "time_entries"),
        ("netsuite", "transaction"),
    ]:
        assert after[key].height > before[key].height, key
    for (vendor, obj), frame in after.items():
        idc, mod = ID_COLUMN[vendor], MODIFIED_COLUMN[(vendor, obj)]
        changed = frame.join(before[(vendor, obj)], on=frame.columns, how="anti", nulls_equal=True)
        if vendor == "stripe" and obj != "events":
            # Stripe has no modified stamp: each change is announced in the events feed
            old = changed.join(before[(vendor, obj)].select(idc), on=idc, how="semi")
            announced = after["stripe", "events"].filter(pl.col("created") > start)
            assert set(old[idc]) <= set(announced["data_object_id"]), (vendor, obj)
        elif changed.height:
            assert changed[mod].min() > start, (vendor, obj)
            assert changed[mod].max() <= e.now, (vendor, obj)
        assert set(before[(vendor, obj)][idc]) <= set(frame[idc]) or obj == "events"
    stages = after["salesforce", "Opportunity"].join(
        before["salesforce", "Opportunity"].select("Id", pl.col("StageName").alias("was")), on="Id"
    )
    assert stages.filter(pl.col("StageName") != pl.col("was")).height > 0
    new_truth = e.ground_truth.join(truth_before.select("defect_id"), on="defect_id", how="anti")
    assert new_truth.height > 0
    assert (new_truth["injected_at"] > start).all()


def test_tick_advances_real_time_multiplied_by_the_speedup() -> None:
    e = Estate.generate(SEED, 0.01)
    start = e.now
    assert e.tick(2.0, 3600) == timedelta(hours=2)
    assert e.tick(timedelta(seconds=1), 60) == timedelta(minutes=1)
    assert e.now == start + timedelta(hours=2, minutes=1)
    # a slow speed-up still moves the clock: fractions of a second carry over
    assert [e.tick(1.0, 0.4) for _ in range(5)] == [timedelta(seconds=s) for s in (0, 0, 1, 0, 1)]
    assert e.now == start + timedelta(hours=2, minutes=1, seconds=2)


def test_the_clock_never_goes_back() -> None:
    with pytest.raises(ValueError, match="forward"):
        Estate.generate(SEED, 0.01).advance(timedelta(seconds=-1))


# --- writes ------------------------------------------------------------------------------------


def test_insert_assigns_vendor_ids_and_stamps_now() -> None:
    e = Estate.generate(SEED, SCALE)
    (ws_id,) = e.insert("kantata", "workspaces", [{"title": "Resynced", "currency": "USD"}])
    assert ws_id.isdigit()
    row = e.get("kantata", "workspaces", ws_id)
    assert row is not None
    assert row["created_at"] == row["updated_at"] == e.now
    assert row["archived"] is False
    (cus,) = e.insert(
        "stripe", "customers", [{"name": "New", "metadata": {"netsuite_id": "42", "x": 1}}]
    )
    assert cus.startswith("cus_")
    assert e.get("stripe", "customers", cus)["metadata"] == {"netsuite_id": "42"}  # type: ignore[index]
    created = e.frame("stripe", "events").filter(pl.col("data_object_id") == cus)
    assert created["type"].to_list() == ["customer.created"]
    (opp,) = e.insert(
        "salesforce", "Opportunity", [{"Name": "Upserted", "Amount": Decimal("10.00")}]
    )
    assert opp.startswith("006") and len(opp) == 18


def test_update_changes_fields_bumps_the_stamp_and_survives_the_clock() -> None:
    e = Estate.generate(SEED, SCALE)
    ws_id = e.frame("kantata", "workspaces")["id"][0]
    e.advance(timedelta(hours=1))
    e.update("kantata", "workspaces", ws_id, {"title": "Renamed"})
    stamped = e.now
    assert e.get("kantata", "workspaces", ws_id)["updated_at"] == stamped  # type: ignore[index]
    e.advance(timedelta(days=3))
    row = e.get("kantata", "workspaces", ws_id)
    assert row is not None
    assert row["title"] == "Renamed"
    assert row["updated_at"] >= stamped
    invoice = e.frame("stripe", "invoices").filter(pl.col("status") == "open")["id"][0]
    e.update("stripe", "invoices", invoice, {"status": "void"})
    assert e.frame("stripe", "events").filter(pl.col("data_object_id") == invoice)["type"][-1] == (
        "invoice.voided"
    )
    with pytest.raises(KeyError):
        e.update("kantata", "workspaces", "no-such-id", {"title": "x"})
    with pytest.raises(ValueError, match="no columns"):
        e.update("kantata", "workspaces", ws_id, {"not_a_column": 1})


def test_inserted_rows_can_be_updated_and_exported(tmp_path: Path) -> None:
    e = Estate.generate(SEED, 0.01)
    (cid,) = e.insert("netsuite", "customer", [{"companyname": "Resync Ltd", "externalid": "001X"}])
    e.update("netsuite", "customer", cid, {"email": "ap@resync.example"})
    assert e.get("netsuite", "customer", cid)["email"] == "ap@resync.example"  # type: ignore[index]
    e.export(tmp_path)
    loaded = Estate.load(tmp_path)
    assert loaded.get("netsuite", "customer", cid)["companyname"] == "Resync Ltd"  # type: ignore[index]


# --- defect rates ------------------------------------------------------------------------------


def test_zero_defect_rates_leave_only_the_natural_breaks() -> None:
    e = Estate.generate(SEED, SCALE, defect_rates=dict.fromkeys(DEFAULT_DEFECT_RATES, 0.0))
    assert set(e.ground_truth["break_type"]) <= {"invoice_overdue"}
    found = detect(_frames(e), e.now)
    assert {t: keys for t, keys in found.items() if keys and t != "invoice_overdue"} == {}
    assert found == truth_keys(e.ground_truth)


def test_unknown_defect_types_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown defect"):
        Estate.generate(SEED, 0.01, defect_rates={"lost_in_the_post": 0.5})


def test_the_public_surface_is_pinned() -> None:
    import sandbox.estate

    assert set(sandbox.estate.__all__) == {
        "BREAK_TYPES",
        "DEFAULT_DEFECT_RATES",
        "GROUND_TRUTH_SCHEMA",
        "ID_COLUMN",
        "MODIFIED_COLUMN",
        "SCHEMAS",
        "VENDORS",
        "Estate",
        "EstateInterface",
    }
    assert issubclass(Estate, sandbox.estate.EstateInterface)


def test_a_firm_can_supply_its_own_partial_export(tmp_path: Path) -> None:
    (tmp_path / "salesforce").mkdir()
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "format": "o2c-sandbox-estate",
                "version": 1,
                "now": "2026-03-01T00:00:00+00:00",
                "objects": {"salesforce": {"Account": {"file": "salesforce/Account.json"}}},
            }
        )
    )
    (tmp_path / "salesforce" / "Account.json").write_text(
        json.dumps(
            [
                {
                    "Id": "001000000000001AAA",
                    "Name": "Own Co",
                    "CreatedDate": "2025-01-01T10:00:00Z",
                    "SystemModstamp": "2025-01-02T10:00:00+00:00",
                }
            ]
        )
    )
    own = Estate.load(tmp_path)
    assert own.now == datetime(2026, 3, 1, tzinfo=UTC)
    account = own.get("salesforce", "Account", "001000000000001AAA")
    assert account is not None
    assert account["Name"] == "Own Co"
    assert account["Industry"] is None
    assert account["SystemModstamp"] == datetime(2025, 1, 2, 10, tzinfo=UTC)
    assert own.frame("netsuite", "transaction").height == 0  # objects left out are empty
    assert own.ground_truth.height == 0
    own.advance(timedelta(days=1))  # the clock still moves; nothing is planned
    assert own.frame("salesforce", "Account").height == 1
