"""Cost of the agent host's durable steps, against a plain activity, in one run.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_pi_host.py             # 40 steps per workflow, 3 repetitions (~30 s)
    python bench/bench_pi_host.py --steps 20 --reps 1

Each row is one workflow of ``--steps`` sequential steps of one kind, on a fresh temporary
SQLite store, with a ``PiHost`` whose model is a ``ScriptedModel`` (no network): the median
wall time per step of start + wait, over ``--reps`` runs. Replay from scratch makes later steps
cost more than early ones, so compare rows with each other, not with other step counts.

* ``activity``      ``ctx.schedule_activity`` of a function returning its input (the baseline);
* ``pi.llm``        one model call (message parsing, the scripted reply, pi's JSON shape);
* ``pi.tool ls``    pi's ``ls`` tool, plus its transcript entry (aiosqlite, separate file);
* ``pi.send``       ``ctx.pi.send_message``: one transcript entry;
* ``pi.prompt``     a full agent turn: model -> ``read`` tool -> model.

It also times ``rt.messages()`` reading the transcript written by the runs (entries, ms).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pi_duroxide_nb as pdn


def _reply(call: pdn.ModelCall) -> Any:
    if call.tool_names and not any(isinstance(m, pdn.ToolResultMessage) for m in call.messages):
        return pdn.ToolCall("read", {"path": "notes.md"})
    return "ok"


def build(registry: pdn.WorkflowRegistry, steps: int) -> None:
    @registry.register_activity("echo")
    def echo(ctx, value):
        return value

    @registry.register_workflow("activity")
    def activity(ctx, _):
        for i in range(steps):
            yield ctx.schedule_activity("echo", i)

    @registry.register_workflow("pi.llm")
    def llm(ctx, _):
        for i in range(steps):
            yield ctx.pi.llm([{"role": "user", "content": f"step {i}"}])

    @registry.register_workflow("pi.tool ls")
    def tool(ctx, _):
        for i in range(steps):
            yield ctx.pi.tool("ls", {"limit": i + 1})

    @registry.register_workflow("pi.send")
    def send(ctx, _):
        for i in range(steps):
            yield ctx.pi.send_message(f"step {i}")

    @registry.register_workflow("pi.prompt")
    def prompt(ctx, _):
        for i in range(steps):
            yield ctx.pi.prompt(f"read the notes ({i})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    kinds = ["activity", "pi.llm", "pi.tool ls", "pi.send", "pi.prompt"]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "project"
        work.mkdir()
        (work / "notes.md").write_text("notes\n", encoding="utf-8")
        registry = pdn.WorkflowRegistry()
        build(registry, args.steps)
        for rep in range(args.reps):
            host = pdn.PiHost(model=pdn.ScriptedModel(_reply), cwd=work)
            with pdn.WorkflowRuntime(db=Path(tmp) / f"bench-{rep}.db", registry=registry, host=host) as rt:
                rt.wait_for_workflow(rt.start_workflow("activity", None), timeout=120)  # warm up
                for kind in kinds:
                    started = time.perf_counter()
                    state = rt.wait_for_workflow(rt.start_workflow(kind, None), timeout=300)
                    elapsed = time.perf_counter() - started
                    assert state.status is pdn.WorkflowStatus.COMPLETED, state.error
                    times[kind].append(elapsed / args.steps * 1000)
                started = time.perf_counter()
                entries = rt.messages()
                read_ms = (time.perf_counter() - started) * 1000
        print(f"{args.steps} sequential steps per workflow, median of {args.reps} runs")
        print(f"{'step':<12} {'ms/step':>8} {'vs activity':>12}")
        base = statistics.median(times["activity"])
        for kind in kinds:
            ms = statistics.median(times[kind])
            print(f"{kind:<12} {ms:8.2f} {ms / base:11.2f}x")
        print(f"rt.messages(): {len(entries)} entries read in {read_ms:.1f} ms (last run)")


if __name__ == "__main__":
    main()
