"""pi_duroxide_nb against raw duroxide, DBOS and LangGraph + SqliteSaver, each on SQLite, in one run.

Run it from the repository root, with the ``bench`` extra installed:

    python -m pip install -e ".[bench]"
    python bench/bench_peers.py --quick                  # smoke run, smaller sizes, 1 rep (< 2 min)
    python bench/bench_peers.py                          # full run, 5 reps (about 15 min on 2 cores)
    python bench/bench_peers.py --write-readme           # full run, then rewrite bench/README.md's table

Every measurement is a fresh child process on a fresh temporary folder (duroxide's function
table, DBOS's instance and duroxide's log filter are process-global, and peak RSS must be one
process's own). Peers run interleaved (rep 1: every workload for every peer, then rep 2, ...)
and the tables show medians, with ratios to raw duroxide.

The peers, each on its SQLite default:

- ``ours``: ``pi_duroxide_nb.WorkflowRuntime(db=<file>)`` with its defaults, called as a user
  calls it (``start_workflow``, ``wait_for_workflow``).
- ``raw``: duroxide's ``Runtime`` + ``Client`` at its best settings for these workloads
  (``RAW_OPTIONS``: poll 1 ms, orchestration_concurrency 2, worker_concurrency 4, lock
  timeouts 2 s, the same lease as ours so crash recovery compares like with like).
- ``dbos``: DBOS Transact with ``system_database_url="sqlite:///<file>"``; steps are
  ``@DBOS.step`` functions called from a ``@DBOS.workflow``.
- ``langgraph``: a ``StateGraph`` whose single node loops ``n`` times, compiled with
  ``SqliteSaver`` (one checkpoint per step); it has no background worker, so "workflows
  started at once" run one after another.

Workloads (a "step" is one durable call returning its input; the timings exclude process
start, imports and runtime start, which the "CPU after start" row covers):

- ``seq10`` / ``seq100``: one workflow of 10 / 100 sequential steps, ms per step.
- ``seq1000``: one workflow of 1 000 steps: total seconds, the process's peak RSS (for ours
  plus the largest child, its store reader) and the bytes on disk once the peer shut down.
- ``fan200``: 200 one-step workflows started at once, workflows per second.
- ``agent``: 20 steps that each sleep 200 ms (LLM-call-shaped): overhead above the 4 s of sleep.
- ``long``: 2 steps that each sleep 3 s (a model call's length): CPU of the process tree while
  they run, in % of one core (what a kernel spends polling while it waits on a model), and the
  time above the 6 s of sleep.
- ``idle``: CPU of the process tree (children included) over the 3 s after the runtime's start
  call returned, with no work, in % of one core; and how long importing the library and that start
  call took (for DBOS its launch, for LangGraph compiling the graph with its checkpointer).
- ``crash``: a workflow of 20 steps of 50 ms; the child is SIGKILLed while step 10 runs; a new
  process opens the same store and the time from the kill until the workflow completes in the
  new process is reported (it includes that process's start and imports, and whatever the
  engine waits before retrying the interrupted step: duroxide waits for the 2 s lock lease).
  The remaining work itself is about 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PEERS = ("ours", "raw", "dbos", "langgraph")
PEER_TITLES = {
    "ours": "ours",
    "raw": "raw duroxide",
    "dbos": "DBOS",
    "langgraph": "LangGraph + SqliteSaver",
}
RAW_POLL_MS = 1
RAW_OPTIONS = {
    "dispatcher_poll_interval_ms": RAW_POLL_MS,
    "orchestration_concurrency": 2,
    "worker_concurrency": 4,
    "worker_lock_timeout_ms": 2000,
    "orchestrator_lock_timeout_ms": 2000,
    "log_level": "error",
}
CRASH_STEPS, CRASH_MS, CRASH_AT = 20, 50, 10
AGENT_STEPS, AGENT_MS = 20, 200
LONG_STEPS, LONG_MS = 2, 3000
IDLE_SECONDS = 3.0
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- bench_peers:begin -->", "<!-- bench_peers:end -->"


# === child side: one peer, one workload ========================================================


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, IndexError, ValueError):
            continue
    return total


def _disk_bytes(folder: str) -> int:
    total = 0
    for name in os.listdir(folder):
        try:  # SQLite removes a -wal or -shm file when its last connection closes, maybe right now
            total += os.path.getsize(os.path.join(folder, name))
        except FileNotFoundError:
            continue
    return total


def _marker(i: int) -> None:
    sys.stdout.write(f"STEP {i}\n")
    sys.stdout.flush()


def _identity(_ctx: Any, x: Any) -> Any:
    return x


def _sleep_step(_ctx: Any, arg: Any) -> Any:
    time.sleep(arg["ms"] / 1000)
    return arg["i"]


def _crash_step(_ctx: Any, arg: Any) -> Any:
    _marker(arg["i"])
    time.sleep(arg["ms"] / 1000)
    return arg["i"]


# The same generators run on ours and on raw duroxide: both ctx objects take these calls.
def _seq(ctx: Any, n: int) -> Any:
    for i in range(n):
        yield ctx.schedule_activity("step", i)
    return n


def _one(ctx: Any, x: Any) -> Any:
    result = yield ctx.schedule_activity("step", x)
    return result


def _slow(ctx: Any, arg: Any) -> Any:
    for i in range(arg["n"]):
        yield ctx.schedule_activity(arg["activity"], {"i": i, "ms": arg["ms"]})
    return arg["n"]


class Peer:
    """One system under test, opened on a store in ``folder``."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def start(self) -> None: ...
    def seq(self, n: int) -> None: ...
    def fan(self, n: int) -> None: ...
    def slow(self, n: int, ms: int, activity: str, wid: str) -> None: ...
    def wait(self, wid: str) -> None: ...
    def close(self) -> None: ...


class Ours(Peer):
    def start(self) -> None:
        import pi_duroxide_nb as pdn

        registry = pdn.WorkflowRegistry()
        registry.register_activity("step", _identity)
        registry.register_activity("sleep_step", _sleep_step)
        registry.register_activity("crash_step", _crash_step)
        registry.register_workflow("seq", _seq)
        registry.register_workflow("one", _one)
        registry.register_workflow("slow", _slow)
        self.rt = pdn.WorkflowRuntime(db=os.path.join(self.folder, "store.db"), registry=registry)
        self.rt.start()

    def _check(self, iid: str, timeout: float = 600) -> None:
        state = self.rt.wait_for_workflow(iid, timeout=timeout)
        if state.status.value != "Completed":
            raise SystemExit(f"ours: {iid} ended {state.status.value}: {state.error}")

    def seq(self, n: int) -> None:
        self._check(self.rt.start_workflow("seq", n))

    def fan(self, n: int) -> None:
        for iid in [self.rt.start_workflow("one", i) for i in range(n)]:
            self._check(iid)

    def slow(self, n: int, ms: int, activity: str, wid: str) -> None:
        self._check(self.rt.start_workflow("slow", {"n": n, "ms": ms, "activity": activity}, instance_id=wid))

    def wait(self, wid: str) -> None:
        self._check(wid, timeout=120)

    def close(self) -> None:
        self.rt.shutdown()


class Raw(Peer):
    def start(self) -> None:
        import duroxide as dx

        self.provider = dx.SqliteProvider.open(os.path.join(self.folder, "store.db"))
        self.client = dx.Client(self.provider)
        self.runtime = dx.Runtime(self.provider, dx.RuntimeOptions(**RAW_OPTIONS))
        for name, fn in (("step", _identity), ("sleep_step", _sleep_step), ("crash_step", _crash_step)):
            self.runtime.register_activity(name, fn)
        for name, gen in (("seq", _seq), ("one", _one), ("slow", _slow)):
            self.runtime.register_orchestration(name, gen)
        self.runtime.start()
        self._ids = 0

    def _id(self) -> str:
        self._ids += 1
        return f"wf-{self._ids}"

    def _check(self, iid: str, timeout_ms: int = 600_000) -> None:
        status = self.client.wait_for_orchestration(iid, timeout_ms)
        if status.status != "Completed":
            raise SystemExit(f"raw: {iid} ended {status.status}: {status.error}")

    def seq(self, n: int) -> None:
        iid = self._id()
        self.client.start_orchestration(iid, "seq", n)
        self._check(iid)

    def fan(self, n: int) -> None:
        ids = [self._id() for _ in range(n)]
        for i, iid in enumerate(ids):
            self.client.start_orchestration(iid, "one", i)
        for iid in ids:
            self._check(iid)

    def slow(self, n: int, ms: int, activity: str, wid: str) -> None:
        self.client.start_orchestration(wid, "slow", {"n": n, "ms": ms, "activity": activity})
        self._check(wid)

    def wait(self, wid: str) -> None:
        self._check(wid, 120_000)

    def close(self) -> None:
        self.runtime.shutdown(5000)


class Dbos(Peer):
    def start(self) -> None:
        from dbos import DBOS

        DBOS(
            config={
                "name": "bench",
                "system_database_url": f"sqlite:///{self.folder}/dbos.sqlite",
                "application_version": "bench",  # the resuming process must recover under the same version
            }
        )

        @DBOS.step()
        def step(x: Any) -> Any:
            return x

        @DBOS.step()
        def sleep_step(i: int, ms: int) -> int:
            time.sleep(ms / 1000)
            return i

        @DBOS.step()
        def crash_step(i: int, ms: int) -> int:
            _marker(i)
            time.sleep(ms / 1000)
            return i

        @DBOS.workflow()
        def seq(n: int) -> int:
            for i in range(n):
                step(i)
            return n

        @DBOS.workflow()
        def one(x: Any) -> Any:
            return step(x)

        @DBOS.workflow()
        def slow(n: int, ms: int, activity: str) -> int:
            fn = sleep_step if activity == "sleep_step" else crash_step
            for i in range(n):
                fn(i, ms)
            return n

        self.dbos, self.fns = DBOS, {"seq": seq, "one": one, "slow": slow}
        DBOS.launch()

    def seq(self, n: int) -> None:
        self.dbos.start_workflow(self.fns["seq"], n).get_result()

    def fan(self, n: int) -> None:
        handles = [self.dbos.start_workflow(self.fns["one"], i) for i in range(n)]
        for h in handles:
            h.get_result()

    def slow(self, n: int, ms: int, activity: str, wid: str) -> None:
        from dbos import SetWorkflowID

        with SetWorkflowID(wid):
            handle = self.dbos.start_workflow(self.fns["slow"], n, ms, activity)
        handle.get_result()

    def wait(self, wid: str) -> None:
        result = self.dbos.retrieve_workflow(wid).get_result()
        if result != CRASH_STEPS:
            raise SystemExit(f"dbos: {wid} returned {result!r}")

    def close(self) -> None:
        self.dbos.destroy()


class LangGraph(Peer):
    def start(self) -> None:
        import sqlite3
        from typing import TypedDict

        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END as GRAPH_END
        from langgraph.graph import START, StateGraph

        class State(TypedDict):
            i: int
            n: int
            ms: int
            crash: bool

        # No annotations on the nodes: LangGraph resolves them with get_type_hints, and State is local.
        def step(state):  # type: ignore[no-untyped-def]
            if state["crash"]:
                _marker(state["i"])
            if state["ms"]:
                time.sleep(state["ms"] / 1000)
            return {"i": state["i"] + 1}

        def more(state):  # type: ignore[no-untyped-def]
            return "step" if state["i"] < state["n"] else GRAPH_END

        graph = StateGraph(State)
        graph.add_node("step", step)
        graph.add_edge(START, "step")
        graph.add_conditional_edges("step", more)
        self.conn = sqlite3.connect(os.path.join(self.folder, "checkpoints.sqlite"), check_same_thread=False)
        self.graph = graph.compile(checkpointer=SqliteSaver(self.conn))
        self._ids = 0

    def _run(self, state: dict[str, Any] | None, tid: str, n: int) -> None:
        config = {"configurable": {"thread_id": tid}, "recursion_limit": n + 10}
        out = self.graph.invoke(state, config)  # type: ignore[arg-type]
        if out["i"] != n:
            raise SystemExit(f"langgraph: {tid} ended at step {out['i']} of {n}")

    def _tid(self) -> str:
        self._ids += 1
        return f"t-{self._ids}"

    def seq(self, n: int) -> None:
        self._run({"i": 0, "n": n, "ms": 0, "crash": False}, self._tid(), n)

    def fan(self, n: int) -> None:
        for _ in range(n):
            self._run({"i": 0, "n": 1, "ms": 0, "crash": False}, self._tid(), 1)

    def slow(self, n: int, ms: int, activity: str, wid: str) -> None:
        self._run({"i": 0, "n": n, "ms": ms, "crash": activity == "crash_step"}, wid, n)

    def wait(self, wid: str) -> None:
        self._run(None, wid, CRASH_STEPS)  # resumes from the thread's last checkpoint

    def close(self) -> None:
        self.conn.close()


PEER_CLASSES: dict[str, type[Peer]] = {"ours": Ours, "raw": Raw, "dbos": Dbos, "langgraph": LangGraph}


def _hwm_kib(pid: int) -> int:
    """Peak RSS (VmHWM) of a live process, in KiB.

    Not ``getrusage``'s ru_maxrss: Linux carries it across fork + exec, so a child reports at
    least the RSS its parent had when it forked (the bench's parent, or our runtime for its
    store reader), which is not the child's own memory.
    """
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                kids = [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
                out += kids
                stack += kids
        except OSError:
            continue
    return out


def child(peer_name: str, workload: str, size: int, folder: str, result_path: str) -> None:
    os.environ.setdefault("RUST_LOG", "error")
    peer = PEER_CLASSES[peer_name](folder)
    close = peer.close
    children_hwm = 0

    def close_after_reading_children() -> None:
        nonlocal children_hwm  # the store reader of ours lives until shutdown
        children_hwm = sum(_hwm_kib(p) for p in _descendants(os.getpid()))
        close()

    peer.close = close_after_reading_children  # type: ignore[method-assign]
    result: dict[str, Any] = {}
    if workload == "idle":
        t_start = time.perf_counter()
        peer.start()
        result["start_s"] = time.perf_counter() - t_start
        cpu0, t0 = _tree_cpu(os.getpid()), time.perf_counter()  # from the moment start() returned
        time.sleep(IDLE_SECONDS)
        result["cpu_pct"] = 100 * (_tree_cpu(os.getpid()) - cpu0) / (time.perf_counter() - t0)
        peer.close()
    elif workload == "resume":
        peer.start()
        peer.wait("crash-wf")
        result["done_at"] = time.time()
        peer.close()
    else:
        peer.start()
        cpu0, t0 = _tree_cpu(os.getpid()), time.perf_counter()
        if workload == "seq":
            peer.seq(size)
        elif workload == "fan":
            peer.fan(size)
        elif workload == "agent":
            peer.slow(size, AGENT_MS, "sleep_step", "agent-wf")
        elif workload == "long":
            peer.slow(size, LONG_MS, "sleep_step", "long-wf")
        elif workload == "crash":  # runs until the parent kills it
            peer.slow(CRASH_STEPS, CRASH_MS, "crash_step", "crash-wf")
        else:
            raise SystemExit(f"unknown workload {workload!r}")
        result["seconds"] = time.perf_counter() - t0
        result["cpu_pct"] = 100 * (_tree_cpu(os.getpid()) - cpu0) / result["seconds"]
        peer.close()
        result["disk_bytes"] = _disk_bytes(folder)
    result["rss_self_kib"] = _hwm_kib(os.getpid())
    result["rss_child_kib"] = children_hwm
    Path(result_path).write_text(json.dumps(result))


# === parent side ==============================================================================


def _spawn(peer: str, workload: str, size: int, folder: str, result_path: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, "--child", peer, workload, str(size), folder, result_path],
        text=True,
        **kw,
    )


def run_one(peer: str, workload: str, size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"pdn-peers-{peer}-") as folder:
        store = os.path.join(folder, "store")
        os.mkdir(store)
        result_path = os.path.join(folder, "result.json")
        log_path = os.path.join(folder, "child.log")
        with open(log_path, "w") as log:
            proc = _spawn(peer, workload, size, store, result_path, stdout=log, stderr=subprocess.STDOUT)
            code = proc.wait(timeout=1800)
        if code != 0 or not os.path.exists(result_path):
            tail = Path(log_path).read_text(errors="replace")[-2500:]
            raise RuntimeError(f"{peer}/{workload} exited {code}:\n{tail}")
        result: dict[str, Any] = json.loads(Path(result_path).read_text())
        return result


def run_crash(peer: str) -> dict[str, Any]:
    """Kill a child while step CRASH_AT runs, then time a new process to the workflow's completion."""
    with tempfile.TemporaryDirectory(prefix=f"pdn-peers-{peer}-crash-") as folder:
        store = os.path.join(folder, "store")
        os.mkdir(store)
        first = _spawn(peer, "crash", 0, store, os.path.join(folder, "unused.json"), stdout=subprocess.PIPE)
        assert first.stdout is not None
        deadline = time.monotonic() + 120
        for line in first.stdout:
            if line.strip() == f"STEP {CRASH_AT}" or time.monotonic() > deadline:
                break
        else:
            first.wait()
            raise RuntimeError(f"{peer}/crash: the child ended before step {CRASH_AT} (exit {first.returncode})")
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.time()
        first.wait()
        first.stdout.close()
        result_path = os.path.join(folder, "result.json")
        log_path = os.path.join(folder, "resume.log")
        with open(log_path, "w") as log:
            code = _spawn(peer, "resume", 0, store, result_path, stdout=log, stderr=subprocess.STDOUT).wait(300)
        if code != 0 or not os.path.exists(result_path):
            tail = Path(log_path).read_text(errors="replace")[-2500:]
            raise RuntimeError(f"{peer}/resume exited {code}:\n{tail}")
        resumed: dict[str, Any] = json.loads(Path(result_path).read_text())
        reran = Path(log_path).read_text(errors="replace").count(f"STEP {CRASH_AT}")
        return {"seconds": resumed["done_at"] - killed_at, "reran_step": reran}


class Row:
    """One line of the results table: how to measure it, and how to show it."""

    def __init__(
        self, key: str, label: str, workload: str, size: int, value: Callable[[dict[str, Any]], float], fmt: str
    ) -> None:
        self.key, self.label, self.workload, self.size, self.value, self.fmt = key, label, workload, size, value, fmt


def _rows(quick: bool) -> list[Row]:
    long_n = 200 if quick else 1000
    fan_n = 50 if quick else 200
    agent_n = 5 if quick else AGENT_STEPS
    agent_s = agent_n * AGENT_MS / 1000
    long_s = LONG_STEPS * LONG_MS / 1000
    return [
        Row("seq10", "1 workflow x 10 steps, ms/step", "seq", 10, lambda r: 1000 * r["seconds"] / 10, "{:.1f}"),
        Row("seq100", "1 workflow x 100 steps, ms/step", "seq", 100, lambda r: 1000 * r["seconds"] / 100, "{:.1f}"),
        Row("seqlong", f"1 workflow x {long_n} steps, total s", "seq", long_n, lambda r: r["seconds"], "{:.2f}"),
        Row("fan", f"{fan_n} one-step workflows, wf/s", "fan", fan_n, lambda r: fan_n / r["seconds"], "{:.0f}"),
        Row(
            "agent",
            f"{agent_n} steps of {AGENT_MS} ms (agent-shaped), overhead above {agent_s:g} s",
            "agent",
            agent_n,
            lambda r: 100 * (r["seconds"] - agent_s) / agent_s,
            "{:.1f} %",
        ),
        Row(
            "longcpu",
            f"{LONG_STEPS} steps of {LONG_MS / 1000:g} s (a model call), CPU while they run, % of a core",
            "long",
            LONG_STEPS,
            lambda r: r["cpu_pct"],
            "{:.1f} %",
        ),
        Row(
            "longover",
            f"{LONG_STEPS} steps of {LONG_MS / 1000:g} s, time above {long_s:g} s, ms",
            "long",
            LONG_STEPS,
            lambda r: 1000 * (r["seconds"] - long_s),
            "{:.0f}",
        ),
        Row(
            "rss",
            f"peak RSS (VmHWM), {long_n} steps, MiB (ours: + its store-reader child)",
            "seq",
            long_n,
            lambda r: (r["rss_self_kib"] + r["rss_child_kib"]) / 1024,
            "{:.0f}",
        ),
        Row(
            "disk",
            f"disk after {long_n} steps, shut down (MB)",
            "seq",
            long_n,
            lambda r: r["disk_bytes"] / 1e6,
            "{:.2f}",
        ),
        Row(
            "idle",
            f"CPU in the first {IDLE_SECONDS:g} s after start, % of a core",
            "idle",
            0,
            lambda r: r["cpu_pct"],
            "{:.1f} %",
        ),
        Row("start", "import + start (launch, compile), s", "idle", 0, lambda r: r["start_s"], "{:.2f}"),
        Row(
            "crash",
            f"crash -> resume: SIGKILL in step {CRASH_AT} of {CRASH_STEPS} x {CRASH_MS} ms, s until done",
            "crash",
            0,
            lambda r: r["seconds"],
            "{:.2f}",
        ),
    ]


def _available(peer: str) -> str | None:
    """None if the peer can run here, else why not."""
    module = {"ours": "pi_duroxide_nb", "raw": "duroxide", "dbos": "dbos", "langgraph": "langgraph.checkpoint.sqlite"}
    try:
        __import__(module[peer])
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install -e '.[bench]'"
    return None


def measure(peers: list[str], rows: list[Row], reps: int, log: Callable[[str], None]) -> dict[tuple[str, str], Any]:
    """Run every (row, peer) ``reps`` times, interleaved; return {(row key, peer): [values] | error text}."""
    values: dict[tuple[str, str], Any] = {}
    # Rows sharing a workload and size share runs (seqlong feeds total s, RSS and disk).
    runs: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        runs.setdefault((row.workload, row.size), []).append(row)
    for rep in range(reps):
        for (workload, size), group in runs.items():
            for peer in peers:
                if any(isinstance(values.get((r.key, peer)), str) for r in group):
                    continue  # failed before: the row shows why
                t0 = time.perf_counter()
                try:
                    result = run_crash(peer) if workload == "crash" else run_one(peer, workload, size)
                except Exception as exc:
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    why = lines[-1] if lines else type(exc).__name__
                    for r in group:
                        values[(r.key, peer)] = f"failed: {why[:100]}"
                    log(f"  rep {rep + 1} {workload}/{size} {peer}: FAILED {exc}")
                    continue
                shown = []
                for r in group:
                    v = r.value(result)
                    values.setdefault((r.key, peer), []).append(v)
                    shown.append(f"{r.key} {r.fmt.format(v)}")
                log(f"  rep {rep + 1} {workload}/{size} {peer}: {', '.join(shown)} ({time.perf_counter() - t0:.1f} s)")
    return values


def table(peers: list[str], rows: list[Row], values: dict[tuple[str, str], Any], skipped: dict[str, str]) -> str:
    """A markdown table: one row per workload, the median per peer, and the ratio to raw duroxide."""
    head = "| workload | " + " | ".join(PEER_TITLES[p] for p in peers) + " |"
    lines = [head, "|---" * (len(peers) + 1) + "|"]
    for row in rows:
        cells = []
        base = values.get((row.key, "raw"))
        base_m = statistics.median(base) if isinstance(base, list) else None
        for peer in peers:
            v = values.get((row.key, peer))
            if peer in skipped:
                cells.append(f"not run: {skipped[peer]}")
            elif isinstance(v, str):
                cells.append(v)
            elif not v:
                cells.append("-")
            else:
                m = statistics.median(v)
                text = row.fmt.format(m)
                if peer != "raw" and base_m not in (None, 0) and row.key not in ("agent", "longover"):
                    text += f" ({m / base_m:.2f}x)"
                cells.append(text)
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_readme(text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the ``begin`` ... ``end`` block of bench/README.md with ``text``."""
    content = README.read_text()
    if begin not in content or end not in content:
        raise SystemExit(f"{README} has no {begin} ... {end} block to replace")
    before, rest = content.split(begin, 1)
    _, after = rest.split(end, 1)
    README.write_text(before + begin + "\n" + text + "\n" + end + after)


def ver(dist: str) -> str:
    """The installed version of ``dist``, or "absent"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(argv[1], argv[2], int(argv[3]), argv[4], argv[5])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: smaller sizes, 1 rep (under 2 minutes)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 1)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument("--rows", default=None, help="comma-separated subset of row keys")
    parser.add_argument("--write-readme", action="store_true", help="rewrite the table in bench/README.md")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    for p in peers:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}; choose from {', '.join(PEERS)}")
    rows = _rows(args.quick)
    if args.rows:
        keep = set(args.rows.split(","))
        rows = [r for r in rows if r.key in keep]
    reps = args.reps or (1 if args.quick else 5)
    skipped = {p: why for p in peers if (why := _available(p)) is not None}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    log(f"bench_peers: peers {', '.join(peers)} | reps {reps}{' | QUICK' if args.quick else ''}")
    values = measure([p for p in peers if p not in skipped], rows, reps, log)
    load1 = os.getloadavg()
    header = (
        f"Medians of {reps} interleaved run(s){' (--quick sizes)' if args.quick else ''}; (x) = ratio to raw"
        f" duroxide. pi_duroxide_nb {ver('pi_duroxide_nb')}, duroxide {ver('duroxide')}, dbos {ver('dbos')},"
        f" langgraph {ver('langgraph')}, langgraph-checkpoint-sqlite {ver('langgraph-checkpoint-sqlite')};"
        f" python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load0[0]:.2f} at start and"
        f" {load1[0]:.2f} at end; {time.perf_counter() - t0:.0f} s in all."
    )
    text = header + "\n\n" + table(peers, rows, values, skipped)
    print(text)
    if args.write_readme:
        write_readme(text)
        log(f"wrote {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
