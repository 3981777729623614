"""``ReplayStepper``: re-run a persisted history one ``yield`` at a time; ``replay_check``."""

from __future__ import annotations

import copy
import inspect
import re
import reprlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._errors import PayloadError, PiDuroxideError, WorkflowNotFoundError
from ..engine import WorkflowContext, WorkflowDefinition, WorkflowRegistry, code_version, format_ref, function_source
from ._context import ReplayRegistry
from ._history import RecordedEvent, ReplayHistory, load_history
from ._history import parse_text as _parse
from ._matcher import Action, Record, ReplayRun, engine_action_text, engine_event_text

if TYPE_CHECKING:
    from ..engine import WorkflowRuntime

__all__ = [
    "Divergence",
    "ReplayDivergenceError",
    "ReplayOutcome",
    "ReplayStep",
    "ReplayStepper",
    "ReplayTask",
    "ReplayWarning",
    "replay_check",
]

_TASK_KINDS = ("activity", "timer", "event", "sub_workflow", "utc_now", "new_guid", "continue_as_new", "all", "race")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_LOCALS_LIMIT = 160
_MAX_LOCALS = 40
_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = 8
_repr.maxdict = 8
_repr.maxlevel = 3


def _safe_repr(value: Any) -> str:
    if isinstance(value, WorkflowContext):
        return f"<ctx {value.workflow_name!r} instance={value.instance_id!r}>"
    try:
        text = _repr.repr(value)
    except Exception as exc:  # a user object whose __repr__ raises must not break stepping
        text = f"<{type(value).__name__}: repr failed: {exc}>"
    # Addresses differ on every re-run; without them, a step's snapshot is the same each time.
    text = _ADDRESS.sub("", text)
    return text if len(text) <= _LOCALS_LIMIT else text[: _LOCALS_LIMIT - 3] + "..."


# --- public value objects -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayTask:
    """The durable task a ``yield`` handed to the engine.

    Example:
        step.task.kind, step.task.name, step.task.input     # 'activity', 'fetch', 'https://api'
    """

    kind: str
    """activity, timer, event, sub_workflow, utc_now, new_guid, continue_as_new, all, race."""
    name: str | None = None
    """Activity, event or workflow name."""
    input: Any = None
    """The parsed input (the JSON the engine compares byte for byte is ``input_text``)."""
    input_text: str | None = None
    delay_ms: int | None = None
    """For timers: the delay the code asks for."""
    children: tuple[ReplayTask, ...] = ()
    """For ``all`` and ``race``: the tasks inside."""

    def describe(self) -> str:
        """One line, e.g. ``activity fetch("https://api")``."""
        if self.children:
            return f"{self.kind}[{', '.join(c.describe() for c in self.children)}]"
        if self.kind == "timer":
            return f"timer {self.delay_ms} ms"
        text = self.kind + (f" {self.name}" if self.name else "")
        return text + (f"({self.input_text})" if self.input_text not in (None, "") else "")


def _task_from_descriptor(descriptor: Any) -> ReplayTask:
    if not isinstance(descriptor, dict):
        return ReplayTask(kind="unknown", input=descriptor)
    kind = descriptor.get("type")
    if kind in ("join", "select"):
        children = tuple(_task_from_descriptor(t) for t in descriptor.get("tasks") or [])
        return ReplayTask(kind="all" if kind == "join" else "race", children=children)
    names = {
        "activity": "activity",
        "activityWithRetry": "activity",
        "timer": "timer",
        "waitEvent": "event",
        "utcNow": "utc_now",
        "newGuid": "new_guid",
        "continueAsNew": "continue_as_new",
        "continueAsNewVersioned": "continue_as_new",
    }
    public = names.get(str(kind), "sub_workflow" if str(kind).startswith("subOrchestration") else str(kind))
    text = descriptor.get("input")
    return ReplayTask(
        kind=public,
        name=descriptor.get("name"),
        input=_parse(text) if isinstance(text, str) else text,
        input_text=text if isinstance(text, str) else None,
        delay_ms=descriptor.get("delayMs"),
    )


@dataclass(frozen=True)
class Divergence:
    """Where code and history part ways, with duroxide's own reason.

    Example:
        d = stepper.divergence
        print(d.reason)                  # 'schedule mismatch'
        print(d.expected.describe())     # what history recorded
        print(d.actual)                  # what the code emitted instead
    """

    step: int
    """The step at which the engine would fail the instance."""
    reason: str
    """duroxide's reason: schedule mismatch, history schedule but no emitted action, ..."""
    expected: RecordedEvent | None
    """The history event that did not match."""
    actual: str | None
    """What the code emitted there (None when it emitted nothing)."""
    message: str
    """The full explanation, starting with ``nondeterministic: <reason>``."""
    engine_message: str
    """The error the engine records, in its own (Rust debug) notation; ``...`` marks wall-clock values."""


@dataclass(frozen=True)
class ReplayWarning:
    """A difference between code and history that duroxide accepts silently."""

    kind: str
    """timer_delay_changed, custom_status_changed, sub_workflow_id_changed, returned_early or outcome_changed."""
    message: str
    event_id: int | None = None


@dataclass(frozen=True)
class ReplayOutcome:
    """How the replayed code ends against this history."""

    status: str
    """completed, failed, continued_as_new, cancelled, running (history ends first) or nondeterministic."""
    output: Any = None
    output_text: str | None = None
    """The output as the engine would store it (``json.dumps``)."""
    error: str | None = None
    """For failed: the exception's last traceback line; for nondeterministic: the divergence message."""
    continued_input: str | None = None
    """For continued_as_new: the next execution's input text."""


@dataclass(frozen=True)
class ReplayStep:
    """An immutable snapshot of the replay, with the code paused at one ``yield``.

    Example:
        snap = stepper.step()
        snap.index, snap.task.describe(), snap.from_history, snap.line, snap.value
    """

    index: int
    """Step number, from 1: the n-th ``yield`` (the last step may be the code's end)."""
    kind: str
    """``yield`` (paused at a yield), ``end`` (returned, failed or continued as new) or ``divergence``."""
    task: ReplayTask | None
    """The task yielded (None for an end step)."""
    events: tuple[RecordedEvent, ...]
    """The history events matched since the previous step (schedules, completions, status, ...)."""
    value: Any = None
    """The value the engine sends back into the generator (its raw JSON form)."""
    error: str | None = None
    """The error thrown back into the generator instead, when the task failed."""
    from_history: bool = True
    """True if the step was rebuilt from history; False if it lies beyond it (would run live)."""
    status: str = "replayed"
    """replayed (resolved from history), waiting (scheduled in history, no result yet), new (would run live)."""
    line: int | None = None
    """The source line the generator is paused at."""
    function: str | None = None
    """The function holding that line (the workflow, or a helper it ``yield from``s)."""
    locals: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """The paused frame's local variables as safe, truncated reprs."""
    custom_status: str | None = None
    """The custom status as seen so far."""
    kv: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """KV entries as set so far (parsed)."""
    traces: tuple[str, ...] = ()
    """``ctx.trace_*`` messages logged so far."""
    pending: tuple[str, ...] = ()
    """At the end of history: the actions that would be scheduled live next."""
    outcome: ReplayOutcome | None = None
    """For the end step: how the code ended."""
    divergence: Divergence | None = None
    """For a divergence step: what did not match."""

    @property
    def event_kinds(self) -> tuple[str, ...]:
        """The kinds of ``events``."""
        return tuple(e.kind for e in self.events)


class ReplayDivergenceError(PiDuroxideError):
    """Code and a recorded history diverge: the engine would fail an instance with this history.

    Example:
        with pytest.raises(pdn.ReplayDivergenceError) as err:
            pdn.replay_check("tests/replay_fixtures/deploy.json", deploy_v2)
        assert err.value.divergence.reason == "schedule mismatch"
    """

    def __init__(self, message: str, *, divergence: Divergence | None, warnings: tuple[ReplayWarning, ...]) -> None:
        super().__init__(message)
        self._divergence = divergence
        self._warnings = warnings

    @property
    def divergence(self) -> Divergence | None:
        """The nondeterminism found (None when only ``strict`` warnings failed the check)."""
        return self._divergence

    @property
    def warnings(self) -> tuple[ReplayWarning, ...]:
        """The silent differences found."""
        return self._warnings


# --- the stepper -----------------------------------------------------------------------------------

WorkflowSource = Callable[..., Any] | WorkflowDefinition


class ReplayStepper:
    """Re-run a persisted history one ``yield`` at a time, with duroxide's matching rules.

    Example:
        stepper = pdn.ReplayStepper(rt, iid)                 # the code the instance started with
        stepper = pdn.ReplayStepper(rt, iid, workflow=edited) # or an edited version
        snap = stepper.step()
        stepper.back(); stepper.goto(3); stepper.run_to_end()
        stepper.divergence                                    # None, or expected vs actual

    Generators cannot rewind, so ``back()`` and ``goto()`` re-run the code from the start
    up to the step asked for, building a rich snapshot only for that one; the latest
    snapshots are kept in a small cache.
    """

    def __init__(
        self,
        rt: WorkflowRuntime | None = None,
        instance_id: str | None = None,
        *,
        workflow: WorkflowSource | None = None,
        execution: int | None = None,
        history: Any = None,
        registry: WorkflowRegistry | None = None,
        cache_size: int = 64,
    ) -> None:
        """Open a history and the code to replay against it.

        Args:
            rt: The runtime whose store holds the instance (or None with ``history=``).
            instance_id: The instance to replay.
            workflow: The code to replay (a generator function or a definition); by default
                the version the execution started with, from the registry.
            execution: Which execution (1, then +1 after each continue-as-new); the current one by default.
            history: Instead of ``rt``: ``rt.history(...)`` events, a ``ReplayHistory``, or a JSON export path.
            registry: Where to look up the started version and sub-workflows; ``rt.registry`` by default.
            cache_size: How many rich snapshots to keep (0 keeps only the current one).

        Raises:
            InstanceNotFoundError: no such instance (or execution) in the store.
            WorkflowNotFoundError: the started version is not registered and no ``workflow`` was given.
            PayloadError: the history cannot be read.
        """
        if history is None:
            if rt is None or instance_id is None:
                msg = "ReplayStepper needs (rt, instance_id), or history=... (see ReplayStepper.from_history)."
                raise PayloadError(msg)
            history = ReplayHistory.from_runtime(rt, instance_id, execution_id=execution)
            registry = registry if registry is not None else rt.registry
        self._source = (rt, instance_id) if rt is not None and instance_id is not None else None
        self._seen: tuple[Any, ...] | None = None
        """The instance's (last change, status, execution) when the history was last read."""
        self._history = load_history(history)
        self._registry = registry
        self._definition = _resolve_definition(self._history, workflow, registry)
        self._replay_registry = ReplayRegistry(registry)
        self._cache: OrderedDict[int, ReplayStep] = OrderedDict()
        self._cache_size = max(0, int(cache_size))
        self._cursor = 0
        self._total: int | None = None
        self._verdict: tuple[ReplayOutcome, Divergence | None, tuple[ReplayWarning, ...]] | None = None
        self._restart()

    @classmethod
    def from_history(
        cls, events: Any, workflow: WorkflowSource, *, registry: WorkflowRegistry | None = None, cache_size: int = 64
    ) -> ReplayStepper:
        """Replay ``events`` (``rt.history()`` output, a ``ReplayHistory`` or a JSON export) with ``workflow``."""
        return cls(history=events, workflow=workflow, registry=registry, cache_size=cache_size)

    def __repr__(self) -> str:
        return (
            f"<ReplayStepper {self._definition.name!r} instance={self._history.instance_id!r} "
            f"execution={self._history.execution_id} step={self._cursor}>"
        )

    # --- what is being replayed ---------------------------------------------------------------

    @property
    def history(self) -> ReplayHistory:
        """The execution being replayed."""
        return self._history

    @property
    def definition(self) -> WorkflowDefinition:
        """The code being replayed."""
        return self._definition

    @property
    def source(self) -> str | None:
        """The workflow function's source text, when Python can find it."""
        return self._definition.source or function_source(self._definition.fn)

    @property
    def source_first_line(self) -> int:
        """The file line number of the first line of ``source``."""
        code = getattr(self._definition.fn, "__code__", None)
        return int(code.co_firstlineno) if code is not None else 1

    @property
    def finished(self) -> bool:
        """True when the history holds the execution's end (it will not grow any more)."""
        return any(e.is_terminal for e in self._history.events)

    def reload(self) -> bool:
        """Read the history again (a running instance moves on); returns True if it grew.

        The current step stays where it was; the step count and verdict are recomputed. Only
        for a stepper opened on a runtime (``ReplayStepper(rt, iid)``); a finished execution
        is not read again.
        """
        if self._source is None or self.finished:
            return False
        rt, instance_id = self._source
        # One cheap read first: the history is read again only when the instance has moved.
        state = rt.get_workflow(instance_id)
        seen = (state.updated_at, state.status, state.execution_id)
        if seen == self._seen:
            return False
        self._seen = seen
        fresh = ReplayHistory.from_runtime(rt, instance_id, execution_id=self._history.execution_id)
        if len(fresh.events) <= len(self._history.events):
            return False
        self._history = fresh
        self._cache.clear()
        self._total = None
        self._verdict = None
        self._restart()
        return True

    # --- navigation -----------------------------------------------------------------------------

    @property
    def index(self) -> int:
        """The current step (0 before the first ``step()``)."""
        return self._cursor

    @property
    def current(self) -> ReplayStep | None:
        """The current snapshot (None before the first ``step()``)."""
        return self._snapshot(self._cursor) if self._cursor else None

    @property
    def done(self) -> bool:
        """True when the current step is the last one."""
        return self._total is not None and self._cursor >= self._total

    @property
    def total(self) -> int:
        """The number of steps (replays to the end once to count them)."""
        if self._total is None:
            self._verdict_run()
        assert self._total is not None
        return self._total

    def step(self) -> ReplayStep:
        """Advance one ``yield`` and return its snapshot (at the end, the last snapshot again)."""
        snap = self._snapshot(self._cursor + 1)
        self._cursor = snap.index
        return snap

    def back(self) -> ReplayStep:
        """Go back one step (re-running the code from the start up to it when not cached).

        Raises:
            PayloadError: already at the first step.
        """
        if self._cursor <= 1:
            msg = "Already at the first step; there is nothing before it. Use step() to go forward."
            raise PayloadError(msg)
        return self.goto(self._cursor - 1)

    def goto(self, index: int) -> ReplayStep:
        """Jump to step ``index`` (from 1); past the end it stops at the last step.

        Raises:
            PayloadError: ``index`` is below 1.
        """
        if not isinstance(index, int) or index < 1:
            msg = f"Steps are numbered from 1; got {index!r}. goto(1) is the first step; stepper.total counts them."
            raise PayloadError(msg)
        snap = self._snapshot(index)
        self._cursor = snap.index
        return snap

    def first(self) -> ReplayStep:
        """Go to step 1."""
        return self.goto(1)

    def run_to_end(self) -> ReplayStep:
        """Step until the last step (the code's end, a divergence, or the end of history)."""
        snap = self.current or self.step()
        while not self.done:
            snap = self.step()
        return snap

    def step_to(self, kind: str) -> ReplayStep:
        """Step forward to the next step that matched an event of ``kind`` or yielded a task of that kind.

        ``kind`` is an event kind (``TimerFired``) or a task kind (``timer``); stepping stops
        at the last step when no later step matches.

        Raises:
            PayloadError: ``kind`` is neither a task kind nor the kind of any event in this history.
        """
        event_kinds = sorted({e.kind for e in self._history.events})
        if kind not in _TASK_KINDS and kind not in event_kinds:
            msg = (
                f"No step can match {kind!r}: it is neither a task kind ({', '.join(_TASK_KINDS)}) nor the kind "
                f"of an event in this history ({', '.join(event_kinds)}). Check the spelling."
            )
            raise PayloadError(msg)
        snap = self.step()
        while not (kind in snap.event_kinds or (snap.task is not None and snap.task.kind == kind)) and not self.done:
            snap = self.step()
        return snap

    def steps(self) -> list[ReplayStep]:
        """Every snapshot, from a fresh replay (does not move the cursor)."""
        run = ReplayRun(self._history, self._definition, self._replay_registry)
        return [self._build(i, rec, run) for i, rec in enumerate(run.records(), start=1)]

    # --- verdict -----------------------------------------------------------------------------------

    @property
    def divergence(self) -> Divergence | None:
        """The first nondeterminism between code and history, or None."""
        return self._verdict_run()[1]

    @property
    def outcome(self) -> ReplayOutcome:
        """How the code ends against this history (what the engine would record)."""
        return self._verdict_run()[0]

    @property
    def warnings(self) -> tuple[ReplayWarning, ...]:
        """Differences duroxide accepts silently (changed timer delays, early returns, ...)."""
        return self._verdict_run()[2]

    # --- internals --------------------------------------------------------------------------------

    def _restart(self) -> None:
        self._run = ReplayRun(self._history, self._definition, self._replay_registry)
        self._records = self._run.records()
        self._position = 0  # records pulled from the current run

    def _pull(self) -> Record | None:
        try:
            record = next(self._records)
        except StopIteration:
            self._total = self._position
            return None
        self._position += 1
        return record

    def _snapshot(self, index: int) -> ReplayStep:
        if self._total is not None:
            index = min(index, self._total)
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        if index <= self._position:
            self._restart()
        while self._position < index - 1:
            if self._pull() is None:
                break
        record = self._pull()
        if record is None:  # past the end: the last step
            assert self._total is not None
            if self._total == 0:
                msg = "This replay has no steps."
                raise PayloadError(msg)
            return self._snapshot(self._total)
        snap = self._build(self._position, record, self._run)
        if record.final:
            self._total = self._position
        self._cache[index] = snap
        while len(self._cache) > max(1, self._cache_size):
            self._cache.popitem(last=False)
        return snap

    def _build(self, index: int, record: Record, run: ReplayRun) -> ReplayStep:
        frame = run.frame  # None once the code has returned or raised
        local_reprs: dict[str, str] = {}
        if frame is not None:
            for name, value in list(frame.f_locals.items())[:_MAX_LOCALS]:
                local_reprs[name] = _safe_repr(value)
        sent: Any = None
        error: str | None = None
        if record.result is not None:
            ok, raw = record.result
            # A copy: the generator receives the same object and may change it on later steps.
            sent, error = (copy.deepcopy(raw), None) if ok else (None, str(raw))
        status = "replayed"
        if record.kind == "step" and record.result is None:
            status = "waiting" if record.from_history else "new"
        divergence = None
        if record.kind == "divergence":
            divergence = _divergence(index, record)
        outcome = None
        if record.kind == "end":
            outcome = _outcome(record)
        return ReplayStep(
            index=index,
            kind="yield" if record.kind == "step" else record.kind,
            task=_task_from_descriptor(record.descriptor) if record.descriptor is not None else None,
            events=tuple(record.events),
            value=sent,
            error=error,
            from_history=record.kind != "step" or record.result is not None,
            status=status if record.kind == "step" else record.kind,
            line=frame.f_lineno if frame is not None else None,
            function=frame.f_code.co_name if frame is not None else None,
            locals=MappingProxyType(local_reprs),
            custom_status=run.ctx.custom_status,
            kv=MappingProxyType({k: _parse(v) for k, v in run.ctx.kv.items()}),
            traces=tuple(f"{level}: {text}" for level, text in run.ctx.traces),
            pending=tuple(a.describe() for a in record.pending),
            outcome=outcome,
            divergence=divergence,
        )

    def _verdict_run(self) -> tuple[ReplayOutcome, Divergence | None, tuple[ReplayWarning, ...]]:
        if self._verdict is None:
            outcome, divergence, warnings, count = _full_run(self._history, self._definition, self._replay_registry)
            self._verdict = (outcome, divergence, warnings)
            self._total = count
        return self._verdict


def _full_run(
    history: ReplayHistory, definition: WorkflowDefinition, registry: ReplayRegistry
) -> tuple[ReplayOutcome, Divergence | None, tuple[ReplayWarning, ...], int]:
    run = ReplayRun(history, definition, registry)
    last: Record | None = None
    count = 0
    for record in run.records():
        last = record
        count += 1
    assert last is not None
    divergence = _divergence(count, last) if last.kind == "divergence" else None
    if last.kind == "end":
        outcome = _outcome(last)
    elif divergence is not None:
        outcome = ReplayOutcome(status="nondeterministic", error=divergence.message)
    else:
        outcome = ReplayOutcome(status="running")
    cancel = next((e for e in history.events if e.kind == "OrchestrationCancelRequested"), None)
    if cancel is not None and divergence is None:
        # The engine ends a turn that saw a cancellation as cancelled, whatever the code did.
        reason = cancel.fields.get("reason")
        outcome = ReplayOutcome(status="cancelled", error=f"canceled: {reason}" if reason else "canceled")
    warnings = [ReplayWarning(w.kind, w.message, w.event.event_id if w.event else None) for w in run.warnings]
    recorded = history.terminal
    if recorded is not None and divergence is None:
        differs = _outcome_differs(outcome, recorded)
        if differs:
            warnings.append(ReplayWarning("outcome_changed", differs, recorded.event_id))
    return outcome, divergence, tuple(warnings), count


def _outcome(record: Record) -> ReplayOutcome:
    if record.continued_input is not None:
        return ReplayOutcome(status="continued_as_new", continued_input=record.continued_input)
    if record.error is not None:
        return ReplayOutcome(status="failed", error=record.error)
    return ReplayOutcome(status="completed", output=_parse(record.output_text), output_text=record.output_text)


def _last_line(text: str | None) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def _outcome_differs(outcome: ReplayOutcome, recorded: RecordedEvent) -> str | None:
    if recorded.kind == "OrchestrationCompleted":
        if outcome.status != "completed" or outcome.output_text != recorded.payload_text:
            got = outcome.output_text if outcome.status == "completed" else outcome.status
            return f"History recorded output {recorded.payload_text} but the code now ends with {got}."
    elif recorded.kind == "OrchestrationFailed":
        if (recorded.error or "").startswith("nondeterministic"):
            return None
        if outcome.status == "cancelled" and outcome.error == recorded.error:
            return None
        if outcome.status != "failed" or _last_line(outcome.error) != _last_line(recorded.error):
            return f"History recorded failure {_last_line(recorded.error)!r} but the code now ends as {outcome.status}."
    elif recorded.kind == "OrchestrationContinuedAsNew":
        if outcome.status != "continued_as_new" or outcome.continued_input != recorded.input_text:
            return (
                f"History recorded continue-as-new with {recorded.input_text} "
                f"but the code now ends as {outcome.status}."
            )
    return None


def _divergence(step: int, record: Record) -> Divergence:
    reason = record.reason or "nondeterminism"
    expected = record.expected
    actual = record.actual.describe() if isinstance(record.actual, Action) else None
    parts = [f"nondeterministic: {reason}"]
    if expected is not None:
        parts.append(f"history has {expected.describe()}")
    parts.append(f"code emitted {actual}" if actual else "code emitted nothing here")
    message = parts[0] + " (" + "; ".join(parts[1:]) + ")."
    engine = f"nondeterministic: {reason}"
    if reason.endswith(" mismatch") and isinstance(record.actual, Action) and expected is not None:
        engine += f": action={engine_action_text(record.actual)} vs event={engine_event_text(expected)}"
    return Divergence(
        step=step, reason=reason, expected=expected, actual=actual, message=message, engine_message=engine
    )


def _resolve_definition(
    history: ReplayHistory, workflow: WorkflowSource | None, registry: WorkflowRegistry | None
) -> WorkflowDefinition:
    if isinstance(workflow, WorkflowDefinition):
        return workflow
    started: WorkflowDefinition | None = None
    if registry is not None:
        try:
            started = registry.workflow(history.workflow_name, history.version or None)
        except WorkflowNotFoundError:
            started = None
    if workflow is None:
        if started is None:
            known = (
                [format_ref(d.name, d.version) for d in registry.versions(history.workflow_name)] if registry else []
            )
            hint = (
                f"Instance {history.instance_id!r} started on that version; its code as it ran is kept with the "
                f"store (rt.code_version({history.workflow_name!r}, {history.version!r}).source). To step through "
                "it, re-run the cell that defined it, or pass the code: ReplayStepper(rt, iid, workflow=fn)."
            )
            raise WorkflowNotFoundError(format_ref(history.workflow_name, history.version or "?"), known, hint=hint)
        return started
    if not inspect.isgeneratorfunction(workflow):
        msg = f"workflow= must be a generator function fn(ctx, input) (or a WorkflowDefinition), not {workflow!r}."
        raise PayloadError(msg)
    model_source = started
    if model_source is None and registry is not None:
        versions = registry.versions(history.workflow_name)
        model_source = versions[-1] if versions else None
    source = function_source(workflow)
    return WorkflowDefinition(
        name=history.workflow_name,
        fn=workflow,
        version=code_version(workflow),
        input_model=model_source.input_model if model_source else None,
        output_model=model_source.output_model if model_source else None,
        source=source,
    )


# --- the testing helper -------------------------------------------------------------------------


def replay_check(
    history: Any,
    workflow: WorkflowSource,
    *,
    registry: WorkflowRegistry | None = None,
    strict: bool = False,
) -> ReplayOutcome:
    """Replay ``history`` with ``workflow``; raise if the engine would find them nondeterministic.

    Keep histories as regression fixtures: export one with ``ReplayHistory.save`` (or
    ``rt.history``), check it in beside the test, and call ``replay_check`` on it after
    every edit of the workflow.

    Example:
        def test_deploy_still_replays():
            pdn.replay_check(Path(__file__).with_name("deploy.json"), deploy)

    Args:
        history: ``rt.history(...)`` events, a ``ReplayHistory``, a path to a JSON export or
            JSON text; or a store and an instance: ``(rt, instance_id)`` or
            ``("workflows.db", instance_id)`` (read safely, even while a runtime uses the file).
        workflow: The code to check.
        registry: For sub-workflow definitions and models.
        strict: Also raise on the differences duroxide accepts silently (changed timer
            delays, an early return, a different output).

    Returns:
        How the code ends against the history.

    Raises:
        ReplayDivergenceError: the code diverges from the history (or, with ``strict``, differs silently).
    """
    loaded = load_history(history)
    if registry is None and isinstance(history, tuple) and hasattr(history[0], "registry"):
        registry = history[0].registry
    definition = _resolve_definition(loaded, workflow, registry)
    outcome, divergence, warnings, _ = _full_run(loaded, definition, ReplayRegistry(registry))
    where = f"workflow {loaded.workflow_name!r} (instance {loaded.instance_id!r}, execution {loaded.execution_id})"
    if divergence is not None:
        msg = (
            f"The code of {where} no longer replays its recorded history: {divergence.message} The engine "
            f"would fail such an instance at step {divergence.step}. Instances in flight never need to replay "
            "edited code: each keeps the version it started on (a code version, or one you number with "
            "version=...; a new kernel restores it from the store), so register the change as a new version "
            "rather than re-using the old number. To move a long-running instance onto new code, let it call "
            "ctx.continue_as_new at a safe point. If the change is intended for this history, re-record it."
        )
        raise ReplayDivergenceError(msg, divergence=divergence, warnings=warnings)
    if strict and warnings:
        listed = "; ".join(w.message for w in warnings)
        msg = f"The code of {where} replays, but differs from its history in ways duroxide accepts: {listed}"
        raise ReplayDivergenceError(msg, divergence=None, warnings=warnings)
    return outcome
