"""Exporting histories: rt.history(...) as JSON and a DataFrame; ReplayHistory save/load round trips."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import pi_duroxide_nb as pdn


def _register(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_activity("ok")
    def ok(ctx, x):
        return {"x": x, "text": "é\u2028"}

    @registry.register_activity("boom")
    def boom(ctx, x):
        raise ValueError(f"bad\nline {x}")

    @registry.register_workflow("child")
    def child(ctx, _):
        yield ctx.schedule_activity("boom", 0)

    registry.register_workflow("rich", rich)


def rich(ctx, n):
    """Every kind of event: KV, status, syscalls, a failure caught, a failed child, a race, continue-as-new."""
    ctx.kv.set("n", n)
    ctx.set_custom_status({"round": n})
    yield ctx.new_guid()
    yield ctx.utc_now()
    yield ctx.schedule_activity("ok", "é")
    try:
        yield ctx.schedule_activity("boom", n)
    except pdn.ActivityError:
        pass
    try:
        yield ctx.schedule_sub_orchestration("child", None)
    except pdn.SubWorkflowError:
        pass
    ctx.kv.delete("n")
    ctx.kv.set("last", n)
    yield ctx.race(ctx.wait_for_event("never"), ctx.schedule_timer(1))
    if n < 2:
        yield ctx.continue_as_new(n + 1)
    return {"rounds": n}


@pytest.fixture
def finished(registry, rt, iid) -> tuple[pdn.WorkflowRuntime, str]:
    _register(registry)
    instance = rt.start_workflow("rich", 1, instance_id=iid("rich"))
    state = rt.wait_for_workflow(instance, timeout=30)
    assert state.output == {"rounds": 2} and rt.executions(instance) == [1, 2]
    return rt, instance


def test_history_is_a_list_that_exports_json_and_reads_it_back(finished, tmp_path: Path) -> None:
    rt, instance = finished
    events = rt.history(instance)
    assert isinstance(events, pdn.HistoryList) and isinstance(events, list)
    assert events == list(events) and events[0].kind == "OrchestrationStarted"  # old code keeps working
    text = events.to_json()
    doc = json.loads(text)
    assert doc["format"] == "pi_duroxide_nb.history/1" and doc["instance_id"] == instance
    assert len(doc["events"]) == len(events) and "é\u2028" in text  # payloads kept as written
    assert pdn.HistoryList.from_json(text) == events
    assert pdn.HistoryList.from_json(json.dumps(doc["events"])) == events  # a bare list too
    # The export replays: the stepper and replay_check read it like a ReplayHistory file.
    path = tmp_path / "rich.json"
    path.write_text(text, encoding="utf-8")
    assert pdn.ReplayHistory.load(path) == pdn.ReplayHistory.from_events(events)
    assert pdn.replay_check(path, rich).output == {"rounds": 2}
    first = rt.history(instance, execution_id=1)
    stored = pdn.ReplayHistory.from_runtime(rt, instance, execution_id=1)
    exported = pdn.ReplayHistory.from_json(first.to_json())
    # The re-encoded texts equal the stored ones, sub-workflow inputs of None included.
    assert [(e.kind, e.input_text, e.payload_text) for e in exported.events] == [
        (e.kind, e.input_text, e.payload_text) for e in stored.events
    ]
    assert pdn.replay_check(exported, rich).output is None  # continued as new


def test_history_to_dataframe(finished) -> None:
    rt, instance = finished
    events = rt.history(instance, execution_id=1)
    frame = events.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(events)
    assert list(frame.columns)[:7] == [
        "instance_id",
        "execution_id",
        "event_id",
        "kind",
        "name",
        "source_event_id",
        "timestamp",
    ]
    assert frame["event_id"].tolist() == [e.event_id for e in events]
    failed = frame[frame["kind"] == "ActivityFailed"]
    assert len(failed) == 1 and "bad\nline 1" in failed["error"].iloc[0]
    assert frame[frame["kind"] == "ActivityCompleted"]["result"].tolist()[-1] == {"x": "é", "text": "é\u2028"}
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_to_dataframe_without_pandas_names_the_extra(finished, monkeypatch) -> None:
    rt, instance = finished
    monkeypatch.setitem(sys.modules, "pandas", None)  # what an environment without pandas gives
    with pytest.raises(ImportError, match=r"needs pandas.*pip install 'pi_duroxide_nb\[pandas\]'"):
        rt.history(instance).to_dataframe()
    assert rt.history(instance).to_json()  # JSON needs nothing


def test_replay_history_save_and_load_round_trip(finished, tmp_path: Path) -> None:
    rt, instance = finished
    for execution in rt.executions(instance):
        for history in (
            pdn.ReplayHistory.from_runtime(rt, instance, execution_id=execution),
            pdn.ReplayHistory.from_events(rt.history(instance, execution_id=execution)),
        ):
            saved = history.save(tmp_path / f"{execution}.json")
            again = pdn.ReplayHistory.load(saved)
            assert again == history
            assert again.save(tmp_path / "again.json").read_text() == saved.read_text()  # byte for byte
    seeded = pdn.ReplayHistory.from_runtime(rt, instance)  # execution 2 starts with execution 1's KV
    assert dict(seeded.kv_seed) == {"last": "1"}
    assert pdn.ReplayHistory.load(seeded.save(tmp_path / "seeded.json")).kv_seed == seeded.kv_seed
