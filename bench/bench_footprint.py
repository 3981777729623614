"""Where pi_duroxide_nb's memory, startup CPU and per-step time go, against raw duroxide.

Run it from the repository root (the package must be importable, e.g. the project venv):

    python bench/bench_footprint.py                 # all three parts, 1000 steps (about 2 minutes)
    python bench/bench_footprint.py --quick         # 200 steps (about 40 s)
    python bench/bench_footprint.py --parts rss     # rss, cpu, split, kernel

Every figure comes from a fresh child process on a fresh temporary SQLite file.

1. ``rss``: resident memory (VmRSS, MiB) after each stage: bare interpreter, ``import
   duroxide``, ``import pydantic``, ``import pi_duroxide_nb``, runtime started, first workflow
   started, after one workflow of N steps (then VmHWM, the peak); for ours also the store-reader
   child's RSS and peak. raw = duroxide's Runtime + Client with our active-mode settings.
2. ``cpu``: CPU of the process tree (from /proc, children included) over the 3 s after the
   runtime started with no work, in % of one core, for ours (default adaptive polling) and raw
   duroxide at poll 1, 2 and 50 ms, and at poll 50 ms with one dispatcher per queue (what our
   idle mode runs).
3. ``split``: one workflow of N sequential steps; the wall time split into the Python side of
   orchestration turns (duroxide's generator driver: create_generator/next_step, which includes
   replaying the generator, and for ours the ``drive`` wrapper, ctx and task objects), activity
   callbacks, and the rest (the Rust engine: SQLite transactions, dispatch, poll waits). It
   times duroxide's driver functions by wrapping them before the runtime is built (the binding
   reads them from the ``duroxide`` module then) and the activities by wrapping
   ``Runtime.register_activity``.
4. ``kernel``: the same workflow of N steps run in a real Jupyter kernel (ipykernel started by
   jupyter_client, the setting the product is for): the kernel's peak RSS (VmHWM) and, for ours,
   its store-reader child's, against the same kernel running raw duroxide. The kernel's own
   interpreter, ipykernel, asyncio and tornado are there on both sides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_OPTIONS = {
    "orchestration_concurrency": 2,
    "worker_concurrency": 4,
    "worker_lock_timeout_ms": 2000,
    "orchestrator_lock_timeout_ms": 2000,
    "log_level": "error",
}


def _status(pid: int | str = "self") -> dict[str, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) // 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        out += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return out


def _tree_cpu(pid: int) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            stack.extend(_children(p))
        except (OSError, IndexError, ValueError):
            continue
    return total


def _identity(_ctx: Any, x: Any) -> Any:
    return x


def _seq(ctx: Any, n: int) -> Any:
    for i in range(n):
        yield ctx.schedule_activity("step", i)
    return n


class _Raw:
    def __init__(self, db: str, poll_ms: int = 1, orch: int = 2, work: int = 4) -> None:
        import duroxide as dx

        self.provider = dx.SqliteProvider.open(db)
        self.client = dx.Client(self.provider)
        options = {**_OPTIONS, "orchestration_concurrency": orch, "worker_concurrency": work}
        self.rt = dx.Runtime(self.provider, dx.RuntimeOptions(dispatcher_poll_interval_ms=poll_ms, **options))
        self.rt.register_activity("step", _identity)
        self.rt.register_orchestration("seq", _seq)
        self.rt.start()

    def run(self, n: int, iid: str) -> None:
        self.client.start_orchestration(iid, "seq", n)
        status = self.client.wait_for_orchestration(iid, 600_000)
        assert status.status == "Completed", status.error

    def start_only(self, iid: str) -> None:
        self.client.start_orchestration(iid, "seq", 1)
        self.client.wait_for_orchestration(iid, 60_000)

    def close(self) -> None:
        self.rt.shutdown(5000)


class _Ours:
    def __init__(self, db: str) -> None:
        import pi_duroxide_nb as pdn

        registry = pdn.WorkflowRegistry()
        registry.register_activity("step", _identity)
        registry.register_workflow("seq", _seq)
        self.rt = pdn.WorkflowRuntime(db=db, registry=registry)
        self.rt.start()

    def run(self, n: int, iid: str) -> None:
        state = self.rt.wait_for_workflow(self.rt.start_workflow("seq", n, instance_id=iid), timeout=600)
        assert state.status.value == "Completed", state.error

    def start_only(self, iid: str) -> None:
        self.rt.wait_for_workflow(self.rt.start_workflow("seq", 1, instance_id=iid), timeout=60)

    def close(self) -> None:
        self.rt.shutdown()


def child_rss(side: str, n: int, db: str) -> dict[str, Any]:
    stages: list[tuple[str, int]] = [("interpreter", _status()["VmRSS"])]
    import duroxide  # noqa: F401

    stages.append(("+ import duroxide", _status()["VmRSS"]))
    import pydantic  # noqa: F401

    stages.append(("+ import pydantic", _status()["VmRSS"]))
    if side == "ours":
        import pi_duroxide_nb  # noqa: F401

        stages.append(("+ import pi_duroxide_nb", _status()["VmRSS"]))
    env: Any = _Ours(db) if side == "ours" else _Raw(db)
    stages.append(("runtime started", _status()["VmRSS"]))
    env.start_only("first")
    stages.append(("first 1-step workflow done", _status()["VmRSS"]))
    reader: dict[str, int] = {}
    kids = _children(os.getpid())
    if kids:
        reader["after first workflow"] = _status(kids[0])["VmRSS"]
    env.run(n, "long")
    me = _status()
    stages.append((f"after {n} steps", me["VmRSS"]))
    stages.append((f"peak (VmHWM) after {n} steps", me["VmHWM"]))
    kids = _children(os.getpid())
    if kids:
        st = _status(kids[0])
        reader[f"after {n} steps"] = st["VmRSS"]
        reader["peak (VmHWM)"] = st["VmHWM"]
    env.close()
    return {"stages": stages, "reader": reader}


def child_cpu(variant: str, db: str) -> dict[str, Any]:
    import duroxide  # noqa: F401

    if variant == "ours":
        import pi_duroxide_nb  # noqa: F401
    cpu0, t0 = _tree_cpu(os.getpid()), time.perf_counter()
    if variant == "ours":
        env: Any = _Ours(db)
    else:
        poll, _, conc = variant.partition("-")
        orch, work = (1, 1) if conc == "c1x1" else (2, 4)
        env = _Raw(db, int(poll.removeprefix("raw")), orch, work)
    time.sleep(max(0.0, 3.0 - (time.perf_counter() - t0)))
    pct = 100 * (_tree_cpu(os.getpid()) - cpu0) / (time.perf_counter() - t0)
    env.close()
    return {"cpu_pct": pct}


def child_split(side: str, n: int, db: str) -> dict[str, Any]:
    import duroxide

    acc = {"orch": 0.0, "turns": 0, "steps": 0, "act": 0.0, "act_calls": 0}

    def timed(fn: Any, key: str, count: str) -> Any:
        def wrapper(*args: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                acc[key] += time.perf_counter() - t
                acc[count] += 1

        return wrapper

    # The binding takes the driver functions from the duroxide module when a Runtime is built.
    duroxide.create_generator = timed(duroxide.create_generator, "orch", "turns")  # type: ignore[attr-defined]
    duroxide.next_step = timed(duroxide.next_step, "orch", "steps")  # type: ignore[attr-defined]
    register = duroxide.Runtime.register_activity

    def register_timed(self: Any, name: str, fn: Any) -> Any:
        return register(self, name, timed(fn, "act", "act_calls"))

    duroxide.Runtime.register_activity = register_timed  # type: ignore[method-assign]
    env: Any = _Ours(db) if side == "ours" else _Raw(db)
    env.start_only("warm")
    for k in acc:
        acc[k] = 0
    t0 = time.perf_counter()
    env.run(n, "long")
    wall = time.perf_counter() - t0
    env.close()
    return {"wall": wall, **acc}


_KERNEL_CODE = {
    "raw": """
import duroxide as dx
def step(_ctx, x):
    return x
def seq(ctx, n):
    for i in range(n):
        yield ctx.schedule_activity("step", i)
    return n
provider = dx.SqliteProvider.open(DB)
client = dx.Client(provider)
rt = dx.Runtime(provider, dx.RuntimeOptions(dispatcher_poll_interval_ms=1, **OPTIONS))
rt.register_activity("step", step)
rt.register_orchestration("seq", seq)
rt.start()
client.start_orchestration("long", "seq", N)
assert client.wait_for_orchestration("long", 600_000).status == "Completed"
""",
    "ours": """
import pi_duroxide_nb as pdn
registry = pdn.WorkflowRegistry()
@registry.register_activity("step")
def step(_ctx, x):
    return x
@registry.register_workflow("seq")
def seq(ctx, n):
    for i in range(n):
        yield ctx.schedule_activity("step", i)
    return n
rt = pdn.WorkflowRuntime(db=DB, registry=registry).start()
assert rt.wait_for_workflow(rt.start_workflow("seq", N, instance_id="long"), timeout=600).status.value == "Completed"
""",
}


def kernel_rss(side: str, n: int) -> dict[str, int]:
    """Run one workflow of ``n`` steps in a fresh ipykernel; its peak RSS and its children's, MiB."""
    import jupyter_client

    with tempfile.TemporaryDirectory(prefix="pdn-footprint-kernel-") as folder:
        km = jupyter_client.KernelManager(kernel_name="python3")
        km.kernel_spec_manager.ensure_native_kernel = True
        env = {**os.environ, "RUST_LOG": "error"}
        km.start_kernel(cwd=folder, env=env, extra_arguments=["--HistoryManager.enabled=False"])
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            pid = km.provisioner.process.pid  # type: ignore[union-attr]
            before = _status(pid)["VmRSS"]
            setup = f"DB = {os.path.join(folder, 's.db')!r}\nN = {n}\nOPTIONS = {_OPTIONS!r}\n"
            reply = kc.execute_interactive(setup + _KERNEL_CODE[side], timeout=900, output_hook=lambda _m: None)
            if reply["content"]["status"] != "ok":
                raise SystemExit(f"kernel/{side}: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
            kids = _children(pid)
            child_peak = sum(_status(k)["VmHWM"] for k in kids)
            return {"idle kernel": before, "kernel peak": _status(pid)["VmHWM"], "children peak": child_peak}
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)


def _child(argv: list[str]) -> None:
    part, arg, n, db, out = argv[0], argv[1], int(argv[2]), argv[3], argv[4]
    os.environ.setdefault("RUST_LOG", "error")
    if part == "rss":
        result = child_rss(arg, n, db)
    elif part == "cpu":
        result = child_cpu(arg, db)
    else:
        result = child_split(arg, n, db)
    Path(out).write_text(json.dumps(result))


def _run(part: str, arg: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pdn-footprint-") as folder:
        out = os.path.join(folder, "out.json")
        proc = subprocess.run(
            [sys.executable, __file__, "--child", part, arg, str(n), os.path.join(folder, "s.db"), out],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{part}/{arg} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(Path(out).read_text())
        return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        _child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 steps instead of 1000")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--parts", default="rss,cpu,split,kernel")
    args = parser.parse_args(argv)
    n = args.steps or (200 if args.quick else 1000)
    parts = args.parts.split(",")
    print(f"footprint | {os.cpu_count()} CPUs | load avg at start %.2f %.2f %.2f" % os.getloadavg())
    if "rss" in parts:
        raw, ours = _run("rss", "raw", n), _run("rss", "ours", n)
        print(f"\n1. RSS in MiB after each stage (one workflow of {n} steps)")
        print(f"  {'stage':<34} {'raw':>6} {'ours':>6}")
        raw_st = dict(raw["stages"])
        for label, value in ours["stages"]:
            print(f"  {label:<34} {raw_st.get(label, ''):>6} {value:>6}")
        for label, value in ours["reader"].items():
            print(f"  {'store reader child, ' + label:<34} {'':>6} {value:>6}")
    if "cpu" in parts:
        print("\n2. CPU in the first 3 s after start, % of one core (process tree)")
        for variant in ("ours", "raw1", "raw2", "raw50", "raw50-c1x1"):
            pct = _run("cpu", variant, 0)["cpu_pct"]
            label = {
                "ours": "ours (adaptive: 1 s active, then idle)",
                "raw1": "raw, poll 1 ms, 2+4 dispatchers",
                "raw2": "raw, poll 2 ms, 2+4 dispatchers",
                "raw50": "raw, poll 50 ms, 2+4 dispatchers",
                "raw50-c1x1": "raw, poll 50 ms, 1+1 (our idle mode)",
            }[variant]
            print(f"  {label:<40} {pct:6.1f} %")
    if "split" in parts:
        print(f"\n3. One workflow of {n} steps: where the wall time goes (s)")
        print(
            f"  {'':<6} {'wall':>7} {'orch py':>8} {'turns':>6} {'gen steps':>9} {'us/step':>8} {'act py':>7}"
            f" {'engine+waits':>12}"
        )
        rows = {side: _run("split", side, n) for side in ("raw", "ours")}
        for side, r in rows.items():
            rest = r["wall"] - r["orch"] - r["act"]
            per_step = 1e6 * r["orch"] / max(1, r["turns"] + r["steps"])
            print(
                f"  {side:<6} {r['wall']:7.2f} {r['orch']:8.2f} {r['turns']:6d} {r['steps']:9d} {per_step:8.1f}"
                f" {r['act']:7.3f} {rest:12.2f}"
            )
        d = {k: rows["ours"][k] - rows["raw"][k] for k in ("wall", "orch", "act")}
        print(
            f"  ours - raw: wall {d['wall']:+.2f} s, orchestration Python {d['orch']:+.2f} s,"
            f" activities {d['act']:+.3f} s"
        )
    if "kernel" in parts:
        print(f"\n4. In a Jupyter kernel: one workflow of {n} steps, MiB")
        got = {side: kernel_rss(side, n) for side in ("raw", "ours")}
        print(f"  {'':<36} {'raw':>6} {'ours':>6}")
        for label in ("idle kernel", "kernel peak", "children peak"):
            print(f"  {label:<36} {got['raw'][label]:>6} {got['ours'][label]:>6}")
        total = {side: got[side]["kernel peak"] + got[side]["children peak"] for side in got}
        ratio = total["ours"] / total["raw"]
        print(f"  {'kernel + children, peak':<36} {total['raw']:>6} {total['ours']:>6}  ({ratio:.2f}x)")
    print("load avg at end {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
