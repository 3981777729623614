"""The agent-host boundary behind ``ctx.pi``: the interface and its five activities."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .._errors import NoAgentHostError, PayloadError
from ._context import PI_ACTIVITIES, current_activity

if TYPE_CHECKING:
    from ._transcript import TranscriptStore

__all__ = ["AgentHost", "pi_activity_functions", "record_tool_call", "run_maybe_async"]


@runtime_checkable
class AgentHost(Protocol):
    """What ``ctx.pi`` calls into: an LLM, the agent's tools, skills and its session.

    Any method may be ``async def``. Each is called from an activity, in a worker thread,
    at least once per scheduled call; its return value (JSON) is persisted.
    """

    def llm(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> Any:
        """Answer ``messages`` with one assistant reply."""

    def tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run the tool ``name`` with ``args`` and return its result."""

    def skill(self, name: str, input: Any) -> Any:
        """Run the skill ``name`` on ``input`` and return its reply."""

    def send_message(self, content: Any) -> Any:
        """Append ``content`` to the agent session."""

    def prompt(self, prompt: str, options: dict[str, Any]) -> Any:
        """Run a full agent turn on ``prompt`` and return its final reply."""


def run_maybe_async(value: Any) -> Any:
    """Await ``value`` on a fresh event loop if it is awaitable (we are in a worker thread)."""
    if inspect.isawaitable(value):

        async def _await() -> Any:
            return await value

        return asyncio.run(_await())
    return value


_Recorder = Callable[[str, Any, "dict[str, Any] | None"], None]
_RECORDER: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar("pi_duroxide_nb_recorder", default=None)


def record_tool_call(name: str, args: Any, *, result: Any = None, error: str | None = None) -> None:
    """Write a ``workflow_tool_call`` transcript entry for a tool a host ran inside a ``ctx.pi`` turn.

    Hosts call it for the tools the model runs during ``ctx.pi.prompt`` and ``ctx.pi.skill``
    (``ctx.pi.tool`` calls are recorded by the runtime itself). Outside a ``ctx.pi`` activity
    it does nothing.
    """
    recorder = _RECORDER.get()
    if recorder is None:
        return
    details: dict[str, Any] = {"name": name, "args": args}
    if error is not None:
        details["error"] = error
    else:
        details["result"] = result
    recorder("workflow_tool_call", f"{name} {json.dumps(args, default=str)}", details)


def _require(payload: Any, keys: tuple[str, ...], activity: str) -> dict[str, Any]:
    if not isinstance(payload, dict) or any(k not in payload for k in keys):
        msg = f"Activity {activity!r} expects an input object with keys {list(keys)}, got {payload!r}."
        raise PayloadError(msg)
    return payload


def pi_activity_functions(
    get_host: Callable[[], AgentHost | None], transcript: TranscriptStore | None = None
) -> dict[str, Callable[[Any], Any]]:
    """The five ``__pi_*`` activities, each taking its pi-shaped input and calling the host.

    ``send_message`` and ``tool`` also write a transcript entry (``workflow_message``,
    ``workflow_tool_call``) under the calling instance, whatever host is bound; a failed tool
    call is written with its error before the failure reaches the workflow. During ``llm``,
    ``skill`` and ``prompt`` a host may record the tools its model runs with ``record_tool_call``.
    """

    def record(custom_type: Any, content: Any, details: dict[str, Any] | None) -> None:
        if transcript is None:
            return
        current = current_activity()
        transcript.append(
            instance_id=current.instance_id if current else None,
            workflow_name=current.workflow_name if current else None,
            custom_type=custom_type,
            content=content,
            details=details,
        )

    def host_for(activity: str) -> AgentHost:
        host = get_host()
        if host is None:
            msg = (
                f"Activity {activity!r} needs an agent host, but the host was unbound (rt.set_host(None)) "
                "while this call was starting. Bind one with rt.set_host(host) — for tests and offline "
                "notebooks pdn.InMemoryAgentHost(...) works. Calls made while no host is bound wait for "
                "one; this one had already started, so the workflow sees it as a failed activity."
            )
            raise NoAgentHostError(msg)
        return host

    def recording(fn: Callable[[], Any]) -> Any:
        token = _RECORDER.set(record)
        try:
            return run_maybe_async(fn())
        finally:
            _RECORDER.reset(token)

    def llm(payload: Any) -> Any:
        p = _require(payload, ("messages",), PI_ACTIVITIES["llm"])
        host = host_for(PI_ACTIVITIES["llm"])
        return recording(lambda: host.llm(p["messages"], p.get("options") or {}))

    def tool(payload: Any) -> Any:
        p = _require(payload, ("name",), PI_ACTIVITIES["tool"])
        host = host_for(PI_ACTIVITIES["tool"])
        name, args = p["name"], p.get("args") or {}
        summary = f"{name} {json.dumps(args, default=str)}"
        try:
            result = run_maybe_async(host.tool(name, args))
        except Exception as exc:
            record("workflow_tool_call", summary, {"name": name, "args": args, "error": f"{type(exc).__name__}: {exc}"})
            raise
        record("workflow_tool_call", summary, {"name": name, "args": args, "result": result})
        return result

    def skill(payload: Any) -> Any:
        p = _require(payload, ("name",), PI_ACTIVITIES["skill"])
        host = host_for(PI_ACTIVITIES["skill"])
        return recording(lambda: host.skill(p["name"], p.get("input")))

    def send_message(payload: Any) -> Any:
        p = _require(payload, ("content",), PI_ACTIVITIES["send_message"])
        result = run_maybe_async(host_for(PI_ACTIVITIES["send_message"]).send_message(p["content"]))
        record("workflow_message", p["content"], None if result is None else {"result": result})
        return result

    def prompt(payload: Any) -> Any:
        p = _require(payload, ("prompt",), PI_ACTIVITIES["prompt"])
        host = host_for(PI_ACTIVITIES["prompt"])
        return recording(lambda: host.prompt(p["prompt"], p.get("options") or {}))

    return {
        PI_ACTIVITIES["llm"]: llm,
        PI_ACTIVITIES["tool"]: tool,
        PI_ACTIVITIES["skill"]: skill,
        PI_ACTIVITIES["send_message"]: send_message,
        PI_ACTIVITIES["prompt"]: prompt,
    }
