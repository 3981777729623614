"""The five LLM tools of pi-duroxide, with its bugs fixed, as specs any LLM client can use."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import (
    InstanceNotFoundError,
    ModelValidationError,
    PiDuroxideError,
    RuntimeStateError,
    WorkflowTimeoutError,
)
from ..models import WorkflowState, WorkflowStatus

if TYPE_CHECKING:
    from ..engine import WorkflowRuntime

__all__ = ["ToolResult", "WorkflowTool", "workflow_tools"]

_ARGS = ConfigDict(extra="forbid")


class TextContent(BaseModel):
    """A text part of a tool result."""

    model_config = ConfigDict(frozen=True)

    type: Literal["text"] = "text"
    text: str


class ToolResult(BaseModel):
    """What a tool returns, in pi's shape: ``{content: [{type: "text", text}], details}``.

    ``isError`` is set when the call failed (bad arguments, unknown names); the text then
    says what went wrong and how to fix the call.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    content: list[TextContent]
    details: Any = None
    is_error: bool = Field(default=False, alias="isError")

    def to_pi(self) -> dict[str, Any]:
        """The plain dict pi expects."""
        return self.model_dump(mode="json", by_alias=True)


class StartWorkflowArgs(BaseModel):
    model_config = _ARGS
    name: str = Field(description="Registered workflow name")
    input: Any = Field(description="JSON input passed to the workflow generator")
    id: str | None = Field(default=None, description="Explicit instance ID (auto-generated if omitted)")


class GetWorkflowArgs(BaseModel):
    model_config = _ARGS
    instanceId: str = Field(description="Workflow instance ID")


_STATUS = Literal["Running", "Completed", "Failed", "Terminated", "Pending", "ContinuedAsNew"]


class ListWorkflowsArgs(BaseModel):
    model_config = _ARGS
    name: str | None = Field(default=None, description="Filter by workflow name")
    status: _STATUS | None = Field(default=None, description="Filter by status")


class SignalWorkflowArgs(BaseModel):
    model_config = _ARGS
    instanceId: str = Field(description="Target workflow instance")
    eventName: str = Field(description="Must match the name in ctx.wait_for_event()")
    data: Any = Field(description="JSON payload delivered to the workflow")


class WaitForWorkflowArgs(BaseModel):
    model_config = _ARGS
    instanceId: str = Field(description="Workflow instance ID")
    timeoutMs: int = Field(default=60_000, ge=0, description="Maximum wait in ms (default: 60000)")


@dataclass(frozen=True)
class WorkflowTool:
    """One tool an LLM can call: its name, description, JSON Schema and ``execute``."""

    name: str
    description: str
    args_model: type[BaseModel]
    run: Callable[[Any], Any] = field(repr=False)

    @property
    def parameters(self) -> dict[str, Any]:
        """The JSON Schema of the arguments."""
        return self.args_model.model_json_schema()

    def execute(self, args: dict[str, Any] | str | None) -> ToolResult:
        """Run the tool; never raises for bad arguments or unknown names (returns an error result)."""
        try:
            if isinstance(args, str):
                args = json.loads(args)
            parsed = self.args_model.model_validate(args or {})
        except (ValidationError, json.JSONDecodeError) as exc:
            return _error(
                f"Invalid arguments for {self.name}: {_explain(exc)}. Expected: {json.dumps(self.parameters)}"
            )
        except RecursionError:
            return _error(f"Invalid arguments for {self.name}: nested too deeply to read; flatten the JSON.")
        try:
            details = self.run(parsed)
        except PiDuroxideError as exc:
            return _error(str(exc))
        return ToolResult(content=[TextContent(text=json.dumps(details, default=str))], details=details)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _error(text: str) -> ToolResult:
    return ToolResult(content=[TextContent(text=text)], details={"error": text}, isError=True)


def state_json(state: WorkflowState) -> dict[str, Any]:
    """A state as the tools report it (camelCase, like pi-duroxide's)."""
    data = state.model_dump(mode="json")
    return {
        "instanceId": data["instance_id"],
        "name": data["name"],
        "version": data["version"],
        "status": data["status"],
        "output": data["output"],
        "error": data["error"],
        "customStatus": data["custom_status"],
        "createdAt": data["created_at"],
        "updatedAt": data["updated_at"],
        "parentInstanceId": data["parent_instance_id"],
        "executionId": data["execution_id"],
        "blocked": data["blocked"],
    }


KV_LIMIT_CHARS = 4000
"""Most JSON characters of KV entries ``get-workflow`` and ``wait-for-workflow`` return per instance."""
KV_LIMIT_CHARS_LISTED = 1000
"""The same for each instance of ``list-workflows``."""
_KV_KEYS_NAMED = 50


def kv_json(runtime: WorkflowRuntime, instance_id: str, limit: int) -> dict[str, Any]:
    """An instance's KV entries for a tool result: ``{"kv": {...}}``, bounded to ``limit`` characters.

    Entries are taken in key order while their JSON fits; ones that do not are left out and
    ``kvTruncated`` says how many, which keys, and the limit. On PostgreSQL, where the engine
    cannot list keys, ``kv`` is ``None`` and ``kvNote`` says why.
    """
    try:
        entries = runtime.get_kv(instance_id)
    except RuntimeStateError:
        return {"kv": None, "kvNote": "This store (PostgreSQL) cannot list KV entries; they are not shown."}
    except InstanceNotFoundError:
        entries = {}
    shown: dict[str, Any] = {}
    omitted: list[str] = []
    used = 2  # the braces
    for key in sorted(entries):
        size = len(json.dumps({key: entries[key]}, default=str)) - 2 + (2 if shown else 0)  # ", " between entries
        if used + size <= limit:
            shown[key] = entries[key]
            used += size
        else:
            omitted.append(key)
    result: dict[str, Any] = {"kv": shown}
    if omitted:
        result["kvTruncated"] = {
            "shownKeys": len(shown),
            "totalKeys": len(entries),
            "omittedKeys": omitted[:_KV_KEYS_NAMED],
            "limitChars": limit,
            "note": (
                f"{len(omitted)} KV entr{'y was' if len(omitted) == 1 else 'ies were'} left out to keep this "
                f"result under {limit} characters."
            ),
        }
    return result


def waiting_json(runtime: WorkflowRuntime, instance_id: str) -> list[dict[str, Any]]:
    """What an instance waits for, as the tools report it: ``[{"eventName", "schema"}]``."""
    return [{"eventName": w.name, "schema": w.json_schema} for w in runtime.waiting_for(instance_id)]


def workflow_tools(runtime: WorkflowRuntime) -> list[WorkflowTool]:
    """The five workflow tools bound to ``runtime``.

    Example:
        tools = pdn.workflow_tools(rt)
        start = next(t for t in tools if t.name == "start-workflow")
        start.execute({"name": "deploy", "input": {"service": "api"}})
    """

    def start(a: StartWorkflowArgs) -> Any:
        return {"instanceId": runtime.start_workflow(a.name, a.input, instance_id=a.id)}

    def with_kv(state: WorkflowState, limit: int = KV_LIMIT_CHARS) -> dict[str, Any]:
        return {**state_json(state), **kv_json(runtime, state.instance_id, limit)}

    def get(a: GetWorkflowArgs) -> Any:
        try:
            state = runtime.get_workflow(a.instanceId)
            return {**with_kv(state), "waitingFor": waiting_json(runtime, a.instanceId)}
        except InstanceNotFoundError:
            return {"instanceId": a.instanceId, "status": "not_found"}

    def list_(a: ListWorkflowsArgs) -> Any:
        status = WorkflowStatus(a.status) if a.status else None
        return [with_kv(s, KV_LIMIT_CHARS_LISTED) for s in runtime.list_workflows(name=a.name, status=status)]

    def signal(a: SignalWorkflowArgs) -> Any:
        try:
            runtime.signal_workflow(a.instanceId, a.eventName, a.data)
        except ModelValidationError as exc:
            expected = next((w.json_schema for w in runtime.waiting_for(a.instanceId) if w.name == a.eventName), None)
            hint = f" The data must fit this JSON Schema: {json.dumps(expected)}" if expected else ""
            raise ModelValidationError(f"{exc}{hint}", fields=exc.fields, instance_id=a.instanceId, cause=exc) from exc
        return {"signalled": True}

    def wait(a: WaitForWorkflowArgs) -> Any:
        try:
            return with_kv(runtime.wait_for_workflow(a.instanceId, timeout=timedelta(milliseconds=a.timeoutMs)))
        except WorkflowTimeoutError:
            return {**with_kv(runtime.get_workflow(a.instanceId)), "timedOut": True}

    names = runtime.registry.workflow_names()
    listing = ", ".join(names) if names else "none yet"
    return [
        WorkflowTool(
            "start-workflow",
            f"Start a durable workflow by name. Returns an instanceId for tracking. Registered workflows: {listing}.",
            StartWorkflowArgs,
            start,
        ),
        WorkflowTool(
            "get-workflow",
            "Get the status, output, custom status, KV store entries and the events a workflow instance waits "
            "for (waitingFor: event names with the JSON Schema of their data) ('not_found' for unknown ids).",
            GetWorkflowArgs,
            get,
        ),
        WorkflowTool(
            "list-workflows",
            "List workflow instances with their full state and KV store entries, optionally filtered by name "
            "and status.",
            ListWorkflowsArgs,
            list_,
        ),
        WorkflowTool(
            "signal-workflow",
            "Send an external event to a workflow waiting on ctx.wait_for_event(). get-workflow's waitingFor "
            "gives the event names it waits for and the JSON Schema the data must fit.",
            SignalWorkflowArgs,
            signal,
        ),
        WorkflowTool(
            "wait-for-workflow",
            "Block until a workflow completes and return its full state including output and KV store entries "
            "(with timedOut: true if it is still running after timeoutMs).",
            WaitForWorkflowArgs,
            wait,
        ),
    ]
