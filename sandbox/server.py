"""Runs the four vendor simulators on free loopback ports (threads or a child process).

In-process::

    with serve(estate) as sb:            # Salesforce over HTTPS, the others over HTTP
        sb.urls["stripe"], sb.ca_file, sb.credentials["salesforce"]

As a child process (what `o2c sandbox serve` and tests that need isolation use)::

    python -m sandbox.server --scale 0.05 --seed 7 --json   # first stdout line: the description
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from sandbox.apis import SIMULATORS, FaultPlan, Simulator, TLSFiles, make_tls_files

HOST = "127.0.0.1"


@dataclass
class _Running:
    simulator: Simulator
    server: uvicorn.Server
    thread: threading.Thread
    url: str


@dataclass
class Sandbox:
    """The running simulators: base URLs, credentials and the CA file clients verify TLS with."""

    estate: Any
    simulators: dict[str, Simulator]
    urls: dict[str, str]
    tls: TLSFiles
    _running: list[_Running] = field(default_factory=list, repr=False)
    _ticker: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _owns_tls_dir: bool = field(default=False, repr=False)

    @property
    def ca_file(self) -> Path:
        return self.tls.ca_file

    @property
    def credentials(self) -> dict[str, dict[str, str]]:
        return {
            vendor: {k: str(v) for k, v in dataclasses.asdict(sim.credentials).items()}  # type: ignore[attr-defined]
            for vendor, sim in self.simulators.items()
        }

    @functools.cached_property
    def http(self) -> httpx.Client:
        """A shared client that trusts the sandbox CA (closed by `stop`)."""
        return httpx.Client(verify=str(self.ca_file), timeout=30.0)

    def describe(self) -> dict[str, Any]:
        """Everything a client needs, as JSON-ready data (what `serve` prints)."""
        return {
            "urls": self.urls,
            "credentials": self.credentials,
            "ca_file": str(self.ca_file),
            "estate_now": self.estate.now.isoformat(),
            # what the firm's operator knows of its own legal entities (not a vendor API)
            "legal_entities": self.estate.legal_entities.select(
                "code", "name", "netsuite_subsidiary_id"
            ).to_dicts(),
            "admin": {vendor: f"{url}/__admin/faults" for vendor, url in self.urls.items()},
        }

    def stop(self) -> None:
        self._stop.set()
        if "http" in self.__dict__:
            self.http.close()
        for running in self._running:
            running.server.should_exit = True
        for running in self._running:
            running.thread.join(timeout=10)
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        if self._owns_tls_dir:
            shutil.rmtree(self.tls.ca_file.parent, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this; without it every answer waits ~40 ms for a delayed ACK
    # (uvicorn writes headers and body separately).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    return sock


def _start(simulator: Simulator, sock: socket.socket, tls: TLSFiles | None) -> _Running:
    port = sock.getsockname()[1]
    scheme = "https" if tls else "http"
    url = f"{scheme}://{HOST}:{port}"
    simulator.base_url = url
    config = uvicorn.Config(
        simulator.app(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls.cert_file) if tls else None,
        ssl_keyfile=str(tls.key_file) if tls else None,
        # Hang faults outlive client time-outs; shutdown must not wait for them.
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    async def serve_until_stopped() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            # Close whatever connection is still open when the loop ends (e.g. one whose hang-fault
            # task was cancelled at the graceful-shutdown time-out): a transport left to the
            # garbage collector warns (ResourceWarning) in whatever code happens to run then.
            for connection in list(server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and not transport.is_closing():
                    transport.close()
            await asyncio.sleep(0)

    def run() -> None:
        asyncio.run(serve_until_stopped())

    thread = threading.Thread(target=run, name=f"sandbox-{simulator.vendor}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {simulator.vendor} simulator did not start")
        time.sleep(0.01)
    return _Running(simulator, server, thread, url)


def serve(
    estate: Any,
    faults: FaultPlan | None = None,
    *,
    ports: dict[str, int] | None = None,
    tls_everywhere: bool = False,
    tls_dir: str | Path | None = None,
    speedup: float | None = None,
    tick_seconds: float = 1.0,
) -> Sandbox:
    """Start the four simulators over `estate` on loopback; returns once all four accept requests.

    `speedup` runs the estate clock in real time (every `tick_seconds`, `estate.tick(elapsed,
    speedup)`); without it the clock only moves when someone calls `estate.advance`.
    """
    tls = make_tls_files(tls_dir)
    simulators = {vendor: cls(estate, faults) for vendor, cls in SIMULATORS.items()}
    sandbox = Sandbox(
        estate=estate, simulators=simulators, urls={}, tls=tls, _owns_tls_dir=tls_dir is None
    )
    try:
        for vendor, sim in simulators.items():
            sock = _free_socket((ports or {}).get(vendor, 0))
            use_tls = tls if (vendor == "salesforce" or tls_everywhere) else None
            running = _start(sim, sock, use_tls)
            sandbox._running.append(running)
            sandbox.urls[vendor] = running.url
    except BaseException:
        sandbox.stop()
        raise
    if speedup:
        sandbox._ticker = threading.Thread(
            target=_tick_loop,
            args=(estate, speedup, tick_seconds, sandbox._stop),
            name="sandbox-clock",
            daemon=True,
        )
        sandbox._ticker.start()
    return sandbox


def _tick_loop(estate: Any, speedup: float, every: float, stop: threading.Event) -> None:
    last = time.monotonic()
    while not stop.wait(every):
        now = time.monotonic()
        try:
            with estate.lock:
                estate.tick(now - last, speedup)
        except Exception:  # the clock must keep running; a failed tick is logged and retried
            logging.getLogger(__name__).exception("estate tick failed")
        last = now


def load_estate(scale: float, seed: int, source: str | Path | None = None) -> Any:
    """Generate an estate (or load an exported one from `source`)."""
    from sandbox.estate import Estate

    if source is not None:
        return Estate.load(source)
    return Estate.generate(seed=seed, scale=scale)


@dataclass
class ChildSandbox:
    """A sandbox served by a child process; `info` is what the child printed."""

    process: subprocess.Popen[str]
    info: dict[str, Any]

    @property
    def urls(self) -> dict[str, str]:
        return self.info["urls"]

    @property
    def ca_file(self) -> str:
        return self.info["ca_file"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> ChildSandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(
    scale: float = 0.05,
    seed: int = 7,
    faults: str | Path | None = None,
    source: str | Path | None = None,
    speedup: float | None = None,
    timeout: float = 120.0,
    advance_seconds: float | None = None,
    new_session: bool = False,
) -> ChildSandbox:
    """Serve in a child process (`python -m sandbox.server`) and wait for its description.

    ``advance_seconds`` moves the estate's clock forward before serving (a demo resuming where
    it stopped). ``new_session``: the child does not get the terminal's Ctrl-C; the caller
    stops it (after whatever still talks to it).
    """
    args = [
        sys.executable,
        "-m",
        "sandbox.server",
        "--scale",
        str(scale),
        "--seed",
        str(seed),
        "--json",
    ]
    if faults:
        args += ["--faults", str(faults)]
    if source:
        args += ["--from", str(source)]
    if speedup:
        args += ["--speedup", str(speedup)]
    if advance_seconds:
        args += ["--advance", str(advance_seconds)]
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, start_new_session=new_session
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("{") or process.poll() is not None:
                break
    except BaseException:  # interrupted while it starts: no child left behind
        process.kill()
        process.wait()
        raise
    if not line.startswith("{"):
        process.kill()
        process.wait()
        raise RuntimeError(f"sandbox child failed to start (exit {process.returncode})")
    return ChildSandbox(process, json.loads(line))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the o2c-monitor sandbox on loopback.")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults")
    parser.add_argument("--from", dest="source")
    parser.add_argument("--speedup", type=float)
    parser.add_argument(
        "--advance", type=float, help="move the estate clock this many seconds before serving"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line, not a table")
    args = parser.parse_args(argv)
    estate = load_estate(args.scale, args.seed, args.source)
    if args.advance:
        estate.advance(timedelta(seconds=args.advance))
    plan = FaultPlan.load(args.faults) if args.faults else None
    sandbox = serve(estate, plan, speedup=args.speedup)
    info = sandbox.describe()
    print(json.dumps(info) if args.json else json.dumps(info, indent=2), flush=True)
    stop = threading.Event()
    with contextlib.suppress(KeyboardInterrupt):
        import signal

        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
    sandbox.stop()


if __name__ == "__main__":
    main()
