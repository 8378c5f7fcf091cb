"""Debian packages the real-parts tests need (Prometheus, Alertmanager, Chromium), installed when absent.

The tests talk to real binaries, never to stand-ins. When a binary is missing and we run as root,
``require_binaries`` installs its Debian package with apt-get (one installer at a time across
concurrent test sessions: a file lock plus apt's own lock timeout). With ``CI=true`` a binary
that still cannot be had fails the test; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# binary -> the Debian (bookworm) package that ships it
PACKAGES: dict[str, str] = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
}
_LOCK = Path("/tmp/o2c-tests-apt.lock")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _apt_install(packages: list[str]) -> str | None:
    """Install ``packages``; None on success, else the reason it failed."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Debian's postinst scripts try to start the services; in a container without an init
    # system that fails harmlessly, and policy-rc.d keeps them from starting where one exists.
    policy = Path("/usr/sbin/policy-rc.d")
    wrote_policy = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        wrote_policy = True
    try:
        base = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
        install = [*base, "install", "--no-install-recommends", *packages]
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            # Stale package lists are the usual cause: refresh once and try again.
            subprocess.run([*base, "update"], env=env, capture_output=True, timeout=900)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"apt-get install {' '.join(packages)} failed: {done.stderr.strip()[-300:]}"
        return None
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"apt-get install {' '.join(packages)} failed: {exc}"
    finally:
        if wrote_policy:
            policy.unlink(missing_ok=True)


def require_binaries(*binaries: str) -> dict[str, str]:
    """The absolute path of each binary, installing its Debian package first when absent."""
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            _unavailable(f"{', '.join(missing)} not installed (needs root and apt-get to install)")
        packages = sorted({PACKAGES[name] for name in missing})
        _LOCK.touch(exist_ok=True)
        with _LOCK.open() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            still_missing = [name for name in missing if shutil.which(name) is None]
            if still_missing:
                reason = _apt_install(packages)
                if reason is not None:
                    _unavailable(reason)
    paths = {name: shutil.which(name) for name in binaries}
    absent = [name for name, path in paths.items() if path is None]
    if absent:
        _unavailable(f"{', '.join(absent)} still missing after installing its package")
    return {name: path for name, path in paths.items() if path is not None}
