"""`o2c resync`: plan, run, approve and audit the self-healing resyncs from the command line."""

from __future__ import annotations

import asyncio
import getpass
import logging
from datetime import timedelta
from typing import Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

import store
from o2c.settings import ResyncSettings, Settings, load_settings
from reconciler.resync import (
    CycleSummary,
    ResyncConfig,
    ResyncError,
    ResyncPolicy,
    approve_request,
    list_requests,
    plan_resync,
    read_audit,
    reject_request,
    request_resync,
    run_resync_cycle,
)

app = typer.Typer(
    help="Self-healing resyncs: plan them, run them, approve them, read their audit.",
    no_args_is_help=True,
)
console = Console()
errors = Console(stderr=True)


def policy_from(settings: ResyncSettings) -> ResyncPolicy:
    """The resync policy of the settings; ConfigError naming the variable when it is invalid."""
    try:
        return ResyncPolicy(
            modes=settings.modes,
            approval_above_minor=settings.approval_above_minor,
            rate_per_minute=settings.rate_per_minute,
            rate_per_minute_by_system=settings.rate_per_minute_by_system,
            max_attempts=settings.max_attempts,
            backoff=timedelta(seconds=settings.backoff_seconds),
            max_backoff=timedelta(
                seconds=max(settings.backoff_seconds, settings.max_backoff_seconds)
            ),
            circuit_failures=settings.circuit_failures,
            circuit_cooldown=timedelta(seconds=settings.circuit_cooldown_seconds),
            lease=timedelta(seconds=settings.lease_seconds),
            max_actions_per_cycle=settings.max_actions_per_cycle,
            distinct_approver=settings.distinct_approver,
        )
    except ValueError as exc:
        raise store.ConfigError(f"O2C_RESYNC__*: {exc}") from None


def _open(settings: Settings) -> store.Store:
    if settings.store_url.startswith("sqlite:///"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = store.Store(settings.store_url)
    store.require_head(db.engine)
    return db


def _me() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _print_plan(db: store.Store, break_ids: list[str] | None, policy: ResyncPolicy) -> None:
    planned = plan_resync(db, break_ids or None, policy=policy)
    if not planned:
        console.print("no open break")
        return
    for item in planned:
        head = f"[bold]{item.break_id}[/bold] {item.break_type} ({item.mode})"
        if item.amount_minor is not None:
            head += f" {item.amount_minor:,} {item.currency} minor at risk"
        console.print(head, highlight=False)
        if item.action is None or not item.calls:
            console.print(f"    {item.reason}", highlight=False, soft_wrap=True)
            continue
        console.print(f"    {item.action} via {item.system}:", highlight=False)
        for call in item.calls:
            console.print(f"      {call.describe()}", highlight=False, soft_wrap=True)
    counts: dict[str, int] = {}
    for item in planned:
        counts[item.mode] = counts.get(item.mode, 0) + 1
    console.print(", ".join(f"{n} {mode}" for mode, n in sorted(counts.items())))


@app.command("plan")
def plan(
    break_ids: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        [], "--break", "-b", help="Only this break id (repeatable); default: every open break."
    ),
) -> None:
    """Dry run: each open break's mode (auto, approval, manual) and the exact API calls of its repair.

    Nothing is written, neither to the vendors nor to the store.

    Example: o2c resync plan --break 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e
    """
    settings = load_settings()
    policy = policy_from(settings.resync)
    db = _open(settings)
    try:
        _print_plan(db, break_ids, policy)
    finally:
        db.dispose()


async def _cycle(
    settings: Settings, db: store.Store, config: ResyncConfig, break_ids: list[str] | None
) -> CycleSummary:
    from o2c import collect as wiring

    probes: dict[str, Any] = {}
    try:
        for system_probe in wiring.system_probes(settings):
            probes[system_probe.system] = system_probe.factory()
        return await run_resync_cycle(db, probes, config=config, break_ids=break_ids)
    finally:
        for probe in probes.values():
            await probe.client.aclose()


@app.command("run")
def run(
    break_ids: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        [], "--break", "-b", help="Repair only this break (repeatable), asking for it first."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the plan (the exact API calls) and write nothing."
    ),
    by: str = typer.Option(
        "", "--by", help="Who asks for the --break repairs (default: the login name)."
    ),
) -> None:
    """Run one resync cycle: ask for what the policy repairs automatically, run every due request.

    A request needing approval waits for `o2c resync approve`; a manual break is never written. Each repair looks its target up before creating it, re-fetches what it wrote and reconciles again: it succeeds only when the break is gone. Several processes may share a PostgreSQL store.

    Exit status: 0 when nothing failed for good (a retry later is not a failure), 1 otherwise.

    Example: o2c resync run --break 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e --by alice
    """
    settings = load_settings()
    logging.basicConfig(
        level=logging.WARNING,
        handlers=[RichHandler(console=errors, show_path=False)],
        format="%(message)s",
        force=True,
    )
    policy = policy_from(settings.resync)
    db = _open(settings)
    try:
        if dry_run:
            _print_plan(db, break_ids, policy)
            return
        for break_id in break_ids:
            request_id = request_resync(
                db, break_id=break_id, requested_by=by or _me(), policy=policy
            )
            console.print(f"break {break_id}: request {request_id}")
        from o2c.run import reconcile_config

        # The confirming reconcile must use the periodic reconcile's configuration (FX,
        # calendars): another one would rewrite the register's amounts and SLA clocks.
        config = ResyncConfig(policy=policy, reconcile=reconcile_config(settings))
        summary = asyncio.run(_cycle(settings, db, config, break_ids or None))
    finally:
        db.dispose()
    enqueued = ", ".join(f"{n} {mode}" for mode, n in summary.enqueued.items() if n)
    console.print(f"asked by policy: {enqueued or 'none'}")
    table = Table("request", "break", "action", "system", "outcome", "detail")
    for o in summary.outcomes:
        table.add_row(str(o.request_id), o.break_id, o.action, o.system, o.outcome, o.detail)
    console.print(table)
    console.print(
        f"succeeded {summary.count('succeeded')}, retry later {summary.count('retry')}, "
        f"failed {summary.count('failed')}, cancelled {summary.count('cancelled')}, "
        f"deferred {summary.deferred}, held elsewhere {summary.busy}"
    )
    if summary.count("failed"):
        raise typer.Exit(1)


@app.command("approve")
def approve(
    request_id: int = typer.Argument(..., help="The request id (see `o2c resync requests`)."),
    by: str = typer.Option("", "--by", help="Who approves (default: the login name)."),
    note: str = typer.Option("", "--note", help="Why (kept with the approval)."),
) -> None:
    """Approve a request awaiting approval; the next cycle runs it. The approver is recorded.

    Unless O2C_RESYNC__DISTINCT_APPROVER=false, whoever asked cannot approve.

    Example: o2c resync approve 42 --by bob --note "checked with the account owner"
    """
    settings = load_settings()
    db = _open(settings)
    try:
        approve_request(
            db, request_id, approved_by=by or _me(), policy=policy_from(settings.resync),
            note=note or None,
        )  # fmt: skip
    finally:
        db.dispose()
    console.print(f"request {request_id} approved; it runs in the next resync cycle")


@app.command("reject")
def reject(
    request_id: int = typer.Argument(..., help="The request id."),
    by: str = typer.Option("", "--by", help="Who rejects (default: the login name)."),
    note: str = typer.Option("", "--note", help="Why (kept with the decision)."),
) -> None:
    """Reject a request awaiting approval: it never runs.

    Example: o2c resync reject 42 --by bob --note "customer is being merged"
    """
    settings = load_settings()
    db = _open(settings)
    try:
        reject_request(db, request_id, rejected_by=by or _me(), note=note or None)
    finally:
        db.dispose()
    console.print(f"request {request_id} rejected")


@app.command("requests")
def requests(
    status: list[str] = typer.Option(  # noqa: B008 (typer declares options this way)
        [], "--status", "-s", help="Only this status (repeatable), e.g. awaiting_approval."
    ),
) -> None:
    """List resync requests: who asked, who approved, status, attempts, last error.

    Example: o2c resync requests --status awaiting_approval
    """
    settings = load_settings()
    db = _open(settings)
    try:
        frame = list_requests(db, status=status or None)
    finally:
        db.dispose()
    table = Table(
        "id", "break", "action", "mode", "status", "asked by", "approved by", "tries", "last error"
    )
    for r in frame.iter_rows(named=True):
        table.add_row(
            str(r["id"]), r["break_id"], r["action"], r["mode"], r["status"], r["requested_by"],
            r["approved_by"] or "", str(r["attempts"]), (r["last_error"] or "")[:80],
        )  # fmt: skip
    console.print(table)


@app.command("log")
def log(
    break_id: str | None = typer.Option(None, "--break", "-b", help="Only this break's audit."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Newest rows to show."),
) -> None:
    """The append-only audit: requests, approvals, attempts, every vendor call and its answer.

    Example: o2c resync log --break 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e --limit 100
    """
    settings = load_settings()
    db = _open(settings)
    try:
        frame = read_audit(db, break_id=break_id, limit=limit)
    finally:
        db.dispose()
    table = Table("at", "kind", "actor", "request", "system", "call", "status", "ms", "summary")
    for r in frame.reverse().iter_rows(named=True):
        call = f"{r['method']} {r['path']}" if r["method"] else ""
        table.add_row(
            r["at"].isoformat(timespec="seconds"), r["kind"], r["actor"],
            str(r["request_id"] or ""), r["system"] or "", call,
            str(r["status_code"] or ""), str(r["duration_ms"] or ""), (r["summary"] or "")[:120],
        )  # fmt: skip
    console.print(table)


__all__ = ["ResyncError", "app", "policy_from"]
