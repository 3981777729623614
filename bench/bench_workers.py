"""Throughput with 1, 2 and 4 worker processes on one PostgreSQL database: ours against raw duroxide.

Run it from the repository root, with the ``postgres`` extra installed and PostgreSQL's server
binaries on the machine (``pg_ctl``, ``initdb``, ``psql``; Debian's ``postgresql`` package):

    python -m pip install -e ".[postgres]"
    python bench/bench_workers.py --quick                # smoke run, smaller sizes, 1 rep (under 1 min)
    python bench/bench_workers.py                        # full run, 3 reps (about 4 min on 2 cores)
    python bench/bench_workers.py --write-readme         # full run, then rewrite bench/README.md's table

The script starts a private PostgreSQL server in a temporary folder (``initdb -A trust``,
``fsync=off``, listening on 127.0.0.1 on a free port; as root it runs the server as the
``postgres`` user) and stops it at the end, even on error. Every measurement gets a fresh
database (``CREATE DATABASE``) and fresh processes: K worker processes and one client process.
The client opens the store first (so the schema exists before the workers connect), the workers
start, and the clock starts only once every worker has said it is ready; it stops when the
client has seen every workflow completed. Peers run interleaved (rep 1: every workload, every K,
both peers; then rep 2, ...) and the table shows medians, with ratios to raw duroxide.

The peers, with the same engine settings on both sides:

- ``ours``: K processes of ``python -m pi_duroxide_nb worker --db URL --module <file>
  --concurrency 4`` serving a small module the script writes to a temporary folder; the client
  is ``pi_duroxide_nb.WorkflowRuntime(db=URL, registry=<that module's registry>, worker=False)``
  (``start_workflow``, ``wait_for_workflow``). A worker runs duroxide with 4 orchestration and
  4 activity dispatchers polling every 2 ms while busy (its adaptive polling drops to one slow
  poller per queue after 1 s without work, and back on the first step it sees) and a 2 s lock
  lease.
- ``raw``: K processes each running duroxide's ``Runtime`` on ``PostgresProvider.connect(URL)``
  with ``RuntimeOptions(orchestration_concurrency=4, worker_concurrency=4,
  dispatcher_poll_interval_ms=2, worker_lock_timeout_ms=2000, orchestrator_lock_timeout_ms=2000)``
  (ours' busy settings; fixed polling); the client is duroxide's ``Client``
  (``start_orchestration``, ``wait_for_orchestration``).

Workloads (a "step" is one durable activity call returning its input; the same generator code
runs on both peers):

- ``fan``: N one-step workflows started at once by the client (N = 200; 60 with ``--quick``);
  workflows per second from the first start until the client has seen all completed.
- ``seq``: M workflows of S sequential steps each, started at once (M = 4 so that 4 workers have
  something to share; S = 100, 30 with ``--quick``); steps per second over all of them. duroxide
  replays a workflow from its start on every turn, so a 100-step workflow costs 5 050 generator
  steps of Python: this row is CPU-heavy.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bench_peers import RAW_OPTIONS, _identity, _one, _seq, _tree_cpu, ver, write_readme

PEERS = ("ours", "raw")
WORKER_COUNTS = (1, 2, 4)
CONCURRENCY = 4
POLL_MS = 2  # ours' busy poll interval (PollingConfig.active_interval)
RAW_WORKER_OPTIONS = {
    **RAW_OPTIONS,
    "dispatcher_poll_interval_ms": POLL_MS,
    "orchestration_concurrency": CONCURRENCY,
    "worker_concurrency": CONCURRENCY,
}
SEQ_WORKFLOWS = 4
READY_TIMEOUT_S = 120
RUN_TIMEOUT_S = 900
README = Path(__file__).with_name("README.md")
BEGIN, END = "<!-- bench_workers:begin -->", "<!-- bench_workers:end -->"

MODULE_SOURCE = '''"""Workflows served by bench/bench_workers.py's workers (written by the script)."""

import pi_duroxide_nb as pdn

registry = pdn.WorkflowRegistry()


@registry.register_activity("step")
def step(_ctx, x):
    return x


@registry.register_workflow("one")
def one(ctx, x):
    result = yield ctx.schedule_activity("step", x)
    return result


@registry.register_workflow("seq")
def seq(ctx, n):
    for i in range(n):
        yield ctx.schedule_activity("step", i)
    return n
'''


# === a private PostgreSQL server ===============================================================


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    for candidate in ("/usr/local/bin/pg_ctl", *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)):
        if os.path.exists(candidate):
            return Path(os.path.realpath(candidate)).parent
    raise SystemExit(
        "PostgreSQL's server binaries (pg_ctl, initdb) were not found on PATH, in /usr/local/bin or in "
        "/usr/lib/postgresql/*/bin: install Debian's `postgresql` package (apt-get install postgresql)."
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A throwaway PostgreSQL server: ``new_database()`` hands out fresh databases on it."""

    def __init__(self, bindir: Path, port: int, root: Path) -> None:
        self.bindir, self.port, self.root = bindir, port, root
        self.psql = shutil.which("psql") or str(bindir / "psql")

    def new_database(self) -> str:
        name = f"b_{uuid.uuid4().hex[:12]}"
        subprocess.run(
            [self.psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "pdn", "-d", "postgres", "-qc"]
            + [f"CREATE DATABASE {name}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return f"postgresql://pdn@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        subprocess.run(
            [self.psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "pdn", "-d", "postgres", "-qc"]
            + [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            capture_output=True,
            timeout=60,
        )

    def version(self) -> str:
        out = subprocess.run([str(self.bindir / "pg_ctl"), "--version"], capture_output=True, text=True, timeout=30)
        found = re.search(r"\d+(\.\d+)+", out.stdout)
        return found.group(0) if found else "unknown"

    def postmaster_pid(self) -> int:
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """Start a private server (as the ``postgres`` user when run as root); stop it on the way out."""
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="pdn-bench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, user="postgres")
    data, port = root / "data", _free_port()
    started = False
    try:
        subprocess.run(
            [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "pdn", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = True  # from here on, try to stop it whatever happens
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield PgServer(bindir, port, root)
    except subprocess.CalledProcessError as exc:
        log_tail = (root / "log").read_text(errors="replace")[-1500:] if (root / "log").exists() else ""
        raise SystemExit(
            f"could not start the private PostgreSQL server: {' '.join(map(str, exc.cmd))} exited "
            f"{exc.returncode}: {(exc.stderr or b'').decode(errors='replace')[-1500:]}{log_tail}"
        ) from exc
    finally:
        if started:
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)


# === child side: the client, and raw duroxide's worker ==========================================


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_workers_module", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_worker(url: str) -> None:
    """One raw duroxide worker process: serve ``one``/``seq``/``step`` until SIGTERM."""
    import duroxide as dx

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    provider = dx.PostgresProvider.connect(url)
    runtime = dx.Runtime(provider, dx.RuntimeOptions(**RAW_WORKER_OPTIONS))
    runtime.register_activity("step", _identity)
    runtime.register_orchestration("one", _one)
    runtime.register_orchestration("seq", _seq)
    runtime.start()
    print(f"raw duroxide worker ready: pid {os.getpid()}", flush=True)
    while not stop.wait(0.5):
        pass
    runtime.shutdown(10_000)
    print("raw duroxide worker stopped", flush=True)


class OursClient:
    def __init__(self, url: str, module_path: str) -> None:
        import pi_duroxide_nb as pdn

        self.rt = pdn.WorkflowRuntime(db=url, registry=_load(module_path).registry, worker=False)
        self.rt.start()
        if self.rt.engine_mode != "client":
            raise SystemExit(f"ours: the client runtime is in mode {self.rt.engine_mode!r}, not 'client'")

    def start(self, name: str, arg: Any) -> str:
        return self.rt.start_workflow(name, arg)

    def check(self, iid: str, expected: Any) -> None:
        state = self.rt.wait_for_workflow(iid, timeout=RUN_TIMEOUT_S)
        if state.status.value != "Completed" or state.output != expected:
            raise SystemExit(f"ours: {iid} ended {state.status.value} with {state.output!r}: {state.error}")

    def close(self) -> None:
        self.rt.shutdown()


class RawClient:
    def __init__(self, url: str, _module_path: str) -> None:
        import duroxide as dx

        self.client = dx.Client(dx.PostgresProvider.connect(url))

    def start(self, name: str, arg: Any) -> str:
        iid = uuid.uuid4().hex
        self.client.start_orchestration(iid, name, arg)
        return iid

    def check(self, iid: str, expected: Any) -> None:
        status = self.client.wait_for_orchestration(iid, RUN_TIMEOUT_S * 1000)
        output = json.loads(status.output) if isinstance(status.output, str) else status.output
        if status.status != "Completed" or output != expected:
            raise SystemExit(f"raw: {iid} ended {status.status} with {status.output!r}: {status.error}")

    def close(self) -> None:
        pass


def client(peer: str, workload: str, count: int, steps: int, url: str, module_path: str, result_path: str) -> None:
    """Open the store, say ``open``, wait for ``go`` on stdin, then run the workload against the workers."""
    os.environ.setdefault("RUST_LOG", "error")
    c = (OursClient if peer == "ours" else RawClient)(url, module_path)
    print("open", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("client: the parent never said go")
    t0, cpu0 = time.perf_counter(), time.process_time()
    if workload == "fan":
        ids = [(c.start("one", i), i) for i in range(count)]
    else:
        ids = [(c.start("seq", steps), steps) for _ in range(count)]
    started = time.perf_counter() - t0
    for iid, expected in ids:
        c.check(iid, expected)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    c.close()
    Path(result_path).write_text(json.dumps({"seconds": seconds, "start_s": started, "cpu_client": cpu}))


# === parent side ================================================================================


class Proc:
    """A child process whose output lines a reader thread collects."""

    def __init__(self, argv: list[str], log_path: Path, stdin: bool = False) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RUST_LOG": "error"}
        self.log = open(log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()
            self.lines.put(line)

    def expect(self, text: str, deadline: float) -> None:
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"exited {self.proc.returncode} before printing {text!r}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"did not print {text!r} in time") from None
                continue
            if text in line:
                return

    def stop(self, grace: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()


def _cpu(pids: list[int], reaped_too: bool = False) -> float:
    """CPU seconds of the process trees of ``pids``; with ``reaped_too`` also of their reaped children.

    PostgreSQL's postmaster reaps the backend of every connection that closed (the client's, at
    its exit), so its cutime + cstime keep their CPU once they are gone.
    """
    total = sum(_tree_cpu(pid) for pid in pids)
    if reaped_too:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[13]) + int(fields[14])) / tick
            except (OSError, IndexError, ValueError):
                continue
    return total


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def run_one(
    server: PgServer, module_path: str, peer: str, workload: str, k: int, count: int, steps: int
) -> dict[str, float]:
    """Seconds from the first start until every workflow completed, with ``k`` workers of ``peer``.

    Also the CPU seconds the workers, the PostgreSQL server and the client used meanwhile.
    """
    url = server.new_database()
    folder = Path(tempfile.mkdtemp(prefix=f"pdn-bench-workers-{peer}-"))
    result_path = folder / "result.json"
    procs: list[tuple[str, Proc, Path]] = []
    try:
        client_log = folder / "client.log"
        c = Proc(
            [sys.executable, __file__, "--client", peer, workload, str(count), str(steps), url, module_path]
            + [str(result_path)],
            client_log,
            stdin=True,
        )
        procs.append(("client", c, client_log))
        deadline = time.monotonic() + READY_TIMEOUT_S
        c.expect("open", deadline)
        for i in range(k):
            if peer == "ours":
                argv = [sys.executable, "-m", "pi_duroxide_nb", "worker", "--db", url, "--module", module_path]
                argv += ["--concurrency", str(CONCURRENCY)]
            else:
                argv = [sys.executable, __file__, "--raw-worker", url]
            log_path = folder / f"worker{i}.log"
            procs.append((f"worker {i}", Proc(argv, log_path), log_path))
        for name, p, log_path in procs[1:]:
            try:
                p.expect("ready", deadline)
            except RuntimeError as exc:
                raise RuntimeError(f"{peer} {name}: {exc}:\n{_tail(log_path)}") from None
        worker_pids = [p.proc.pid for _, p, _ in procs[1:]]
        postmaster = [server.postmaster_pid()]
        cpu_workers, cpu_pg = _cpu(worker_pids), _cpu(postmaster, reaped_too=True)
        assert c.proc.stdin is not None
        c.proc.stdin.write("go\n")
        c.proc.stdin.flush()
        code = c.proc.wait(timeout=RUN_TIMEOUT_S + 60)
        cpu_workers, cpu_pg = _cpu(worker_pids) - cpu_workers, _cpu(postmaster, reaped_too=True) - cpu_pg
        if code != 0 or not result_path.exists():
            raise RuntimeError(f"{peer} client exited {code}:\n{_tail(client_log)}")
        result: dict[str, float] = json.loads(result_path.read_text())
        result.update(cpu_workers=cpu_workers, cpu_pg=cpu_pg)
        return result
    finally:
        for _, p, _ in reversed(procs):
            p.stop()
        server.drop_database(url)
        shutil.rmtree(folder, ignore_errors=True)


class Row:
    """One line of the table: a workload at one worker count, and how its rate is computed."""

    def __init__(self, workload: str, k: int, count: int, steps: int) -> None:
        self.workload, self.k, self.count, self.steps = workload, k, count, steps
        self.key = f"{workload}{k}"
        if workload == "fan":
            self.label = f"fan: {count} one-step workflows, {k} worker{'s' if k > 1 else ''}, wf/s"
            self.units = count
        else:
            self.label = f"seq: {count} workflows x {steps} steps, {k} worker{'s' if k > 1 else ''}, steps/s"
            self.units = count * steps

    def rate(self, seconds: float) -> float:
        return self.units / seconds


def _rows(quick: bool, counts: list[int], workloads: list[str]) -> list[Row]:
    fan_n = 60 if quick else 200
    seq_steps = 30 if quick else 100
    rows = []
    for workload in workloads:
        for k in counts:
            rows.append(Row(workload, k, fan_n, 1) if workload == "fan" else Row(workload, k, SEQ_WORKFLOWS, seq_steps))
    return rows


def measure(
    server: PgServer, module_path: str, peers: list[str], rows: list[Row], reps: int, log: Callable[[str], None]
) -> tuple[dict[tuple[str, str], Any], dict[tuple[str, str], list[dict[str, float]]]]:
    """Run every (row, peer) ``reps`` times, interleaved.

    Returns {(row key, peer): [rates] | error text} and {(row key, peer): [CPU in cores by part]}.
    """
    values: dict[tuple[str, str], Any] = {}
    cpu: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rep in range(reps):
        for row in rows:
            for peer in peers:
                if isinstance(values.get((row.key, peer)), str):
                    continue  # failed before: the cell shows why
                t0 = time.perf_counter()
                try:
                    result = run_one(server, module_path, peer, row.workload, row.k, row.count, row.steps)
                except Exception as exc:
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    values[(row.key, peer)] = f"failed: {(lines[-1] if lines else type(exc).__name__)[:100]}"
                    log(f"  rep {rep + 1} {row.key} {peer}: FAILED {exc}")
                    continue
                seconds = result["seconds"]
                rate = row.rate(seconds)
                values.setdefault((row.key, peer), []).append(rate)
                cores = {part: result[f"cpu_{part}"] / seconds for part in ("workers", "pg", "client")}
                cpu.setdefault((row.key, peer), []).append(cores)
                log(
                    f"  rep {rep + 1} {row.key} {peer}: {rate:.1f}/s ({seconds:.2f} s measured, "
                    f"{time.perf_counter() - t0:.1f} s with setup, starts {result['start_s']:.2f} s); "
                    f"CPU in cores: workers {cores['workers']:.2f}, "
                    f"PostgreSQL {cores['pg']:.2f}, client {cores['client']:.2f}"
                )
    return values, cpu


def table(peers: list[str], rows: list[Row], values: dict[tuple[str, str], Any]) -> str:
    """A markdown table: one line per workload and worker count, the median per peer, ratio to raw."""
    titles = {"ours": "ours", "raw": "raw duroxide"}
    lines = ["| workload, workers | " + " | ".join(titles[p] for p in peers) + " |", "|---" * (len(peers) + 1) + "|"]
    for row in rows:
        base = values.get((row.key, "raw"))
        base_m = statistics.median(base) if isinstance(base, list) else None
        cells = []
        for peer in peers:
            v = values.get((row.key, peer))
            if isinstance(v, str):
                cells.append(v)
            elif not v:
                cells.append("-")
            else:
                m = statistics.median(v)
                text = f"{m:.1f}" if m < 100 else f"{m:.0f}"
                if peer != "raw" and base_m:
                    text += f" ({m / base_m:.2f}x)"
                cells.append(text)
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(peers: list[str], rows: list[Row], cpu: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    """Where the CPU went while measured: median cores used by the workers, PostgreSQL and the client."""
    titles = {"ours": "ours", "raw": "raw duroxide"}
    lines = [
        "| CPU while measured, cores: workers + PostgreSQL + client | " + " | ".join(titles[p] for p in peers) + " |",
        "|---" * (len(peers) + 1) + "|",
    ]
    for row in rows:
        cells = []
        for peer in peers:
            runs = cpu.get((row.key, peer))
            if not runs:
                cells.append("-")
                continue
            parts = [statistics.median(r[part] for r in runs) for part in ("workers", "pg", "client")]
            cells.append(" + ".join(f"{v:.2f}" for v in parts))
        lines.append(f"| {row.label.rsplit(',', 1)[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--client":
        client(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5], argv[6], argv[7])
        return 0
    if argv and argv[0] == "--raw-worker":
        raw_worker(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: smaller sizes, 1 rep")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ",".join(PEERS))
    parser.add_argument("--workers", default=",".join(map(str, WORKER_COUNTS)), help="worker counts (default 1,2,4)")
    parser.add_argument("--workloads", default="fan,seq", help="comma-separated subset of fan,seq")
    parser.add_argument("--write-readme", action="store_true", help="rewrite the table in bench/README.md")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    if not peers or any(p not in PEERS for p in peers):
        raise SystemExit(f"--peers: choose from {', '.join(PEERS)}, not {args.peers!r}")
    workloads = [w for w in args.workloads.split(",") if w]
    if not workloads or any(w not in ("fan", "seq") for w in workloads):
        raise SystemExit(f"--workloads: choose from fan, seq, not {args.workloads!r}")
    try:
        counts = [int(k) for k in args.workers.split(",") if k]
    except ValueError:
        counts = []
    if not counts or any(k < 1 for k in counts):
        raise SystemExit(f"--workers: give positive whole numbers separated by commas, not {args.workers!r}")
    for module in ("duroxide", "pi_duroxide_nb", "psycopg"):
        if importlib.util.find_spec(module) is None:
            raise SystemExit(f"{module} is not installed: pip install -e '.[postgres]'")
    reps = args.reps or (1 if args.quick else 3)
    rows = _rows(args.quick, counts, workloads)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    load0 = os.getloadavg()
    t0 = time.perf_counter()
    quick = " | QUICK" if args.quick else ""
    log(f"bench_workers: peers {', '.join(peers)} | workers {args.workers} | reps {reps}{quick}")
    with tempfile.TemporaryDirectory(prefix="pdn-bench-workers-module-") as module_dir, pg_server() as server:
        module_path = os.path.join(module_dir, "bench_workers_module.py")
        Path(module_path).write_text(MODULE_SOURCE)
        pg_version = server.version()
        log(f"  PostgreSQL {pg_version} on port {server.port}")
        values, cpu = measure(server, module_path, peers, rows, reps, log)
    load1 = os.getloadavg()
    header = (
        f"Medians of {reps} interleaved run(s){' (--quick sizes)' if args.quick else ''}; (x) = ratio to raw"
        f" duroxide; concurrency {CONCURRENCY} (orchestrations and activities) and {POLL_MS} ms polling per"
        f" worker on both sides. pi_duroxide_nb {ver('pi_duroxide_nb')}, duroxide {ver('duroxide')},"
        f" PostgreSQL {pg_version} (fsync off, same machine); python {sys.version.split()[0]}, {os.cpu_count()}"
        f" CPUs, load average {load0[0]:.2f} at start and {load1[0]:.2f} at end;"
        f" {time.perf_counter() - t0:.0f} s in all."
    )
    text = header + "\n\n" + table(peers, rows, values) + "\n\n" + cpu_table(peers, rows, cpu)
    print(text)
    if args.write_readme:
        write_readme(text, BEGIN, END)
        log(f"wrote {README}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
