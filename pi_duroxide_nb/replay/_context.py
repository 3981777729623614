"""A stand-in for the engine's orchestration context, so ``WorkflowContext`` runs unchanged.

The stepper drives the user's generator through the engine layer's own ``drive()`` and
``WorkflowContext``: the tasks it yields are the engine's descriptors, built here exactly
as ``duroxide.context.OrchestrationContext`` (0.2.x) builds them (a test compares the two).
Custom status and KV calls, which the engine records as actions, are recorded here in
emission order; traces are kept so a step can show them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import WorkflowNotFoundError
from ..engine import ActivityDefinition, WorkflowDefinition, WorkflowRegistry

__all__ = ["StateAction", "ReplayOrchestrationContext", "ReplayRegistry"]


@dataclass(frozen=True)
class StateAction:
    """A custom status or KV action emitted by code (no yield needed for these)."""

    kind: str
    """``custom_status``, ``kv_set``, ``kv_clear`` or ``kv_clear_all``."""
    key: str | None = None
    value: str | None = None


class ReplayOrchestrationContext:
    """Builds the engine's task descriptors and records state actions, without an engine."""

    def __init__(
        self,
        *,
        instance_id: str,
        execution_id: int,
        name: str,
        version: str,
        custom_status: str | None,
        emit: Callable[[StateAction], None],
        kv: dict[str, str] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.orchestration_name = name
        self.orchestration_version = version
        self._status = custom_status
        self._kv: dict[str, str] = dict(kv or {})
        self._emit = emit
        self.traces: list[tuple[str, str]] = []

    # --- descriptors (same dicts as duroxide.context.OrchestrationContext) ------------------

    def schedule_activity(self, name: str, input: Any = None) -> dict[str, Any]:
        return {"type": "activity", "name": name, "input": json.dumps(input)}

    def schedule_activity_with_retry(self, name: str, input: Any, retry: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "activityWithRetry",
            "name": name,
            "input": json.dumps(input),
            "retry": {
                "maxAttempts": retry.get("max_attempts", retry.get("maxAttempts", 3)),
                "timeoutMs": retry.get("timeout_ms", retry.get("timeoutMs")),
                "totalTimeoutMs": retry.get("total_timeout_ms", retry.get("totalTimeoutMs")),
                "backoff": retry.get("backoff"),
            },
        }

    def schedule_timer(self, delay_ms: int) -> dict[str, Any]:
        return {"type": "timer", "delayMs": delay_ms}

    def wait_for_event(self, name: str) -> dict[str, Any]:
        return {"type": "waitEvent", "name": name}

    def dequeue_event(self, queue_name: str) -> dict[str, Any]:
        return {"type": "dequeueEvent", "queueName": queue_name}

    def schedule_sub_orchestration_versioned(self, name: str, version: str | None = None, input: Any = None) -> Any:
        return {"type": "subOrchestrationVersioned", "name": name, "version": version, "input": json.dumps(input)}

    def schedule_sub_orchestration_versioned_with_id(
        self, name: str, version: str, instance_id: str, input: Any = None
    ) -> dict[str, Any]:
        return {
            "type": "subOrchestrationVersionedWithId",
            "name": name,
            "version": version,
            "instanceId": instance_id,
            "input": json.dumps(input),
        }

    def new_guid(self) -> dict[str, Any]:
        return {"type": "newGuid"}

    def utc_now(self) -> dict[str, Any]:
        return {"type": "utcNow"}

    def continue_as_new_versioned(self, input: Any, version: str | None = None) -> dict[str, Any]:
        return {"type": "continueAsNewVersioned", "input": json.dumps(input), "version": version}

    def all(self, tasks: list[Any]) -> dict[str, Any]:
        return {"type": "join", "tasks": tasks}

    def race(self, *tasks: Any) -> dict[str, Any]:
        return {"type": "select", "tasks": list(tasks)}

    # --- state the engine records as actions ------------------------------------------------

    def set_custom_status(self, status: str) -> None:
        self._status = str(status)
        self._emit(StateAction("custom_status", value=self._status))

    def reset_custom_status(self) -> None:
        self._status = None
        self._emit(StateAction("custom_status", value=None))

    def get_custom_status(self) -> str | None:
        return self._status

    def set_kv_value(self, key: str, value: str) -> None:
        self._kv[str(key)] = str(value)
        self._emit(StateAction("kv_set", key=str(key), value=str(value)))

    def get_kv_value(self, key: str) -> str | None:
        return self._kv.get(str(key))

    def get_kv_all_values(self) -> dict[str, str]:
        return dict(self._kv)

    def get_kv_all_keys(self) -> list[str]:
        return list(self._kv)

    def get_kv_length(self) -> int:
        return len(self._kv)

    def clear_kv_value(self, key: str) -> None:
        self._kv.pop(str(key), None)
        self._emit(StateAction("kv_clear", key=str(key)))

    def clear_all_kv_values(self) -> None:
        self._kv.clear()
        self._emit(StateAction("kv_clear_all"))

    @property
    def custom_status(self) -> str | None:
        """The custom status as the code has set it so far."""
        return self._status

    @property
    def kv(self) -> dict[str, str]:
        """The KV entries (stored texts) as the code has set them so far."""
        return dict(self._kv)

    # --- tracing: kept for the step view, never printed -------------------------------------

    def trace_info(self, message: str) -> None:
        self.traces.append(("info", str(message)))

    def trace_warn(self, message: str) -> None:
        self.traces.append(("warn", str(message)))

    def trace_error(self, message: str) -> None:
        self.traces.append(("error", str(message)))

    def trace_debug(self, message: str) -> None:
        self.traces.append(("debug", str(message)))


def _never_called(*_args: Any) -> Any:  # pragma: no cover - replay never runs activities
    msg = "Activities do not run during a replay."
    raise RuntimeError(msg)


class ReplayRegistry:
    """The registry ``WorkflowContext`` consults during a replay.

    Activities never run in a replay, so every activity name is accepted (the history,
    not this process, says what ran). Sub-workflows and continue-as-new use the real
    registry's definitions when it has them (for their input models and versions); else a
    bare definition, whose version the engine does not compare.
    """

    def __init__(self, registry: WorkflowRegistry | None) -> None:
        self._registry = registry

    def activity(self, name: str) -> ActivityDefinition:
        if self._registry is not None:
            found = self._registry.activity(name)
            if found is not None:
                return found
        return ActivityDefinition(name, _never_called, False)

    def activities(self) -> list[ActivityDefinition]:
        return self._registry.activities() if self._registry is not None else []

    def workflow(self, name: str, version: str | None = None) -> WorkflowDefinition:
        if self._registry is not None:
            try:
                return self._registry.workflow(name, version)
            except WorkflowNotFoundError:
                pass
        return WorkflowDefinition(name=name, fn=_never_called, version=version or "")
