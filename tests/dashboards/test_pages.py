"""The page scripts under Streamlit's AppTest (one page per test; AppTest cannot drive
``st.navigation``, charts or dialogs, which the browser test covers): what they show and what
their forms record, for the local user of each role."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import store
from dashboards import service
from tests.dashboards.conftest import OPERATOR, VIEWER, fill
from tests.reconciler.estate import AS_OF


def page_script(url: str, page: str, user: str, role: str) -> None:
    """Runs inside AppTest: configure the console for a local user, draw one page."""
    import importlib

    from dashboards import _ui
    from dashboards.service import ConsoleConfig

    _ui.configure(
        ConsoleConfig(store_url=url, local_user=user, local_role=role, cache_ttl_seconds=0)
    )
    importlib.import_module(f"dashboards.pages.{page}").render()


def app(filled: store.Store, page: str, *, user: str = "otto", role: str = "operator") -> AppTest:
    test = AppTest.from_function(
        page_script, kwargs={"url": filled.url, "page": page, "user": user, "role": role},
        default_timeout=30,
    )  # fmt: skip
    return test.run()


@pytest.fixture
def sqlite_filled(sqlite_template: Path, tmp_path: Path) -> Iterator[store.Store]:
    """The small estate on SQLite (the service layer is tested on both backends already)."""
    path = tmp_path / "o2c.sqlite3"
    shutil.copy(sqlite_template, path)
    db = store.Store(f"sqlite:///{path}")
    fill(db)
    yield db
    db.dispose()


@pytest.mark.parametrize("page", ["executive", "breaks", "deal", "resyncs", "sources"])
@pytest.mark.parametrize("role", ["viewer", "operator", "approver"])
def test_every_page_draws_for_every_role_without_an_exception(
    sqlite_filled: store.Store, page: str, role: str
) -> None:
    test = app(sqlite_filled, page, role=role)
    assert not test.exception, [e.value for e in test.exception]
    assert test.title[0].value


def test_the_executive_page_shows_each_kpi_with_its_currency_and_change(
    sqlite_filled: store.Store,
) -> None:
    test = app(sqlite_filled, "executive")
    metrics = {m.label: (m.value, m.delta) for m in test.metric}
    assert metrics["Revenue leakage"] == ("1,500.00 USD", "±0.00 USD")
    assert metrics["Open breaks"] == ("5", "+1")
    assert metrics["Backlog"][0] == "5,500.00 USD"
    assert metrics["Billing lag, time (p50)"] == ("n/a", "")


def test_an_operator_acknowledges_a_break_from_the_queue(sqlite_filled: store.Store) -> None:
    test = app(sqlite_filled, "breaks")
    first = test.multiselect(key="break_chosen").options[0]
    test.multiselect(key="break_chosen").select(first)
    test.text_input(key="break_note").input("on it")
    test.button[0].click()  # the form's Apply: Acknowledge is the default action
    test.run()
    assert not test.exception
    register = service.read_register(sqlite_filled, VIEWER)
    acknowledged = register.filter(register["acknowledged_by"] == "otto")
    assert acknowledged.height == 1
    assert acknowledged["acknowledged_note"].to_list() == ["on it"]
    assert any("Acknowledged 1 break(s) as otto" in s.value for s in test.success)


def test_an_operator_accepts_every_shown_break_of_a_search(sqlite_filled: store.Store) -> None:
    test = app(sqlite_filled, "breaks")
    test.text_input(key="break_search").input("I1").run()
    test.checkbox(key="break_all").check()
    test.radio(key="break_action").set_value("Accept")
    test.text_input(key="break_note").input("billing fixes it next week")
    test.button[0].click()
    test.run()
    assert not test.exception
    register = service.read_register(sqlite_filled, VIEWER)
    accepted = register.filter(register["status"] == "accepted")
    assert sorted(accepted["break_type"]) == ["invoice_missing_in_billing", "invoice_overdue"]
    assert set(accepted["accepted_by"]) == {"otto"}


def test_a_break_linked_from_an_alert_is_shown_whatever_its_status(
    sqlite_filled: store.Store,
) -> None:
    register = service.read_register(sqlite_filled, VIEWER)
    linked = register.filter(register["break_type"] == "unapplied_cash")["break_id"][0]
    service.accept(sqlite_filled, OPERATOR, [linked], note="ok", until=AS_OF + timedelta(days=400))
    test = AppTest.from_function(
        page_script, default_timeout=30,
        kwargs={"url": sqlite_filled.url, "page": "breaks", "user": "vera", "role": "viewer"},
    )  # fmt: skip
    test.query_params["break"] = linked
    test.run()
    assert not test.exception
    assert test.text_input(key="break_search").value == linked
    assert test.multiselect(key="break_chosen").options == [
        f"unapplied_cash 700.00 USD ({linked[:8]})"
    ]


def test_a_viewer_sees_the_queue_but_its_actions_are_disabled(sqlite_filled: store.Store) -> None:
    test = app(sqlite_filled, "breaks", user="vera", role="viewer")
    assert test.button[0].disabled
    assert any("needs the operator role" in c.value for c in test.caption)


def test_the_deal_page_finds_a_deal_by_invoice_number(sqlite_filled: store.Store) -> None:
    test = app(sqlite_filled, "deal")
    test.text_input(key="deal_search").input("INV-1001").run()
    assert not test.exception
    assert [h.value for h in test.subheader] == ["Implementation for A1 (D1)"]
    assert test.query_params["deal"] == "D1"


def test_the_sources_page_shows_a_quarantined_payload_and_its_reason(
    sqlite_filled: store.Store,
) -> None:
    test = app(sqlite_filled, "sources")
    test.selectbox(key="quarantine_system").select("netsuite").run()
    assert not test.exception
    assert any("total is not a number" in m.value for m in test.markdown)
    assert '"total": "abc"' in test.code[0].value
    assert any("collector metrics" in w.value for w in test.warning)


def test_the_resyncs_page_offers_the_repairable_breaks_and_a_viewer_cannot_open_a_trigger(
    sqlite_filled: store.Store,
) -> None:
    test = app(sqlite_filled, "resyncs", user="vera", role="viewer")
    options = test.selectbox(key="resync_break").options
    assert len(options) == 2 and any("won_deal_without_project" in o for o in options)
    assert test.button(key="resync_open").disabled
