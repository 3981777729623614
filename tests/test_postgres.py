"""The PostgreSQL store: the same API on a throwaway local server (the scale-out path).

The fixtures (``pg_server``, ``pg_url`` in ``conftest.py``) start a private PostgreSQL cluster
(``initdb`` + ``pg_ctl``) in a temporary directory on 127.0.0.1, and give each test its own
database. CI installs Debian's ``postgresql`` package; elsewhere these tests are skipped with
that instruction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from datetime import timedelta

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


def test_the_workflow_api_on_postgres(registry, make_runtime, iid, pg_url) -> None:
    @registry.register_activity("inc")
    def inc(_ctx, x):
        return x + 1

    @registry.register_workflow("approve")
    def approve(ctx, x):
        a = yield ctx.schedule_activity("inc", x)
        ctx.kv.set("a", a)
        ctx.set_custom_status("awaiting-approval")
        decision = yield ctx.wait_for_event("decision")
        return {"a": a, "decision": decision}

    rt = make_runtime(db=pg_url).start()
    assert rt.db == pg_url
    instance = rt.start_workflow("approve", 1, instance_id=iid("pg"))
    # Queued but not yet picked up: still known, so neither a wait nor a duplicate start is refused wrongly.
    assert rt.get_workflow(instance).status in (pdn.WorkflowStatus.PENDING, pdn.WorkflowStatus.RUNNING)
    with pytest.raises(pdn.InstanceExistsError):
        rt.start_workflow("approve", 1, instance_id=instance)
    wait_until(lambda: rt.get_workflow(instance).custom_status == "awaiting-approval", timeout=30)
    assert [s.instance_id for s in rt.list_workflows(name="approve", status="Running")] == [instance]
    rt.signal_workflow(instance, "decision", {"ok": True})
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.status is pdn.WorkflowStatus.COMPLETED
    assert state.output == {"a": 2, "decision": {"ok": True}}
    assert state.name == "approve" and state.version == registry.workflow("approve").version
    assert state.created_at is not None and state.created_at <= state.updated_at
    assert rt.get_kv(instance, "a") == 2 and rt.get_kv(instance, "nope") is None
    with pytest.raises(pdn.RuntimeStateError, match=r"rt.get_kv\(instance_id, key\)"):
        rt.get_kv(instance)
    kinds = [e.kind for e in rt.history(instance)]
    assert kinds[0] == "OrchestrationStarted" and kinds[-1] == "OrchestrationCompleted"
    assert "ExternalEvent" in kinds and "ActivityCompleted" in kinds
    with pytest.raises(pdn.InstanceNotFoundError):
        rt.get_workflow(iid("missing"))
    with pytest.raises(pdn.InstanceNotFoundError):  # after a short grace for other runtimes' queued starts
        rt.wait_for_workflow(iid("missing"), timeout=30)


def test_two_runtimes_share_a_postgres_database(registry, make_runtime, iid, pg_url) -> None:
    @registry.register_workflow("hop")
    def hop(ctx, x):
        yield ctx.schedule_timer(1)
        return x * 2

    first = make_runtime(db=pg_url).start()
    second = make_runtime(db=pg_url).start()
    ids = [first.start_workflow("hop", i, instance_id=iid("hop")) for i in range(6)]
    assert [second.wait_for_workflow(i, timeout=30).output for i in ids] == [i * 2 for i in range(6)]
    assert {s.instance_id for s in second.list_workflows(name="hop")} == set(ids)


def test_delete_purge_and_tool_kv_on_postgres(registry, make_runtime, iid, pg_url) -> None:
    @registry.register_workflow("child")
    def child(ctx, x):
        yield ctx.schedule_timer(1)
        return x

    @registry.register_workflow("parent")
    def parent(ctx, x):
        ctx.kv.set("x", x)
        return (yield ctx.schedule_sub_orchestration("child", x))

    @registry.register_workflow("gate")
    def gate(ctx, _):
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("go")

    rt = make_runtime(db=pg_url).start()
    first, second = iid("pg-del"), iid("pg-purge")
    for instance in (first, second):
        rt.wait_for_workflow(rt.start_workflow("parent", 1, instance_id=instance), timeout=30)
    waiting = rt.start_workflow("gate", None, instance_id=iid("pg-gate"))
    wait_until(lambda: rt.get_workflow(waiting).custom_status == "waiting", timeout=30)
    tools = {t.name: t for t in pdn.workflow_tools(rt)}
    got = tools["get-workflow"].execute({"instanceId": first}).details
    assert got["kv"] is None and "cannot list KV entries" in got["kvNote"]  # PostgreSQL lists no keys

    deleted = rt.delete_workflow(first)
    assert deleted.instances_deleted == 2 and first in deleted.instance_ids
    with pytest.raises(pdn.InstanceNotFoundError):
        rt.get_workflow(first)
    with pytest.raises(pdn.InstanceRunningError):
        rt.delete_workflow(waiting)
    purged = rt.purge(status="Completed")
    assert second in purged.instance_ids and purged.instances_deleted == 2
    assert [s.instance_id for s in rt.list_workflows()] == [waiting]


def test_code_versions_are_kept_in_the_database_and_restored(make_runtime, iid, pg_url) -> None:
    ns: dict = {"__name__": "__main__"}
    first = pdn.WorkflowRegistry()
    pdn.define_workflow(
        "pg-wait",
        'ctx.set_custom_status("waiting")\nd = yield ctx.wait_for_event("go")\nreturn "old:" + d',
        registry=first,
        namespace=ns,
    )
    rt1 = make_runtime(db=pg_url, registry=first, namespace=ns).start()
    instance = rt1.start_workflow("pg-wait", None, instance_id=iid())
    wait_until(lambda: rt1.get_workflow(instance).custom_status == "waiting", timeout=30)
    rt1.shutdown()
    # Another kernel, in another process with its own HOME (no local sidecar of ours to find):
    # the code it restores comes from the database.
    script = (
        "import sys, pi_duroxide_nb as pdn\n"
        "rt = pdn.WorkflowRuntime(db=sys.argv[1], registry=pdn.WorkflowRegistry()).start()\n"
        "print([str(n) for n in rt.take_code_notices()])\n"
        "rt.signal_workflow(sys.argv[2], 'go', 'yes')\n"
        "print(rt.wait_for_workflow(sys.argv[2], timeout=30).output)\n"
        "rt.shutdown()\n"
    )
    home = tempfile.mkdtemp()
    env = {**os.environ, "HOME": home, "XDG_DATA_HOME": home}
    out = subprocess.run(
        [sys.executable, "-c", script, pg_url, instance], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    notices, output = out.stdout.strip().splitlines()[-2:]
    assert "restored pg-wait@" in notices and instance in notices, notices
    assert output == "old:yes"


def test_a_typed_wait_on_postgres_keeps_its_schema_in_the_database(registry, make_runtime, iid, pg_url) -> None:
    from pydantic import BaseModel

    class Go(BaseModel):
        ok: bool

    @registry.register_workflow("pg-typed")
    def typed(ctx, _):
        decision = yield ctx.wait_for_event("go", model=Go)
        return decision.ok

    rt = make_runtime(db=pg_url).start()
    instance = rt.start_workflow("pg-typed", None, instance_id=iid())
    wait_until(lambda: rt.waiting_for(instance), timeout=30)
    [wait] = rt.waiting_for(instance)
    assert wait.name == "go" and wait.json_schema["properties"]["ok"]["type"] == "boolean"
    with pytest.raises(pdn.ModelValidationError):
        rt.signal_workflow(instance, "go", {"ok": "perhaps"})
    rt.signal_workflow(instance, "go", {"ok": True})
    assert rt.wait_for_workflow(instance, timeout=30).output is True


def test_processes_starting_together_create_our_tables_without_racing(pg_url) -> None:
    # Two workers started at once used to fail one in ten with "duplicate key value violates
    # unique constraint pg_type_typname_nsp_index": PostgreSQL's CREATE TABLE IF NOT EXISTS is
    # not safe against a concurrent creator. Eight runtimes' stores open at the same moment here.
    from datetime import datetime, timezone

    from pi_duroxide_nb.engine import WorkerInfo
    from pi_duroxide_nb.engine._codestore import PostgresCodeStore
    from pi_duroxide_nb.engine._workers import PostgresWorkerTable

    now = datetime.now(timezone.utc)
    go = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_both(n: int) -> None:
        workers, codes = PostgresWorkerTable(pg_url), PostgresCodeStore(pg_url)
        try:
            go.wait(timeout=30)
            workers.beat(WorkerInfo(worker_id=f"w{n}", host="h", pid=n, started_at=now, last_seen=now, concurrency=1))
            codes.event_schemas("nothing")
        except BaseException as exc:  # collected and reported below
            errors.append(exc)
        finally:
            workers.close()
            codes.close()

    threads = [threading.Thread(target=open_both, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    table = PostgresWorkerTable(pg_url)
    try:
        assert sorted(w.worker_id for w in table.live(timedelta(minutes=1))) == [f"w{n}" for n in range(8)]
    finally:
        table.close()
