"""A backlog of one-activity workflows started at once: raw duroxide, ours, and admission control.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_backlog.py --quick            # N = 500, 1 rep (about a minute)
    python bench/bench_backlog.py                    # N = 500, 2000, 5000, 1 rep (several minutes)
    python bench/bench_backlog.py --sizes 2000 --reps 3 --variants raw,raw-admit

Every run is a fresh child process on a fresh temporary SQLite file (duroxide's log filter is
fixed per process, and SQLite's POSIX locks are per process, so runs must not share one). The
child starts ``N`` workflows, each scheduling one activity, then waits for all of them. The
variants:

- ``raw``: duroxide's ``Client.start_orchestration`` for all N at once, runtime at the same
  settings as our active mode (poll 2 ms, orchestration_concurrency 2, worker_concurrency 4,
  lock timeouts 2 s).
- ``ours``: ``pi_duroxide_nb.WorkflowRuntime.start_workflow`` for all N at once (defaults).
- ``raw-admit`` / ``ours-admit``: the same engine, but a feeder keeps at most ``K`` (``--admit``)
  instances started and unfinished; the rest wait in a plain Python queue and are started as
  others finish (admission at the drain rate). This prototypes what a layer above the engine
  can do; ``pi_duroxide_nb`` itself does not do it (yet).
- ``raw-c<o>x<w>``: raw at other concurrencies, e.g. ``raw-c1x1``, ``raw-c4x8`` (add ``-admit``
  to combine).
- ``-stat``: before the run, write one planner statistic into the store (see ``_PLANNER_SQL``):
  duroxide's "next orchestration item" query then stops at the first free queue row instead of
  sorting every visible row (EXPLAIN QUERY PLAN: ``SCAN q`` instead of ``SEARCH q USING INDEX
  idx_orch_visible`` + ``USE TEMP B-TREE FOR ORDER BY``). ``raw-statlive`` writes it while the
  engine runs (the engine's connections pick it up: creating ``sqlite_stat1`` is a schema change).
- ``ours-wal<MB>``: our runtime with ``wal_limit_bytes`` = MB.

Figures per run: ``submit`` (time to hand all N starts to the engine, or to our queue),
``wf/s`` = N / (last completion - first start), ``sustained`` = the completion rate between the
10th and the 90th percentile of completions, the rate in each quarter of the run, the peak size
of ``<db>-wal`` (sampled every 20 ms), and ``locked``: the engine's "database is locked" retries
(WARN lines in the child's log, ``RUST_LOG=warn``). A completion is counted when the workflow's
generator returns in its final turn (no polling of the store while it runs); at the end the
child checks through the client that all N really completed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

LOCK_MS = 2000
POLL_MS = 2

# What the "-stat" variants write into the store: the planner statistic that stops SQLite from
# answering duroxide's "next orchestration item" query (WHERE visible_at <= now ... ORDER BY id
# LIMIT 1) through idx_orch_visible plus a sort of every visible row, so it walks the queue in id
# order and stops at the first free row instead. "unordered" = do not use this index for ranges
# or sorting. ANALYZE sqlite_master creates sqlite_stat1, a schema change: every open connection
# of the engine reloads its schema (and the statistic) and re-prepares its statements.
_PLANNER_SQL = """
BEGIN IMMEDIATE;
ANALYZE sqlite_master;
DELETE FROM sqlite_stat1 WHERE tbl = 'orchestrator_queue' AND idx = 'idx_orch_visible';
INSERT INTO sqlite_stat1 VALUES ('orchestrator_queue', 'idx_orch_visible', '1000000 1000000 1000000 unordered');
COMMIT;
"""


def tune_planner(db: str) -> None:
    """Write the planner statistic, from another process (SQLite's locks are per process)."""
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)"
    code += "; c.executescript(sys.argv[2]); c.close()"
    subprocess.run([sys.executable, "-c", code, db, _PLANNER_SQL], check=True)


def create_store(db: str) -> None:
    """Create the engine's schema in a throwaway process (so the statistic can go in before the run)."""
    code = "import sys, duroxide; duroxide.SqliteProvider.open(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, db], check=True)


# --- child: one run --------------------------------------------------------------------------


class Completions:
    """Completion times recorded from inside the workflows, and a condition the feeder waits on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.times: dict[str, float] = {}

    def done(self, iid: str) -> None:
        with self.cond:
            if iid not in self.times:
                self.times[iid] = time.perf_counter()
                self.cond.notify_all()

    def count(self) -> int:
        return len(self.times)


class WalSampler(threading.Thread):
    def __init__(self, path: str) -> None:
        super().__init__(daemon=True)
        self.path = path + "-wal"
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                self.peak = max(self.peak, os.path.getsize(self.path))
            except OSError:
                pass


def _parse_variant(variant: str) -> dict[str, Any]:
    parts = variant.split("-")
    spec: dict[str, Any] = {
        "side": parts[0],
        "admit": "admit" in parts[1:],
        "stat": "stat" in parts[1:],
        "statlive": "statlive" in parts[1:],
        "orch": 2,
        "work": 4,
        "wal_mb": None,
    }
    for p in parts[1:]:
        if p.startswith("wal") and p[3:].isdigit():
            spec["wal_mb"] = int(p[3:])
        if p.startswith("c") and "x" in p:
            o, w = p[1:].split("x")
            spec["orch"], spec["work"] = int(o), int(w)
    if spec["side"] not in ("raw", "ours"):
        raise SystemExit(f"unknown variant {variant!r}")
    return spec


def _failed(ids: list[str], done: dict[str, float], status_of: Any) -> int:
    """How many of the instances that never returned have failed (asked one by one: few are left)."""
    left = [iid for iid in ids if iid not in done]
    if len(left) > 100:
        return 0
    return sum(1 for iid in left if status_of(iid) == "Failed")


def child(variant: str, n: int, k: int, db: str, result_path: str, poll_ms: int) -> None:
    spec = _parse_variant(variant)
    os.environ["RUST_LOG"] = "warn"
    import duroxide as dx

    comp = Completions()

    def act(_ctx: Any, x: Any) -> Any:
        return x

    def one(ctx: Any, x: Any) -> Any:
        result = yield ctx.schedule_activity("a", x)
        comp.done(ctx.instance_id)
        return result

    ids = [f"w{i:05d}" for i in range(n)]
    if spec["side"] == "raw":
        provider = dx.SqliteProvider.open(db)
        client = dx.Client(provider)
        runtime = dx.Runtime(
            provider,
            dx.RuntimeOptions(
                dispatcher_poll_interval_ms=poll_ms,
                orchestration_concurrency=spec["orch"],
                worker_concurrency=spec["work"],
                worker_lock_timeout_ms=LOCK_MS,
                orchestrator_lock_timeout_ms=LOCK_MS,
                log_level="warn",
            ),
        )
        runtime.register_activity("a", act)
        runtime.register_orchestration("one", one)
        runtime.start()
        if spec["statlive"]:
            tune_planner(db)  # while the engine runs: its connections must pick it up

        def start(iid: str, i: int) -> str:
            client.start_orchestration(iid, "one", i)
            return iid

        def completed_in_store() -> int:
            return len(client.list_instances_by_status("Completed"))

        def status_of(iid: str) -> str:
            return str(client.get_status(iid).status)

        def error_of(iid: str) -> str:
            return str(client.get_status(iid).error)

        def shutdown() -> None:
            runtime.shutdown(5000)

    else:
        import pi_duroxide_nb as pdn

        registry = pdn.WorkflowRegistry()
        registry.register_activity("a", act)
        registry.register_workflow("one", one)
        rt = pdn.WorkflowRuntime(
            db=db,
            registry=registry,
            log_level="warn",
            orchestration_concurrency=spec["orch"],
            worker_concurrency=spec["work"],
            **({"wal_limit_bytes": spec["wal_mb"] * 1024 * 1024} if spec["wal_mb"] else {}),
        )
        rt.start()

        def start(iid: str, i: int) -> str:
            # A generated id, as users call it (a caller's own id costs an existence check).
            return rt.start_workflow("one", i)

        def completed_in_store() -> int:
            return rt.count_workflows().get(pdn.WorkflowStatus.COMPLETED, 0)

        def status_of(iid: str) -> str:
            return rt.get_workflow(iid).status.value

        def error_of(iid: str) -> str:
            return str(rt.get_workflow(iid).error)

        def shutdown() -> None:
            rt.shutdown(5.0)

    wal = WalSampler(db)
    wal.start()
    time.sleep(0.3)  # the runtime's pollers are up
    started_ids: list[str] = []
    t0 = time.perf_counter()
    if not spec["admit"]:
        for i, iid in enumerate(ids):
            started_ids.append(start(iid, i))
        t_submit = time.perf_counter() - t0
    else:
        # Admission at the drain rate: at most k started and unfinished; the rest wait here.
        pending = deque(enumerate(ids))
        started = 0
        t_submit = 0.0  # handing to our own queue is instant
        while pending:
            # Refill in batches (down to k/2, then up to k): the starts' writes then come in
            # bursts instead of one between every two engine transactions.
            with comp.cond:
                while started - comp.count() > k // 2:
                    comp.cond.wait(timeout=1.0)
                room = k - (started - comp.count())
            for _ in range(min(room, len(pending))):
                i, iid = pending.popleft()
                started_ids.append(start(iid, i))
                started += 1
    deadline = time.perf_counter() + max(120.0, n / 5.0)
    failed = 0
    while True:
        with comp.cond:
            seen = comp.count()
            comp.cond.wait(timeout=2.0)
            now_seen = comp.count()
        if now_seen >= n or time.perf_counter() > deadline:
            break
        if now_seen == seen:  # 2 s without a completion: are the rest failed? (rare: engine lock errors)
            failed = _failed(started_ids, comp.times, status_of)
            if now_seen + failed >= n:
                break
    t_end = time.perf_counter()
    # The last generator return precedes its turn's commit by a moment: let it land, then check.
    check_deadline = time.perf_counter() + 30
    in_store = completed_in_store()
    while in_store < comp.count() and time.perf_counter() < check_deadline:
        time.sleep(0.1)
        in_store = completed_in_store()
    failed = _failed(started_ids, comp.times, status_of)
    errors = sorted({error_of(iid)[:160] for iid in started_ids if iid not in comp.times}) if failed else []
    wal.stop.set()
    wal.join()
    shutdown()
    times = sorted(t - t0 for t in comp.times.values())
    result = {
        "variant": variant,
        "n": n,
        "k": k if spec["admit"] else None,
        "submit_s": t_submit,
        "completed": len(times),
        "completed_in_store": in_store,
        "failed": failed,
        "errors": errors,
        "times": times,
        "elapsed_s": t_end - t0,
        "first_s": times[0] if times else None,
        "wal_peak": wal.peak,
    }
    Path(result_path).write_text(json.dumps(result))


# --- parent: orchestrate runs, print the table ------------------------------------------------


def _run_child(variant: str, n: int, k: int, poll_ms: int, keep_log: str | None) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="pdn-backlog-")
    db = os.path.join(folder, "store.db")
    result_path = os.path.join(folder, "result.json")
    log_path = os.path.join(folder, "engine.log")
    spec = _parse_variant(variant)
    if spec["stat"]:
        create_store(db)
        tune_planner(db)
    with open(log_path, "wb") as log:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", variant, str(n), str(k), db, result_path, str(poll_ms)],
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=max(300, n),
        )
    text = Path(log_path).read_bytes()
    if proc.returncode != 0 or not os.path.exists(result_path):
        tail = text[-3000:].decode(errors="replace")
        raise SystemExit(f"child {variant} n={n} failed (exit {proc.returncode}):\n{tail}")
    result: dict[str, Any] = json.loads(Path(result_path).read_text())
    result["locked"] = text.count(b"database is locked")
    result["warn"] = sum(1 for line in text.splitlines() if b"WARN" in line)
    if keep_log:
        Path(keep_log).mkdir(parents=True, exist_ok=True)
        Path(keep_log, f"{variant}-{n}-{int(time.time())}.log").write_bytes(text)
    for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
    os.rmdir(folder)
    return result


def _rates(result: dict[str, Any]) -> dict[str, float]:
    times: list[float] = result["times"]
    n = len(times)
    if n < 10:
        return {"wfs": float("nan"), "sustained": float("nan"), "quarters": []}  # type: ignore[dict-item]
    total = times[-1]
    lo, hi = times[n // 10], times[(9 * n) // 10]
    sustained = (0.8 * n) / (hi - lo) if hi > lo else float("inf")
    quarters = []
    for q in range(4):
        a, b = times[(q * n) // 4], times[min(n - 1, ((q + 1) * n) // 4 - 1)]
        quarters.append((n / 4) / (b - a) if b > a else float("inf"))
    return {"wfs": n / total, "sustained": sustained, "quarters": quarters}  # type: ignore[dict-item]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], int(argv[2]), int(argv[3]), argv[4], argv[5], int(argv[6]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 500 only, 1 rep")
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 500,2000,5000)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions, interleaved (default 1)")
    parser.add_argument("--variants", default="raw,ours,raw-admit,ours-admit", help="comma-separated variants")
    parser.add_argument("--admit", type=int, default=50, help="K: started-and-unfinished cap of *-admit (default 50)")
    parser.add_argument("--poll-ms", type=int, default=POLL_MS, help="dispatcher poll interval of raw (default 2)")
    parser.add_argument("--keep-logs", default=None, help="keep each child's engine log in this folder")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("500" if args.quick else "500,2000,5000")).split(",")]
    variants = args.variants.split(",")
    for v in variants:
        _parse_variant(v)

    from importlib.metadata import version

    print(
        f"backlog bench | duroxide {version('duroxide')} | python {sys.version.split()[0]} | {os.cpu_count()} CPUs"
        f" | reps {args.reps} | K={args.admit} | load avg at start %.2f %.2f %.2f" % os.getloadavg(),
        flush=True,
    )
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    t_all = time.perf_counter()
    for _ in range(args.reps):
        for n in sizes:
            for v in variants:
                r = _run_child(v, n, args.admit, args.poll_ms, args.keep_logs)
                results.setdefault((v, n), []).append(r)
                rates = _rates(r)
                print(
                    f"  run {v:<14} N={n:<5} wf/s {rates['wfs']:7.1f} sustained {rates['sustained']:7.1f}"
                    f" quarters {' '.join(f'{q:6.1f}' for q in rates['quarters'])}"  # type: ignore[union-attr]
                    f" | first done {r['first_s']:.2f} s | submit {r['submit_s']:.2f} s"
                    f" | WAL peak {r['wal_peak'] / 1e6:5.1f} MB | locked {r['locked']}"
                    f" | done {r['completed']}/{n} (store {r['completed_in_store']}, failed {r['failed']})",
                    flush=True,
                )
                for e in r["errors"]:
                    print(f"      failed: {e}", flush=True)
    print()
    print(f"medians over {args.reps} rep(s); ratio = wf/s / raw's wf/s at the same N")
    header = (
        f"  {'variant':<14} {'N':>5} {'wf/s':>7} {'ratio':>6} {'sustained':>9} {'1st qtr':>7} {'last qtr':>8}"
        f" {'submit s':>8} {'WAL peak MB':>11} {'locked':>6}"
    )
    print(header)
    for n in sizes:
        base = None
        for v in variants:
            rs = results[(v, n)]
            rates = [_rates(r) for r in rs]
            wfs = statistics.median(x["wfs"] for x in rates)
            if v == "raw":
                base = wfs
            ratio = f"{wfs / base:5.2f}x" if base else "   -  "
            print(
                f"  {v:<14} {n:>5} {wfs:7.1f} {ratio:>6} {statistics.median(x['sustained'] for x in rates):9.1f}"
                f" {statistics.median(x['quarters'][0] for x in rates):7.1f}"  # type: ignore[index]
                f" {statistics.median(x['quarters'][3] for x in rates):8.1f}"  # type: ignore[index]
                f" {statistics.median(r['submit_s'] for r in rs):8.2f}"
                f" {statistics.median(r['wal_peak'] for r in rs) / 1e6:11.1f}"
                f" {statistics.median(r['locked'] for r in rs):6.0f}"
            )
    print(f"total {time.perf_counter() - t_all:.0f} s | load avg at end %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
