"""The replay engine: drive workflow code against one execution's history, as duroxide does.

This mirrors duroxide's replay loop (``src/runtime/replay_engine.rs``) and the Python
binding's task handler (``duroxide-python/src/handlers.rs``):

* Code emits actions into one FIFO queue: each yielded task's schedules (a join's or a
  race's children in order, a retry's attempts and backoff timers as it goes) and, at
  once, every custom status and KV write.
* History is walked in order. Before each event, if a completion was delivered since the
  last poll, the code is polled: the awaited task, if resolved, sends its value into the
  generator, which runs to its next ``yield``.
* Schedule events pop the next action and must match it (activity: name, input text,
  session, tag; timer: kind only; event subscription: name; sub-workflow: name and input
  text); status and KV events pop one action if there is one and must be of their kind.
  Completions bind by ``source_event_id`` to an open schedule.
* Once the code returns, the rest of history is not looked at (the engine breaks out too).

Every resolved ``yield`` becomes one ``_Record``; the stepper turns records into snapshots.
"""

from __future__ import annotations

import itertools
import json
import traceback
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from ..engine import WorkflowDefinition, drive
from ._context import ReplayOrchestrationContext, ReplayRegistry, StateAction
from ._history import RecordedEvent, ReplayHistory
from ._history import parse_text as _parse

__all__ = ["Action", "Record", "ReplayRun"]

_SCHEDULE_KINDS = {"ActivityScheduled", "TimerCreated", "ExternalSubscribed", "SubOrchestrationScheduled"}
_COMPLETION_KINDS = {
    "ActivityCompleted",
    "ActivityFailed",
    "TimerFired",
    "SubOrchestrationCompleted",
    "SubOrchestrationFailed",
}
_TIMEOUT_ERROR = "timeout: activity timed out"

Result = tuple[bool, Any]
"""(ok, value): the value on success, the error message on failure."""


@dataclass(eq=False)
class Action:
    """One action emitted by code, and what history bound to it."""

    token: int
    kind: str
    """activity, timer, external, sub_workflow, continue_as_new, custom_status, kv_set, kv_clear, kv_clear_all."""
    name: str | None = None
    input: str | None = None
    tag: str | None = None
    delay_ms: int | None = None
    key: str | None = None
    value: str | None = None
    instance: str | None = None
    version: str | None = None
    schedule: RecordedEvent | None = None
    completion: RecordedEvent | None = None
    result: Result | None = None

    def describe(self) -> str:
        """The action as code emitted it, in the words of the history event it would record."""
        if self.kind == "activity":
            extra = f", tag={self.tag!r}" if self.tag else ""
            return f"ActivityScheduled {self.name}({self.input}{extra})"
        if self.kind == "timer":
            return f"TimerCreated (delay {self.delay_ms} ms)"
        if self.kind == "external":
            return f"ExternalSubscribed {self.name}"
        if self.kind == "sub_workflow":
            return f"SubOrchestrationScheduled {self.name}({self.input})"
        if self.kind == "continue_as_new":
            return f"ContinueAsNew({self.input})"
        if self.kind == "custom_status":
            return f"CustomStatusUpdated status={self.value!r}"
        if self.kind == "kv_set":
            return f"KeyValueSet {self.key}={self.value}"
        if self.kind == "kv_clear":
            return f"KeyValueCleared {self.key}"
        return "KeyValuesCleared"


def _rs(value: Any) -> str:
    """A value the way Rust's ``{:?}`` prints it (strings quoted and escaped, options)."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _some(value: Any) -> str:
    return "None" if value is None else f"Some({_rs(value)})"


def engine_action_text(action: Action) -> str:
    """An action as the engine's nondeterminism message prints it (Rust debug format)."""
    if action.kind == "activity":
        return (
            f"CallActivity {{ scheduling_event_id: 0, name: {_rs(action.name)}, input: {_rs(action.input)}, "
            f"session_id: None, tag: {_some(action.tag)} }}"
        )
    if action.kind == "timer":
        return "CreateTimer { scheduling_event_id: 0, fire_at_ms: ... }"
    if action.kind == "external":
        return f"WaitExternal {{ scheduling_event_id: 0, name: {_rs(action.name)} }}"
    if action.kind == "sub_workflow":
        # Without an explicit id the engine names the child after the action's token until it is scheduled.
        instance = action.instance if action.instance is not None else f"sub::pending_{action.token}"
        return (
            f"StartSubOrchestration {{ scheduling_event_id: 0, name: {_rs(action.name)}, "
            f"version: {_some(action.version)}, instance: {_rs(instance)}, input: {_rs(action.input)} }}"
        )
    if action.kind == "continue_as_new":
        return f"ContinueAsNew {{ input: {_rs(action.input)} }}"
    if action.kind == "custom_status":
        return f"UpdateCustomStatus {{ status: {_some(action.value)} }}"
    if action.kind == "kv_set":
        return f"SetKeyValue {{ key: {_rs(action.key)}, value: {_rs(action.value)}, last_updated_at_ms: ... }}"
    if action.kind == "kv_clear":
        return f"ClearKeyValue {{ key: {_rs(action.key)} }}"
    return "ClearKeyValues"


def engine_event_text(event: RecordedEvent) -> str:
    """A history event as the engine's nondeterminism message prints it (Rust debug format)."""
    f = event.fields
    if event.kind == "ActivityScheduled":
        return (
            f"ActivityScheduled {{ name: {_rs(event.name)}, input: {_rs(event.input_text)}, "
            f"session_id: {_some(f.get('session_id'))}, tag: {_some(f.get('tag'))} }}"
        )
    if event.kind == "TimerCreated":
        return f"TimerCreated {{ fire_at_ms: {f.get('fire_at_ms')} }}"
    if event.kind == "ExternalSubscribed":
        return f"ExternalSubscribed {{ name: {_rs(event.name)} }}"
    if event.kind == "SubOrchestrationScheduled":
        return (
            f"SubOrchestrationScheduled {{ name: {_rs(event.name)}, instance: {_rs(f.get('instance'))}, "
            f"input: {_rs(event.input_text)} }}"
        )
    if event.kind == "CustomStatusUpdated":
        return f"CustomStatusUpdated {{ status: {_some(f.get('status'))} }}"
    if event.kind == "KeyValueSet":
        return (
            f"KeyValueSet {{ key: {_rs(f.get('key'))}, value: {_rs(f.get('value'))}, "
            f"last_updated_at_ms: {f.get('last_updated_at_ms')} }}"
        )
    if event.kind == "KeyValueCleared":
        return f"KeyValueCleared {{ key: {_rs(f.get('key'))} }}"
    return event.kind


def _matches(action: Action, event: RecordedEvent) -> bool:
    """The engine's ``action_matches_event_kind``."""
    kind = event.kind
    if action.kind == "activity" and kind == "ActivityScheduled":
        return (
            action.name == event.name
            and action.input == event.input_text
            and event.fields.get("session_id") is None
            and action.tag == event.fields.get("tag")
        )
    if action.kind == "timer" and kind == "TimerCreated":
        return True
    if action.kind == "external" and kind == "ExternalSubscribed":
        return action.name == event.name
    if action.kind == "sub_workflow" and kind == "SubOrchestrationScheduled":
        return action.name == event.name and action.input == event.input_text
    if action.kind == "custom_status" and kind == "CustomStatusUpdated":
        return True
    if action.kind == "kv_set" and kind == "KeyValueSet":
        return action.key == event.fields.get("key") and action.value == event.fields.get("value")
    if action.kind == "kv_clear" and kind == "KeyValueCleared":
        return action.key == event.fields.get("key")
    return action.kind == "kv_clear_all" and kind == "KeyValuesCleared"


class _Nondeterminism(Exception):
    def __init__(self, reason: str, event: RecordedEvent, action: Action | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.event = event
        self.action = action


# --- tasks: what one yield waits for --------------------------------------------------------


class _Node:
    kind = "task"

    def poll(self, run: ReplayRun) -> Result | None:
        raise NotImplementedError

    def actions(self) -> list[Action]:
        return []


class _Leaf(_Node):
    def __init__(self, kind: str, **spec: Any) -> None:
        self.kind = kind
        self.spec = spec
        self.action: Action | None = None

    def poll(self, run: ReplayRun) -> Result | None:
        if self.action is None:
            self.action = run.emit(self.kind, **self.spec)
        if self.kind == "external":
            return run.external_result(self.action)
        return self.action.result

    def actions(self) -> list[Action]:
        return [self.action] if self.action is not None else []


class _Failed(_Node):
    """A task the binding rejects at once (e.g. a race of three)."""

    def __init__(self, message: str) -> None:
        self.message = message

    def poll(self, run: ReplayRun) -> Result | None:
        return (False, self.message)


class _Join(_Node):
    kind = "all"

    def __init__(self, children: list[_Node]) -> None:
        self.children = children
        self.results: list[Result | None] = [None] * len(children)

    def poll(self, run: ReplayRun) -> Result | None:
        for i, child in enumerate(self.children):
            if self.results[i] is None:
                self.results[i] = child.poll(run)
        if any(r is None for r in self.results):
            return None
        return (True, [{"ok": v} if ok else {"err": v} for ok, v in self.results])  # type: ignore[misc]

    def actions(self) -> list[Action]:
        return [a for c in self.children for a in c.actions()]


class _Select(_Node):
    kind = "race"

    def __init__(self, children: list[_Node], *, raw: bool = False) -> None:
        self.children = children
        self.raw = raw
        self.winner: int | None = None
        self.result: Result | None = None

    def poll(self, run: ReplayRun) -> Result | None:
        if self.result is not None:
            return self.result
        for i, child in enumerate(self.children):
            r = child.poll(run)
            if r is not None:
                self.winner = i
                for j, loser in enumerate(self.children):
                    if j != i:
                        run.cancel(loser)
                ok, value = r
                self.result = (ok, value) if self.raw or not ok else (True, {"index": i, "value": value})
                return self.result
        return None

    def actions(self) -> list[Action]:
        return [a for c in self.children for a in c.actions()]


class _Retry(_Node):
    """duroxide's ``schedule_activity_with_retry``: attempts, per-attempt timeout, backoff timers."""

    kind = "activity"

    def __init__(self, name: str, input: str, retry: dict[str, Any], tag: str | None) -> None:
        self.name, self.input, self.tag = name, input, tag
        self.max_attempts = int(retry.get("maxAttempts") or 3)
        timeout = retry.get("timeoutMs")
        if retry.get("totalTimeoutMs") is not None:
            timeout = retry.get("totalTimeoutMs")
        self.timeout_ms = int(timeout) if timeout is not None else None
        self.backoff = retry.get("backoff")
        self.attempt = 1
        self.current: _Node | None = None
        self.backoff_timer: _Leaf | None = None
        self.last_error = ""
        self.spent: list[_Node] = []

    def _delay_ms(self, attempt: int) -> int:
        if self.backoff == "fixed":
            return 1000
        if self.backoff in ("linear",) or (self.backoff is not None and self.backoff != "exponential"):
            return min(100 * attempt, 30_000)
        return int(min(100 * 2 ** (attempt - 1), 30_000))

    def poll(self, run: ReplayRun) -> Result | None:
        while True:
            if self.backoff_timer is not None:
                if self.backoff_timer.poll(run) is None:
                    return None
                self.spent.append(self.backoff_timer)
                self.backoff_timer = None
                self.attempt += 1
            if self.current is None:
                activity = _Leaf("activity", name=self.name, input=self.input, tag=self.tag)
                if self.timeout_ms is not None:
                    self.current = _Select([activity, _Leaf("timer", delay_ms=self.timeout_ms)], raw=True)
                else:
                    self.current = activity
            result = self.current.poll(run)
            if result is None:
                return None
            if isinstance(self.current, _Select) and self.current.winner == 1:
                return (False, _TIMEOUT_ERROR)
            self.spent.append(self.current)
            self.current = None
            ok, value = result
            if ok:
                return result
            self.last_error = str(value)
            if self.attempt >= self.max_attempts:
                return (False, self.last_error)
            self.backoff_timer = _Leaf("timer", delay_ms=self._delay_ms(self.attempt))

    def actions(self) -> list[Action]:
        nodes = [*self.spent, *(n for n in (self.current, self.backoff_timer) if n is not None)]
        return [a for n in nodes for a in n.actions()]


class _ContinueAsNew(_Node):
    kind = "continue_as_new"

    def __init__(self, input: str, version: str | None) -> None:
        self.input = input
        self.version = version
        self.action: Action | None = None

    def poll(self, run: ReplayRun) -> Result | None:
        if self.action is None:
            self.action = run.emit("continue_as_new", input=self.input)
        return None

    def actions(self) -> list[Action]:
        return [self.action] if self.action is not None else []


def _build(descriptor: Any) -> _Node:
    kind = descriptor.get("type") if isinstance(descriptor, dict) else None
    tag = descriptor.get("tag") if isinstance(descriptor, dict) else None
    if kind == "activity":
        return _Leaf("activity", name=descriptor["name"], input=descriptor["input"], tag=tag)
    if kind == "activityWithRetry":
        return _Retry(descriptor["name"], descriptor["input"], descriptor.get("retry") or {}, tag)
    if kind == "timer":
        return _Leaf("timer", delay_ms=int(descriptor.get("delayMs") or 0))
    if kind == "waitEvent":
        return _Leaf("external", name=descriptor["name"])
    if kind in (
        "subOrchestration",
        "subOrchestrationVersioned",
        "subOrchestrationWithId",
        "subOrchestrationVersionedWithId",
    ):
        return _Leaf(
            "sub_workflow",
            name=descriptor["name"],
            input=descriptor["input"],
            instance=descriptor.get("instanceId"),
            version=descriptor.get("version"),
        )
    if kind == "utcNow":
        return _Leaf("activity", name="__duroxide_syscall:utc_now_ms", input="")
    if kind == "newGuid":
        return _Leaf("activity", name="__duroxide_syscall:new_guid", input="")
    if kind in ("continueAsNew", "continueAsNewVersioned"):
        return _ContinueAsNew(descriptor["input"], descriptor.get("version"))
    if kind == "join":
        children = descriptor.get("tasks") or []
        if any(isinstance(t, dict) and t.get("type") in ("join", "select") for t in children):
            return _Failed("nested join/select inside join is not supported")
        return _Join([_build(t) for t in children])
    if kind == "select":
        children = descriptor.get("tasks") or []
        if len(children) != 2:
            return _Failed("select currently supports exactly 2 tasks")
        if any(isinstance(t, dict) and t.get("type") in ("join", "select") for t in children):
            return _Failed("nested join/select inside select is not supported")
        return _Select([_build(t) for t in children])
    return _Failed(f"unsupported task {descriptor!r}")


# --- records ----------------------------------------------------------------------------------


@dataclass
class Record:
    """What happened between two points where the code was paused (internal, mutable)."""

    kind: str
    """``step`` (a yield resolved or pending), ``end`` (code returned/raised/continued), ``divergence``."""
    task: _Node | None
    descriptor: Any
    events: list[RecordedEvent]
    result: Result | None = None
    from_history: bool = True
    output_text: str | None = None
    error: str | None = None
    exception: BaseException | None = None
    continued_input: str | None = None
    reason: str | None = None
    expected: RecordedEvent | None = None
    actual: Action | None = None
    pending: list[Action] = field(default_factory=list)
    final: bool = False
    """True for the last record of the run."""


@dataclass(frozen=True)
class Warning_:
    """A difference duroxide accepts silently (internal)."""

    kind: str
    message: str
    event: RecordedEvent | None = None


class ReplayRun:
    """One pass of code over history; iterate ``records()`` to advance it."""

    def __init__(self, history: ReplayHistory, definition: WorkflowDefinition, registry: ReplayRegistry) -> None:
        self.history = history
        self.definition = definition
        self.queue: deque[Action] = deque()
        self.by_schedule: dict[int, Action] = {}
        self.open: set[int] = set()
        self.subscriptions: dict[int, tuple[str, int]] = {}
        self.sub_index: dict[str, int] = {}
        self.cancelled_subs: set[int] = set()
        self.arrivals: dict[str, list[str | None]] = {}
        self.warnings: list[Warning_] = []
        self._tokens = itertools.count(1)
        started = history.started
        self.ctx = ReplayOrchestrationContext(
            instance_id=history.instance_id,
            execution_id=history.execution_id,
            name=history.workflow_name,
            version=history.version,
            custom_status=started.fields.get("initial_custom_status"),
            emit=self._emit_state,
            kv=dict(history.kv_seed),
        )
        # drive() is typed as an Iterator; it is a generator, which is what we send into.
        self._drive: Any = drive(definition, registry, self.ctx, _parse(history.input_text))  # type: ignore[arg-type]
        self.user_gen: Any = None
        self.yields = 0

    # --- actions ---------------------------------------------------------------------------

    def emit(self, kind: str, **spec: Any) -> Action:
        action = Action(next(self._tokens), kind, **spec)
        self.queue.append(action)
        return action

    def _emit_state(self, state: StateAction) -> None:
        kind = state.kind
        self.queue.append(Action(next(self._tokens), kind, key=state.key, value=state.value))

    def external_result(self, action: Action) -> Result | None:
        """The engine's ``get_external_event``: positional delivery skipping cancelled waits."""
        if action.schedule is None:
            return None
        sid = action.schedule.event_id
        if sid in self.cancelled_subs or sid not in self.subscriptions:
            return None
        name, index = self.subscriptions[sid]
        below = sum(
            1 for s, (n, i) in self.subscriptions.items() if n == name and i < index and s in self.cancelled_subs
        )
        arrivals = self.arrivals.get(name, [])
        effective = index - below
        if effective < len(arrivals):
            return (True, _parse(arrivals[effective]))
        return None

    def cancel(self, node: _Node) -> None:
        for action in node.actions():
            if action.kind == "external" and action.schedule is not None:
                self.cancelled_subs.add(action.schedule.event_id)

    # --- the code ----------------------------------------------------------------------------

    @property
    def frame(self) -> FrameType | None:
        """The innermost frame of the user's code while it is paused at a yield."""
        gen = self.user_gen
        frame = None
        while gen is not None and getattr(gen, "gi_frame", None) is not None:
            frame = gen.gi_frame
            gen = getattr(gen, "gi_yieldfrom", None)
        return frame

    def _advance(self, result: Result | None) -> tuple[str, Any]:
        """Send a result into the code; returns ('yield', descriptor) or ('end', Record fields)."""
        try:
            if result is None:
                descriptor = next(self._drive)
            elif result[0]:
                descriptor = self._drive.send(result[1])
            else:
                message = result[1] if isinstance(result[1], str) else json.dumps(result[1])
                descriptor = self._drive.throw(Exception(message))
        except StopIteration as stop:
            return ("return", json.dumps(stop.value if stop.value is not None else None))
        except Exception as exc:  # the workflow failed: the engine records its traceback
            return ("raise", exc)
        if self.user_gen is None:
            frame = self._drive.gi_frame
            self.user_gen = frame.f_locals.get("gen") if frame is not None else None
        self.yields += 1
        return ("yield", descriptor)

    # --- the walk ------------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Advance through history, yielding a record each time the code is about to resume."""
        events = self.history.events
        window: list[RecordedEvent] = []
        root: _Node | None = None
        descriptor: Any = None
        started = False
        must_poll = True
        index = 0
        while True:
            if must_poll:
                while True:
                    if not started:
                        started = True
                        step = self._advance(None)
                    else:
                        assert root is not None
                        result = root.poll(self)
                        if result is None:
                            break
                        yield Record("step", root, descriptor, window, result=result, from_history=True)
                        window = []
                        step = self._advance(result)
                    if step[0] != "yield":
                        end = self._end(step, window, events[index:])
                        end.final = True
                        yield end
                        return
                    descriptor = step[1]
                    root = _build(descriptor)
                must_poll = False
            if index >= len(events):
                break
            event = events[index]
            index += 1
            window.append(event)
            try:
                must_poll = self._apply(event) or must_poll
            except _Nondeterminism as nd:
                yield Record(
                    "divergence",
                    root,
                    descriptor,
                    window,
                    reason=nd.reason,
                    expected=nd.event,
                    actual=nd.action,
                    final=True,
                )
                return
        # History is exhausted: what is left would run live.
        pending = list(self.queue)
        if isinstance(root, _ContinueAsNew):
            # The code ends here: the generator stays paused at its continue_as_new yield.
            yield Record("end", root, descriptor, window, continued_input=root.input, pending=pending, final=True)
            return
        from_history = root is not None and bool(root.actions()) and all(a.schedule for a in root.actions())
        yield Record(
            "step", root, descriptor, window, result=None, from_history=from_history, pending=pending, final=True
        )

    def _end(self, step: tuple[str, Any], window: list[RecordedEvent], rest: tuple[RecordedEvent, ...]) -> Record:
        left = [e for e in rest if e.kind in _SCHEDULE_KINDS]
        if left:
            self.warnings.append(
                Warning_(
                    "returned_early",
                    f"The code finished while history still records {len(left)} scheduled task(s) "
                    f"(first: {left[0].describe()}); duroxide accepts this silently.",
                    left[0],
                )
            )
        # Show the recorded end beside the code's end (the engine itself stops reading here).
        window = window + [e for e in rest if e.is_terminal]
        if step[0] == "return":
            return Record("end", None, None, window, output_text=step[1])
        exc = step[1]
        summary = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return Record("end", None, None, window, error=summary, exception=exc)

    def _pop(self) -> Action | None:
        return self.queue.popleft() if self.queue else None

    def _apply(self, event: RecordedEvent) -> bool:
        """The engine's ``apply_history_event``; returns True when the code must be polled."""
        kind = event.kind
        if kind == "CustomStatusUpdated":
            action = self._pop()
            if action is not None and not _matches(action, event):
                raise _Nondeterminism("custom status mismatch", event, action)
            recorded = event.fields.get("status")
            if action is not None and action.value != recorded:
                self.warnings.append(
                    Warning_(
                        "custom_status_changed",
                        f"Code sets custom status {action.value!r} where history recorded {recorded!r} "
                        f"(event #{event.event_id}); duroxide accepts this silently.",
                        event,
                    )
                )
            return False
        if kind in ("KeyValueSet", "KeyValueCleared", "KeyValuesCleared"):
            action = self._pop()
            if action is not None and not _matches(action, event):
                label = {"KeyValueSet": "kv set", "KeyValueCleared": "kv clear", "KeyValuesCleared": "kv clear_all"}
                raise _Nondeterminism(f"{label[kind]} mismatch", event, action)
            return False
        if kind in _SCHEDULE_KINDS:
            action = self._pop()
            if action is None:
                raise _Nondeterminism("history schedule but no emitted action", event, None)
            if not _matches(action, event):
                raise _Nondeterminism("schedule mismatch", event, action)
            action.schedule = event
            self.by_schedule[event.event_id] = action
            self.open.add(event.event_id)
            if kind == "ExternalSubscribed":
                name = str(event.name)
                idx = self.sub_index.get(name, 0)
                self.sub_index[name] = idx + 1
                self.subscriptions[event.event_id] = (name, idx)
            if kind == "TimerCreated" and action.delay_ms is not None:
                self._check_timer(action, event)
            recorded_child = event.fields.get("instance")
            if kind == "SubOrchestrationScheduled" and action.instance not in (None, recorded_child):
                self.warnings.append(
                    Warning_(
                        "sub_workflow_id_changed",
                        f"Code names its sub-workflow {action.instance!r} where history started {recorded_child!r} "
                        f"(event #{event.event_id}); duroxide matches by name and input and keeps the recorded child.",
                        event,
                    )
                )
            return False
        if kind in _COMPLETION_KINDS:
            source = event.source_event_id
            if source is None:
                return False
            if source not in self.open:
                raise _Nondeterminism("completion without open schedule", event, None)
            action = self.by_schedule[source]
            if kind == "ActivityCompleted" and action.kind != "activity":
                raise _Nondeterminism("completion kind mismatch: expected activity", event, action)
            action.completion = event
            if kind in ("ActivityCompleted", "SubOrchestrationCompleted"):
                action.result = (True, _parse(event.payload_text))
            elif kind == "TimerFired":
                action.result = (True, None)
            else:
                action.result = (False, event.error or "")
            self.open.discard(source)
            return True
        if kind == "ExternalSubscribedCancelled":
            if event.source_event_id is not None:
                self.cancelled_subs.add(event.source_event_id)
            return False
        if kind == "ExternalEvent":
            name = str(event.name)
            active = sum(1 for s, (n, _) in self.subscriptions.items() if n == name and s not in self.cancelled_subs)
            if active > len(self.arrivals.get(name, [])):
                self.arrivals.setdefault(name, []).append(event.payload_text)
                return True
            return False
        return False

    def _check_timer(self, action: Action, event: RecordedEvent) -> None:
        fire_at = event.fields.get("fire_at_ms")
        if not isinstance(fire_at, int) or event.timestamp_ms is None or action.delay_ms is None:
            return
        recorded = fire_at - event.timestamp_ms
        if abs(recorded - action.delay_ms) > max(1000, recorded // 10):
            self.warnings.append(
                Warning_(
                    "timer_delay_changed",
                    f"Code schedules a {action.delay_ms} ms timer where history recorded about {recorded} ms "
                    f"(event #{event.event_id}); duroxide matches timers by position and keeps the recorded one.",
                    event,
                )
            )
