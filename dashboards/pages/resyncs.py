"""Resyncs page: pending approvals, trigger a resync for a break (a confirmation dialog showing the
exact API calls; safe against a double submit, idempotent), and the audit log."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboards import _ui
from dashboards.service import (
    User,
    approve,
    candidates,
    money,
    money_column,
    plan,
    reject,
    resyncs,
    trigger,
)

_PENDING = "resync_pending"  # the break a confirmed trigger is being sent for
_SENT = "resync_sent"  # break id -> request id, once sent (the button stays disabled)


def _send(user: User, break_id: str) -> None:
    """The confirm button's callback: runs once per click, before the rerun; never twice at once."""
    if st.session_state.get(_PENDING) == break_id:
        return
    st.session_state[_PENDING] = break_id
    try:
        config = _ui.config()
        request_id = _ui.act(
            lambda: trigger(_ui.db(), user, break_id, config.resync_policy),
            f"Resync requested for break {break_id[:8]} by {user.name}.",
        )
        if request_id is not None:
            st.session_state.setdefault(_SENT, {})[break_id] = request_id
            st.session_state["o2c_flash"] = (
                f"Resync request #{request_id} for break {break_id[:8]} recorded as {user.name}."
            )
    finally:
        st.session_state.pop(_PENDING, None)


@st.dialog("Confirm the resync")
def _confirm(user: User, break_id: str) -> None:
    config = _ui.config()
    planned = plan(_ui.db(), user, break_id, config.resync_policy)
    if planned is None:
        st.error("This break is no longer open.")
        return
    st.markdown(
        f"**{planned.break_type}** · {money(planned.amount_minor, planned.currency)} · "
        f"action `{planned.action}` on **{planned.system}** · mode **{planned.mode}**"
    )
    if planned.mode == "approval":
        st.info("This resync needs an approver before it runs.")
    if planned.reason:
        st.warning(planned.reason)
    st.caption("The API calls it will make (idempotency keys included):")
    st.code("\n".join(call.describe() for call in planned.calls) or "(none)")
    sent = st.session_state.get(_SENT, {}).get(break_id)
    st.button(
        "Confirm resync" if sent is None else f"Requested (#{sent})",
        key="resync_confirm", type="primary",
        disabled=sent is not None or not user.can("trigger"),
        on_click=_send, args=(user, break_id),
    )  # fmt: skip
    if sent is not None and st.button("Done", key="resync_done"):
        st.rerun()


def _decide(user: User, request_id: int, decision: str, note: str) -> None:
    config = _ui.config()
    if decision == "approve":
        _ui.act(
            lambda: approve(_ui.db(), user, request_id, config.resync_policy, note=note),
            f"Request #{request_id} approved by {user.name}.",
        )
    else:
        _ui.act(
            lambda: reject(_ui.db(), user, request_id, note=note),
            f"Request #{request_id} rejected by {user.name}.",
        )


def _table(frame: Any) -> None:
    st.dataframe(frame, hide_index=True, width="stretch")


def render() -> None:
    user = _ui.current_user()
    if user is None:
        return
    _ui.header("Resyncs", user)
    config = _ui.config()

    st.subheader("Trigger a resync")
    options = _ui.cached(candidates, user, config.resync_policy)
    if options.is_empty():
        st.caption("No open break can be repaired by a resync.")
    else:
        shown = money_column(options, "amount_minor", "currency", "amount")
        labels = {
            r["break_id"]: f"{r['break_type']} · {r['amount']} · {r['mode']} · {r['key']}"
            for r in shown.iter_rows(named=True)
        }
        wanted = st.query_params.get("break")
        ids = list(labels)
        chosen = st.selectbox(
            "Break", ids, index=ids.index(wanted) if wanted in labels else 0,
            format_func=labels.__getitem__, key="resync_break",
        )  # fmt: skip
        if not user.can("trigger"):
            st.caption(
                f"{user.name} has the {user.role.label} role: triggering needs the operator role."
            )
        if st.button(
            "Resync…", key="resync_open", disabled=not user.can("trigger"), type="primary"
        ):
            _confirm(user, chosen)

    @st.fragment(run_every=config.refresh_seconds)
    def lists() -> None:
        data = _ui.cached(resyncs, user)
        st.subheader(f"Pending approvals ({data.pending.height})")
        if data.pending.height:
            _table(data.pending.select("id", "break_type", "action", "system", "requested_by",
                                       "requested_at", "amount_minor", "currency"))  # fmt: skip
        st.subheader(f"Queued or running ({data.in_flight.height})")
        if data.in_flight.height:
            _table(data.in_flight.select("id", "break_type", "action", "system", "status",
                                         "attempts", "next_attempt_at", "last_error"))  # fmt: skip
        st.subheader("Audit log")
        _table(data.audit)

    lists()

    data = _ui.cached(resyncs, user)
    if data.pending.height:
        st.subheader("Approve or reject")
        if not user.can("approve"):
            st.caption(
                f"{user.name} has the {user.role.label} role: deciding needs the approver role."
            )
        with st.form("resync_decision"):
            request_id = st.selectbox("Request", data.pending["id"].to_list(), key="resync_req")
            note = st.text_input("Note", key="resync_note")
            left, right = st.columns(2)
            approved = left.form_submit_button("Approve", disabled=not user.can("approve"))
            rejected = right.form_submit_button("Reject", disabled=not user.can("approve"))
        if approved or rejected:
            _decide(user, int(request_id), "approve" if approved else "reject", note)
            st.rerun()
