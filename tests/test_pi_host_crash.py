"""Crash safety of the host: a completed LLM call is never repeated after the process is killed.

Process A runs a workflow through ``ctx.pi.llm`` and a ``ctx.pi.prompt`` turn that calls a tool
(model calls counted in a file), sends a message, and is SIGKILLed inside the next activity.
Process B opens the same store with the same code: the instance completes with A's answers,
the model is not called again, and what A wrote to the transcript is still there.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.crash_scaffold import Workers, workers_fixture

WORKER = Path(__file__).with_name("pi_host_crash_worker.py")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


workers = workers_fixture(WORKER, block_env="PI_HOST_CRASH_BLOCKS")


@pytest.mark.timeout(90)
def test_completed_llm_call_is_not_repeated_after_sigkill(tmp_path: Path, workers: Workers) -> None:
    db = tmp_path / "workflows.db"
    iid = f"llm-crash-{uuid.uuid4().hex[:10]}"
    calls_log = tmp_path / "model_calls.log"

    a = workers.spawn("start", db, tmp_path, iid)
    workers.wait_for(a, tmp_path / "slow_started")
    a_calls = [str(a.pid)] * 3  # llm, then the prompt turn: tool call, answer
    assert calls_log.read_text().split() == a_calls, "A called the model three times before the slow step"
    workers.kill(a)

    b = workers.spawn("resume", db, tmp_path, iid)
    report = workers.report(b)

    state = report["state"]
    assert state["status"] == "Completed", state
    assert state["output"] == {
        "plan": f"plan-from-{a.pid}",
        "check": f"checked-in-{a.pid}",
        "slow": f"slow-done-in-{b.pid}",
    }
    assert report["calls_in_b"] == 0, "B replayed the workflow without calling the model"
    assert calls_log.read_text().split() == a_calls, "no model call was repeated"
    assert report["messages"] == [  # A's transcript entries survived the kill
        ["workflow_tool_call", "ls {}"],
        ["workflow_message", f"plan: plan-from-{a.pid}"],
    ]
