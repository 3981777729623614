"""The session transcript: ctx.pi.send_message and ctx.pi.tool entries, persisted beside the store."""

from __future__ import annotations

import asyncio
import threading
from datetime import timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import pi_duroxide_nb as pdn


def _messenger(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_workflow("messenger")
    def messenger(ctx, input):
        yield ctx.pi.send_message(f"starting {input}")
        out = yield ctx.pi.tool("echo", {"text": input})
        try:
            yield ctx.pi.tool("boom", {})
        except pdn.ActivityError:
            pass
        yield ctx.pi.send_message({"done": input, "echo": out})
        return out


def _host() -> pdn.InMemoryAgentHost:
    def boom(args):
        raise RuntimeError("tool exploded")

    return pdn.InMemoryAgentHost(tools={"echo": lambda args: args["text"].upper(), "boom": boom})


def test_messages_and_tool_calls_are_listed_per_instance_oldest_first(registry, make_runtime, iid) -> None:
    _messenger(registry)
    rt = make_runtime(host=_host()).start()
    first, second = iid("msg"), iid("msg")
    rt.wait_for_workflow(rt.start_workflow("messenger", "a", instance_id=first), timeout=30)
    rt.wait_for_workflow(rt.start_workflow("messenger", "b", instance_id=second), timeout=30)

    entries = rt.messages(first)
    assert [e.custom_type for e in entries] == [
        "workflow_message",
        "workflow_tool_call",
        "workflow_tool_call",
        "workflow_message",
    ]
    assert entries[0].content == "starting a"
    assert entries[0].instance_id == first and entries[0].workflow_name == "messenger"
    assert entries[1].details == {"name": "echo", "args": {"text": "a"}, "result": "A"}
    assert entries[2].details is not None and "tool exploded" in entries[2].details["error"]
    assert "result" not in entries[2].details
    assert entries[3].content == {"done": "a", "echo": "A"}
    assert all(e.timestamp.tzinfo is timezone.utc for e in entries)
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    assert entries[0].timestamp <= entries[-1].timestamp

    everything = rt.messages()
    assert len(everything) == 8
    assert [e.instance_id for e in everything] == [first] * 4 + [second] * 4
    assert rt.messages("no-such-instance") == []
    assert rt.messages(limit=3) == everything[-3:]  # the newest, still oldest first
    assert rt.messages(first, limit=2) == entries[-2:] and rt.messages(limit=0) == []
    with pytest.raises(pdn.PayloadError, match="limit"):
        rt.messages(limit=-1)
    with pytest.raises(ValidationError):
        entries[0].content = "changed"  # frozen


def test_transcript_survives_a_new_runtime_and_lives_in_its_own_file(registry, make_runtime, iid, db_path) -> None:
    _messenger(registry)
    rt = make_runtime(host=_host()).start()
    instance = iid("msg")
    rt.wait_for_workflow(rt.start_workflow("messenger", "x", instance_id=instance), timeout=30)
    before = rt.messages(instance)
    assert rt.transcript_path == str(db_path) + ".transcript.sqlite"
    assert Path(rt.transcript_path).exists()
    rt.shutdown()

    again = make_runtime()  # no host, not started: reading needs neither
    assert again.messages(instance) == before


def test_on_message_is_called_from_a_worker_thread_and_can_unsubscribe(registry, make_runtime, iid) -> None:
    _messenger(registry)
    rt = make_runtime(host=_host()).start()
    seen: list[tuple[pdn.TranscriptEntry, str]] = []
    got_four = threading.Event()

    def on_entry(entry: pdn.TranscriptEntry) -> None:
        seen.append((entry, threading.current_thread().name))
        if len(seen) == 4:
            got_four.set()

    def broken(entry: pdn.TranscriptEntry) -> None:
        raise ValueError("a broken display hook")

    unsubscribe = rt.on_message(on_entry)
    rt.on_message(broken)  # must not fail the workflow
    instance = iid("live")
    state = rt.wait_for_workflow(rt.start_workflow("messenger", "y", instance_id=instance), timeout=30)
    assert state.status is pdn.WorkflowStatus.COMPLETED
    assert got_four.wait(10)
    assert [e for e, _ in seen] == rt.messages(instance)
    assert all(name != threading.main_thread().name for _, name in seen)

    unsubscribe()
    unsubscribe()  # twice is fine
    rt.wait_for_workflow(rt.start_workflow("messenger", "z", instance_id=iid("live")), timeout=30)
    assert len(seen) == 4
    with pytest.raises(TypeError, match="on_message takes a function"):
        rt.on_message("not callable")  # type: ignore[arg-type]


def test_reading_after_shutdown_is_a_clear_error(make_runtime) -> None:
    rt = make_runtime().start()
    rt.shutdown()
    with pytest.raises(pdn.RuntimeStateError, match="shut down"):
        rt.messages()


def test_postgres_stores_keep_their_transcript_in_a_local_file(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PI_DUROXIDE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = "postgresql://user@127.0.0.1:1/workflows"
    rt = pdn.WorkflowRuntime(db=url)  # nothing connects until the runtime is used
    other = pdn.WorkflowRuntime(db=url + "2")
    path = Path(rt.transcript_path)
    assert path.parent == tmp_path / "data" / "pi_duroxide_nb" / "transcripts"
    assert path.name.endswith(".transcript.sqlite") and url not in str(path)
    assert other.transcript_path != rt.transcript_path
    assert rt.messages() == []  # readable without reaching the database
    rt.shutdown()
    other.shutdown()


def test_closing_waits_for_an_entry_being_written(tmp_path) -> None:
    # A runtime shut down while an activity writes its entry: the write completes, then the store closes.
    from pi_duroxide_nb.engine._transcript import TranscriptStore

    store = TranscriptStore(str(tmp_path / "t.transcript.sqlite"))
    assert store.entries() == []  # opens it
    inside, gate = threading.Event(), threading.Event()
    results: list[str] = []

    async def slow_write() -> str:
        inside.set()
        await asyncio.to_thread(gate.wait, 10)
        return "written"

    writer = threading.Thread(target=lambda: results.append(store._run(slow_write())))
    writer.start()
    assert inside.wait(10)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(timeout=0.5)  # the absence of an event: close must still be waiting
    assert closer.is_alive()
    gate.set()
    writer.join(10)
    closer.join(10)
    assert results == ["written"] and not closer.is_alive()
    with pytest.raises(pdn.RuntimeStateError, match="closed with its runtime"):
        store.entries()


def test_an_unopenable_transcript_file_is_a_clear_error(make_runtime, db_path) -> None:
    rt = make_runtime()
    Path(rt.transcript_path).mkdir()  # a folder where the file should be: SQLite cannot open it
    with pytest.raises(pdn.RuntimeStateError, match="Could not open the transcript file .* make that folder writable"):
        rt.messages()
