"""`o2c sandbox ...`: serve the simulated vendors on loopback, or export the estate to files."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from sandbox.apis import FaultConfigError, FaultPlan

app = typer.Typer(
    help="The simulated firm (Salesforce, Kantata OX, NetSuite, Stripe) behind loopback APIs.",
    no_args_is_help=True,
)


@app.command()
def serve(
    scale: Annotated[
        float, typer.Option(help="Size of the firm; 1.0 is about 2,000 accounts.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Same seed and scale, same estate.")] = 7,
    faults: Annotated[
        Path | None,
        typer.Option(help="Fault plan (YAML or JSON; format in sandbox/apis/_faults.py)."),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option("--from", help="Serve an exported estate from this directory."),
    ] = None,
    speedup: Annotated[
        float | None,
        typer.Option(help="Run the estate clock in real time, this many times faster."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON line.")] = False,
) -> None:
    """Serve the four vendor APIs on free loopback ports and print their URLs and credentials.

    Example: o2c sandbox serve --scale 0.1 --seed 7 --speedup 60
    """
    from sandbox.server import load_estate
    from sandbox.server import serve as start

    try:
        plan = FaultPlan.load(faults) if faults else None
    except (OSError, FaultConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--faults") from exc
    estate = load_estate(scale, seed, source)
    sandbox = start(estate, plan, speedup=speedup)
    info = sandbox.describe()
    if as_json:
        typer.echo(json.dumps(info))
    else:
        for vendor, url in info["urls"].items():
            typer.echo(f"{vendor:<11} {url}")
        typer.echo(f"{'ca_file':<11} {info['ca_file']}")
        typer.echo(f"{'estate now':<11} {info['estate_now']}")
        typer.echo("credentials " + json.dumps(info["credentials"]))
        typer.echo("Ctrl-C stops the sandbox.")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write the per-vendor JSON files.")],
    scale: Annotated[
        float, typer.Option(help="Size of the firm; 1.0 is about 2,000 accounts.")
    ] = 1.0,
    seed: Annotated[int, typer.Option(help="Same seed and scale, same files.")] = 7,
) -> None:
    """Write the estate (per-vendor JSON files, ground truth, manifest) to DIRECTORY.

    Example: o2c sandbox export /tmp/estate --scale 1 --seed 7
    """
    from sandbox.estate import Estate

    manifest = Estate.generate(seed=seed, scale=scale).export(directory)
    typer.echo(str(manifest))
