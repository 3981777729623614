"""Scaffolding shared by the crash tests: worker processes on one store, SIGKILLed and resumed.

Both sides use it. A worker script (run as ``python tests/<worker>.py MODE DB WORKDIR ID``, so
this module is imported as ``crash_scaffold``) leaves traces with ``append_line``; the test
drives the processes with ``Workers`` (a fixture made by ``workers_fixture``): spawn A, wait
for its marker file, SIGKILL it, spawn B, read B's JSON report. Only the standard library is
imported at the top, for the workers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to ``path`` and fsync it, so it survives the process being killed right after."""
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


class Workers:
    """The worker processes of one test; ``close`` kills and reaps any still running.

    Args:
        script: The worker script.
        block_env: The variable that makes a worker block in its slow step; removed from the
            environment the processes inherit (each worker sets it itself in ``start`` mode).
    """

    def __init__(self, script: Path, *, block_env: str) -> None:
        self._script = script
        self._block_env = block_env
        self._started: list[subprocess.Popen[str]] = []

    def spawn(self, mode: str, db: Path, workdir: Path, instance_id: str) -> subprocess.Popen[str]:
        """Run the worker in ``mode`` on ``db``."""
        proc = subprocess.Popen(
            [sys.executable, str(self._script), mode, str(db), str(workdir), instance_id],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if k != self._block_env},
        )
        self._started.append(proc)
        return proc

    def wait_for(self, proc: subprocess.Popen[str], marker: Path, *, timeout: float = 30) -> None:
        """Wait until ``marker`` exists; fail at once, with its output, if ``proc`` exits first."""
        from tests.conftest import wait_until

        def reached() -> bool:
            if proc.poll() is not None:
                out, err = proc.communicate(timeout=5)
                msg = f"worker exited early ({proc.returncode}):\nstdout:\n{out}\nstderr:\n{err}"
                raise AssertionError(msg)
            return marker.exists()

        wait_until(reached, timeout=timeout)

    def kill(self, proc: subprocess.Popen[str]) -> None:
        """SIGKILL ``proc`` and reap it."""
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL

    def report(self, proc: subprocess.Popen[str], *, timeout: float = 60) -> dict[str, Any]:
        """Wait for ``proc`` to succeed and return the JSON report on its last line of output."""
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"worker failed ({proc.returncode}):\nstdout:\n{out}\nstderr:\n{err}"
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    def close(self) -> None:
        """Kill and reap every worker still running."""
        for proc in self._started:
            if proc.poll() is None:
                proc.kill()
            try:
                proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - diagnostics only
                pass


def workers_fixture(script: Path, *, block_env: str) -> Callable[[], Iterator[Workers]]:
    """A pytest fixture named by the assignment that holds it: ``workers = workers_fixture(WORKER, ...)``."""
    import pytest

    @pytest.fixture
    def workers() -> Iterator[Workers]:
        started = Workers(script, block_env=block_env)
        yield started
        started.close()

    return workers
