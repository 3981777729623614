"""The one exception hierarchy of pi_duroxide_nb.

Every error says what happened, why it likely happened, and what to do about it.

Our exception hierarchy:

* PiDuroxideError
  + RegistrationError          - a workflow or activity cannot be registered as given
  + WorkflowNotFoundError      - no workflow of that name is registered
  + InstanceNotFoundError      - no instance with that id is in the store
  + InstanceExistsError        - an instance with that id already exists
  + InstanceRunningError       - the call needs a finished instance and this one still runs
  + InstanceFinishedError      - the call needs a running instance and this one has finished
  + PayloadError               - an input, signal, output or yielded value is not valid
    - ModelValidationError     - a payload failed its pydantic model
  + RuntimeStateError          - the runtime is not in a state that allows the call
  + WorkflowTimeoutError       - waiting for an instance timed out (also a TimeoutError)
  + NoAgentHostError           - a ``ctx.pi`` call ran with no agent host bound
  + TaskFailedError            - a durable task failed; raised inside workflow code
    - ActivityError            - an activity raised
    - SubWorkflowError         - a sub-workflow failed
  + EngineError                - the durable engine reported an unexpected error
    - StoreError               - the store file cannot be used (not a database, damaged, read-only)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = [
    "ActivityError",
    "EngineError",
    "InstanceExistsError",
    "InstanceFinishedError",
    "InstanceNotFoundError",
    "InstanceRunningError",
    "ModelValidationError",
    "NoAgentHostError",
    "PayloadError",
    "PiDuroxideError",
    "RegistrationError",
    "RuntimeStateError",
    "StoreError",
    "SubWorkflowError",
    "TaskFailedError",
    "WorkflowNotFoundError",
    "WorkflowTimeoutError",
]


class PiDuroxideError(Exception):
    """Base class of every error raised by pi_duroxide_nb."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        if cause is not None:
            self.__cause__ = cause

    @property
    def message(self) -> str:
        """The full message."""
        return str(self.args[0]) if self.args else ""


class RegistrationError(PiDuroxideError):
    """A workflow or activity cannot be registered as given."""


class WorkflowNotFoundError(PiDuroxideError):
    """No workflow of the requested name is registered."""

    def __init__(self, name: str, registered: Sequence[str], *, hint: str | None = None) -> None:
        known = ", ".join(repr(n) for n in sorted(registered)) or "none"
        msg = f"Workflow {name!r} is not registered. Registered workflows: {known}. " + (
            hint or "Register it with pdn.register_workflow (or run its %%workflow cell) first."
        )
        super().__init__(msg)
        self._name = name
        self._registered = tuple(sorted(registered))

    @property
    def name(self) -> str:
        """The name that was asked for."""
        return self._name

    @property
    def registered(self) -> tuple[str, ...]:
        """The names that are registered."""
        return self._registered


class InstanceNotFoundError(PiDuroxideError):
    """No instance with the requested id is in the store."""

    def __init__(self, instance_id: str) -> None:
        msg = (
            f"No workflow instance {instance_id!r} in this store. Check the id "
            "(rt.list_workflows() lists the instances) and that the runtime opened the "
            "database you expect."
        )
        super().__init__(msg)
        self._instance_id = instance_id

    @property
    def instance_id(self) -> str:
        """The id that was asked for."""
        return self._instance_id


class InstanceExistsError(PiDuroxideError):
    """An instance with the requested id already exists."""

    def __init__(self, instance_id: str) -> None:
        msg = (
            f"A workflow instance with id {instance_id!r} already exists, so nothing was "
            "started. Choose another instance_id, or leave it out to get a fresh one."
        )
        super().__init__(msg)
        self._instance_id = instance_id

    @property
    def instance_id(self) -> str:
        """The id that is taken."""
        return self._instance_id


class _InstanceStatusError(PiDuroxideError):
    """An instance is not in the status the call needs; carries its id and status."""

    def __init__(self, message: str, *, instance_id: str, status: str) -> None:
        super().__init__(message)
        self._instance_id = instance_id
        self._status = status

    @property
    def instance_id(self) -> str:
        """The instance."""
        return self._instance_id

    @property
    def status(self) -> str:
        """Its status: ``Running``/``Pending`` if running, ``Completed``/``Failed``/``Terminated`` if finished."""
        return self._status


class InstanceRunningError(_InstanceStatusError):
    """The call needs a finished instance (deleting it, for one) and this one is still running."""


class InstanceFinishedError(_InstanceStatusError):
    """The call needs a running instance (a signal, a cancel) and this one has finished; nothing was sent."""


class PayloadError(PiDuroxideError, ValueError):
    """An input, signal, output or yielded value is not valid; nothing was persisted."""


class ModelValidationError(PayloadError):
    """A payload failed validation against its pydantic model."""

    def __init__(
        self,
        message: str,
        *,
        fields: Sequence[str] = (),
        instance_id: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self._fields = tuple(fields)
        self._instance_id = instance_id

    @property
    def fields(self) -> tuple[str, ...]:
        """Dotted paths of the fields that failed."""
        return self._fields

    @property
    def instance_id(self) -> str | None:
        """The instance the payload was for, when known."""
        return self._instance_id


class RuntimeStateError(PiDuroxideError, RuntimeError):
    """The runtime is not in a state that allows the call."""


class WorkflowTimeoutError(PiDuroxideError, TimeoutError):
    """Waiting for a workflow instance timed out; the instance keeps running."""


class NoAgentHostError(PiDuroxideError):
    """A ``ctx.pi`` call ran while no agent host was bound to the runtime."""


class TaskFailedError(PiDuroxideError):
    """A durable task failed. Raised inside workflow code at the ``yield``; catch it there.

    Example:
        try:
            yield ctx.schedule_activity("fetch", url)
        except pdn.ActivityError as err:
            ctx.trace_warn(f"fetch failed: {err.error_message}")
    """

    def __init__(self, message: str, *, error_type: str | None = None, error_message: str | None = None) -> None:
        super().__init__(message)
        self._error_type = error_type
        self._error_message = error_message if error_message is not None else message

    @property
    def error_type(self) -> str | None:
        """The original exception's class name, when the engine reported one."""
        return self._error_type

    @property
    def error_message(self) -> str:
        """The original exception's message, without engine decoration."""
        return self._error_message


class ActivityError(TaskFailedError):
    """An activity raised; ``str(err)`` keeps the original message."""

    def __init__(
        self, message: str, *, activity: str, error_type: str | None = None, error_message: str | None = None
    ) -> None:
        super().__init__(message, error_type=error_type, error_message=error_message)
        self._activity = activity

    @property
    def activity(self) -> str:
        """The name of the activity that failed."""
        return self._activity


class SubWorkflowError(TaskFailedError):
    """A sub-workflow failed or was cancelled; raised at the parent's ``yield``.

    Example:
        try:
            report = yield ctx.schedule_sub_orchestration("build", input)
        except pdn.SubWorkflowError as err:
            ctx.trace_warn(f"{err.workflow} failed: {err.error_type}: {err.error_message}")

    ``error_type`` and ``error_message`` are the child's exception class and message (for
    example ``ActivityError`` and ``Activity 'fetch' call failed: ...``); ``details`` keeps
    the engine's full text (with the child's traceback). A cancelled child has ``cancelled``
    set and ``error_message`` ``canceled: <reason>``.
    """

    def __init__(
        self,
        message: str,
        *,
        workflow: str | None = None,
        instance_id: str | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        details: str | None = None,
        cancelled: bool = False,
    ) -> None:
        super().__init__(message, error_type=error_type, error_message=error_message)
        self._workflow = workflow
        self._instance_id = instance_id
        self._details = details if details is not None else message
        self._cancelled = cancelled

    @property
    def workflow(self) -> str | None:
        """The child workflow's name, when known."""
        return self._workflow

    @property
    def instance_id(self) -> str | None:
        """The child instance's id, when the parent chose it (``instance_id=``)."""
        return self._instance_id

    @property
    def details(self) -> str:
        """The engine's full report of the child's failure (often its traceback)."""
        return self._details

    @property
    def cancelled(self) -> bool:
        """True when the child was cancelled rather than failing by itself."""
        return self._cancelled


class EngineError(PiDuroxideError):
    """The durable engine reported an error that pi_duroxide_nb did not expect."""


class StoreError(EngineError):
    """The workflow store cannot be used: not a database, truncated, damaged, or read-only."""


_ACTIVITY_FAILED = re.compile(
    r"^Activity '(?P<name>[^']*)' call failed: (?:(?P<type>[A-Za-z_][\w.]*): )?(?P<msg>.*)$", re.S
)


def task_error_from_engine(message: str) -> TaskFailedError:
    """Turn the string the engine throws into a generator into a typed error."""
    m = _ACTIVITY_FAILED.match(message)
    if m:
        return ActivityError(message, activity=m["name"], error_type=m["type"], error_message=m["msg"])
    if "sub-orchestration" in message.lower() or "suborchestration" in message.lower():
        return sub_workflow_error(message)
    return TaskFailedError(message)


# The last line of a Python traceback: ``pkg.module.ErrorType: message``.
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?P<type>[A-Za-z_]\w*): (?P<msg>.*)$", re.S)


def sub_workflow_error(
    message: str, *, workflow: str | None = None, instance_id: str | None = None
) -> SubWorkflowError:
    """The error a parent sees when its child failed: ``message`` is the engine's text of the failure.

    A child that raised reports its traceback: the last line gives the exception's type and
    message. A cancelled child reports ``canceled: <reason>``.
    """
    text = message.strip()
    error_type: str | None = None
    error_message = text
    if text.startswith("Traceback (most recent call last):"):
        # The exception line follows the last indented frame line.
        lines = text.splitlines()
        start = max((i for i, line in enumerate(lines) if line.startswith(" ")), default=0) + 1
        last = "\n".join(lines[start:]).strip()
        m = _EXCEPTION_LINE.match(last)
        if m:
            error_type, error_message = m["type"], m["msg"]
        elif last:
            error_message = last
    cancelled = text.startswith(("canceled", "cancelled"))
    who = f"Sub-workflow {workflow!r}" if workflow else "A sub-workflow"
    if instance_id:
        who += f" (instance {instance_id!r})"
    what = f"{error_type}: {error_message}" if error_type else error_message
    summary = f"{who} {'was cancelled' if cancelled else 'failed'}: {what}"
    return SubWorkflowError(
        summary,
        workflow=workflow,
        instance_id=instance_id,
        error_type=error_type,
        error_message=error_message,
        details=message,
        cancelled=cancelled,
    )
