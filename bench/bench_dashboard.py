"""Dashboard speed at scale, and the cold cost of ``%load_ext pi_duroxide_nb``.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_dashboard.py             # 10 000 instances, one 1 000-event history
    python bench/bench_dashboard.py --instances 2000 --events 200 --reps 5

How the store is filled (fast, and never touching a live store from this process):

1. A child process runs a real ``WorkflowRuntime`` on a fresh temporary SQLite file: it runs
   three template instances to completion (a 2-activity workflow that completes, one that
   fails, and one left waiting for an event) and shuts down.
2. A second child process, with plain ``sqlite3`` and no runtime anywhere, clones the
   template rows (``instances``, ``executions``, ``history``) into ``--instances`` instances
   in total, and gives one extra instance a history of ``--events`` events (activity
   schedule/completion pairs built from the template's real rows, with increasing times).

Then this process opens a runtime on the file and measures, ``--reps`` times each (median
and max reported):

* refresh: ``WorkflowDashboard.refresh()``: the status counts, one page of 50 instances,
  the registered workflows, the transcript, and rendering them into the widgets (on page 1
  unchanged, with a status filter, and on a different deep page each time, so that 50 new
  rows are rendered);
* history view: ``WorkflowDashboard.select(id)`` on the 1 000-event instance: its state and
  history read through the store reader, the timeline pairing, and the HTML rendering;
* refresh with the event form open and a live stepper: the waiting template instance selected
  (its form built from the JSON Schema kept in the code sidecar by the process that ran it),
  and the replay stepper open on it, following (each refresh re-reads its history); then the
  same with the stepper on the 1 000-event history;
* ``%load_ext`` cold: in a fresh Python process per repetition, the time of
  ``ip.run_line_magic("load_ext", "pi_duroxide_nb")`` (importing the package, duroxide and
  IPython magics, starting the runtime) after the IPython shell itself started.

Targets: refresh < 100 ms (also with a form and a live stepper), history view < 100 ms,
``%load_ext`` < 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

_TEMPLATE = textwrap.dedent(
    """
    import sys, time
    from pydantic import BaseModel, Field
    import pi_duroxide_nb as pdn
    reg = pdn.WorkflowRegistry()
    reg.register_activity("work", lambda ctx, x: x * 2)

    class Go(BaseModel):
        approved: bool = Field(description="Go ahead?")
        level: int = 1
        note: str = ""

    @reg.register_workflow("bench")
    def bench(ctx, input):
        a = yield ctx.schedule_activity("work", input["n"])
        if input.get("fail"):
            raise ValueError("boom")
        if input.get("wait"):
            ctx.set_custom_status("waiting")
            yield ctx.wait_for_event("go", model=Go)
        b = yield ctx.schedule_activity("work", a)
        return {"result": b}

    rt = pdn.WorkflowRuntime(db=sys.argv[1], registry=reg).start()
    for iid, inp in (("t-done", {"n": 1}), ("t-fail", {"n": 2, "fail": True}), ("t-wait", {"n": 3, "wait": True})):
        rt.start_workflow("bench", inp, instance_id=iid)
    rt.wait_for_workflow("t-done", timeout=60)
    rt.wait_for_workflow("t-fail", timeout=60)
    deadline = time.monotonic() + 60
    while rt.get_workflow("t-wait").custom_status != "waiting" and time.monotonic() < deadline:
        time.sleep(0.02)
    rt.shutdown()
    """
)

_CLONE = textwrap.dedent(
    """
    import json, sqlite3, sys
    path, total, events = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    templates = ["t-done", "t-fail", "t-wait"]
    inst = {r[0]: r for r in db.execute("SELECT * FROM instances WHERE instance_id IN ('t-done','t-fail','t-wait')")}
    execs = {r[0]: r for r in db.execute("SELECT * FROM executions WHERE instance_id IN ('t-done','t-fail','t-wait')")}
    hist = {t: db.execute("SELECT * FROM history WHERE instance_id = ? ORDER BY event_id", (t,)).fetchall()
            for t in templates}
    icols = len(next(iter(inst.values())))
    ecols = len(next(iter(execs.values())))
    base_ms = 1_700_000_000_000

    def clone(src, new_id, offset_ms):
        row = list(inst[src]); row[0] = new_id
        db.execute(f"INSERT INTO instances VALUES ({','.join('?' * icols)})", row)
        row = list(execs[src]); row[0] = new_id
        db.execute(f"INSERT INTO executions VALUES ({','.join('?' * ecols)})", row)
        for h in hist[src]:
            data = json.loads(h[4]); data["instance_id"] = new_id
            data["timestamp_ms"] = base_ms + offset_ms + (data["timestamp_ms"] % 1000)
            db.execute("INSERT INTO history VALUES (?,?,?,?,?,?)", (new_id, h[1], h[2], h[3], json.dumps(data), h[5]))

    for i in range(total - 4):
        clone(templates[i % 3], f"bench-{i:05d}", i * 1000)

    # One instance with a long history: activity schedule/completion pairs from real rows.
    clone("t-wait", "bench-long", total * 1000)
    rows = hist["t-done"]
    scheduled = next(json.loads(r[4]) for r in rows if r[3] == "ActivityScheduled")
    completed = next(json.loads(r[4]) for r in rows if r[3] == "ActivityCompleted")
    start = len(hist["t-wait"]) + 1
    db.execute("DELETE FROM history WHERE instance_id = 'bench-long' AND event_type = 'ExternalSubscribed'")
    event_id = start - 1
    t = base_ms + total * 1000
    while event_id < events:
        for template, kind in ((scheduled, "ActivityScheduled"), (completed, "ActivityCompleted")):
            event_id += 1
            t += 3 if kind == "ActivityScheduled" else 7
            data = dict(template, instance_id="bench-long", event_id=event_id, timestamp_ms=t)
            if kind == "ActivityCompleted":
                data["source_event_id"] = event_id - 1
            db.execute("INSERT INTO history VALUES (?,?,?,?,?,CURRENT_TIMESTAMP)",
                       ("bench-long", 1, event_id, kind, json.dumps(data)))
    db.execute("COMMIT")
    n_inst = db.execute("SELECT COUNT(*) FROM instances").fetchone()[0]
    n_long = db.execute("SELECT COUNT(*) FROM history WHERE instance_id = 'bench-long'").fetchone()[0]
    print(json.dumps({"instances": n_inst, "long_history": n_long}))
    """
)

_LOAD_EXT = textwrap.dedent(
    """
    import json, os, sys, time
    t0 = time.perf_counter()
    from IPython.testing.globalipapp import start_ipython
    ip = start_ipython()
    t1 = time.perf_counter()
    ip.run_line_magic("load_ext", "pi_duroxide_nb")
    t2 = time.perf_counter()
    ip.run_line_magic("unload_ext", "pi_duroxide_nb")
    sys.stderr.write(json.dumps({"shell": t1 - t0, "load_ext": t2 - t1}) + "\\n")
    """
)


def _template_code() -> object:
    """The template workflow's code, for the replay stepper (the store's version is from another process)."""
    from pydantic import BaseModel

    class Go(BaseModel):
        approved: bool
        level: int = 1
        note: str = ""

    def bench(ctx, input):  # type: ignore[no-untyped-def]
        a = yield ctx.schedule_activity("work", input["n"])
        if input.get("fail"):
            raise ValueError("boom")
        if input.get("wait"):
            ctx.set_custom_status("waiting")
            yield ctx.wait_for_event("go", model=Go)
        b = yield ctx.schedule_activity("work", a)
        return {"result": b}

    return bench


def _fill(db: Path, instances: int, events: int) -> dict[str, int]:
    subprocess.run([sys.executable, "-c", _TEMPLATE, str(db)], check=True, capture_output=True, timeout=300)
    out = subprocess.run(
        [sys.executable, "-c", _CLONE, str(db), str(instances), str(events)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    counts: dict[str, int] = json.loads(out.stdout)
    return counts


def _timed(fn: object, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return times


def _load_ext_cold(reps: int, db: Path) -> list[tuple[float, float]]:
    results = []
    for i in range(reps):
        env = {**__import__("os").environ, "PI_DUROXIDE_DB": str(db.with_name(f"load-{i}.db"))}
        out = subprocess.run(
            [sys.executable, "-c", _LOAD_EXT], check=True, capture_output=True, text=True, env=env, timeout=120
        )
        figures = json.loads(out.stderr.strip().splitlines()[-1])
        results.append((figures["shell"] * 1000, figures["load_ext"] * 1000))
    return results


def _line(label: str, times: list[float], target: float) -> str:
    median, worst = statistics.median(times), max(times)
    verdict = "ok" if median < target else "OVER TARGET"
    return f"  {label:<38} median {median:7.1f} ms   max {worst:7.1f} ms   (target < {target:.0f} ms: {verdict})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--load-reps", type=int, default=3)
    args = parser.parse_args()

    import pi_duroxide_nb as pdn
    from pi_duroxide_nb.notebook.ui._replay import replay_widget

    with tempfile.TemporaryDirectory(prefix="pdn-bench-dash-") as tmp:
        db = Path(tmp) / "workflows.db"
        t0 = time.perf_counter()
        counts = _fill(db, args.instances, args.events)
        print(
            f"store: {counts['instances']} instances, one history of {counts['long_history']} events "
            f"(filled in {time.perf_counter() - t0:.1f} s)"
        )

        registry = pdn.WorkflowRegistry()

        @registry.register_workflow("bench")
        def bench(ctx, input):  # type: ignore[no-untyped-def]
            yield ctx.schedule_timer(1)

        rt = pdn.WorkflowRuntime(db=db, registry=registry).start()
        try:
            dash = pdn.dashboard(rt, live=False)
            try:
                assert dash.snapshot is not None and dash.snapshot.runtime.total == counts["instances"]
                refresh = _timed(dash.refresh, args.reps)
                status_filter = _timed(
                    lambda: (dash.controller.set_filters(status="Failed"), dash.refresh()), args.reps
                )
                dash.controller.set_filters()
                pages = iter(range(100, 100 + args.reps))
                # A different page each time: every refresh renders 50 new rows.
                deep_page = _timed(lambda: (dash.controller.set_page(next(pages)), dash.refresh()), args.reps)
                history = _timed(lambda: dash.select("bench-long"), args.reps)
                assert dash.selected_history is not None
                n_events = len(dash.selected_history.events)
                n_bars = len(dash.selected_history.bars)

                dash.controller.set_page(0)
                dash.select("t-wait")
                assert dash.event_form.wait is not None and set(dash.event_form.fields) == {"approved", "level", "note"}
                dash.replay_widget = replay_widget(rt, "t-wait", workflow=_template_code(), follow=None)
                assert not dash.replay_widget.stepper.finished
                form_stepper = _timed(dash.refresh, args.reps)
                dash.replay_widget.close()
                dash.replay_widget = replay_widget(rt, "bench-long", workflow=_template_code(), follow=None)
                form_long_stepper = _timed(dash.refresh, args.reps)
            finally:
                dash.close()
        finally:
            rt.shutdown()

        print(f"dashboard ({args.reps} reps each, page size 50):")
        print(_line("refresh (all instances, page 1)", refresh, 100))
        print(_line("refresh (status filter Failed)", status_filter, 100))
        print(_line("refresh (pages 101.., new rows each)", deep_page, 100))
        print(_line(f"history view ({n_events} events, {n_bars} bars)", history, 100))
        base = statistics.median(refresh)
        for label, times in (
            ("refresh, form open + live stepper", form_stepper),
            (f"  ... stepper on the {n_events}-event history", form_long_stepper),
        ):
            print(_line(label, times, 100) + f"  x{statistics.median(times) / base:.2f} of plain refresh")

        loads = _load_ext_cold(args.load_reps, db)
        print(f"%load_ext pi_duroxide_nb, cold (fresh process, {args.load_reps} reps):")
        print(_line("load_ext (after the shell started)", [b for _, b in loads], 1000))
        print(f"  {'(IPython shell start, for reference)':<38} median {statistics.median(a for a, _ in loads):7.1f} ms")


if __name__ == "__main__":
    main()
