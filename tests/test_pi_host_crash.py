"""Crash safety of the host: a completed LLM call is never repeated after the process is killed.

Process A runs a workflow through ``ctx.pi.llm`` (counted in a file), sends a message, and is
SIGKILLed inside the next activity. Process B opens the same store with the same code: the
instance completes with A's LLM answer, the model is not called again, and the message that A
wrote to the transcript is still there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until

WORKER = Path(__file__).with_name("pi_host_crash_worker.py")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def _spawn(mode: str, db: Path, workdir: Path, iid: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PI_HOST_CRASH_BLOCKS"}
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, str(db), str(workdir), iid],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - diagnostics only
            pass


@pytest.mark.timeout(90)
def test_completed_llm_call_is_not_repeated_after_sigkill(tmp_path: Path, procs: list[subprocess.Popen[str]]) -> None:
    db = tmp_path / "workflows.db"
    iid = f"llm-crash-{uuid.uuid4().hex[:10]}"
    calls_log = tmp_path / "model_calls.log"
    slow_started = tmp_path / "slow_started"

    a = _spawn("start", db, tmp_path, iid)
    procs.append(a)

    def a_reached_slow() -> bool:
        if a.poll() is not None:
            out, err = a.communicate(timeout=5)
            raise AssertionError(f"process A exited early ({a.returncode}):\n{out}\n{err}")
        return slow_started.exists()

    wait_until(a_reached_slow, timeout=30)
    assert calls_log.read_text().split() == [str(a.pid)], "A called the model once before the slow step"
    os.kill(a.pid, signal.SIGKILL)
    a.communicate(timeout=10)
    assert a.returncode == -signal.SIGKILL

    b = _spawn("resume", db, tmp_path, iid)
    procs.append(b)
    out, err = b.communicate(timeout=60)
    assert b.returncode == 0, f"process B failed ({b.returncode}):\nstdout:\n{out}\nstderr:\n{err}"
    report = json.loads(out.strip().splitlines()[-1])

    state = report["state"]
    assert state["status"] == "Completed", state
    assert state["output"] == {"plan": f"plan-from-{a.pid}", "slow": f"slow-done-in-{b.pid}"}
    assert report["calls_in_b"] == 0, "B replayed the workflow without calling the model"
    assert calls_log.read_text().split() == [str(a.pid)], "the model was called exactly once, by A"
    assert report["messages"] == [f"plan: plan-from-{a.pid}"], "A's transcript entry survived the kill"
