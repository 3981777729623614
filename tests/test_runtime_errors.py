"""Typed failures and clear errors: sub-workflows, retry policies, bad inputs, unknown ids."""

from __future__ import annotations

from datetime import timedelta

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


def _child_and_parent(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_activity("explode")
    def explode(ctx, x):
        raise ValueError(f"bad part {x}")

    @registry.register_workflow("child")
    def child(ctx, mode):
        if mode == "fail":
            yield ctx.schedule_activity("explode", 7)
        ctx.set_custom_status("waiting")
        yield ctx.wait_for_event("never")

    @registry.register_workflow("parent")
    def parent(ctx, mode):
        try:
            yield ctx.schedule_sub_orchestration("child", mode, instance_id=f"{ctx.instance_id}-child")
        except pdn.SubWorkflowError as err:
            return {
                "caught": "SubWorkflowError",
                "is_task_failed": isinstance(err, pdn.TaskFailedError),
                "workflow": err.workflow,
                "instance_id": err.instance_id,
                "error_type": err.error_type,
                "error_message": err.error_message,
                "cancelled": err.cancelled,
                "str": str(err),
            }
        except pdn.TaskFailedError as err:  # what the child's failure arrived as before
            return {"caught": "TaskFailedError", "str": str(err)}
        return {"caught": None}


def test_a_failed_child_arrives_as_sub_workflow_error(registry, rt, iid) -> None:
    _child_and_parent(registry)
    parent = rt.start_workflow("parent", "fail", instance_id=iid("parent"))
    out = rt.wait_for_workflow(parent, timeout=30).output
    assert out["caught"] == "SubWorkflowError" and out["is_task_failed"] is True
    assert out["workflow"] == "child" and out["instance_id"] == f"{parent}-child"
    assert out["error_type"] == "ActivityError"
    assert out["error_message"] == "Activity 'explode' call failed: ValueError: bad part 7"
    assert out["cancelled"] is False
    assert out["str"].startswith(f"Sub-workflow 'child' (instance '{parent}-child') failed: ActivityError:")


def test_a_cancelled_child_arrives_as_sub_workflow_error(registry, rt, iid) -> None:
    _child_and_parent(registry)
    parent = rt.start_workflow("parent", "wait", instance_id=iid("parent"))
    child = f"{parent}-child"
    wait_until(lambda: rt.list_workflows(name="child") and rt.get_workflow(child).custom_status == "waiting")
    rt.cancel_workflow(child, "operator stopped it")
    out = rt.wait_for_workflow(parent, timeout=30).output
    assert out["caught"] == "SubWorkflowError" and out["cancelled"] is True
    assert out["error_message"] == "canceled: operator stopped it"
    assert "was cancelled: canceled: operator stopped it" in out["str"]


def test_old_code_catching_task_failed_error_still_catches_a_child(registry, rt, iid) -> None:
    _child_and_parent(registry)

    @registry.register_workflow("old-parent")
    def old_parent(ctx, _):
        try:
            yield ctx.schedule_sub_orchestration("child", "fail")
        except pdn.TaskFailedError as err:
            return type(err).__name__

    state = rt.wait_for_workflow(rt.start_workflow("old-parent", None, instance_id=iid()), timeout=30)
    assert state.output == "SubWorkflowError"


def test_children_failing_inside_all_and_race_are_sub_workflow_errors(registry, rt, iid) -> None:
    _child_and_parent(registry)

    @registry.register_workflow("fan-out")
    def fan_out(ctx, _):
        caught = []
        try:
            yield ctx.all([ctx.schedule_timer(1), ctx.schedule_sub_orchestration("child", "fail")])
        except pdn.SubWorkflowError as err:
            caught.append(["all", err.workflow, err.error_type])
        try:
            yield ctx.race(ctx.schedule_sub_orchestration("child", "fail"), ctx.schedule_timer(timedelta(seconds=60)))
        except pdn.SubWorkflowError as err:
            caught.append(["race", err.workflow, err.error_type])
        return caught

    state = rt.wait_for_workflow(rt.start_workflow("fan-out", None, instance_id=iid()), timeout=30)
    assert state.output == [["all", "child", "ActivityError"], ["race", "child", "ActivityError"]]


def test_retry_accepts_duroxides_dict_shape(registry, rt, iid) -> None:
    calls: list[str] = []

    @registry.register_activity("flaky")
    def flaky(ctx, key):
        calls.append(key)
        if calls.count(key) < 3:
            raise ConnectionError("try again")
        return f"{key} ok"

    @registry.register_workflow("retry-dicts")
    def retry_dicts(ctx, _):
        snake = yield ctx.schedule_activity_with_retry("flaky", "snake", {"max_attempts": 5, "backoff": "linear"})
        camel = yield ctx.schedule_activity_with_retry("flaky", "camel", {"maxAttempts": 3, "timeoutMs": 5000})
        try:
            yield ctx.schedule_activity_with_retry("flaky", "short", {"max_attempts": 2, "backoff": "fixed"})
        except pdn.ActivityError as err:
            short = err.error_message
        errors = []
        for bad in ({"retries": 5}, {"max_attempts": 0}, {"backoff": "quadratic"}, 5):
            try:
                ctx.schedule_activity_with_retry("flaky", "never", bad)
            except pdn.PayloadError as err:
                errors.append(str(err))
        return {"results": [snake, camel, short], "errors": errors}

    state = rt.wait_for_workflow(rt.start_workflow("retry-dicts", None, instance_id=iid()), timeout=60)
    assert state.status is pdn.WorkflowStatus.COMPLETED, state.error
    assert state.output["results"] == ["snake ok", "camel ok", "try again"]
    assert calls.count("snake") == 3 and calls.count("camel") == 3 and calls.count("short") == 2
    unknown, too_few, bad_backoff, not_a_policy = state.output["errors"]
    assert "unknown keys ['retries']" in unknown
    assert (
        "attempts" in too_few and "backoff" in bad_backoff and "(int) is not one of the accepted forms" in not_a_policy
    )
    for message in state.output["errors"]:  # each shows the accepted forms
        assert "'max_attempts': 3" in message and "pdn.RetryPolicy(" in message


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


def test_deeply_nested_payloads_are_a_clear_payload_error(registry, rt, iid) -> None:
    @registry.register_workflow("echo")
    def echo(ctx, x):
        yield ctx.schedule_timer(1)
        return x

    deepest = _nested(200)
    assert rt.wait_for_workflow(rt.start_workflow("echo", deepest, instance_id=iid()), timeout=30).output == deepest
    for levels in (201, 5000):  # 5000 used to end in a raw RecursionError
        with pytest.raises(pdn.PayloadError, match=r"^The input of workflow 'echo' is nested more than 200 levels"):
            rt.start_workflow("echo", _nested(levels), instance_id=iid())
    assert len(rt.list_workflows()) == 1  # nothing else was written
    tools = {t.name: t for t in pdn.workflow_tools(rt)}
    result = tools["start-workflow"].execute('{"name": "echo", "input": ' + "[" * 5000 + "]" * 5000 + "}")
    assert result.is_error and "nested too deeply" in result.content[0].text
    result = tools["start-workflow"].execute({"name": "echo", "input": _nested(300)})
    assert result.is_error and "nested more than 200 levels" in result.content[0].text


def test_get_kv_of_an_unknown_instance_says_so(registry, rt, iid) -> None:
    @registry.register_workflow("kv")
    def kv(ctx, _):
        ctx.kv.set("step", 1)
        yield ctx.schedule_timer(1)

    known = rt.start_workflow("kv", None, instance_id=iid())
    rt.wait_for_workflow(known, timeout=30)
    assert rt.get_kv(known) == {"step": 1} and rt.get_kv(known, "step") == 1
    assert rt.get_kv(known, "other") is None  # an unset key of a known instance is None
    missing = iid("missing")
    for call in (lambda: rt.get_kv(missing), lambda: rt.get_kv(missing, "step")):
        with pytest.raises(pdn.InstanceNotFoundError, match=missing):
            call()


@pytest.mark.parametrize("db", ["", "   "])
def test_an_empty_db_is_refused(db: str) -> None:
    with pytest.raises(pdn.PayloadError, match=r"names no store \(an empty path would mean the current folder\)"):
        pdn.WorkflowRuntime(db=db)


def test_a_folder_as_db_is_refused(tmp_path) -> None:
    with pytest.raises(pdn.PayloadError, match="is a folder, not a store file. Name a file in it"):
        pdn.WorkflowRuntime(db=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing was created there
