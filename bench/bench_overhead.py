"""Overhead of pi_duroxide_nb's ``WorkflowRuntime`` against raw duroxide, in one run.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_overhead.py            # full run (a few minutes on 2 cores)
    python bench/bench_overhead.py --quick    # short run (~30 s): smaller sizes, 1 repetition

What it measures (every run on a fresh temporary SQLite database):

1. Fan-out: start 200 workflows of one activity each, then wait for all of them (wall time
   from the first start to the last wait returning; both runtimes are started beforehand).
2. Sequential: one workflow of 200 sequential activities (wall time of start + wait).

   For 1 and 2 raw duroxide runs with the same engine settings as our *active* mode
   (dispatcher_poll_interval_ms=2, orchestration_concurrency=2, worker_concurrency=4,
   worker/orchestrator lock timeout 2000 ms, log_level="error"). Raw and ours alternate,
   ``--reps`` times each (9 by default); the median is reported with the ratio ours/raw
   (target: <= 1.10). Our path is measured as a user calls it: ``start_workflow`` includes
   its existence check through the store-reader subprocess, ``wait_for_workflow`` includes
   its existence check and the final state read.

3. Adaptive polling: (a) ms per step of a 20-activity sequential workflow and (b) process
   CPU use (``resource.getrusage``, user+system, as % of one core) over ~5 s of a started
   runtime with no work (each runtime first runs a 5-step workflow, then sits 1 s, so the
   window starts after the work, as in a notebook). Ours uses the default ``PollingConfig``
   (2 ms active, 50 ms idle after 1 s without work); its idle CPU is measured once
   ``rt.engine_mode == "idle"``, and its latency both on a freshly started (active) runtime
   (whose first ``start_workflow`` spawns the store reader) and on one that had gone idle
   (the start wakes it). Raw duroxide is shown at poll 2 ms and poll 50 ms, plus a control
   row with no runtime at all.

4. SQLite WAL: one workflow of 1000 sequential activities (``--wal-steps``; replay from
   scratch makes this take tens of seconds), then the size of ``<db>-wal`` and ``<db>`` when it
   completes (runtime still running) and after shutdown, for raw duroxide and for ours (which
   checkpoints the WAL once it passes 4 MB).

duroxide writes its own log lines to file descriptor 1, with a filter fixed by the first
runtime in the process. The bench starts raw duroxide first, so WARN lines such as "database
is locked ... backing off 200ms" stay on for both sides (pi_duroxide_nb alone would quiet them
through ``RUST_LOG``). The script moves fd 1 to a temporary file while it measures, prints its
tables on the original stdout, and counts the WARN lines of each phase (column "warn"): each
is a lock-contention retry inside the engine (back-offs of 10-800 ms), the main source of
run-to-run noise. ``--engine-log FILE`` keeps that log. An instance that duroxide fails with
an "infrastructure: ... database is locked" error (rare, raw duroxide too) is counted and
listed at the end instead of aborting the run.

Only ``os.path.getsize`` touches the database files: an in-process ``sqlite3`` connection
would break the locking of the SQLite that duroxide links statically.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duroxide as dx

import pi_duroxide_nb as pdn


class EngineLog:
    """Redirects fd 1 (where duroxide's native logger writes) to a file; counts WARN lines."""

    def __init__(self, path: str | None) -> None:
        sys.stdout.flush()
        self._saved = os.dup(1)
        self.out = os.fdopen(os.dup(self._saved), "w", buffering=1)
        self._keep = path is not None
        if path is None:
            fd, path = tempfile.mkstemp(prefix="pdn-bench-engine-", suffix=".log")
            os.close(fd)
        self.path = path
        self._file = open(path, "wb")
        os.dup2(self._file.fileno(), 1)
        self._seen = 0

    def warnings(self) -> int:
        """WARN lines written since the previous call."""
        with open(self.path, "rb") as f:
            total = sum(1 for line in f if b"WARN" in line)
        new, self._seen = total - self._seen, total
        return new

    def close(self) -> None:
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)
        self._file.close()
        if not self._keep:
            os.unlink(self.path)


LOCK_MS = 2000
ACTIVE_POLL_MS = 2
IDLE_POLL_MS = 50


# --- workflows -------------------------------------------------------------------------------


def _identity_activity(_ctx: Any, x: Any) -> Any:
    return x


# The same generators run on both sides: raw duroxide's ctx and ours share these calls.
def seq(ctx: Any, n: int) -> Any:
    for i in range(n):
        yield ctx.schedule_activity("a", i)
    return n


def one(ctx: Any, x: Any) -> Any:
    result = yield ctx.schedule_activity("a", x)
    return result


REGISTRY = pdn.WorkflowRegistry()
REGISTRY.register_activity("a", _identity_activity)
REGISTRY.register_workflow("seq", seq)
REGISTRY.register_workflow("one", one)


# --- environments ------------------------------------------------------------------------------


@contextmanager
def temp_db() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="pdn-bench-")
    try:
        yield os.path.join(folder, "bench.db")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def raw_options(poll_ms: int) -> Any:
    return dx.RuntimeOptions(
        dispatcher_poll_interval_ms=poll_ms,
        orchestration_concurrency=2,
        worker_concurrency=4,
        worker_lock_timeout_ms=LOCK_MS,
        orchestrator_lock_timeout_ms=LOCK_MS,
        log_level="error",
    )


class RawEnv:
    """A started raw duroxide runtime and client on ``path``."""

    def __init__(self, path: str, poll_ms: int = ACTIVE_POLL_MS) -> None:
        self.path = path
        self.provider = dx.SqliteProvider.open(path)
        self.rt = dx.Runtime(self.provider, raw_options(poll_ms))
        self.rt.register_activity("a", _identity_activity)
        # Distinct names: duroxide keeps orchestration functions in one process-global table.
        self.rt.register_orchestration("seq", seq)
        self.rt.register_orchestration("one", one)
        self.rt.start()
        self.client = dx.Client(self.provider)

    def shutdown(self) -> None:
        self.rt.shutdown(1000)


@contextmanager
def raw_env(poll_ms: int = ACTIVE_POLL_MS) -> Iterator[RawEnv]:
    with temp_db() as path:
        env = RawEnv(path, poll_ms)
        try:
            yield env
        finally:
            env.shutdown()


@contextmanager
def ours_env(polling: pdn.PollingConfig | None = None) -> Iterator[pdn.WorkflowRuntime]:
    with temp_db() as path:
        rt = pdn.WorkflowRuntime(db=path, registry=REGISTRY, polling=polling)
        rt.start()
        try:
            yield rt
        finally:
            rt.shutdown()


FAILURES: list[str] = []
"""Instances that did not complete normally. duroxide fails an instance with an
"infrastructure: ... database is locked" error when its commit keeps hitting SQLite lock
contention (rare, seen with raw duroxide too); the bench records these and goes on."""


def _check_raw(result: Any, expected: Any) -> None:
    if result.status != "Completed" or result.output != expected:
        FAILURES.append(f"raw: {result.status} {result.error!r}")


def _check_ours(state: Any, expected: Any) -> None:
    if state.status is not pdn.WorkflowStatus.COMPLETED or state.output != expected:
        FAILURES.append(f"ours: {state.status.value} {state.error!r}")


def _wait_ours(rt: pdn.WorkflowRuntime, iid: str, expected: Any, timeout: float) -> None:
    try:
        _check_ours(rt.wait_for_workflow(iid, timeout=timeout), expected)
    except pdn.InstanceNotFoundError as exc:
        status = rt._client.get_status(iid)  # what the engine says about the "missing" instance
        FAILURES.append(f"ours: InstanceNotFoundError ({exc}); engine status {status.status} {status.error!r}")


# --- 1 and 2: throughput -------------------------------------------------------------------------


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall time of the timed region and CPU (this process over the region, plus children
    such as the store reader, reaped at shutdown, over the whole environment)."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self._children0 = _cpu(resource.RUSAGE_CHILDREN)

    def __enter__(self) -> Meter:
        self._t0, self._self0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self.cpu = _cpu(resource.RUSAGE_SELF) - self._self0

    def add_children(self) -> Meter:
        self.cpu += _cpu(resource.RUSAGE_CHILDREN) - self._children0
        return self


def fan_raw(n: int) -> Meter:
    meter = Meter()
    with raw_env() as env:
        c = env.client
        with meter:
            ids = [f"w{i}" for i in range(n)]
            for i, iid in enumerate(ids):
                c.start_orchestration(iid, "one", i)
            for i, iid in enumerate(ids):
                _check_raw(c.wait_for_orchestration(iid, 120_000), i)
    return meter.add_children()


def fan_ours(n: int) -> Meter:
    meter = Meter()
    with ours_env() as rt:
        with meter:
            ids = [rt.start_workflow("one", i) for i in range(n)]
            for i, iid in enumerate(ids):
                _wait_ours(rt, iid, i, 120)
    return meter.add_children()


def seq_raw_in(env: RawEnv, n: int, iid: str = "seq") -> float:
    t0 = time.perf_counter()
    env.client.start_orchestration(iid, "seq", n)
    _check_raw(env.client.wait_for_orchestration(iid, 600_000), n)
    return time.perf_counter() - t0


def seq_ours_in(rt: pdn.WorkflowRuntime, n: int) -> float:
    t0 = time.perf_counter()
    iid = rt.start_workflow("seq", n)
    _wait_ours(rt, iid, n, 600)
    return time.perf_counter() - t0


def seq_raw_metered(n: int) -> Meter:
    meter = Meter()
    with raw_env() as env, meter:
        seq_raw_in(env, n)
    return meter.add_children()


def seq_ours_metered(n: int) -> Meter:
    meter = Meter()
    with ours_env() as rt, meter:
        seq_ours_in(rt, n)
    return meter.add_children()


def seq_raw(n: int, poll_ms: int = ACTIVE_POLL_MS) -> float:
    with raw_env(poll_ms) as env:
        return seq_raw_in(env, n)


def seq_ours(n: int) -> float:
    with ours_env() as rt:
        return seq_ours_in(rt, n)


def seq_ours_from_idle(n: int) -> float:
    with ours_env() as rt:
        seq_ours_in(rt, 5)
        _wait_idle(rt)
        return seq_ours_in(rt, n)


def first_start_ms() -> float:
    """The first ``start_workflow`` on a fresh runtime: it spawns the store-reader process."""
    with ours_env() as rt:
        t0 = time.perf_counter()
        iid = rt.start_workflow("one", 0)
        elapsed = time.perf_counter() - t0
        _wait_ours(rt, iid, 0, 60)
        return 1000 * elapsed


# --- 3: idle CPU -------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_cpu(seconds: float) -> float:
    """Process CPU (all threads) over ``seconds`` of sleeping, as % of one core."""
    c0, t0 = _cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = _cpu_seconds(), time.perf_counter()
    return 100.0 * (c1 - c0) / (t1 - t0)


def _wait_idle(rt: pdn.WorkflowRuntime, limit: float = 30.0) -> float:
    t0 = time.perf_counter()
    while rt.engine_mode != "idle":
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"runtime did not go idle within {limit} s (mode {rt.engine_mode})")
        time.sleep(0.05)
    waited = time.perf_counter() - t0
    time.sleep(0.5)  # let the replaced active runtime finish draining
    return waited


def idle_cpu_raw(poll_ms: int, seconds: float) -> float:
    with raw_env(poll_ms) as env:
        seq_raw_in(env, 5)
        time.sleep(1.5)  # the same quiet time ours needs before it turns idle
        return measure_cpu(seconds)


def idle_cpu_ours(seconds: float) -> tuple[float, float]:
    with ours_env() as rt:
        seq_ours_in(rt, 5)
        waited = _wait_idle(rt)
        cpu = measure_cpu(seconds)
        if rt.engine_mode != "idle":
            raise SystemExit(f"runtime left idle mode during the measurement ({rt.engine_mode})")
        return cpu, waited


# --- 4: WAL size -------------------------------------------------------------------------------


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def wal_raw(n: int) -> dict[str, Any]:
    with temp_db() as path:
        env = RawEnv(path)
        try:
            elapsed = seq_raw_in(env, n)
            at_end = (_size(path + "-wal"), _size(path))
        finally:
            env.shutdown()
        after = (_size(path + "-wal"), _size(path))
        del env
        return {"elapsed": elapsed, "end": at_end, "after": after}


def wal_ours(n: int) -> dict[str, Any]:
    with temp_db() as path:
        rt = pdn.WorkflowRuntime(db=path, registry=REGISTRY)
        rt.start()
        try:
            elapsed = seq_ours_in(rt, n)
            at_end = (_size(path + "-wal"), _size(path))
        finally:
            rt.shutdown()
        after = (_size(path + "-wal"), _size(path))
        return {"elapsed": elapsed, "end": at_end, "after": after}


# --- output --------------------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "absent" if n is None else f"{n / 1e6:.2f} MB"


def _fmt_times(times: list[float]) -> str:
    return " ".join(f"{t:.3f}" for t in times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run: smaller sizes, 1 repetition")
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions of tests 1-2 (default 9, quick 1); test 3 uses at most 5"
    )
    parser.add_argument("--fan", type=int, default=None, help="workflows in the fan-out test (default 200)")
    parser.add_argument("--seq", type=int, default=None, help="activities in the sequential test (default 200)")
    parser.add_argument("--wal-steps", type=int, default=None, help="activities in the WAL test (default 1000)")
    parser.add_argument("--idle-seconds", type=float, default=None, help="idle CPU window (default 5)")
    parser.add_argument("--engine-log", default=None, help="keep duroxide's own log output in this file")
    args = parser.parse_args(argv)

    quick = args.quick
    reps = args.reps or (1 if quick else 9)
    fan_n = args.fan or (50 if quick else 200)
    seq_n = args.seq or (50 if quick else 200)
    wal_n = args.wal_steps or (200 if quick else 1000)
    idle_s = args.idle_seconds or (2.0 if quick else 5.0)
    lat_n = 20

    log = EngineLog(args.engine_log)
    try:
        return _run(log, quick, reps, fan_n, seq_n, wal_n, idle_s, lat_n)
    finally:
        log.close()


def _run(log: EngineLog, quick: bool, reps: int, fan_n: int, seq_n: int, wal_n: int, idle_s: float, lat_n: int) -> int:
    def out(text: str = "") -> None:
        log.out.write(text + "\n")
        log.out.flush()

    try:
        from importlib.metadata import version

        dx_version = version("duroxide")
    except Exception:
        dx_version = "?"
    t_start = time.perf_counter()
    out(
        f"pi_duroxide_nb overhead vs raw duroxide {dx_version} | python {sys.version.split()[0]} | "
        f"{os.cpu_count()} CPUs | reps={reps}"
        + (" | QUICK" if quick else "")
        + " | load avg at start {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    )
    out(
        f"raw settings = our active mode: poll {ACTIVE_POLL_MS} ms, orchestration_concurrency 2, "
        f"worker_concurrency 4, lock timeouts {LOCK_MS} ms, log_level error"
    )
    out()

    # warm-up (imports, first native runtime, reader-subprocess code paths) — not reported
    seq_raw(5)
    seq_ours(5)
    log.warnings()

    # 1, 2
    out("1-2. Throughput: wall time in s, median of alternating runs (raw, ours, raw, ours, ...)")
    out("     cpu = process CPU s (all threads + the store-reader child), median; warn = engine WARN lines, all runs")
    out(
        f"  {'test':<28} {'raw':>6} {'ours':>6} {'ours/raw':>8} {'<=1.10':>6} {'min ratio':>9} "
        f"{'cpu raw':>7} {'cpu ours':>8} {'warn raw|ours':>13}"
    )
    runs_text = []
    tests: list[tuple[str, Callable[[int], Meter], Callable[[int], Meter], int]] = [
        (f"{fan_n} workflows x 1 activity", fan_raw, fan_ours, fan_n),
        (f"1 workflow x {seq_n} activities", seq_raw_metered, seq_ours_metered, seq_n),
    ]
    for label, raw_fn, ours_fn, size in tests:
        raw_m: list[Meter] = []
        ours_m: list[Meter] = []
        raw_w = ours_w = 0
        for _ in range(reps):
            raw_m.append(raw_fn(size))
            raw_w += log.warnings()
            ours_m.append(ours_fn(size))
            ours_w += log.warnings()
        raw_t, ours_t = [m.wall for m in raw_m], [m.wall for m in ours_m]
        r, o = statistics.median(raw_t), statistics.median(ours_t)
        ok = "yes" if o / r <= 1.10 else "NO"
        out(
            f"  {label:<28} {r:6.3f} {o:6.3f} {o / r:7.3f}x {ok:>6} {min(ours_t) / min(raw_t):8.3f}x "
            f"{statistics.median(m.cpu for m in raw_m):7.2f} {statistics.median(m.cpu for m in ours_m):8.2f} "
            f"{f'{raw_w}|{ours_w}':>13}"
        )
        runs_text.append(f"  {label}: raw {_fmt_times(raw_t)} | ours {_fmt_times(ours_t)}")
    out("  individual runs (s):")
    for line in runs_text:
        out("  " + line)
    out()

    # 3
    lat_reps = min(reps, 5)
    lat: list[tuple[str, list[float]]] = [
        (f"raw, poll {ACTIVE_POLL_MS} ms", [seq_raw(lat_n, ACTIVE_POLL_MS) for _ in range(lat_reps)]),
        (f"raw, poll {IDLE_POLL_MS} ms", [seq_raw(lat_n, IDLE_POLL_MS) for _ in range(lat_reps)]),
        ("ours, adaptive, active", [seq_ours(lat_n) for _ in range(lat_reps)]),
        ("ours, adaptive, from idle", [seq_ours_from_idle(lat_n) for _ in range(lat_reps)]),
    ]
    spawn = statistics.median(first_start_ms() for _ in range(lat_reps))
    log.warnings()
    cpu: dict[str, str] = {}
    cpu[f"raw, poll {ACTIVE_POLL_MS} ms"] = f"{idle_cpu_raw(ACTIVE_POLL_MS, idle_s):6.1f} %"
    cpu[f"raw, poll {IDLE_POLL_MS} ms"] = f"{idle_cpu_raw(IDLE_POLL_MS, idle_s):6.1f} %"
    ours_cpu, waited = idle_cpu_ours(idle_s)
    cpu["ours, adaptive, active"] = "(2 ms)"
    cpu["ours, adaptive, from idle"] = f"{ours_cpu:6.1f} %"
    time.sleep(1.0)
    control = measure_cpu(idle_s)

    out(
        f"3. Adaptive polling: {lat_n}-activity workflow in ms/step (median of {lat_reps}); "
        f"idle CPU over {idle_s:g} s in % of one core"
    )
    out(f"  {'configuration':<27} {'ms/step':>8} {'wall s':>7} {'idle CPU':>9}")
    for label, times in lat:
        t = statistics.median(times)
        out(f"  {label:<27} {1000 * t / lat_n:8.2f} {t:7.3f} {cpu[label]:>9}")
    out(f"  {'no runtime (control)':<27} {'':>8} {'':>7} {control:6.1f} %")
    out(f"  ours' idle CPU is measured in idle mode (reached {waited:.2f} s after its last step); 'from idle'")
    out("  starts the workflow on a runtime that had gone idle (the start wakes it to active).")
    out(
        f"  'active' is a fresh runtime, so its time includes the first start_workflow, which spawns the"
        f" store reader: {spawn:.0f} ms (median)."
    )
    out()

    # 4
    w_raw = wal_raw(wal_n)
    w_raw["warn"] = log.warnings()
    w_ours = wal_ours(wal_n)
    w_ours["warn"] = log.warnings()
    out(f"4. SQLite WAL: 1 workflow x {wal_n} sequential activities" + (" (quick size)" if quick else ""))
    out(
        f"  {'':<5} {'wall s':>7} {'-wal at end':>12} {'db at end':>11} "
        f"{'-wal after shutdown':>20} {'db after':>10} {'warn':>5}"
    )
    for label, w in (("raw", w_raw), ("ours", w_ours)):
        out(
            f"  {label:<5} {w['elapsed']:7.2f} {_mb(w['end'][0]):>12} {_mb(w['end'][1]):>11} "
            f"{_mb(w['after'][0]):>20} {_mb(w['after'][1]):>10} {w['warn']:>5}"
        )
    ratio = w_ours["elapsed"] / w_raw["elapsed"]
    out(f"  ours/raw wall time: {ratio:.3f}x ('at end' = the workflow completed, runtime still running)")
    out()
    out(f"instances that did not complete normally: {len(FAILURES)}")
    for failure in FAILURES:
        out(f"  {failure}")
    out(f"total bench time {time.perf_counter() - t_start:.0f} s | load avg at end %.2f %.2f %.2f" % os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
