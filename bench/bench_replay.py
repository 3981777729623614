"""Replay stepper speed and memory on a long history.

Method: run a workflow of N sequential activities on the real runtime (a temporary
SQLite store), so its history has 2N + 2 events; open it with ``ReplayStepper(rt, iid)``
and step through every yield, timing each ``step()`` (rich snapshot: locals, events,
state); then, at the last step, time ``back()`` with the snapshot cache disabled
(``cache_size=0``: a full re-run of N-1 steps from the start) and with the default cache.
Memory is ``tracemalloc``'s peak while stepping through everything, plus what the
stepper still holds afterwards.

    python bench/bench_replay.py                 # 1 000 steps (2 002 events)
    python bench/bench_replay.py --steps 499     # a 1 000-event history
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pi_duroxide_nb as pdn


def _record(steps: int, db: Path) -> tuple[pdn.WorkflowRuntime, str, float]:
    registry = pdn.WorkflowRegistry()
    registry.register_activity("inc", lambda ctx, x: x + 1)

    @registry.register_workflow("long")
    def long(ctx, n):
        total = 0
        for i in range(n):
            total = yield ctx.schedule_activity("inc", total)
            note = f"step {i}"  # a few locals for the snapshot to show
        return {"total": total, "last": note}

    rt = pdn.WorkflowRuntime(db=db, registry=registry, polling=pdn.PollingConfig.fixed(timedelta(milliseconds=1)))
    rt.start()
    started = time.perf_counter()
    iid = rt.start_workflow("long", steps)
    state = rt.wait_for_workflow(iid, timeout=600)
    assert state.output["total"] == steps, state
    return rt, iid, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="sequential activities (history = 2N+2 events)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rt, iid, engine_s = _record(args.steps, Path(tmp) / "bench.db")
        try:
            t0 = time.perf_counter()
            stepper = pdn.ReplayStepper(rt, iid)
            open_ms = (time.perf_counter() - t0) * 1000
            events = len(stepper.history)

            tracemalloc.start()
            durations = []
            while not stepper.done:
                t = time.perf_counter()
                stepper.step()
                durations.append((time.perf_counter() - t) * 1000)
            _, peak = tracemalloc.get_traced_memory()
            held, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            last = stepper.index

            cold = pdn.ReplayStepper(rt, iid, cache_size=0)
            cold.run_to_end()
            t = time.perf_counter()
            back = cold.back()
            back_cold_ms = (time.perf_counter() - t) * 1000
            assert back.index == last - 1

            stepper.goto(last)
            t = time.perf_counter()
            stepper.back()
            back_cached_ms = (time.perf_counter() - t) * 1000

            t = time.perf_counter()
            verdict = stepper.divergence, stepper.outcome
            verdict_ms = (time.perf_counter() - t) * 1000
            assert verdict[0] is None and verdict[1].output["total"] == args.steps
        finally:
            rt.shutdown()

    ordered = sorted(durations)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    print(f"history: {events} events, {last} steps (engine ran the workflow in {engine_s:.1f} s)")
    print(f"open (read rows through the store reader): {open_ms:.1f} ms")
    print(
        f"forward step(): mean {statistics.mean(durations):.3f} ms, median {statistics.median(durations):.3f} ms, "
        f"p95 {p95:.3f} ms, max {max(durations):.3f} ms   (target < 5 ms)"
    )
    print(f"back() from step {last}, no cache (re-run {last - 1} steps): {back_cold_ms:.1f} ms   (target < 50 ms)")
    print(f"back() from step {last}, default cache: {back_cached_ms:.3f} ms")
    print(f"divergence/outcome verdict (one full fast replay): {verdict_ms:.1f} ms")
    print(
        f"memory while stepping all steps (tracemalloc): peak {peak / 1024:.0f} KiB, "
        f"held after {held / 1024:.0f} KiB (cache of 64 rich snapshots; bounded, not per step)"
    )


if __name__ == "__main__":
    main()
