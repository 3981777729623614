"""Tools a host runs: pi's built-ins, Python functions with a pydantic argument model, workflow tools.

``ToolBox`` is the one place a tool call goes through: lookup, the policy's allow-list,
argument validation, approval, the call, and the result in pi's ``{content, details}`` shape.
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from .._errors import PiDuroxideError
from ..engine import record_tool_call
from ._builtin_tools import BUILTIN_TOOLS, ToolEnv
from ._errors import ToolDeniedError, ToolError
from ._messages import TextContent, ToolCall, ToolResultMessage, ToolSpec
from ._policy import ToolPolicy
from ._tools import ToolResult, WorkflowTool

__all__ = ["HostTool", "ToolBox", "check_max_steps", "check_tool_names", "function_tool"]


@dataclass(frozen=True)
class HostTool:
    """A tool as a host holds it."""

    name: str
    description: str
    args_model: type[BaseModel] | None
    """Validates the arguments; None when ``run`` validates them itself (workflow tools)."""
    run: Callable[[Any], Any]
    """Called with the validated model (or the raw dict when ``args_model`` is None)."""
    parameters: dict[str, Any] | None = None

    def spec(self) -> ToolSpec:
        """The name, description and JSON Schema the model sees."""
        params = self.parameters
        if params is None:
            params = self.args_model.model_json_schema() if self.args_model is not None else {"type": "object"}
        return ToolSpec(name=self.name, description=self.description, parameters=inline_refs(params))


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with local ``$ref``s to ``$defs`` replaced by the definitions.

    pydantic puts nested models under ``$defs``; some providers and local servers only accept
    self-contained schemas, as pi's own tool schemas are.
    """
    defs = schema.get("$defs", {})

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs and ref not in seen:
                merged = {**defs[ref[8:]], **{k: v for k, v in node.items() if k != "$ref"}}
                return resolve(merged, (*seen, ref))
            return {k: resolve(v, seen) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v, seen) for v in node]
        return node

    result = resolve(schema, ())
    return result if isinstance(result, dict) else schema


def check_tool_names(tools: object, owner: str) -> None:
    """Refuse a bare string where ``owner(tools=...)`` wants a list (it would iterate its letters)."""
    if isinstance(tools, str):
        msg = f"{owner}(tools=...) takes a list of tool names, not the string {tools!r}; write tools=[{tools!r}]."
        raise TypeError(msg)


def check_max_steps(max_steps: object, owner: str) -> int:
    """``max_steps`` if it is a positive integer; else a ValueError saying what ``owner`` needs."""
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1:
        msg = f"{owner}(max_steps=...) must be a positive integer (model replies per turn), not {max_steps!r}."
        raise ValueError(msg)
    return max_steps


def builtin_tool(name: str, env: ToolEnv) -> HostTool:
    """Pi's built-in tool ``name`` working in ``env``."""
    if name not in BUILTIN_TOOLS:
        known = ", ".join(BUILTIN_TOOLS)
        msg = f"{name!r} is not one of pi's built-in tools ({known}). Register your own with host.register_tool."
        raise ToolError(msg, tool=name)
    tool = BUILTIN_TOOLS[name]
    return HostTool(tool.name, tool.description, tool.args_model, lambda args: tool.run(args, env))


def workflow_tool(tool: WorkflowTool) -> HostTool:
    """One of the five workflow tools (it validates and reports bad arguments itself)."""
    return HostTool(tool.name, tool.description, None, lambda args: tool.execute(args).to_pi(), tool.parameters)


def function_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    args_model: type[BaseModel] | None = None,
) -> HostTool:
    """A Python function as a tool: it gets its validated ``args_model`` instance.

    The model is taken from ``args_model=`` or from the annotation of the function's first
    parameter; the tool's description from ``description=`` or the docstring. The function may
    return a string (the text), a pi-shaped ``{content, details}`` dict, a ``ToolResult``, or
    any JSON value (shown as JSON text and kept as ``details``).
    """
    if not callable(fn):
        msg = f"register_tool takes a function, not {fn!r}."
        raise TypeError(msg)
    tool_name = name or getattr(fn, "__name__", "")
    if not tool_name or tool_name == "<lambda>":
        msg = "register_tool: give the tool a name=... (lambdas have none)."
        raise TypeError(msg)
    model = args_model or _first_param_model(fn)
    if model is None or not (isinstance(model, type) and issubclass(model, BaseModel)):
        msg = (
            f"Tool {tool_name!r} needs a pydantic model for its arguments: annotate the first parameter "
            f"(def {tool_name}(args: MyArgs): ...) or pass args_model=MyArgs."
        )
        raise TypeError(msg)
    doc = description or inspect.getdoc(fn) or f"The {tool_name} tool."
    return HostTool(tool_name, doc.strip().split("\n\n")[0], model, lambda args: as_tool_result(fn(args)))


def _first_param_model(fn: Callable[..., Any]) -> type[BaseModel] | None:
    params = list(inspect.signature(fn).parameters.values())
    if not params:
        return None
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    hint = hints.get(params[0].name, params[0].annotation)
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


def as_tool_result(value: Any) -> dict[str, Any]:
    """Whatever a tool function returned, as pi's ``{content, details}``."""
    if isinstance(value, ToolResult):
        return value.to_pi()
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        return value
    if isinstance(value, str):
        return {"content": [{"type": "text", "text": value}], "details": None}
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return {"content": [{"type": "text", "text": json.dumps(value, default=str)}], "details": value}


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors())


class ToolBox:
    """The tools of a host or agent, behind its policy."""

    def __init__(self, tools: Iterable[HostTool], policy: ToolPolicy | None = None) -> None:
        self._tools: dict[str, HostTool] = {tool.name: tool for tool in tools}
        self.policy = policy or ToolPolicy()

    def add(self, tool: HostTool) -> None:
        """Add (or replace) a tool."""
        # A new dict, not an update: calls running in worker threads may be iterating the old one.
        self._tools = {**self._tools, tool.name: tool}

    @property
    def names(self) -> list[str]:
        """Every tool's name, allowed or not."""
        return list(self._tools)

    def allowed(self) -> list[str]:
        """The names the policy lets run."""
        return [n for n in self._tools if self.policy.allows(n)]

    def specs(self, only: Iterable[str] | None = None) -> list[ToolSpec]:
        """What the model is offered: the allowed tools (optionally only some)."""
        wanted = None if only is None else set(only)
        return [self._tools[n].spec() for n in self.allowed() if wanted is None or n in wanted]

    def call(self, name: str, args: Any) -> dict[str, Any]:
        """Run a tool through the policy; raises ``ToolError`` for every failure.

        Raises:
            ToolError: unknown tool, bad arguments, or the tool failed.
            ToolDeniedError: the policy refused the call.
        """
        tool = self._tools.get(name)
        if tool is None:
            available = ", ".join(self.allowed()) or "none"
            msg = f"Unknown tool {name!r}. This host's tools are: {available}. Check the name, or register the tool."
            raise ToolError(msg, tool=name)
        if not self.policy.allows(name):
            allowed = ", ".join(sorted(self.policy.allow or ())) or "none"
            msg = (
                f"Tool {name!r} is not allowed by the host's policy (allowed: {allowed}). Change ToolPolicy(allow=...)."
            )
            raise ToolDeniedError(msg, tool=name)
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as exc:
                raise ToolError(f"Tool {name!r}: the arguments are not JSON ({exc}).", tool=name) from exc
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ToolError(f"Tool {name!r} takes an object of arguments, not {args!r}.", tool=name)
        parsed: Any = args
        if tool.args_model is not None:
            try:
                parsed = tool.args_model.model_validate(args)
            except ValidationError as exc:
                schema = json.dumps(tool.spec().parameters.get("properties", {}))
                msg = f"Tool {name!r} got invalid arguments: {_problems(exc)}. Its parameters: {schema}"
                raise ToolError(msg, tool=name, cause=exc) from exc
        self._approve(name, args)
        try:
            return as_tool_result(tool.run(parsed))
        except PiDuroxideError:
            raise
        except Exception as exc:
            msg = f"Tool {name!r} failed: {type(exc).__name__}: {exc}"
            raise ToolError(msg, tool=name, cause=exc) from exc

    def _approve(self, name: str, args: dict[str, Any]) -> None:
        """Ask the policy's approval callback; a refusal, or a callback that raises, stops the call."""
        approve = self.policy.approve
        if approve is None:
            return
        call = f"{name} {json.dumps(args, default=str)}"
        try:
            approved = approve(name, args)
        except Exception as exc:
            msg = (
                f"Tool call {call} did not run: the approval callback raised {type(exc).__name__}: {exc}. "
                "Fix the function given as ToolPolicy(approve=...); it should return True or False."
            )
            raise ToolDeniedError(msg, tool=name, cause=exc) from exc
        if not approved:
            msg = f"Tool call {call} was not approved, so it did not run."
            raise ToolDeniedError(msg, tool=name)

    def call_for_model(self, call: ToolCall, *, record: bool = False) -> ToolResultMessage:
        """Run a model's tool call; failures become an error result the model can read.

        With ``record``, the call is written to the transcript when it runs inside a ``ctx.pi``
        activity (a prompt or skill turn of a workflow).
        """
        try:
            result = self.call(call.name, call.arguments)
        except PiDuroxideError as exc:
            if record:
                record_tool_call(call.name, call.arguments, error=f"{type(exc).__name__}: {exc}")
            return ToolResultMessage(
                tool_call_id=call.id,
                tool_name=call.name,
                content=[TextContent(text=str(exc))],
                details={"error": str(exc)},
                is_error=True,
            )
        if record:
            record_tool_call(call.name, call.arguments, result=result)
        blocks = [
            TextContent(text=str(b.get("text", ""))) for b in result.get("content", []) if isinstance(b, dict)
        ] or [TextContent(text="")]
        return ToolResultMessage(
            tool_call_id=call.id,
            tool_name=call.name,
            content=blocks,
            details=result.get("details"),
            is_error=bool(result.get("isError", False)),
        )
