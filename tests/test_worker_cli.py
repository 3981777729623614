"""``python -m pi_duroxide_nb worker``: workers share a store, and a SIGKILLed one loses nothing.

Two worker processes serve ``tests/worker_workflows.py`` on a private PostgreSQL database and
on one SQLite file. The test process is a client only (``worker=False``): it starts the
instances, lists the live workers, and never runs work itself.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb._worker import load_module
from pi_duroxide_nb.engine import format_ref
from tests.conftest import wait_until

MODULE = Path(__file__).with_name("worker_workflows.py")
ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """A worker subprocess, its output lines collected by a reader thread."""

    def __init__(self, db: str, flags: Path, *extra: str) -> None:
        env = {**os.environ, "PDN_WORKER_FLAGS": str(flags), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pi_duroxide_nb", "worker", "--db", db, "--module", str(MODULE), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"worker never printed {text!r}; output: {''.join(self.output)}") from None
            if text in line:
                return line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


def _running(flags: Path) -> list[tuple[int, int]]:
    """(x, pid) of every activity run that started."""
    found = []
    for f in flags.glob("running-*"):
        _, x, pid = f.name.split("-")
        found.append((int(x), int(pid)))
    return found


def _share_and_survive_a_kill(db: str, tmp_path: Path, workers: list[Worker], iid) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    module = load_module(str(MODULE))
    client = pdn.WorkflowRuntime(db=db, registry=module.registry, worker=False)
    try:
        # Started before any worker runs: the client queues them and does none of the work.
        ids = [client.start_workflow("job", x, instance_id=iid(f"job{x}")) for x in range(6)]
        assert client.engine_mode == "client" and not client.is_worker

        a = Worker(db, flags, "--concurrency", "2")
        workers.append(a)
        b = Worker(db, flags, "--concurrency", "2")
        workers.append(b)
        assert "ready" in a.expect("ready") and "concurrency 2" in b.expect("ready")
        live = wait_until(lambda: {w.pid for w in client.workers()} == {a.pid, b.pid} and client.workers())
        assert all(w.concurrency == 2 and w.activities == ("hold",) for w in live)
        assert {w.workflows for w in live} == {(format_ref("job", module.registry.workflow("job").version),)}

        # Both take work (each holds at most 2 of the 6 held activities), and the client none.
        wait_until(lambda: {pid for _, pid in _running(flags)} == {a.pid, b.pid}, timeout=30)
        held_by_a = {x for x, pid in _running(flags) if pid == a.pid}
        assert held_by_a and os.getpid() not in {pid for _, pid in _running(flags)}

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed = time.monotonic()
        (flags / "release").touch()

        states = [client.wait_for_workflow(i, timeout=30) for i in ids]
        elapsed = time.monotonic() - killed
        assert [s.status for s in states] == [pdn.WorkflowStatus.COMPLETED] * 6, [s.error for s in states]
        assert [s.output["x"] for s in states] == list(range(6))
        # A never finished anything (its activities were held until it died): B did all of it,
        # including A's in-flight activities, after their lock lease ran out.
        assert {s.output["pid"] for s in states} == {b.pid}
        assert held_by_a <= {x for x, pid in _running(flags) if pid == b.pid}
        assert elapsed < 20, f"A's work resumed on B after {elapsed:.1f} s; the lock lease is 2 s"
        for i in ids:
            kinds = Counter(e.kind for e in client.history(i))
            assert kinds["ActivityScheduled"] == 1 and kinds["ActivityCompleted"] == 1, (i, kinds)
            assert kinds["ActivityFailed"] == 0 and kinds["OrchestrationCompleted"] == 1

        # The killed worker drops out of the live view once its heartbeat is stale.
        wait_until(lambda: [w.pid for w in client.workers(within=1.5)] == [b.pid], timeout=10)
        # SIGTERM: a graceful stop, which leaves the view at once.
        b.proc.send_signal(signal.SIGTERM)
        b.expect("stopped")
        assert b.proc.wait(timeout=30) == 0
        assert b.pid not in {w.pid for w in client.workers()}  # gone at once, within=10 s notwithstanding
    finally:
        client.shutdown()


def test_workers_share_a_sqlite_file_and_a_killed_one_loses_nothing(tmp_path, workers, iid) -> None:
    _share_and_survive_a_kill(str(tmp_path / "shared.db"), tmp_path, workers, iid)


def test_workers_share_a_postgres_database_and_a_killed_one_loses_nothing(tmp_path, workers, iid, pg_url) -> None:
    _share_and_survive_a_kill(pg_url, tmp_path, workers, iid)
