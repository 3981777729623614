"""A restart never strands or loses an instance: code versions kept with the store, restored or waiting.

A "new kernel" is simulated in-process by a fresh registry, a fresh namespace and an emptied
engine function table (duroxide keeps it per process); tests/test_kernel_restart.py does the
same with real kernels and SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import linecache
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import duroxide
import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until

_BODY_V1 = (
    'ctx.set_custom_status("waiting")\ndecision = yield ctx.wait_for_event("go")\nreturn label(decision) + SUFFIX\n'
)
_HELPERS_V1 = 'SUFFIX = "!"\n\ndef label(x):\n    return f"v1:{x}"\n'


def _run_cell(source: str, ns: dict) -> None:
    """Run a notebook cell as IPython does: its source kept in linecache, in a __main__ namespace."""
    filename = f"<ipython-input-{next(_CELLS)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    ns.setdefault("__name__", "__main__")
    exec(compile(source, filename, "exec"), ns)  # noqa: S102 - a notebook cell


_CELLS = itertools.count(1)


def _new_process() -> None:
    """What a new kernel starts with: no workflow functions in duroxide's process-wide table."""
    duroxide._orchestration_functions.clear()


def _first_kernel(db: Path, iid: str) -> str:
    """Kernel 1: helpers and a %%workflow body, an instance waiting for "go", then gone."""
    ns: dict = {"__name__": "__main__"}
    _run_cell(_HELPERS_V1, ns)
    registry = pdn.WorkflowRegistry()
    version = pdn.define_workflow("triage", _BODY_V1, registry=registry, namespace=ns)[0].version
    rt = pdn.WorkflowRuntime(db=db, registry=registry, namespace=ns).start()
    rt.start_workflow("triage", None, instance_id=iid)
    wait_until(lambda: rt.get_workflow(iid).custom_status == "waiting", timeout=15)
    rt.shutdown()
    _new_process()
    return version


def test_restart_with_an_edited_cell_resumes_the_old_instance_on_its_own_code(db_path, iid) -> None:
    old = iid("t")
    v1 = _first_kernel(db_path, old)
    # Kernel 2: the user edits the cell (and the helper is not even defined yet) and runs it.
    ns2: dict = {"__name__": "__main__"}
    registry = pdn.WorkflowRegistry()
    edited = pdn.define_workflow(
        "triage", 'd = yield ctx.wait_for_event("go")\nreturn "v2:" + d', registry=registry, namespace=ns2
    )[0]
    assert edited.version != v1
    rt = pdn.WorkflowRuntime(db=db_path, registry=registry, namespace=ns2).start()
    try:
        notices = rt.take_code_notices()
        assert [str(n) for n in notices] == [f"restored triage@{v1[6:14]} for 1 unfinished instance: {old}"]
        assert rt.get_workflow(old).blocked is None
        rt.signal_workflow(old, "go", "yes")
        assert rt.wait_for_workflow(old, timeout=30).output == "v1:yes!"
        # New starts run the edited code; the restored version never became the newest.
        fresh = rt.start_workflow("triage", None, instance_id=iid("t"))
        wait_until(lambda: rt.history(fresh) and any(e.kind == "ExternalSubscribed" for e in rt.history(fresh)))
        rt.signal_workflow(fresh, "go", "yes")
        assert rt.wait_for_workflow(fresh, timeout=30).output == "v2:yes"
        # The exact code the old instance ran is kept with the store.
        record = rt.code_version("triage", v1)
        assert record is not None and record.source == _BODY_V1 and "label" in record.helpers
    finally:
        rt.shutdown()


def test_missing_code_waits_visibly_is_never_poisoned_and_resumes_when_registered(db_path, iid) -> None:
    def make(greeting: str):  # a closure: its captured value cannot be rebuilt from source
        def waiter(ctx, _):
            ctx.set_custom_status("waiting")
            yield ctx.schedule_timer(1)
            return greeting

        return waiter

    first = pdn.WorkflowRegistry()
    first.register_workflow("closure", make("hello"))
    rt1 = pdn.WorkflowRuntime(db=db_path, registry=first).start()
    stuck = iid("c")
    rt1.start_workflow("closure", None, instance_id=stuck)
    rt1.shutdown(timeout=0)  # before its first step, most likely; either way it is unfinished
    _new_process()
    # A run of the first kernel may have finished it already; only go on when it did not.
    second = pdn.WorkflowRegistry()
    rt2 = pdn.WorkflowRuntime(db=db_path, registry=second).start()
    try:
        if rt2.get_workflow(stuck).status is pdn.WorkflowStatus.COMPLETED:
            pytest.skip("the first runtime finished the instance before it shut down")
        notice = rt2.take_code_notices()[0]
        assert not notice.restored and "nested function" in str(notice) and stuck in str(notice)
        assert str(notice).startswith("code missing: closure@") and "re-run the cell" in str(notice)
        state = rt2.get_workflow(stuck)
        waiting = (pdn.WorkflowStatus.RUNNING, pdn.WorkflowStatus.PENDING)
        assert state.status in waiting and state.blocked.startswith("code missing")
        assert rt2.code_notices == [notice]
        # The agent's tools see it too.
        tools = {t.name: t for t in pdn.workflow_tools(rt2)}
        got = tools["get-workflow"].execute({"instanceId": stuck}).to_pi()["details"]
        assert got["blocked"].startswith("code missing: closure@")
        # The engine retries it (1, 2, 4 s ...): it stays Running instead of being failed.
        with pytest.raises(pdn.WorkflowTimeoutError):
            rt2.wait_for_workflow(stuck, timeout=5)
        assert rt2.get_workflow(stuck).status in waiting
        started = time.monotonic()
        second.register_workflow("closure", make("hello"))  # the old cell, run again
        assert rt2.wait_for_workflow(stuck, timeout=30).output == "hello"
        assert time.monotonic() - started < 5  # nudged, not left to the engine's next retry
        assert rt2.code_notices == []
    finally:
        rt2.shutdown()


def test_versions_follow_helpers_closures_and_constants() -> None:
    ns: dict = {}
    _run_cell("LIMIT = 3\ndef helper(x):\n    return x + 1\n", ns)
    registry = pdn.WorkflowRegistry()
    body = "yield ctx.schedule_timer(1)\nreturn helper(LIMIT)"
    base = pdn.define_workflow("w", body, registry=registry, namespace=ns)[0]
    _run_cell("def helper(x):\n    return x + 2\n", ns)  # the helper is edited in another cell
    helper_edit = pdn.define_workflow("w", body, registry=registry, namespace=ns)[0]
    assert helper_edit.changed and helper_edit.version != base.version
    ns["LIMIT"] = 4
    const_edit = pdn.define_workflow("w", body, registry=registry, namespace=ns)[0]
    assert const_edit.version not in (base.version, helper_edit.version)

    def make(n):
        def wf(ctx, _):
            yield ctx.schedule_timer(1)
            return n

        return wf

    assert pdn.engine.code_version(make(1)) == pdn.engine.code_version(make(1))
    assert pdn.engine.code_version(make(1)) != pdn.engine.code_version(make(2))


def test_reusing_an_explicit_version_with_other_code_warns() -> None:
    registry = pdn.WorkflowRegistry()

    def make(n):
        def wf(ctx, _):
            yield ctx.schedule_timer(1)
            return n

        return wf

    registry.register_workflow("pinned", make(1), version="2")
    assert registry.workflow("pinned").version == "2.0.0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.register_workflow("pinned", make(1), version="2.0")  # same code: silent
    with pytest.warns(pdn.VersionWarning, match=r"version 2\.0\.0 was registered before with different code"):
        registry.register_workflow("pinned", make(2), version="2")
    with pytest.raises(pdn.RegistrationError, match="not a version number"):
        registry.register_workflow("pinned", make(3), version="two")


def test_explicit_and_code_versions_run_side_by_side(registry, rt, iid) -> None:
    def make(n):
        def wf(ctx, _):
            yield ctx.schedule_timer(1)
            return n

        return wf

    registry.register_workflow("mixed", make("code"))
    a = rt.start_workflow("mixed", None, instance_id=iid())
    registry.register_workflow("mixed", make("ten"), version="10")
    b = rt.start_workflow("mixed", None, instance_id=iid())
    registry.register_workflow("mixed", make("nine"), version="9")  # registered later, lower number
    c = rt.start_workflow("mixed", None, instance_id=iid())
    assert [rt.wait_for_workflow(i, timeout=30).output for i in (a, b, c)] == ["code", "ten", "nine"]
    assert rt.get_workflow(c).version == "9.0.0"


def test_referenced_runtimes_release_the_store_every_write_works(db_path, iid) -> None:
    registry = pdn.WorkflowRegistry()

    @registry.register_workflow("quick")
    def quick(ctx, n):
        yield ctx.schedule_timer(1)
        return n

    kept = []  # Out[n], a list, a variable: old runtimes stay referenced
    for n in range(10):
        rt = pdn.WorkflowRuntime(db=db_path, registry=registry).start()
        kept.append(rt)
        assert rt.wait_for_workflow(rt.start_workflow("quick", n, instance_id=iid()), timeout=30).output == n
        rt.shutdown()
    assert all(r.state is pdn.RuntimeState.STOPPED for r in kept)


def test_wait_answers_an_interrupt_within_half_a_second(registry, rt, iid) -> None:
    @registry.register_workflow("forever")
    def forever(ctx, _):
        yield ctx.wait_for_event("never")

    instance = rt.start_workflow("forever", None, instance_id=iid())
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), __import__("signal").SIGINT)

    timer = threading.Timer(0.6, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt) as info:
        rt.wait_for_workflow(instance, timeout=30)
    elapsed = time.monotonic() - sent[0]
    assert elapsed < 0.5, elapsed
    # Shown alone: no engine error chained to it.
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert rt.get_workflow(instance).status is pdn.WorkflowStatus.RUNNING


def test_async_wait_cancelled_frees_its_thread(registry, rt, iid) -> None:
    @registry.register_workflow("forever-async")
    def forever(ctx, _):
        yield ctx.wait_for_event("never")

    instance = rt.start_workflow("forever-async", None, instance_id=iid())

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(rt.wait_for_workflow_async(instance, timeout=60), 0.3)

    started = time.monotonic()
    asyncio.run(main())  # returns only when the executor's thread is done: it would wait 60 s
    assert time.monotonic() - started < 2


def test_progress_is_reported_while_waiting(registry, rt, iid) -> None:
    @registry.register_workflow("steps")
    def steps(ctx, _):
        for n in range(3):
            ctx.set_custom_status(f"step {n}")
            yield ctx.schedule_timer(800)  # longer than the progress sampling (0.5 s)
        return "done"

    seen: list[str | None] = []
    state = rt.wait_for_workflow(
        rt.start_workflow("steps", None, instance_id=iid()),
        timeout=30,
        on_progress=lambda s: seen.append(s.custom_status),
    )
    assert state.output == "done" and "step 1" in seen and "step 2" in seen


# --- bad stores -------------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _corrupt_store(path: Path) -> None:
    db = sqlite3.connect(path)  # our own file, not one a runtime has open
    db.execute("CREATE TABLE t (x TEXT)")
    db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(400)])
    db.commit()
    db.close()
    with path.open("r+b") as f:
        f.seek(4096 * 5)
        f.write(os.urandom(4096 * 3))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: p.write_text("hello, I am notes\n" * 20), "is not an SQLite database"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + os.urandom(3000)), "truncated or its header is damaged"),
        (lambda p: p.write_bytes(os.urandom(8192)), "is not an SQLite database"),
        (_corrupt_store, "is damaged"),
    ],
    ids=["text-file", "truncated", "garbage", "corrupt-pages"],
)
def test_bad_store_fails_fast_and_is_left_unchanged(tmp_path, make, match) -> None:
    path = tmp_path / "bad.db"
    make(path)
    before = _digest(path)
    started = time.monotonic()
    with pytest.raises(pdn.StoreError, match=match) as info:
        rt = pdn.WorkflowRuntime(db=path, registry=pdn.WorkflowRegistry())
        try:
            rt.start()
        finally:
            rt.shutdown()
    assert time.monotonic() - started < 2
    assert str(path) in str(info.value)
    assert _digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.db"]  # no -wal, -shm or sidecars


@contextlib.contextmanager
def _read_only_folder(folder: Path, *, with_store: bool):
    """A folder this process cannot write to: chmod for a user, a read-only mount for root."""
    folder.mkdir()
    if os.getuid() != 0:
        if with_store:
            pdn.WorkflowRuntime(db=folder / "w.db", registry=pdn.WorkflowRegistry()).start().shutdown()
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"running as root without mount: no way to make a read-only folder ({mounted.stderr!r})")
    try:
        if with_store:
            pdn.WorkflowRuntime(db=folder / "w.db", registry=pdn.WorkflowRegistry()).start().shutdown()
        # A process that had the store open (the runtime's reader) may still be exiting.
        wait_until(lambda: subprocess.run(["mount", "-o", "remount,ro", str(folder)]).returncode == 0, timeout=10)
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)]).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=True)


@pytest.mark.parametrize("with_store", [False, True], ids=["new-store", "existing-store"])
def test_read_only_folder_fails_fast(tmp_path, with_store) -> None:
    with _read_only_folder(tmp_path / "ro", with_store=with_store) as folder:
        before = sorted(p.name for p in folder.iterdir())
        started = time.monotonic()
        with pytest.raises(pdn.StoreError, match="read-only|cannot be read and written") as info:
            pdn.WorkflowRuntime(db=folder / "w.db", registry=pdn.WorkflowRegistry()).start()
        assert time.monotonic() - started < 2
        assert str(folder) in str(info.value)
        assert sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("one", [False, True], ids=["page", "one-instance"])
def test_a_read_never_misses_what_the_engine_moves_from_its_queue(db_path, iid, one) -> None:
    registry = pdn.WorkflowRegistry()

    @registry.register_workflow("paged")
    def paged(ctx, n):
        yield ctx.schedule_timer(1)
        return n

    first = pdn.WorkflowRuntime(db=db_path, registry=registry).start()
    done = [first.start_workflow("paged", n, instance_id=iid("done")) for n in range(2)]
    for instance in done:
        first.wait_for_workflow(instance, timeout=30)
    version = first.get_workflow(done[0]).version
    first.shutdown()
    # Three starts queued by another process while no engine runs here.
    queued = [iid("queued") for _ in range(3)]
    script = (
        "import duroxide, sys\n"
        "c = duroxide.Client(duroxide.SqliteProvider.open(sys.argv[1]))\n"
        "for i in sys.argv[3:]:\n"
        "    c.start_orchestration_versioned(i, 'paged', '1', sys.argv[2])\n"
    )
    subprocess.run([sys.executable, "-c", script, str(db_path), version, *queued], check=True, timeout=60)

    rt = pdn.WorkflowRuntime(db=db_path, registry=registry)
    reader = rt._reader
    read = reader.query
    moved = threading.Event()

    def query_then_let_the_engine_move_the_starts(sql, args=()):
        rows = read(sql, args)
        if not moved.is_set():  # right after the page's first statement, the engine takes the queued starts
            moved.set()
            rt.start()
            wait_until(lambda: not read("SELECT 1 FROM orchestrator_queue WHERE work_item LIKE '%StartOrch%'"))
        return rows

    reader.query = query_then_let_the_engine_move_the_starts
    try:
        if one:  # a just-started instance is never "not found" while the engine picks it up
            assert rt.history(queued[0]) is not None  # raised "not found" when the move fell between reads
            assert rt.get_workflow(queued[0]).instance_id == queued[0]
        else:
            page = rt.list_workflows(limit=5)
            assert sorted(s.instance_id for s in page) == sorted(done + queued)
        assert moved.is_set()
    finally:
        reader.query = read
        rt.shutdown()


def test_a_long_history_says_continue_as_new_would_pay(registry, rt, iid) -> None:
    @registry.register_workflow("looping")
    def looping(ctx, _):
        for _n in range(260):
            yield ctx.schedule_timer(0)
        yield ctx.wait_for_event("stop")

    instance = rt.start_workflow("looping", None, instance_id=iid())
    state = wait_until(lambda: (s := rt.get_workflow(instance)).long_history and s, timeout=60)
    assert state.history_events >= 500
    assert "continue_as_new" in state.long_history and "ms a step" in state.long_history
    assert "long history" in repr(pdn.view(state))
    short = rt.start_workflow("looping", None, instance_id=iid())
    assert rt.get_workflow(short).long_history is None


def test_the_stepper_on_missing_code_says_where_the_kept_code_is(db_path, iid) -> None:
    def make(word):
        def waiter(ctx, _):
            yield ctx.wait_for_event("go")
            return word

        return waiter

    first = pdn.WorkflowRegistry()
    first.register_workflow("kept", make("a"))
    rt1 = pdn.WorkflowRuntime(db=db_path, registry=first).start()
    instance = rt1.start_workflow("kept", None, instance_id=iid())
    wait_until(lambda: any(e.kind == "ExternalSubscribed" for e in rt1.history(instance)), timeout=15)
    version = rt1.get_workflow(instance).version
    rt1.shutdown()
    _new_process()
    rt2 = pdn.WorkflowRuntime(db=db_path, registry=pdn.WorkflowRegistry()).start()
    try:
        with pytest.raises(pdn.WorkflowNotFoundError, match=r"kept@c[0-9a-f]{7}.*rt.code_version") as info:
            pdn.ReplayStepper(rt2, instance)
        assert "re-run the cell" in str(info.value)
        record = rt2.code_version("kept", version)
        assert record is not None and "return word" in (record.source or "")
    finally:
        rt2.shutdown()


def test_a_version_with_an_input_model_waits_for_the_models_cell(db_path, iid) -> None:
    model_cell = "from pydantic import BaseModel\n\nclass Order(BaseModel):\n    item: str\n"
    ns: dict = {"__name__": "__main__"}
    _run_cell(model_cell, ns)
    first = pdn.WorkflowRegistry()
    pdn.define_workflow(
        "order",
        'd = yield ctx.wait_for_event("go")\nreturn input.item + d',
        registry=first,
        namespace=ns,
        input_model=ns["Order"],
    )
    rt1 = pdn.WorkflowRuntime(db=db_path, registry=first, namespace=ns).start()
    instance = rt1.start_workflow("order", {"item": "tea"}, instance_id=iid())
    wait_until(lambda: any(e.kind == "ExternalSubscribed" for e in rt1.history(instance)), timeout=15)
    rt1.shutdown()
    _new_process()
    ns2: dict = {"__name__": "__main__"}
    rt2 = pdn.WorkflowRuntime(db=db_path, registry=pdn.WorkflowRegistry(), namespace=ns2).start()
    try:
        [notice] = rt2.take_code_notices()
        assert not notice.restored and "input model Order is not defined" in str(notice)
        _run_cell(model_cell, ns2)  # the model's cell, run later
        [restored] = rt2.reconcile_code()
        assert restored.restored
        rt2.signal_workflow(instance, "go", "!")
        assert rt2.wait_for_workflow(instance, timeout=30).output == "tea!"
    finally:
        rt2.shutdown()


def test_damaged_sidecar_files_are_set_aside_and_the_store_keeps_working(
    registry, make_runtime, iid, db_path, caplog
) -> None:
    # Our own files beside the store (kept code versions, transcript) are not the workflow
    # store: one that is damaged is moved aside with a warning, never blocking the runtime.
    @registry.register_workflow("echo")
    def echo(ctx, x):
        yield ctx.pi.send_message(f"got {x}")
        return x

    host = pdn.InMemoryAgentHost()
    rt = make_runtime(host=host).start()
    first = rt.start_workflow("echo", 1, instance_id=iid("a"))
    assert rt.wait_for_workflow(first, timeout=30).output == 1
    sidecars = [rt.transcript_path, str(db_path) + ".code.sqlite"]
    assert all(Path(p).exists() for p in sidecars), sidecars
    rt.shutdown()
    store_bytes = db_path.read_bytes()
    for p in sidecars:
        Path(p).write_bytes(b"this is not SQLite " * 64)

    with caplog.at_level(logging.WARNING, logger="pi_duroxide_nb.sidecar"):
        again = make_runtime(host=host).start()
        second = again.start_workflow("echo", 2, instance_id=iid("b"))
        assert again.wait_for_workflow(second, timeout=30).output == 2
        assert [m.content for m in again.messages()] == ["got 2"]
    assert again.get_workflow(first).output == 1  # the store itself was never touched
    warnings = [r.getMessage() for r in caplog.records if "was damaged" in r.getMessage()]
    assert len(warnings) == 2 and all("The workflow store is not affected" in w for w in warnings)
    for p in sidecars:
        kept = list(Path(p).parent.glob(Path(p).name + ".damaged-*"))
        assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not SQLite")
    assert store_bytes[:100] == db_path.read_bytes()[:100]
