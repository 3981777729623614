"""Deleting instances: one with its sub-workflows and transcript entries, or many by status and age."""

from __future__ import annotations

from datetime import timedelta

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


@pytest.fixture
def family(registry, make_runtime):
    """A runtime with a parent that runs a child; both write transcript entries and KV."""

    @registry.register_workflow("child")
    def child(ctx, mode):
        yield ctx.pi.send_message(f"child {mode}")
        ctx.kv.set("mode", mode)
        if mode == "wait":
            ctx.set_custom_status("waiting")
            yield ctx.wait_for_event("go")
        if mode == "fail":
            raise RuntimeError("child broke")
        return mode

    @registry.register_workflow("parent")
    def parent(ctx, mode):
        yield ctx.pi.send_message(f"parent {mode}")
        return (yield ctx.schedule_sub_orchestration("child", mode, instance_id=f"{ctx.instance_id}-child"))

    return make_runtime(host=pdn.InMemoryAgentHost()).start()


def _gone(rt: pdn.WorkflowRuntime, instance_id: str) -> bool:
    for call in (rt.get_workflow, rt.history, rt.get_kv):
        with pytest.raises(pdn.InstanceNotFoundError):
            call(instance_id)
    return rt.messages(instance_id) == []


def test_delete_removes_the_instance_its_children_and_their_transcript(family, iid) -> None:
    rt = family
    doomed, kept = iid("doomed"), iid("kept")
    for instance in (doomed, kept):
        rt.wait_for_workflow(rt.start_workflow("parent", "ok", instance_id=instance), timeout=30)
    assert len(rt.messages(doomed)) == 1 and len(rt.messages(f"{doomed}-child")) == 1

    result = rt.delete_workflow(doomed)
    assert set(result.instance_ids) == {doomed, f"{doomed}-child"} and result.instances_deleted == 2
    assert result.executions_deleted == 2 and result.events_deleted > 4 and result.transcript_entries_deleted == 2
    assert str(result).startswith("Deleted 2 instances (2 executions, ")
    assert _gone(rt, doomed) and _gone(rt, f"{doomed}-child")
    assert {s.instance_id for s in rt.list_workflows()} == {kept, f"{kept}-child"}  # the rest is untouched
    assert len(rt.messages(kept)) == 1 and rt.get_kv(f"{kept}-child") == {"mode": "ok"}
    with pytest.raises(pdn.InstanceNotFoundError, match=doomed):
        rt.delete_workflow(doomed)
    # The id is free again.
    rt.wait_for_workflow(rt.start_workflow("parent", "ok", instance_id=doomed), timeout=30)


def test_a_running_instance_is_refused_unless_forced(family, iid) -> None:
    rt = family
    instance = rt.start_workflow("parent", "wait", instance_id=iid("running"))
    child = f"{instance}-child"
    wait_until(lambda: rt.list_workflows(name="child") and rt.get_workflow(child).custom_status == "waiting")
    with pytest.raises(pdn.InstanceRunningError, match="is Running, so it was not deleted. Cancel it first") as err:
        rt.delete_workflow(instance)
    assert err.value.instance_id == instance and err.value.status == "Running"
    with pytest.raises(pdn.PayloadError, match=f"sub-workflow of '{instance}'.*rt.delete_workflow"):
        rt.delete_workflow(child)
    assert rt.get_workflow(instance).status is pdn.WorkflowStatus.RUNNING  # nothing happened

    result = rt.delete_workflow(instance, force=True, timeout=30)
    assert set(result.instance_ids) == {instance, child}
    assert _gone(rt, instance) and _gone(rt, child)
    assert rt.list_workflows() == [] and rt.count_workflows() == {}


def test_purge_deletes_finished_instances_by_status_age_and_name(family, registry, iid) -> None:
    rt = family

    @registry.register_workflow("solo")
    def solo(ctx, _):
        yield ctx.pi.send_message("solo")
        return "done"

    ok = rt.start_workflow("parent", "ok", instance_id=iid("ok"))
    failed = rt.start_workflow("parent", "fail", instance_id=iid("failed"))
    solo_id = rt.start_workflow("solo", None, instance_id=iid("solo"))
    running = rt.start_workflow("parent", "wait", instance_id=iid("running"))
    for instance in (ok, failed, solo_id):
        rt.wait_for_workflow(instance, timeout=30)
    wait_until(lambda: rt.list_workflows(name="child", status="Running"))

    assert rt.purge(older_than=timedelta(hours=1)).instance_ids == ()  # everything is younger
    with pytest.raises(pdn.PayloadError, match="purge deletes finished instances only, not Running ones"):
        rt.purge(status="Running")
    with pytest.raises(pdn.PayloadError, match="older_than must be seconds"):
        rt.purge(older_than="a week")  # type: ignore[arg-type]

    by_name = rt.purge(name="solo")
    assert by_name.instance_ids == (solo_id,) and by_name.transcript_entries_deleted == 1
    completed = rt.purge(status="Completed", older_than=0)
    assert set(completed.instance_ids) == {ok, f"{ok}-child"}  # the child goes with its root
    everything = rt.purge()
    assert set(everything.instance_ids) == {failed, f"{failed}-child"}
    left = {s.instance_id for s in rt.list_workflows()}
    assert left == {running, f"{running}-child"}  # running instances are never purged
    assert rt.messages(ok) == [] and rt.messages(failed) == [] and len(rt.messages(running)) == 1
