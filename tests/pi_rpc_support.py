"""A real pi for the PiRpcHost tests: installed once with npm into a cache, with an offline test provider.

``pi_executable()`` returns the cached ``pi`` of ``PI_VERSION`` (installing it the first time, into
``~/.cache/pi_duroxide_nb/pi-<version>``, or ``$PI_DUROXIDE_PI_CACHE/pi-<version>``), or raises
``PiUnavailable`` saying why it cannot (no Node.js or npm, Node too old). ``host_options``
are the PiRpcHost arguments every test uses: the test provider extension next to this file, an
empty pi agent directory (no user settings, skills or extensions) and no startup network calls.
Only the standard library is imported at the top, for the crash test's worker.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

PI_PACKAGE = "@mariozechner/pi-coding-agent"
PI_VERSION = "0.73.1"
"""The pi release these tests run against (its npm package runs on Node.js >= 20.6)."""

TEST_PROVIDER = Path(__file__).with_name("pi_test_provider.ts")
_NODE_MIN = (20, 6)


class PiUnavailable(Exception):
    """pi cannot be installed or run here; the message says why."""


def cache_dir() -> Path:
    base = os.environ.get("PI_DUROXIDE_PI_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "pi_duroxide_nb"
    return root / f"pi-{PI_VERSION}"


def _node_version(node: str) -> tuple[int, int]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.(\d+)", out)
    if not match:
        raise PiUnavailable(f"`node --version` printed {out!r}, not a version")
    return int(match[1]), int(match[2])


def pi_executable() -> Path:
    """The cached pi (installed on first use); raises PiUnavailable when Node.js or npm is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise PiUnavailable(
            f"{missing} not found: the PiRpcHost tests install pi with npm and run it on Node.js >= 20.6 "
            "(Debian: apt-get install nodejs npm; .ci/run installs them)"
        )
    version = _node_version(node)
    if version < _NODE_MIN:
        raise PiUnavailable(f"Node.js {version[0]}.{version[1]} is too old for pi {PI_VERSION} (needs >= 20.6)")
    target = cache_dir()
    pi = target / "node_modules" / ".bin" / "pi"
    if pi.exists():
        return pi
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.installing-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    cmd = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", f"{PI_PACKAGE}@{PI_VERSION}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        msg = f"`{' '.join(cmd)}` failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        raise RuntimeError(msg)
    try:
        staging.rename(target)  # atomic: a half-finished install is never reused
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process installed it first
    if not pi.exists():
        raise RuntimeError(f"npm installed {PI_PACKAGE} but {pi} is missing")
    return pi


def host_options(pi: Path, agent_dir: Path, **extra_env: str) -> dict[str, Any]:
    """PiRpcHost keyword arguments for an isolated pi on the test provider."""
    agent_dir.mkdir(parents=True, exist_ok=True)
    return {
        "command": [str(pi)],
        "provider": "pdn-test",
        "model": "echo",
        "extensions": [TEST_PROVIDER],
        "env": {"PI_OFFLINE": "1", "PI_CODING_AGENT_DIR": str(agent_dir), **extra_env},
    }
