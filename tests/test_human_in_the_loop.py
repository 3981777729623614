"""Typed event waits (ctx.wait_for_event(name, model=...)), what instances wait for, finished and cancelled ones."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


class Approval(BaseModel):
    approved: bool = Field(description="Ship it?")
    level: Literal["low", "high"] = "low"
    comment: str = ""


def _register_approval(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_workflow("review")
    def review(ctx: pdn.WorkflowContext, input: object) -> object:
        ctx.set_custom_status("awaiting approval")
        decision = yield ctx.wait_for_event("approval", model=Approval)
        return {"type": type(decision).__name__, "approved": decision.approved, "level": decision.level}


def _waiting(rt: pdn.WorkflowRuntime, iid: str) -> list[pdn.EventWait]:
    return wait_until(lambda: rt.waiting_for(iid), timeout=10)


def _events(rt: pdn.WorkflowRuntime, iid: str, kind: str) -> list[pdn.HistoryEvent]:
    return [e for e in rt.history(iid) if e.kind == kind]


def test_typed_wait_lists_its_schema_refuses_bad_data_and_delivers_a_model(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    _register_approval(registry)
    instance = rt.start_workflow("review", instance_id=iid("review"))
    [wait] = _waiting(rt, instance)
    assert wait.name == "approval"
    assert wait.model is not None and wait.model.endswith("Approval")
    assert wait.json_schema is not None
    assert wait.json_schema["properties"]["approved"]["type"] == "boolean"
    assert wait.json_schema["properties"]["approved"]["description"] == "Ship it?"

    with pytest.raises(pdn.ModelValidationError) as bad:
        rt.signal_workflow(instance, "approval", {"approved": "maybe", "level": "extreme"})
    assert set(bad.value.fields) == {"approved", "level"}
    assert "approved" in str(bad.value) and "Approval" in str(bad.value)
    # Nothing was sent: the instance still waits, with no event in its history.
    assert not _events(rt, instance, "ExternalEvent")
    assert [w.name for w in rt.waiting_for(instance)] == ["approval"]
    assert rt.get_workflow(instance).status is pdn.WorkflowStatus.RUNNING

    rt.signal_workflow(instance, "approval", {"approved": True, "level": "high"})
    state = rt.wait_for_workflow(instance, timeout=10)
    assert state.output == {"type": "Approval", "approved": True, "level": "high"}
    assert rt.waiting_for(instance) == []


def test_untyped_wait_is_listed_without_schema(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    @registry.register_workflow("plain-wait")
    def plain_wait(ctx: pdn.WorkflowContext, input: object) -> object:
        first = yield ctx.wait_for_event("first")
        second = yield ctx.wait_for_event("second")
        return [first, second]

    instance = rt.start_workflow("plain-wait", instance_id=iid("plain"))
    [wait] = _waiting(rt, instance)
    assert (wait.name, wait.model, wait.json_schema) == ("first", None, None)
    rt.signal_workflow(instance, "first", {"any": ["json"]})
    wait_until(lambda: [w.name for w in rt.waiting_for(instance)] == ["second"], timeout=10)
    rt.signal_workflow(instance, "second", 2)
    assert rt.wait_for_workflow(instance, timeout=10).output == [{"any": ["json"]}, 2]


def test_bad_data_that_reaches_the_wait_keeps_the_instance_waiting(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    """A sender that could not check the data (the engine's own client here): the workflow refuses it and waits on."""
    _register_approval(registry)
    instance = rt.start_workflow("review", instance_id=iid("review"))
    _waiting(rt, instance)
    rt._client.raise_event(instance, "approval", json.dumps({"approved": "no idea"}))
    wait_until(lambda: len(_events(rt, instance, "ExternalSubscribed")) == 2, timeout=10)
    assert rt.get_workflow(instance).status is pdn.WorkflowStatus.RUNNING
    assert [w.name for w in rt.waiting_for(instance)] == ["approval"]
    rt.signal_workflow(instance, "approval", {"approved": False})
    assert rt.wait_for_workflow(instance, timeout=10).output == {"type": "Approval", "approved": False, "level": "low"}


def test_another_process_validates_against_the_kept_schema(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, db_path: Path, iid: Callable[[str], str]
) -> None:
    """A kernel without the model (a new one, another machine) reads the schema kept with the store."""
    _register_approval(registry)
    instance = rt.start_workflow("review", instance_id=iid("review"))
    _waiting(rt, instance)
    script = textwrap.dedent(
        """
        import json, sys
        import pi_duroxide_nb as pdn
        rt = pdn.WorkflowRuntime(db=sys.argv[1], registry=pdn.WorkflowRegistry())
        [wait] = rt.waiting_for(sys.argv[2])
        out = {"name": wait.name, "required": wait.json_schema.get("required")}
        try:
            rt.signal_workflow(sys.argv[2], "approval", {"approved": 3})
        except pdn.ModelValidationError as exc:
            out["fields"] = list(exc.fields)
        rt.signal_workflow(sys.argv[2], "approval", {"approved": True, "comment": "from afar"})
        rt.shutdown()
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path), instance], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "name": "approval",
        "required": ["approved"],
        "fields": ["approved"],
    }
    assert rt.wait_for_workflow(instance, timeout=10).output == {"type": "Approval", "approved": True, "level": "low"}


def test_signal_or_cancel_a_finished_instance_is_an_error(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    @registry.register_workflow("quick")
    def quick(ctx: pdn.WorkflowContext, input: object) -> object:
        return "done"
        yield  # pragma: no cover

    instance = rt.start_workflow("quick", instance_id=iid("quick"))
    rt.wait_for_workflow(instance, timeout=10)
    with pytest.raises(pdn.InstanceFinishedError, match="has finished as Completed") as sent:
        rt.signal_workflow(instance, "anything", 1)
    assert sent.value.status == "Completed" and sent.value.instance_id == instance
    with pytest.raises(pdn.InstanceFinishedError, match="cancel request"):
        rt.cancel_workflow(instance)
    assert rt.get_workflow(instance).status is pdn.WorkflowStatus.COMPLETED


def test_a_cancelled_instance_reads_as_terminated(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    _register_approval(registry)
    instance = rt.start_workflow("review", instance_id=iid("review"))
    _waiting(rt, instance)
    rt.cancel_workflow(instance, "not needed")
    state = rt.wait_for_workflow(instance, timeout=10)
    assert state.status is pdn.WorkflowStatus.TERMINATED and state.status.is_terminal
    assert state.error == "canceled: not needed"
    assert [s.instance_id for s in rt.list_workflows(status="Terminated")] == [instance]
    assert rt.list_workflows(status="Failed") == []
    assert rt.count_workflows()[pdn.WorkflowStatus.TERMINATED] == 1
    assert rt.waiting_for(instance) == []
    with pytest.raises(pdn.InstanceFinishedError, match="Terminated"):
        rt.cancel_workflow(instance)
    with pytest.raises(pdn.InstanceFinishedError):
        rt.signal_workflow(instance, "approval", {"approved": True})


def test_failure_text_shows_the_users_frame_and_message_first(
    registry: pdn.WorkflowRegistry, rt: pdn.WorkflowRuntime, iid: Callable[[str], str]
) -> None:
    @registry.register_workflow("breaks")
    def breaks(ctx: pdn.WorkflowContext, input: object) -> object:
        yield ctx.utc_now()
        raise ValueError("the config has no 'region'")

    instance = rt.start_workflow("breaks", instance_id=iid("breaks"))
    state = rt.wait_for_workflow(instance, timeout=10)
    assert state.status is pdn.WorkflowStatus.FAILED and "driver.py" in (state.error or "")  # the stored text is whole
    shown = repr(pdn.view(state)).splitlines()[1]
    assert shown.startswith("  error: ValueError: the config has no 'region' at File ")
    assert shown.endswith("in breaks (2 engine frames folded)") and "driver.py" not in shown
    page = pdn.view(state)._repr_html_()
    message_at, frame_at, engine_at = page.index("the config has no"), page.index("in breaks"), page.index("driver.py")
    assert message_at < frame_at < engine_at and "<details><summary><small>engine frames (2)" in page
    history = repr(pdn.view(rt.history(instance))).splitlines()[-1]
    assert "OrchestrationFailed" in history and "ValueError: the config has no" in history
