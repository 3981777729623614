"""``python -m pi_duroxide_nb worker``: workers share a store, and a SIGKILLed one loses nothing.

Two worker processes serve ``tests/worker_workflows.py`` on a private PostgreSQL database and
on one SQLite file. The test process is a client only (``worker=False``): it starts the
instances, lists the live workers, and never runs work itself.
"""

from __future__ import annotations

import linecache
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import pi_duroxide_nb as pdn
from pi_duroxide_nb._worker import load_module
from pi_duroxide_nb.engine import format_ref
from tests.conftest import wait_until

MODULE = Path(__file__).with_name("worker_workflows.py")
ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """A worker subprocess, its output lines collected by a reader thread."""

    def __init__(
        self, db: str, flags: Path, *extra: str, module: Path | None = MODULE, home: Path | None = None
    ) -> None:
        env = {**os.environ, "PDN_WORKER_FLAGS": str(flags), "PYTHONUNBUFFERED": "1"}
        if home is not None:  # as on another machine: no local files shared with the test's process
            env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"), PI_DUROXIDE_DB=str(home / "data" / "w.db"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pi_duroxide_nb", "worker", "--db", db, *extra]
            + (["--module", str(module)] if module is not None else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"worker never printed {text!r}; output: {''.join(self.output)}") from None
            if text in line:
                return line

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for w in started:
        w.kill()


def _running(flags: Path) -> list[tuple[int, int]]:
    """(x, pid) of every activity run that started."""
    found = []
    for f in flags.glob("running-*"):
        _, x, pid = f.name.split("-")
        found.append((int(x), int(pid)))
    return found


def _share_and_survive_a_kill(db: str, tmp_path: Path, workers: list[Worker], iid, *, hosts: bool = False) -> None:
    """Two workers share the store's work; one is SIGKILLed inside its activities.

    With ``hosts``, each worker runs as on its own machine (its own HOME and data folder), so
    the live view must come from the shared store itself, not from a file on this host.
    """
    flags = tmp_path / "flags"
    flags.mkdir()
    module = load_module(str(MODULE))
    client = pdn.WorkflowRuntime(db=db, registry=module.registry, worker=False)
    try:
        # Started before any worker runs: the client queues them and does none of the work.
        ids = [client.start_workflow("job", x, instance_id=iid(f"job{x}")) for x in range(6)]
        assert client.engine_mode == "client" and not client.is_worker

        a = Worker(db, flags, "--concurrency", "2", home=tmp_path / "host-a" if hosts else None)
        workers.append(a)
        b = Worker(db, flags, "--concurrency", "2", home=tmp_path / "host-b" if hosts else None)
        workers.append(b)
        assert "ready" in a.expect("ready") and "concurrency 2" in b.expect("ready")
        live = wait_until(lambda: {w.pid for w in client.workers()} == {a.pid, b.pid} and client.workers())
        assert all(w.concurrency == 2 and w.activities == ("hold",) for w in live)
        assert {w.workflows for w in live} == {(format_ref("job", module.registry.workflow("job").version),)}

        # Both take work (each holds at most 2 of the 6 held activities), and the client none.
        wait_until(lambda: {pid for _, pid in _running(flags)} == {a.pid, b.pid}, timeout=30)
        held_by_a = {x for x, pid in _running(flags) if pid == a.pid}
        assert held_by_a and os.getpid() not in {pid for _, pid in _running(flags)}

        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=10)
        killed = time.monotonic()
        (flags / "release").touch()

        states = [client.wait_for_workflow(i, timeout=30) for i in ids]
        elapsed = time.monotonic() - killed
        assert [s.status for s in states] == [pdn.WorkflowStatus.COMPLETED] * 6, [s.error for s in states]
        assert [s.output["x"] for s in states] == list(range(6))
        # A never finished anything (its activities were held until it died): B did all of it,
        # including A's in-flight activities, after their lock lease ran out.
        assert {s.output["pid"] for s in states} == {b.pid}
        assert held_by_a <= {x for x, pid in _running(flags) if pid == b.pid}
        assert elapsed < 20, f"A's work resumed on B after {elapsed:.1f} s; the lock lease is 2 s"
        for i in ids:
            kinds = Counter(e.kind for e in client.history(i))
            assert kinds["ActivityScheduled"] == 1 and kinds["ActivityCompleted"] == 1, (i, kinds)
            assert kinds["ActivityFailed"] == 0 and kinds["OrchestrationCompleted"] == 1

        # The killed worker drops out of the live view once its heartbeat is stale.
        wait_until(lambda: [w.pid for w in client.workers(within=1.5)] == [b.pid], timeout=10)
        # SIGTERM: a graceful stop, which leaves the view at once.
        b.proc.send_signal(signal.SIGTERM)
        b.expect("stopped")
        assert b.proc.wait(timeout=30) == 0
        assert b.pid not in {w.pid for w in client.workers()}  # gone at once, within=10 s notwithstanding
    finally:
        client.shutdown()


def test_workers_share_a_sqlite_file_and_a_killed_one_loses_nothing(tmp_path, workers, iid) -> None:
    _share_and_survive_a_kill(str(tmp_path / "shared.db"), tmp_path, workers, iid)


def test_workers_share_a_postgres_database_and_a_killed_one_loses_nothing(tmp_path, workers, iid, pg_url) -> None:
    # Each worker as on another host: the notebook still lists both, from the database.
    _share_and_survive_a_kill(pg_url, tmp_path, workers, iid, hosts=True)


def test_a_restore_code_worker_runs_notebook_defined_versions_and_says_what_it_cannot(tmp_path, workers, iid) -> None:
    """A notebook (the client) defines workflows in cells; a worker with --restore-code runs them."""
    db = str(tmp_path / "nb.db")
    ns: dict = {"__name__": "__main__"}
    _run_cell('SUFFIX = "!"\n\ndef label(x):\n    return f"v1:{x}"\n', ns)
    _run_cell("class Settings:\n    prefix = 'p:'\n\nSETTINGS = Settings()\n", ns)
    registry = pdn.WorkflowRegistry()
    pdn.define_workflow("needs_settings", "return SETTINGS.prefix + input", registry=registry, namespace=ns)
    client = pdn.WorkflowRuntime(db=db, registry=registry, namespace=ns, worker=False)
    try:
        stuck = client.start_workflow("needs_settings", "x", instance_id=iid("stuck"))
        worker = Worker(db, tmp_path, "--restore-code", module=None)
        workers.append(worker)
        # Its globals (an object of the notebook) cannot be resolved in a fresh namespace: it says so.
        line = worker.expect("code missing")
        assert "needs_settings@" in line and stuck in line and "SETTINGS" in line
        worker.expect("ready")
        # A cell run after the worker started: the worker restores it from the store and runs it.
        pdn.define_workflow(
            "triage",
            'ctx.set_custom_status("waiting")\nd = yield ctx.wait_for_event("go")\nreturn label(d) + SUFFIX\n',
            registry=registry,
            namespace=ns,
        )
        fresh = client.start_workflow("triage", None, instance_id=iid("triage"))
        assert "restored triage@" in worker.expect("restored triage@", timeout=30)
        wait_until(lambda: client.get_workflow(fresh).custom_status == "waiting", timeout=30)
        client.signal_workflow(fresh, "go", "yes")
        assert client.wait_for_workflow(fresh, timeout=30).output == "v1:yes!"
        triage = format_ref("triage", registry.workflow("triage").version)
        wait_until(lambda: [w.workflows for w in client.workers()] == [(triage,)], timeout=10)
        state = client.get_workflow(stuck)
        assert state.status in (pdn.WorkflowStatus.PENDING, pdn.WorkflowStatus.RUNNING)  # waits for its code
    finally:
        client.shutdown()


_CELLS = iter(range(1, 1000))


def _run_cell(source: str, ns: dict) -> None:
    """Run a notebook cell as IPython does: its source kept in linecache, in a __main__ namespace."""
    filename = f"<ipython-input-w{next(_CELLS)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - a notebook cell


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["worker", "--db", "x.db"], "give --module MODULE"),
        (["worker", "--db", "x.db", "--module", "no_such_file.py"], "no such file"),
        (["worker", "--db", "x.db", "--module", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
        (["worker", "--db", "x.db", "--module", "json"], "registers no workflow and no activity"),
        (["worker", "--db", "x.db", "--module", "json", "--concurrency", "0"], "at least 1, not '0'"),
        (["worker", "--module", "json"], "the following arguments are required: --db"),
    ],
)
def test_bad_worker_arguments_say_what_is_wrong(tmp_path, monkeypatch, capsys, argv, message) -> None:
    from pi_duroxide_nb._worker import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing was created


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("garbage.db", "is not an SQLite database"),
        ("postgresql://pdn@127.0.0.1:1/none", "cannot reach the PostgreSQL server at 127.0.0.1:1"),
    ],
)
def test_a_store_the_worker_cannot_open_is_reported_at_once(tmp_path, monkeypatch, capsys, db, message) -> None:
    from pi_duroxide_nb._worker import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "garbage.db").write_bytes(b"not a database at all, not even close")
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--db", db, "--module", str(MODULE)])
    assert exit_info.value.code == 1 and message in capsys.readouterr().err
    assert time.monotonic() - started < 10  # not the engine's 30 s pool timeout
    assert (tmp_path / "garbage.db").read_bytes() == b"not a database at all, not even close"


def test_a_client_only_runtime_never_runs_work(registry, db_path, iid) -> None:
    ran = []

    @registry.register_activity("note")
    def note(_ctx, x):
        ran.append(x)
        return x

    @registry.register_workflow("once")
    def once(ctx, x):
        return (yield ctx.schedule_activity("note", x))

    client = pdn.WorkflowRuntime(db=db_path, registry=registry, worker=False)
    try:
        instance = client.start_workflow("once", 1, instance_id=iid("once"))
        assert client.state is pdn.RuntimeState.RUNNING and client.engine_mode == "client"
        assert client.get_workflow(instance).status is pdn.WorkflowStatus.PENDING
        with pytest.raises(pdn.WorkflowTimeoutError):
            client.wait_for_workflow(instance, timeout=1)  # nobody serves the store
        assert ran == [] and client.get_workflow(instance).status is pdn.WorkflowStatus.PENDING
    finally:
        client.shutdown()
    # A runtime that is a worker then runs it.
    with pdn.WorkflowRuntime(db=db_path, registry=registry) as worker:
        assert worker.wait_for_workflow(instance, timeout=30).output == 1 and ran == [1]


def test_restore_code_off_leaves_kept_versions_code_missing(db_path, iid) -> None:
    ns: dict = {"__name__": "__main__"}
    notebook = pdn.WorkflowRegistry()
    pdn.define_workflow("kept", 'yield ctx.wait_for_event("go")', registry=notebook, namespace=ns)
    first = pdn.WorkflowRuntime(db=db_path, registry=notebook, namespace=ns, worker=False)
    instance = first.start_workflow("kept", None, instance_id=iid("kept"))
    first.shutdown()

    off = pdn.WorkflowRuntime(db=db_path, registry=pdn.WorkflowRegistry(), restore_code=False, worker=False).start()
    try:
        [notice] = off.take_code_notices()
        assert not notice.restored and "restore_code=False" in str(notice) and instance in str(notice)
    finally:
        off.shutdown()
    on = pdn.WorkflowRuntime(db=db_path, registry=pdn.WorkflowRegistry(), namespace={}, worker=False).start()
    try:
        [notice] = on.take_code_notices()
        assert notice.restored and notice.instance_ids == (instance,)
    finally:
        on.shutdown()
