"""What workflow and activity code sees: ``ctx`` and the durable tasks it yields."""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._errors import (
    ActivityError,
    ModelValidationError,
    PayloadError,
    TaskFailedError,
    sub_workflow_error,
    task_error_from_engine,
)
from ..models import ChatMessage, Outcome, RaceResult, RetryPolicy
from ._events import note_event_model
from ._json import JSON_SCALARS, strip_timestamps, to_json_value, validate_model

if TYPE_CHECKING:
    from duroxide import ActivityContext as _DxActivityContext
    from duroxide import OrchestrationContext as _DxOrchestrationContext

    from ._registry import WorkflowDefinition, WorkflowRegistry

__all__ = ["ActivityContext", "DurableTask", "KeyValueStore", "PiCalls", "WorkflowContext", "current_activity"]

PI_ACTIVITIES = {
    "llm": "__pi_llm",
    "tool": "__pi_tool",
    "skill": "__pi_skill",
    "send_message": "__pi_sendMessage",
    "prompt": "__pi_prompt",
}
"""The activity names behind ``ctx.pi``, as pi-duroxide names them."""


def _identity(value: Any) -> Any:
    return value


class DurableTask:
    """A unit of durable work; ``yield`` it from a workflow to run it and get its result.

    Tasks are made by ``ctx`` methods (``ctx.schedule_activity``, ``ctx.pi.llm``, ...); do
    not build them by hand, and treat their fields as read-only.
    """

    # A plain slotted class, not a frozen dataclass: one is made for every recorded step of
    # every replay, and a frozen dataclass's __init__ costs three times as much (0.77 us).
    __slots__ = ("again", "composable", "decode", "descriptor", "kind", "parts")

    kind: str
    """What the task does: activity, timer, event, sub_workflow, all, race, ..."""
    descriptor: dict[str, Any]
    """The engine's description of the task."""
    decode: Callable[[Any], Any]
    """Turns the engine's result into the value the workflow receives."""
    composable: bool
    """Whether ``ctx.all``/``ctx.race`` accept it."""
    parts: tuple[DurableTask, ...]
    """The tasks a ``race`` combines (to type the error of the one that failed)."""
    again: Callable[[], DurableTask] | None
    """For a typed event wait: the same wait again, when the data received does not fit the model."""

    def __init__(
        self,
        kind: str,
        descriptor: dict[str, Any],
        decode: Callable[[Any], Any] = _identity,
        composable: bool = True,
        parts: tuple[DurableTask, ...] = (),
        again: Callable[[], DurableTask] | None = None,
    ) -> None:
        self.kind = kind
        self.descriptor = descriptor
        self.decode = decode
        self.composable = composable
        self.parts = parts
        self.again = again

    def error(self, message: str) -> TaskFailedError:
        """The typed error for the engine's failure ``message`` of this task."""
        if self.kind == "sub_workflow":
            return sub_workflow_error(
                message, workflow=self.descriptor.get("name"), instance_id=self.descriptor.get("instanceId")
            )
        error = task_error_from_engine(message)
        if isinstance(error, ActivityError):
            return error
        failable = [t for t in self.parts if t.kind not in ("timer", "event")]
        children = [t for t in failable if t.kind == "sub_workflow"]
        if children and len(children) == len(failable):
            # Timers and events do not fail: the error is a child's.
            child = children[0] if len(children) == 1 else None
            return sub_workflow_error(
                message,
                workflow=child.descriptor.get("name") if child else None,
                instance_id=child.descriptor.get("instanceId") if child else None,
            )
        return error

    def __repr__(self) -> str:
        name = self.descriptor.get("name")
        return f"DurableTask({self.kind}{', ' + repr(name) if name else ''})"


def _ms(value: int | float | timedelta, what: str) -> int:
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = value
    else:
        msg = f"{what} must be milliseconds (a number) or a timedelta, not {value!r}."
        raise PayloadError(msg)
    if ms < 0:
        msg = f"{what} must not be negative (got {value!r})."
        raise PayloadError(msg)
    return int(ms)


def _datetime_from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)


class KeyValueStore:
    """Durable per-instance key-value storage; values are JSON.

    Example:
        ctx.kv.set("progress", {"done": 3})
        ctx.kv.get("progress")          # {"done": 3}
    """

    def __init__(self, dctx: _DxOrchestrationContext, instance_id: str) -> None:
        self._dctx = dctx
        self._instance_id = instance_id

    def set(self, key: str, value: Any) -> None:
        """Store ``value`` (any JSON value) under ``key``; no yield needed."""
        text = json.dumps(to_json_value(value, what=f"the kv value for {key!r}"))
        self._dctx.set_kv_value(str(key), text)

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        raw = self._dctx.get_kv_value(str(key))
        return default if raw is None else json.loads(raw)

    def keys(self) -> list[str]:
        """The keys set on this instance."""
        return list(self._dctx.get_kv_all_keys())

    def items(self) -> dict[str, Any]:
        """Every key with its value."""
        return {k: json.loads(v) for k, v in self._dctx.get_kv_all_values().items()}

    def delete(self, key: str) -> None:
        """Remove ``key``."""
        self._dctx.clear_kv_value(str(key))

    def clear(self) -> None:
        """Remove every key."""
        self._dctx.clear_all_kv_values()

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._dctx.get_kv_value(key) is not None


class PiCalls:
    """``ctx.pi``: durable calls back into the agent host (LLM, tools, skills, messages).

    Each call is an activity; its result is persisted, so a replay never calls the host again.
    ``timestamp`` keys are stripped from llm, prompt and skill inputs so that replays match.
    """

    def __init__(self, ctx: WorkflowContext) -> None:
        self._ctx = ctx

    def llm(self, messages: Sequence[ChatMessage | dict[str, Any]], **options: Any) -> DurableTask:
        """Call the LLM with ``messages``; yields the assistant's reply."""
        if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
            msg = "ctx.pi.llm(messages) takes a list of messages like [{'role': 'user', 'content': '...'}]."
            raise PayloadError(msg)
        payload = {"messages": to_json_value(list(messages), what="ctx.pi.llm messages"), "options": options}
        return self._ctx._activity(PI_ACTIVITIES["llm"], strip_timestamps(to_json_value(payload, what="ctx.pi.llm")))

    def tool(self, name: str, args: dict[str, Any] | None = None) -> DurableTask:
        """Run one of the agent's tools (``bash``, ``read``, ...); yields its result."""
        return self._ctx._activity(PI_ACTIVITIES["tool"], {"name": name, "args": args or {}})

    def skill(self, name: str, input: Any = None) -> DurableTask:
        """Run a skill (its markdown as system prompt) on ``input``; yields the reply."""
        payload = to_json_value({"name": name, "input": input}, what="ctx.pi.skill")
        return self._ctx._activity(PI_ACTIVITIES["skill"], strip_timestamps(payload))

    def send_message(self, content: Any) -> DurableTask:
        """Append a message to the agent session."""
        return self._ctx._activity(PI_ACTIVITIES["send_message"], {"content": content})

    def prompt(self, prompt: str, **options: Any) -> DurableTask:
        """Run a full agent turn on ``prompt``; yields the final reply."""
        payload = to_json_value({"prompt": prompt, "options": options}, what="ctx.pi.prompt")
        return self._ctx._activity(PI_ACTIVITIES["prompt"], strip_timestamps(payload))


class WorkflowContext:
    """``ctx``: what a workflow uses to do durable work. Every method is replay-safe.

    Methods that return a ``DurableTask`` must be yielded; the rest (custom status, kv,
    tracing) take effect at once.

    Example:
        def deploy(ctx, input):
            build = yield ctx.pi.tool("bash", {"command": "make build"})
            ctx.set_custom_status("awaiting-approval")
            decision = yield ctx.wait_for_event("deploy-decision")
            return {"status": "deployed" if decision["action"] == "approve" else "rejected"}
    """

    def __init__(
        self,
        dctx: _DxOrchestrationContext,
        definition: WorkflowDefinition,
        registry: WorkflowRegistry,
    ) -> None:
        self._dctx = dctx
        self._definition = definition
        self._registry = registry
        self.pi = PiCalls(self)
        """Durable calls into the agent host."""
        self.kv = KeyValueStore(dctx, dctx.instance_id)
        """Durable per-instance key-value storage."""

    # --- identity ---------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """This instance's id."""
        return str(self._dctx.instance_id)

    @property
    def workflow_name(self) -> str:
        """The workflow's registered name."""
        return self._definition.name

    @property
    def version(self) -> str:
        """The code version this instance runs."""
        return self._definition.version

    @property
    def execution_id(self) -> int:
        """The current execution (1, then +1 after each continue-as-new)."""
        return int(self._dctx.execution_id)

    # --- activities ---------------------------------------------------------------------

    def _activity(self, name: str, input: Any, tag: str | None = None) -> DurableTask:
        # An activity that is not registered (yet) is not an error: its cell may run later. The
        # engine sets the call aside and retries it; the instance's state says what it waits for.
        # Made again for every recorded step of every replay: a scalar input skips the JSON walk.
        data = input if type(input) in JSON_SCALARS else to_json_value(input, what=f"the input of activity {name!r}")
        descriptor: dict[str, Any] = self._dctx.schedule_activity(name, data)
        if tag is not None:
            descriptor = {**descriptor, "tag": tag}
        return DurableTask("activity", descriptor)

    def schedule_activity(self, name: str, input: Any = None, *, tag: str | None = None) -> DurableTask:
        """Run the registered activity ``name`` with ``input``; yields its return value.

        Args:
            name: A name given to ``register_activity``.
            input: Any JSON value (or pydantic model).
            tag: Route the activity to workers with this tag.
        """
        return self._activity(name, input, tag)

    def schedule_activity_with_retry(
        self,
        name: str,
        input: Any = None,
        retry: RetryPolicy | Mapping[str, Any] | None = None,
        *,
        attempts: int | None = None,
        timeout: timedelta | int | None = None,
        total_timeout: timedelta | int | None = None,
        backoff: str | None = None,
    ) -> DurableTask:
        """Run an activity, retrying failures; yields the first successful result.

        Give a ``RetryPolicy``, duroxide's dict (``{"max_attempts": 5, "timeout_ms": 2000,
        "total_timeout_ms": 10000, "backoff": "linear"}``), or the policy's fields as keywords
        (timeouts in ms or as timedelta). The last failure is raised at the yield when every
        attempt failed.

        Raises:
            PayloadError: the policy has unknown keys or invalid values; the message lists the
                accepted forms.
        """
        policy = _retry_policy(retry)
        updates: dict[str, Any] = {}
        if attempts is not None:
            updates["attempts"] = attempts
        if timeout is not None:
            updates["timeout"] = timedelta(milliseconds=_ms(timeout, "timeout"))
        if total_timeout is not None:
            updates["total_timeout"] = timedelta(milliseconds=_ms(total_timeout, "total_timeout"))
        if backoff is not None:
            updates["backoff"] = backoff
        if updates:
            policy = validate_model(RetryPolicy, {**policy.model_dump(), **updates}, what="The retry policy")  # type: ignore[assignment]
        assert isinstance(policy, RetryPolicy)
        retry_dict = {
            "max_attempts": policy.attempts,
            "timeout_ms": _ms(policy.timeout, "timeout") if policy.timeout else None,
            "total_timeout_ms": _ms(policy.total_timeout, "total_timeout") if policy.total_timeout else None,
            "backoff": policy.backoff,
        }
        data = to_json_value(input, what=f"the input of activity {name!r}")
        return DurableTask("activity", dict(self._dctx.schedule_activity_with_retry(name, data, retry_dict)))

    # --- time, ids, events ------------------------------------------------------------------

    def schedule_timer(self, delay: int | float | timedelta) -> DurableTask:
        """Sleep durably for ``delay`` (milliseconds or a timedelta); survives restarts."""
        return DurableTask("timer", self._dctx.schedule_timer(_ms(delay, "The timer delay")), decode=lambda _v: None)

    def wait_for_event(self, name: str, *, model: type[BaseModel] | None = None) -> DurableTask:
        """Wait for the event ``name`` (sent with ``rt.signal_workflow``); yields its data.

        With ``model`` (a pydantic model), the data is validated: the workflow receives a model
        instance, and senders (``rt.signal_workflow``, ``%workflow signal``, the dashboard's
        form, the agent's ``signal-workflow`` tool) are refused a payload that does not fit
        (``ModelValidationError``) while the instance keeps waiting. ``rt.waiting_for(id)``
        gives the model's JSON Schema to whoever sends.

        Example:
            class Approval(BaseModel):
                approved: bool
                comment: str = ""

            decision = yield ctx.wait_for_event("approval", model=Approval)
            if decision.approved: ...
        """
        event = str(name)
        if model is None:
            return DurableTask("event", self._dctx.wait_for_event(event))
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            msg = (
                f"wait_for_event({event!r}, model=...) takes a pydantic model class, not {model!r}. "
                "Define `class Approval(BaseModel): ...` and pass model=Approval."
            )
            raise PayloadError(msg)
        note_event_model(self.instance_id, event, model)
        what = f"The data of event {event!r}"

        def decode(raw: Any) -> Any:
            return validate_model(model, raw, what=what, instance_id=self.instance_id)

        return DurableTask(
            "event",
            self._dctx.wait_for_event(event),
            decode=decode,
            again=lambda: self.wait_for_event(event, model=model),
        )

    def utc_now(self) -> DurableTask:
        """Yields the current time as a timezone-aware UTC datetime, the same on replay."""
        return DurableTask("utc_now", self._dctx.utc_now(), decode=_datetime_from_ms, composable=False)

    def new_guid(self) -> DurableTask:
        """Yields a new GUID string, the same on replay."""
        return DurableTask("new_guid", self._dctx.new_guid(), decode=str, composable=False)

    # --- sub-workflows and continue-as-new ---------------------------------------------------

    def schedule_sub_orchestration(
        self, name: str, input: Any = None, *, instance_id: str | None = None
    ) -> DurableTask:
        """Run the workflow ``name`` as a child with its newest code; yields its output.

        Args:
            name: A registered workflow.
            input: The child's input (validated by its input model, if any).
            instance_id: The child's id; by default the engine derives one.
        """
        child = self._registry.workflow(name)
        data = _workflow_input(child, input, instance_id)
        if instance_id is None:
            descriptor = self._dctx.schedule_sub_orchestration_versioned(name, child.version, data)
        else:
            descriptor = self._dctx.schedule_sub_orchestration_versioned_with_id(name, child.version, instance_id, data)
        model = child.output_model

        def decode(value: Any) -> Any:
            return model.model_validate(value) if model is not None else value

        return DurableTask("sub_workflow", dict(descriptor), decode=decode)

    def continue_as_new(self, input: Any = None) -> DurableTask:
        """End this execution and start the workflow afresh with ``input`` and an empty history.

        The next execution runs the newest registered code of this workflow, which makes
        continue-as-new the place where a long-running loop picks up edits.
        """
        newest = self._registry.workflow(self._definition.name)
        data = _workflow_input(newest, input, self.instance_id)
        return DurableTask(
            "continue_as_new", self._dctx.continue_as_new_versioned(data, newest.version), composable=False
        )

    # --- composition ----------------------------------------------------------------------

    def all(self, tasks: Sequence[DurableTask], *, return_outcomes: bool = False) -> DurableTask:
        """Run ``tasks`` in parallel; yields their values in the order given.

        If a task fails, the yield raises its error (the others still ran). With
        ``return_outcomes=True`` it yields an ``Outcome`` per task instead and never raises.
        """
        tasks = list(tasks)
        _check_composable("ctx.all", tasks)
        decoders = [t.decode for t in tasks]

        def decode(results: Any) -> Any:
            outcomes = []
            for decoder, item in zip(decoders, results, strict=False):
                if isinstance(item, dict) and "err" in item:
                    outcomes.append(Outcome(ok=False, error=str(item["err"])))
                else:
                    value = item.get("ok") if isinstance(item, dict) else item
                    outcomes.append(Outcome(ok=True, value=decoder(value)))
            if return_outcomes:
                return outcomes
            for task, outcome in zip(tasks, outcomes, strict=False):
                if not outcome.ok:
                    raise task.error(outcome.error or "task failed")
            return [o.value for o in outcomes]

        return DurableTask("all", self._dctx.all([t.descriptor for t in tasks]), decode=decode, composable=False)

    def race(self, first: DurableTask, second: DurableTask) -> DurableTask:
        """Run two tasks; yields a ``RaceResult`` for whichever finishes first.

        The loser is cancelled. If the winner failed, the yield raises its error.

        Example:
            won = yield ctx.race(ctx.wait_for_event("approve"), ctx.schedule_timer(timedelta(hours=1)))
            if won.index == 1: ...  # timed out
        """
        tasks = [first, second]
        _check_composable("ctx.race", tasks)

        def decode(result: Any) -> RaceResult:
            index = int(result["index"])
            return RaceResult(index=index, value=tasks[index].decode(result.get("value")))

        return DurableTask(
            "race",
            self._dctx.race(first.descriptor, second.descriptor),
            decode=decode,
            composable=False,
            parts=(first, second),
        )

    # --- status, tracing ----------------------------------------------------------------------

    def set_custom_status(self, status: Any) -> None:
        """Publish progress (a string, or any JSON value); shown by get_workflow and the dashboard."""
        text = status if isinstance(status, str) else json.dumps(to_json_value(status, what="the custom status"))
        self._dctx.set_custom_status(text)

    def reset_custom_status(self) -> None:
        """Clear the custom status."""
        self._dctx.reset_custom_status()

    def get_custom_status(self) -> str | None:
        """The current custom status."""
        value = self._dctx.get_custom_status()
        return None if value is None else str(value)

    def trace_info(self, message: str) -> None:
        """Log at info level, once: unlike print(), it does not repeat on replay."""
        self._dctx.trace_info(message)

    def trace_warn(self, message: str) -> None:
        """Log at warning level, once per step."""
        self._dctx.trace_warn(message)

    def trace_error(self, message: str) -> None:
        """Log at error level, once per step."""
        self._dctx.trace_error(message)

    def trace_debug(self, message: str) -> None:
        """Log at debug level, once per step."""
        self._dctx.trace_debug(message)


_RETRY_FORMS = (
    "Give a pdn.RetryPolicy(attempts=3, timeout=timedelta(seconds=10), total_timeout=..., backoff=...), "
    "duroxide's dict {'max_attempts': 3, 'timeout_ms': 10000, 'total_timeout_ms': 60000, 'backoff': 'exponential'} "
    "(camelCase maxAttempts/timeoutMs/totalTimeoutMs too), or the keywords attempts=, timeout=, total_timeout=, "
    "backoff=; backoff is 'exponential', 'linear' or 'fixed'."
)
# duroxide's dict keys (snake and camel case, as its SDKs read them) and ours, to RetryPolicy fields.
_RETRY_KEYS = {
    "max_attempts": "attempts",
    "maxAttempts": "attempts",
    "attempts": "attempts",
    "timeout_ms": "timeout",
    "timeoutMs": "timeout",
    "timeout": "timeout",
    "total_timeout_ms": "total_timeout",
    "totalTimeoutMs": "total_timeout",
    "total_timeout": "total_timeout",
    "backoff": "backoff",
}


def _retry_policy(retry: Any) -> RetryPolicy:
    """A ``RetryPolicy`` from what ``schedule_activity_with_retry`` accepts (None means the defaults)."""
    if retry is None:
        return RetryPolicy()
    if isinstance(retry, RetryPolicy):
        return retry
    if not isinstance(retry, Mapping):
        msg = f"The retry policy {retry!r} ({type(retry).__name__}) is not one of the accepted forms. {_RETRY_FORMS}"
        raise PayloadError(msg)
    unknown = sorted(str(k) for k in retry if k not in _RETRY_KEYS)
    if unknown:
        msg = f"The retry policy has unknown keys {unknown}. {_RETRY_FORMS}"
        raise PayloadError(msg)
    fields: dict[str, Any] = {}
    for key, value in retry.items():
        field_name = _RETRY_KEYS[key]
        if field_name in fields:
            msg = f"The retry policy gives {field_name!r} twice ({key!r} and another spelling). {_RETRY_FORMS}"
            raise PayloadError(msg)
        if value is not None and field_name in ("timeout", "total_timeout"):
            value = timedelta(milliseconds=_ms(value, key))
        fields[field_name] = value
    try:
        policy = validate_model(
            RetryPolicy, {k: v for k, v in fields.items() if v is not None}, what="The retry policy"
        )
    except PayloadError as exc:
        msg = f"{exc} {_RETRY_FORMS}"
        raise PayloadError(msg, cause=exc) from exc
    assert isinstance(policy, RetryPolicy)
    return policy


def _check_composable(where: str, tasks: list[Any]) -> None:
    if where == "ctx.all" and not tasks:
        return
    for i, task in enumerate(tasks):
        if not isinstance(task, DurableTask):
            msg = f"{where} takes tasks made by ctx methods; item {i} is {task!r}."
            raise PayloadError(msg)
        if not task.composable:
            msg = (
                f"{where} cannot run {task.kind} tasks (item {i}); the engine supports activities, "
                "timers, events and sub-workflows there. Yield it on its own before or after."
            )
            raise PayloadError(msg)


def _workflow_input(definition: WorkflowDefinition, input: Any, instance_id: str | None) -> Any:
    if definition.input_model is not None:
        input = validate_model(
            definition.input_model, input, what=f"The input of workflow {definition.name!r}", instance_id=instance_id
        )
    return to_json_value(input, what=f"the input of workflow {definition.name!r}")


class ActivityContext:
    """``ctx`` of an activity: where it runs, tracing and cancellation."""

    def __init__(self, dctx: _DxActivityContext) -> None:
        self._dctx = dctx

    @property
    def instance_id(self) -> str:
        """The instance that scheduled this activity."""
        return str(self._dctx.instance_id)

    @property
    def workflow_name(self) -> str:
        """The workflow that scheduled this activity."""
        return str(self._dctx.orchestration_name)

    @property
    def activity_name(self) -> str:
        """This activity's name."""
        return str(self._dctx.activity_name)

    def is_cancelled(self) -> bool:
        """True once the engine cancelled this activity (it lost a race, or the instance ended)."""
        return bool(self._dctx.is_cancelled())

    def trace_info(self, message: str) -> None:
        """Log at info level."""
        self._dctx.trace_info(message)

    def trace_warn(self, message: str) -> None:
        """Log at warning level."""
        self._dctx.trace_warn(message)

    def trace_error(self, message: str) -> None:
        """Log at error level."""
        self._dctx.trace_error(message)


_CURRENT_ACTIVITY: contextvars.ContextVar[ActivityContext | None] = contextvars.ContextVar(
    "pi_duroxide_nb_current_activity", default=None
)


def current_activity() -> ActivityContext | None:
    """The activity running in this thread, or None outside activities.

    Agent hosts use it to learn which instance a ``ctx.pi`` call came from (to file
    transcript entries under it, for example) without widening their interface.
    """
    return _CURRENT_ACTIVITY.get()


def drive(
    definition: WorkflowDefinition,
    registry: WorkflowRegistry,
    dctx: _DxOrchestrationContext,
    raw_input: Any,
) -> Iterator[dict[str, Any]]:
    """Run the user's generator under the engine, translating tasks, values and errors.

    The engine's driver sends raw results and throws bare ``Exception(message)``; here those
    become decoded values and typed ``TaskFailedError``s raised at the user's ``yield``.
    """
    ctx = WorkflowContext(dctx, definition, registry)
    value: Any = raw_input
    if definition.input_model is not None:
        value = validate_model(
            definition.input_model,
            raw_input,
            what=f"The input of workflow {definition.name!r}",
            instance_id=ctx.instance_id,
        )
    gen = definition.fn(ctx, value)
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            item = gen.send(send) if throw is None else gen.throw(throw)
        except StopIteration as stop:
            output = _workflow_output(definition, stop.value, ctx.instance_id)
            return output  # type: ignore[no-any-return]
        send, throw = None, None
        if not isinstance(item, DurableTask):
            throw = PayloadError(
                f"Workflow {definition.name!r} yielded {item!r} ({type(item).__name__}), which is not a durable "
                "task. Yield the result of a ctx call, e.g. `yield ctx.schedule_activity(...)` or "
                "`yield ctx.pi.llm(...)`; plain values need no yield."
            )
            continue
        try:
            raw = yield item.descriptor
        except Exception as exc:  # the engine reports failed tasks as bare Exceptions
            throw = item.error(str(exc))
            continue
        while True:
            try:
                send = item.decode(raw)
            except ModelValidationError as exc:
                if item.again is None:
                    throw = exc
                    break
                # Data that does not fit the model reached the wait (a sender that could not
                # check it): the instance keeps waiting. Deterministic, so replay takes the same path.
                ctx.trace_warn(f"{exc} The instance keeps waiting for {item.descriptor.get('name')!r}.")
                item = item.again()
                try:
                    raw = yield item.descriptor
                except Exception as engine_exc:
                    throw = item.error(str(engine_exc))
                    break
                continue
            except TaskFailedError as exc:
                throw = exc
            break


def _workflow_output(definition: WorkflowDefinition, value: Any, instance_id: str) -> Any:
    if definition.output_model is not None:
        value = validate_model(
            definition.output_model, value, what=f"The output of workflow {definition.name!r}", instance_id=instance_id
        )
    return to_json_value(value, what=f"the return value of workflow {definition.name!r}")
