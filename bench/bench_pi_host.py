"""Cost of the agent host's durable steps, against a plain activity, and PiRpcHost against PiHost, in one run.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_pi_host.py             # 40 steps per workflow, 3 repetitions (~1 min)
    python bench/bench_pi_host.py --steps 20 --reps 1

Each workflow row is one workflow of ``--steps`` sequential steps of one kind, on a fresh
temporary SQLite store, with each host in turn:

* ``PiHost``: its model is a ``ScriptedModel`` (no network);
* ``PiRpcHost``: a real pi (``pi --mode rpc``, the version the tests pin, installed by npm into
  the tests' cache on first use) whose model is the tests' offline provider
  (``tests/pi_test_provider.ts``), so both models answer at once and the difference is the
  host: pi's process, its JSONL protocol, the bridge extension, pi's own tools and agent loop.

The figure is the median wall time per step of start + wait, over ``--reps`` runs. Replay from
scratch makes later steps cost more than early ones, so compare rows with each other, not with
other step counts.

* ``activity``      ``ctx.schedule_activity`` of a function returning its input (the baseline);
* ``pi.llm``        one model call (message parsing, the scripted reply, pi's JSON shape);
* ``pi.tool ls``    pi's ``ls`` tool, plus its transcript entry (aiosqlite, separate file);
* ``pi.send``       ``ctx.pi.send_message``: one transcript entry;
* ``pi.prompt``     a full agent turn: model -> ``read`` tool -> model.

Then the same calls made directly on each host (no workflow, no store: the host's own cost per
call, median of ``--calls`` calls), pi's start-up time, and ``rt.messages()`` reading the
transcript written by the runs (entries, ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pi_duroxide_nb as pdn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' pi install and provider
from tests.pi_rpc_support import PiUnavailable, host_options, pi_executable  # noqa: E402

PROMPT = 'call read {"path": "notes.md"}'  # the test provider calls read; the scripted model always does


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
        for _ in range(steps):
            yield ctx.pi.prompt(PROMPT)


def direct_calls(host: Any) -> dict[str, Callable[[int], Any]]:
    return {
        "pi.llm": lambda i: host.llm([{"role": "user", "content": f"step {i}"}], {}),
        "pi.tool ls": lambda i: host.tool("ls", {"limit": i + 1}),
        "pi.send": lambda i: host.send_message(f"step {i}"),
        "pi.prompt": lambda i: host.prompt(PROMPT, {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="direct host calls per kind")
    args = parser.parse_args()
    kinds = ["activity", "pi.llm", "pi.tool ls", "pi.send", "pi.prompt"]
    try:
        pi: Path | None = pi_executable()
        skipped = ""
    except PiUnavailable as exc:
        pi, skipped = None, str(exc)
    labels = ["PiHost", "PiRpcHost"] if pi is not None else ["PiHost"]
    times: dict[str, dict[str, list[float]]] = {label: {k: [] for k in kinds} for label in labels}
    direct: dict[str, dict[str, float]] = {label: {} for label in labels}
    startup: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "project"
        work.mkdir()
        (work / "notes.md").write_text("notes\n", encoding="utf-8")

        def make_host(label: str) -> Any:
            if label == "PiHost":
                return pdn.PiHost(model=pdn.ScriptedModel(_reply), cwd=work)
            assert pi is not None
            tools = ["read", "bash", "edit", "write", "ls"]
            return pdn.PiRpcHost(cwd=work, tools=tools, **host_options(pi, Path(tmp) / "agent"))

        registry = pdn.WorkflowRegistry()
        build(registry, args.steps)
        for rep in range(args.reps):
            for label in labels:
                host = make_host(label)
                if label == "PiRpcHost":
                    started = time.perf_counter()
                    host.send_message("warm up")  # starts pi
                    startup.append(time.perf_counter() - started)
                db = Path(tmp) / f"bench-{label}-{rep}.db"
                with pdn.WorkflowRuntime(db=db, registry=registry, host=host) as rt:
                    rt.wait_for_workflow(rt.start_workflow("activity", None), timeout=120)  # warm up
                    for kind in kinds:
                        started = time.perf_counter()
                        state = rt.wait_for_workflow(rt.start_workflow(kind, None), timeout=300)
                        elapsed = time.perf_counter() - started
                        assert state.status is pdn.WorkflowStatus.COMPLETED, state.error
                        times[label][kind].append(elapsed / args.steps * 1000)
                    started = time.perf_counter()
                    entries = rt.messages()
                    read_ms = (time.perf_counter() - started) * 1000
                if rep == args.reps - 1:
                    for kind, call in direct_calls(host).items():
                        call(0)  # warm up
                        samples = []
                        for i in range(args.calls):
                            started = time.perf_counter()
                            call(i)
                            samples.append((time.perf_counter() - started) * 1000)
                        direct[label][kind] = statistics.median(samples)
                if label == "PiRpcHost":
                    host.close()

    print(f"{args.steps} sequential steps per workflow, median of {args.reps} runs (ms per step)")
    header = f"{'step':<12} {'PiHost':>8} {'vs activity':>12}"
    if pi is not None:
        header += f" {'PiRpcHost':>10} {'vs activity':>12} {'Rpc/PiHost':>11}"
    print(header)
    base = {label: statistics.median(times[label]["activity"]) for label in labels}
    for kind in kinds:
        ms = statistics.median(times["PiHost"][kind])
        row = f"{kind:<12} {ms:8.2f} {ms / base['PiHost']:11.2f}x"
        if pi is not None:
            rpc = statistics.median(times["PiRpcHost"][kind])
            row += f" {rpc:10.2f} {rpc / base['PiRpcHost']:11.2f}x {rpc / ms:10.2f}x"
        print(row)
    print(f"\nDirect host calls (no workflow), median of {args.calls} (ms per call)")
    if pi is not None:
        print(f"{'call':<12} {'PiHost':>8} {'PiRpcHost':>10} {'Rpc/PiHost':>11} {'Rpc-PiHost':>11}")
    for kind in direct["PiHost"]:
        ms = direct["PiHost"][kind]
        if pi is not None:
            rpc = direct["PiRpcHost"][kind]
            ratio = f"{rpc / ms:10.1f}x" if ms >= 0.01 else f"{'-':>11}"  # PiHost's send does next to nothing
            print(f"{kind:<12} {ms:8.3f} {rpc:10.3f} {ratio} {rpc - ms:10.3f}")
        else:
            print(f"{kind:<12} {ms:8.3f}")
    if pi is not None:
        print(f"\npi start-up (first call, lazy): median {statistics.median(startup) * 1000:.0f} ms")
    else:
        print(f"\nPiRpcHost not measured: {skipped}")
    print(f"rt.messages(): {len(entries)} entries read in {read_ms:.1f} ms (last run)")


if __name__ == "__main__":
    main()
