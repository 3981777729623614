"""Crash safety with a real pi: a SIGKILL of the process mid-workflow is replayed without calling pi again.

Process A runs a workflow on ``PiRpcHost`` (its own pi child, on the offline test provider, which
logs each model call with A's pid): ``ctx.pi.llm``, a ``ctx.pi.prompt`` turn in which pi's model
calls ``read``, a message; it is SIGKILLed inside the next activity. Its pi, whose input closed,
exits too. Process B opens the same store with the same code and a new PiRpcHost: the instance
completes with A's answers, and B never starts pi at all.
"""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.crash_scaffold import Workers, workers_fixture

WORKER = Path(__file__).with_name("pi_rpc_crash_worker.py")

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")


workers = workers_fixture(WORKER, block_env="PI_RPC_CRASH_BLOCKS")


def _gone(pid: int) -> bool:
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


@pytest.mark.timeout(90)
def test_a_completed_pi_turn_is_not_repeated_after_sigkill(
    tmp_path: Path, workers: Workers, pi_bin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "workflows.db"
    iid = f"pi-rpc-crash-{uuid.uuid4().hex[:10]}"
    calls_log = tmp_path / "model_calls.log"
    (tmp_path / "notes.md").write_text("Remember the milk.\n", encoding="utf-8")
    monkeypatch.setenv("PDN_TEST_PI", str(pi_bin))
    monkeypatch.setenv("PDN_TEST_MODEL_LOG", str(calls_log))

    a = workers.spawn("start", db, tmp_path, iid)
    workers.wait_for(a, tmp_path / "slow_started", timeout=60)
    started = json.loads((tmp_path / "slow_started").read_text(encoding="utf-8"))
    a_calls = [str(a.pid)] * 3  # llm, then the prompt turn: tool call, answer
    assert calls_log.read_text().split() == a_calls, "A's pi called the model three times before the slow step"
    assert started["pi"] is not None
    workers.kill(a)
    wait_until(lambda: _gone(started["pi"]), timeout=30)  # A's pi exits when its input closes

    b = workers.spawn("resume", db, tmp_path, iid)
    report = workers.report(b)

    state = report["state"]
    assert state["status"] == "Completed", state
    assert state["output"] == {
        "plan": f"echo({a.pid}): Plan the deploy",
        "check": "done: Remember the milk.\n",
        "slow": f"slow-done-in-{b.pid}",
    }
    assert report["pi_starts_in_b"] == 0, "B replayed the workflow without starting pi"
    assert calls_log.read_text().split() == a_calls, "no model call was repeated"
    assert report["messages"] == [  # A's transcript entries survived the kill
        ["workflow_tool_call", 'read {"path": "notes.md"}'],
        ["workflow_message", f"plan: echo({a.pid}): Plan the deploy"],
    ]
