"""How long a restart takes to resume an instance, and what keeping code versions in the store saves.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_restart.py            # 5 repetitions
    python bench/bench_restart.py --reps 3

Each scenario runs in fresh subprocesses on a temporary SQLite store, the way kernels do:

* ``restored at start``: process 1 registers a ``%%workflow``-style cell and starts an instance
  whose 1 s timer then fires while no process runs; process 2 registers nothing, opens the store
  (the version is restored from the code kept with it) and waits. Time from the new runtime's
  ``start()`` to the instance completing.
* ``code back (nudged)``: process 2 starts with the version missing (a closure: cannot be
  restored), lets the engine set the instance aside for a few retries, then registers the code.
  Time from the registration to completion: the set-aside work is made visible at once.
* ``code back (engine retry)``: the same with the nudge turned off, which is what the engine alone
  does (it retries 1, 2, 4, 8 ... up to 60 s apart), for comparison.

Prints medians (and min-max) per scenario, and the ratio of the engine's retry to the nudge.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_FIRST = """
import sys, time, pi_duroxide_nb as pdn
db, kind = sys.argv[1], sys.argv[2]
registry = pdn.WorkflowRegistry()
if kind == "cell":
    pdn.define_workflow("timed", "yield ctx.schedule_timer(1000)\\nreturn 'done'", registry=registry)
else:
    def make(value):
        def timed(ctx, _):
            yield ctx.schedule_timer(1000)
            return value
        return timed
    registry.register_workflow("timed", make("done"))
rt = pdn.WorkflowRuntime(db=db, registry=registry).start()
iid = rt.start_workflow("timed", None, instance_id="i1")
deadline = time.monotonic() + 10
while not rt.history(iid) or not any(e.kind == "TimerCreated" for e in rt.history(iid)):
    assert time.monotonic() < deadline
    time.sleep(0.01)
rt.shutdown()
"""

_SECOND = """
import json, sys, time, pi_duroxide_nb as pdn
db, scenario = sys.argv[1], sys.argv[2]
time.sleep(1.2)  # the timer fires while no process runs
registry = pdn.WorkflowRegistry()
rt = pdn.WorkflowRuntime(db=db, registry=registry)
if scenario == "engine-retry":
    rt._reader.nudge = lambda **kw: 0  # what the engine alone does
t0 = time.monotonic()
rt.start()
if scenario != "restored":
    deadline = time.monotonic() + 10
    while not rt.get_workflow("i1").blocked:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(4.5)  # a few engine retries (1, 2, 4 s): the next is 8 s away
    def make(value):
        def timed(ctx, _):
            yield ctx.schedule_timer(1000)
            return value
        return timed
    t0 = time.monotonic()
    registry.register_workflow("timed", make("done"))
state = rt.wait_for_workflow("i1", timeout=120)
print(json.dumps({"seconds": time.monotonic() - t0, "output": state.output}))
rt.shutdown()
"""


def run(scenario: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "w.db")
        kind = "cell" if scenario == "restored" else "closure"
        first = subprocess.run([sys.executable, "-c", _FIRST, db, kind], timeout=60, capture_output=True, text=True)
        if first.returncode:
            raise SystemExit(f"the first process failed:\n{first.stderr}")
        out = subprocess.run([sys.executable, "-c", _SECOND, db, scenario], timeout=180, capture_output=True, text=True)
        if out.returncode:
            raise SystemExit(f"the second process failed ({scenario}):\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["output"] == "done", result
        return float(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    scenarios = ("restored", "nudged", "engine-retry")
    times: dict[str, list[float]] = {s: [] for s in scenarios}
    for _ in range(args.reps):
        for scenario in scenarios:  # interleaved: machine load hits each alike
            times[scenario].append(run(scenario))
    labels = {
        "restored": "restored at start",
        "nudged": "code back (nudged)",
        "engine-retry": "code back (engine retry)",
    }
    for scenario in scenarios:
        values = times[scenario]
        print(
            f"{labels[scenario]:<26} median {statistics.median(values):6.2f} s"
            f"   (min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
        )
    ratio = statistics.median(times["engine-retry"]) / statistics.median(times["nudged"])
    print(f"engine retry / nudge: {ratio:.1f}x")


if __name__ == "__main__":
    main()
