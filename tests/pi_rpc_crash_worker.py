"""Helper process for ``test_pi_rpc_host_crash.py``: a workflow on a real pi whose turns complete before a SIGKILL.

Usage (pi's executable in $PDN_TEST_PI; the test provider logs each model call to $PDN_TEST_MODEL_LOG):
    python pi_rpc_crash_worker.py start  DB WORKDIR INSTANCE_ID   # process A: start, then block in `slow`
    python pi_rpc_crash_worker.py resume DB WORKDIR INSTANCE_ID   # process B: resume, print a JSON report

The workflow calls ``ctx.pi.llm``, then ``ctx.pi.prompt`` (a turn in which pi's model calls
``read``), sends a message, then runs ``slow``, which writes the pid of A's pi and blocks in
process A (the test kills A there) and returns at once in B.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from pi_rpc_support import host_options  # this script's folder is on sys.path

import pi_duroxide_nb as pdn

WORKFLOW = "pi-rpc-then-slow"
BLOCK_ENV = "PI_RPC_CRASH_BLOCKS"
HOST: pdn.PiRpcHost | None = None


def slow(ctx: pdn.ActivityContext, workdir: str) -> str:
    pi_pid = HOST.pid if HOST is not None else None
    (Path(workdir) / "slow_started").write_text(json.dumps({"pid": os.getpid(), "pi": pi_pid}), encoding="utf-8")
    if os.environ.get(BLOCK_ENV) == "1":
        time.sleep(60)  # killed long before this returns
    return f"slow-done-in-{os.getpid()}"


def pi_then_slow(ctx: pdn.WorkflowContext, workdir: str):
    reply = yield ctx.pi.llm([{"role": "user", "content": "Plan the deploy"}])
    text = reply["content"][0]["text"]
    turn = yield ctx.pi.prompt('call read {"path": "notes.md"}')
    yield ctx.pi.send_message(f"plan: {text}")
    done = yield ctx.schedule_activity("slow", workdir)
    return {"plan": text, "check": turn["text"], "slow": done}


def main(argv: list[str]) -> int:
    global HOST
    mode, db, workdir, iid = argv
    work = Path(workdir)
    HOST = pdn.PiRpcHost(cwd=work, tools=["read"], **host_options(Path(os.environ["PDN_TEST_PI"]), work / "agent"))
    reg = pdn.WorkflowRegistry()
    reg.register_activity("slow", slow)
    reg.register_workflow(WORKFLOW, pi_then_slow)
    rt = pdn.WorkflowRuntime(db=db, registry=reg, host=HOST)

    if mode == "start":
        os.environ[BLOCK_ENV] = "1"
        rt.start()
        rt.start_workflow(WORKFLOW, str(work), instance_id=iid)
        rt.wait_for_workflow(iid, timeout=120)
        return 1  # reaching here means the test did not kill us

    os.environ.pop(BLOCK_ENV, None)
    rt.start()
    state = rt.wait_for_workflow(iid, timeout=30)
    report = {
        "state": state.model_dump(mode="json"),
        "pi_starts_in_b": HOST.starts,
        "messages": [[e.custom_type, e.content] for e in rt.messages(iid)],
    }
    rt.shutdown(timeout=5)
    HOST.close()
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
