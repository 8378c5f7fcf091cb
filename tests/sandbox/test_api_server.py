"""The server runner and the `o2c sandbox` commands: child process, real-time clock, export/--from."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from sandbox.apis import FaultPlan
from sandbox.cli import app
from sandbox.estate import Estate
from sandbox.server import load_estate, serve, spawn


def test_child_process_serves_all_four_and_applies_a_fault_file(tmp_path: Path) -> None:
    plan = tmp_path / "faults.json"
    plan.write_text('{"faults": [{"vendor": "stripe", "kind": "down"}]}')
    with spawn(scale=0.02, seed=3, faults=plan) as child:
        assert set(child.urls) == {"salesforce", "kantata", "netsuite", "stripe"}
        assert child.urls["salesforce"].startswith("https://127.0.0.1:")
        with httpx.Client(verify=child.ca_file) as http:
            for url in child.urls.values():
                assert http.get(f"{url}/__admin/health").json()["ok"] is True
            key = child.info["credentials"]["stripe"]["secret_key"]
            down = http.get(
                f"{child.urls['stripe']}/v1/invoices", headers={"Authorization": f"Bearer {key}"}
            )
            assert down.status_code == 503
    assert child.process.returncode is not None


def test_real_time_clock_advances_the_estate_while_serving() -> None:
    estate = Estate.generate(seed=5, scale=0.02)
    start = estate.now
    with serve(estate, speedup=3600.0, tick_seconds=0.05) as sandbox:
        time.sleep(0.5)
        health = sandbox.http.get(f"{sandbox.urls['kantata']}/__admin/health").json()
    assert estate.now > start
    assert health["now"] > start.isoformat()


def test_fault_plan_given_at_start_reaches_only_its_vendor() -> None:
    estate = Estate.generate(seed=5, scale=0.02)
    plan = FaultPlan.from_obj({"faults": [{"vendor": "kantata", "kind": "error", "status": 502}]})
    with serve(estate, plan) as sandbox:
        kantata = sandbox.http.get(
            f"{sandbox.urls['kantata']}/api/v1/workspaces",
            headers={"Authorization": f"Bearer {sandbox.credentials['kantata']['access_token']}"},
        )
        stripe = sandbox.http.get(
            f"{sandbox.urls['stripe']}/v1/invoices",
            headers={"Authorization": f"Bearer {sandbox.credentials['stripe']['secret_key']}"},
        )
    assert kantata.status_code == 502
    assert stripe.status_code == 200


def test_export_command_writes_an_estate_that_serve_from_reads_back(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "firm"), "--scale", "0.02", "--seed", "9"]
    )
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip()).name == "manifest.json"
    loaded = load_estate(scale=0, seed=0, source=tmp_path / "firm")
    generated = Estate.generate(seed=9, scale=0.02)
    for vendor in ("salesforce", "kantata", "netsuite", "stripe"):
        for obj in generated.objects(vendor):
            assert loaded.frame(vendor, obj).height == generated.frame(vendor, obj).height
