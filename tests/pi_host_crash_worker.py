"""Helper process for ``test_pi_host_crash.py``: a workflow whose LLM call completes before a SIGKILL.

Usage:
    python pi_host_crash_worker.py start  DB WORKDIR INSTANCE_ID   # process A: start, then block in `slow`
    python pi_host_crash_worker.py resume DB WORKDIR INSTANCE_ID   # process B: resume, print a JSON report

The workflow calls ``ctx.pi.llm``, then ``ctx.pi.prompt`` (a turn in which the model calls
``ls``), on a PiHost whose ScriptedModel appends one line per call to ``model_calls.log``;
sends a message; then runs ``slow``, which blocks in process A (the test kills A there) and
returns at once in B.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from crash_scaffold import append_line  # this script's folder is on sys.path

import pi_duroxide_nb as pdn

WORKFLOW = "llm-then-slow"
BLOCK_ENV = "PI_HOST_CRASH_BLOCKS"


def slow(ctx: pdn.ActivityContext, workdir: str) -> str:
    (Path(workdir) / "slow_started").write_text(str(os.getpid()), encoding="utf-8")
    if os.environ.get(BLOCK_ENV) == "1":
        time.sleep(60)  # killed long before this returns
    return f"slow-done-in-{os.getpid()}"


def llm_then_slow(ctx: pdn.WorkflowContext, workdir: str):
    reply = yield ctx.pi.llm([{"role": "user", "content": "Plan the deploy"}])
    text = reply["content"][0]["text"]
    turn = yield ctx.pi.prompt("Check the work directory")
    yield ctx.pi.send_message(f"plan: {text}")
    done = yield ctx.schedule_activity("slow", workdir)
    return {"plan": text, "check": turn["text"], "slow": done}


def main(argv: list[str]) -> int:
    mode, db, workdir, iid = argv
    work = Path(workdir)

    def answer(call: pdn.ModelCall) -> str | pdn.ToolCall:
        append_line(work / "model_calls.log", str(os.getpid()))
        if not call.tool_names:  # ctx.pi.llm offers no tools
            return f"plan-from-{os.getpid()}"
        if not isinstance(call.messages[-1], pdn.ToolResultMessage):
            return pdn.ToolCall("ls", {})
        return f"checked-in-{os.getpid()}"

    host = pdn.PiHost(model=pdn.ScriptedModel(answer), cwd=work, tools=["ls"])
    reg = pdn.WorkflowRegistry()
    reg.register_activity("slow", slow)
    reg.register_workflow(WORKFLOW, llm_then_slow)
    rt = pdn.WorkflowRuntime(db=db, registry=reg, host=host)

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
        "calls_in_b": len(host.model.calls),
        "messages": [[e.custom_type, e.content] for e in rt.messages(iid)],
    }
    rt.shutdown(timeout=5)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
