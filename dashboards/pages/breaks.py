"""Breaks page: the queue by amount at risk x age, filters and search, acknowledge or accept
(one or many, with a note; accept with an expiry), CSV export."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta

import streamlit as st

from dashboards import _ui
from dashboards.service import (
    BreakFilters,
    User,
    accept,
    acknowledge,
    break_queue,
    filter_choices,
    money,
    money_column,
    queue_clock,
    queue_csv,
    queue_total,
    read_register,
)

SHOWN = (
    "break_id", "break_type", "severity", "status", "at risk", "amount", "age_days",
    "legal_entity", "systems", "acknowledged_by", "accepted_until", "key", "detail",
)  # fmt: skip


def _filters(choices: dict[str, list[str]]) -> BreakFilters:
    # An alert links to one break (?break=<id>): show it whatever its status.
    linked = st.query_params.get("break", "")
    top = st.columns([2, 1, 1, 1, 1, 1])
    search = top[0].text_input(
        "Search by deal, invoice or any record id (or a break id)", value=linked,
        key="break_search", placeholder="e.g. 006000000000001 or INV-1001",
    )  # fmt: skip
    statuses = top[1].multiselect(
        "Status", choices["statuses"],
        default=choices["statuses"] if linked else ["new", "open", "reopened"],
        key="break_status",
    )  # fmt: skip
    severities = top[2].multiselect("Severity", choices["severities"], key="break_severity")
    systems = top[3].multiselect("System", choices["systems"], key="break_system")
    entities = top[4].multiselect("Legal entity", choices["legal_entities"], key="break_entity")
    buckets = top[5].multiselect("Age (days)", choices["age_buckets"], key="break_age")
    types = st.multiselect("Break type", choices["types"], key="break_type")
    return BreakFilters(
        types=tuple(types), systems=tuple(systems), severities=tuple(severities),
        legal_entities=tuple(entities), age_buckets=tuple(buckets), statuses=tuple(statuses),
        search=search,
    )  # fmt: skip


def _actions(user: User, shown: list[str], labels: dict[str, str]) -> None:
    st.subheader("Act on breaks")
    allowed = user.can("acknowledge")
    if not allowed:
        st.caption(
            f"{user.name} has the {user.role.label} role: acting on breaks needs the operator role."
        )
    with st.form("break_actions", clear_on_submit=False):
        everything = st.checkbox(f"All {len(shown):,} shown breaks", key="break_all")
        chosen = st.multiselect("Breaks", shown, format_func=labels.__getitem__, key="break_chosen")
        action = st.radio("Action", ["Acknowledge", "Accept"], horizontal=True, key="break_action")
        note = st.text_input("Note (required to accept)", key="break_note")
        until = st.date_input(
            "Accepted until (accept only)", value=date.today() + timedelta(days=30),
            min_value=date.today() + timedelta(days=1), key="break_until",
        )  # fmt: skip
        submitted = st.form_submit_button("Apply", disabled=not allowed, type="primary")
    if not submitted:
        return
    ids = shown if everything else chosen
    if action == "Acknowledge":
        outcome = _ui.act(
            lambda: acknowledge(_ui.db(), user, ids, note=note),
            f"Acknowledged {len(ids)} break(s) as {user.name}.",
        )
    else:
        expiry = datetime.combine(until, time(23, 59, 59), tzinfo=UTC)
        outcome = _ui.act(
            lambda: accept(_ui.db(), user, ids, note=note, until=expiry),
            f"Accepted {len(ids)} break(s) until {expiry:%Y-%m-%d} as {user.name}.",
        )
    if outcome is not None:
        if outcome.failed:
            st.session_state["o2c_flash"] = None
            st.warning(
                f"{len(outcome.done)} done; not done: "
                + "; ".join(f"{k[:8]}: {v}" for k, v in outcome.failed.items())
            )
        else:
            st.rerun()


def render() -> None:
    user = _ui.current_user()
    if user is None:
        return
    _ui.header(
        "Break queue",
        user,
        "Ordered by amount at risk (reporting currency) x age (days, at the last reconcile).",
    )
    config = _ui.config()
    register = _ui.shared(read_register, user)
    if register.is_empty():
        st.info("No breaks: nothing has been reconciled yet, or nothing is wrong.")
        return
    filters = _filters(filter_choices(register))

    @st.fragment(run_every=config.refresh_seconds)
    def table(filters: BreakFilters) -> None:
        fresh = _ui.shared(read_register, user)
        queue = break_queue(fresh, filters, _ui.cached(queue_clock, user))
        total = queue_total(queue)
        st.markdown(
            f"**{total.breaks:,}** breaks, **{money(total.at_risk_minor, total.currency)}** at risk"
        )
        head = queue.head(config.max_rows)
        head = money_column(head, "amount_reporting_minor", "reporting_currency", "at risk")
        head = money_column(head, "amount_minor", "currency", "amount")
        st.dataframe(
            head.select(SHOWN).with_columns(head["age_days"].round(1)),
            hide_index=True, width="stretch", height=420,
        )  # fmt: skip
        if queue.height > config.max_rows:
            st.caption(f"Showing the first {config.max_rows:,}; the CSV has all {queue.height:,}.")
        st.download_button(
            "Download CSV",
            functools.partial(queue_csv, queue),
            file_name="breaks.csv",
            mime="text/csv",
            key="break_csv",
        )  # fmt: skip  (the CSV is built only when asked for: a large queue is megabytes)

    table(filters)
    head = money_column(
        break_queue(register, filters, _ui.cached(queue_clock, user)).head(config.max_rows),
        "amount_reporting_minor", "reporting_currency", "at risk",
    )  # fmt: skip
    labels = {
        row["break_id"]: f"{row['break_type']} {row['at risk']} ({row['break_id'][:8]})"
        for row in head.select("break_id", "break_type", "at risk").iter_rows(named=True)
    }
    _actions(user, list(labels), labels)
