from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duroxide
import pytest

import pi_duroxide_nb as pdn


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """The one bounded poll of the suite: return the first truthy value of ``predicate()``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


@pytest.fixture
def iid() -> Callable[[str], str]:
    """Unique instance ids."""
    return lambda prefix="wf": f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _reset_engine_table() -> Iterator[None]:
    # duroxide keeps workflow functions in one process-global table; restore it per test.
    before = dict(duroxide._orchestration_functions)
    yield
    duroxide._orchestration_functions.clear()
    duroxide._orchestration_functions.update(before)


@pytest.fixture
def no_leaked_comms() -> Iterator[None]:
    """Fail the test if a widget it opened is still open (its comm would leak in a kernel)."""
    from ipywidgets.widgets import widget as widget_module

    before = set(widget_module._instances)
    yield
    leaked = [w for key, w in widget_module._instances.items() if key not in before]
    assert not leaked, f"widgets left open: {leaked[:5]}"


@pytest.fixture
def registry() -> pdn.WorkflowRegistry:
    return pdn.WorkflowRegistry()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "workflows.db"


@pytest.fixture
def make_runtime(registry: pdn.WorkflowRegistry, db_path: Path) -> Iterator[Callable[..., pdn.WorkflowRuntime]]:
    made: list[pdn.WorkflowRuntime] = []

    def make(**kwargs: Any) -> pdn.WorkflowRuntime:
        kwargs.setdefault("db", db_path)
        kwargs.setdefault("registry", registry)
        rt = pdn.WorkflowRuntime(**kwargs)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.shutdown(timeout=5)


@pytest.fixture
def rt(make_runtime: Callable[..., pdn.WorkflowRuntime]) -> pdn.WorkflowRuntime:
    return make_runtime().start()


@pytest.fixture(scope="session")
def pi_bin() -> Path:
    """pi's executable, installed once into a cache by npm; the test is skipped (with the reason) without Node.js."""
    from tests.pi_rpc_support import PiUnavailable, pi_executable

    try:
        return pi_executable()
    except PiUnavailable as exc:
        pytest.skip(f"PiRpcHost needs a real pi: {exc}")


# --- a private PostgreSQL server (skipped with the instruction where its binaries are missing) ---


def _bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_server() -> Iterator[tuple[Path, int]]:
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found: install Debian's `postgresql` package (CI does).")
    root = Path(tempfile.mkdtemp(prefix="pdn-pg-"))
    # PostgreSQL refuses to run as root; run it as the package's own user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "pdn", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield bindir, port
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: tuple[Path, int]) -> str:
    """A fresh, empty database on the test server."""
    bindir, port = pg_server
    name = f"t_{uuid.uuid4().hex[:12]}"
    psql = shutil.which("psql") or str(bindir / "psql")
    subprocess.run(
        [psql, "-h", "127.0.0.1", "-p", str(port), "-U", "pdn", "-d", "postgres", "-c", f"CREATE DATABASE {name}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return f"postgresql://pdn@127.0.0.1:{port}/{name}"
