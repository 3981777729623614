"""Helper process for ``test_crash_recovery.py``: runs one workflow on a SQLite store.

Usage:
    python crash_worker.py start  DB WORKDIR INSTANCE_ID   # process A: start the instance, then wait
    python crash_worker.py resume DB WORKDIR INSTANCE_ID   # process B: only run the store, wait, print JSON

The workflow runs ``step`` s1, s2, s3, then ``slow``, then ``step`` s4. Every run of an
activity leaves a trace in WORKDIR, so the test can count runs across processes:

* ``steps.log``          one line ``<step>`` per run of ``step``;
* ``slow_attempts.log``  one line ``<pid> <wall time>`` per start of ``slow``;
* ``slow_started``       created when ``slow`` starts (the test polls for it).

In ``start`` mode ``slow`` blocks for 60 s, so the test can SIGKILL the process while it is
in flight; in ``resume`` mode it returns at once. The workflow function itself is the same
in both modes, so both processes derive the same code version and B replays A's instance.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from crash_scaffold import append_line  # this script's folder is on sys.path

import pi_duroxide_nb as pdn

WORKFLOW = "crash-recovery"
BLOCK_ENV = "CRASH_WORKER_SLOW_BLOCKS"


def step(ctx: pdn.ActivityContext, data: dict) -> str:
    append_line(Path(data["dir"]) / "steps.log", data["step"])
    return f"{data['step']}-done"


def slow(ctx: pdn.ActivityContext, data: dict) -> str:
    workdir = Path(data["dir"])
    append_line(workdir / "slow_attempts.log", f"{os.getpid()} {time.time():.6f}")
    (workdir / "slow_started").write_text(str(os.getpid()), encoding="utf-8")
    if os.environ.get(BLOCK_ENV) == "1":
        time.sleep(60)  # killed long before this returns
        return "slow-finished-in-A"
    return f"slow-done-{data['value'] * 2}"


def crash_recovery(ctx: pdn.WorkflowContext, data: dict):
    results = []
    for name in ("s1", "s2", "s3"):
        results.append((yield ctx.schedule_activity("step", {"dir": data["dir"], "step": name})))
    results.append((yield ctx.schedule_activity("slow", {"dir": data["dir"], "value": data["value"]})))
    results.append((yield ctx.schedule_activity("step", {"dir": data["dir"], "step": "s4"})))
    return {"results": results}


def build_registry() -> pdn.WorkflowRegistry:
    reg = pdn.WorkflowRegistry()
    reg.register_activity("step", step)
    reg.register_activity("slow", slow)
    reg.register_workflow(WORKFLOW, crash_recovery)
    return reg


def main(argv: list[str]) -> int:
    mode, db, workdir, iid = argv
    work = Path(workdir)
    reg = build_registry()
    version = reg.workflow(WORKFLOW).version
    rt = pdn.WorkflowRuntime(db=db, registry=reg)

    if mode == "start":
        os.environ[BLOCK_ENV] = "1"
        (work / "a_version").write_text(version, encoding="utf-8")
        rt.start()
        rt.start_workflow(WORKFLOW, {"dir": str(work), "value": 21}, instance_id=iid)
        # Wait for the instance; the test SIGKILLs this process long before this returns.
        rt.wait_for_workflow(iid, timeout=120)
        return 1  # reaching here means the test did not kill us

    if mode == "resume":
        os.environ.pop(BLOCK_ENV, None)
        (work / "b_start_time").write_text(f"{time.time():.6f}", encoding="utf-8")
        rt.start()
        state = rt.wait_for_workflow(iid, timeout=30)
        history = rt.history(iid)
        rt.shutdown(timeout=5)
        report = {
            "registered_version": version,
            "state": state.model_dump(mode="json"),
            "history": [
                {"kind": e.kind, "name": e.name, "event_id": e.event_id, "source_event_id": e.source_event_id}
                for e in history
            ],
        }
        print(json.dumps(report), flush=True)
        return 0

    print(f"unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
