"""Crash recovery through the public API, across real processes.

Process A starts a workflow (three steps, a slow activity, a last step) and is SIGKILLed
while the slow activity is in flight. Process B opens the same store with the same code and
only starts the runtime: the instance must finish, the finished steps must not run again,
and the in-flight activity must be retried within a few seconds (its lock lease is 2 s).
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.crash_scaffold import Workers, workers_fixture

WORKER = Path(__file__).with_name("crash_worker.py")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


workers = workers_fixture(WORKER, block_env="CRASH_WORKER_SLOW_BLOCKS")


@pytest.mark.timeout(90)
def test_sigkill_mid_activity_resumes_in_new_process(tmp_path: Path, workers: Workers) -> None:
    db = tmp_path / "workflows.db"
    iid = f"crash-{uuid.uuid4().hex[:10]}"
    steps_log = tmp_path / "steps.log"
    attempts_log = tmp_path / "slow_attempts.log"
    slow_started = tmp_path / "slow_started"

    # --- process A: start the instance, kill it while `slow` runs -------------------------
    a = workers.spawn("start", db, tmp_path, iid)
    workers.wait_for(a, slow_started)
    assert _lines(steps_log) == ["s1", "s2", "s3"], "steps 1..3 ran once each before the slow activity"
    a_attempt = _lines(attempts_log)
    assert len(a_attempt) == 1 and a_attempt[0].split()[0] == str(a.pid), a_attempt

    workers.kill(a)
    killed_at = time.time()
    slow_started.unlink()

    # --- process B: same code, same store; no new instance ---------------------------------
    b = workers.spawn("resume", db, tmp_path, iid)
    report = workers.report(b)
    state = report["state"]

    # The instance finished, on the version A started it with, with the right output.
    a_version = (tmp_path / "a_version").read_text(encoding="utf-8")
    assert report["registered_version"] == a_version
    assert state["instance_id"] == iid
    assert state["version"] == a_version
    assert state["status"] == "Completed", state
    assert state["output"] == {"results": ["s1-done", "s2-done", "s3-done", "slow-done-42", "s4-done"]}

    # Steps finished before the crash ran exactly once; s4 ran once, in B.
    assert _lines(steps_log) == ["s1", "s2", "s3", "s4"]

    # The in-flight activity was retried (once, in B) ...
    attempts = [line.split() for line in _lines(attempts_log)]
    assert len(attempts) == 2, attempts
    assert attempts[0][0] == str(a.pid)
    assert attempts[1][0] == str(b.pid)

    # ... promptly: the crashed process's lease (2 s) expires, then B picks the work up.
    b_started = float((tmp_path / "b_start_time").read_text(encoding="utf-8"))
    retry_at = float(attempts[1][1])
    resume_delay = retry_at - b_started
    print(f"\nretry started {resume_delay:.3f} s after B's rt.start(), {retry_at - killed_at:.3f} s after the kill")
    assert 0 <= resume_delay < 4.0, resume_delay

    # The history records each activity scheduled once: the retry re-ran the work item,
    # it did not schedule anything new.
    scheduled = [e["name"] for e in report["history"] if e["kind"] == "ActivityScheduled"]
    assert scheduled == ["step", "step", "step", "slow", "step"], report["history"]
    completed = [e for e in report["history"] if e["kind"] == "ActivityCompleted"]
    assert len(completed) == 5, report["history"]
