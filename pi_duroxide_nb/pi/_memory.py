"""An offline agent host: scripted LLM replies, Python tools, recorded messages."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["HostCall", "InMemoryAgentHost"]


@dataclass(frozen=True)
class HostCall:
    """One call the host received."""

    method: str
    """``llm``, ``tool``, ``skill``, ``send_message`` or ``prompt``."""
    args: dict[str, Any]


class InMemoryAgentHost:
    """An agent host that needs no network: for tests, examples and offline notebooks.

    Example:
        host = pdn.InMemoryAgentHost(
            replies=["The error is a missing import."],
            tools={"bash": lambda args: {"exitCode": 0, "stdout": "ok"}},
        )
        rt = pdn.WorkflowRuntime(db="wf.db", host=host)

    Args:
        replies: LLM replies played in order (a string becomes an assistant message), or a
            function ``(messages, options) -> reply``.
        tools: Tool functions by name, each called with the tool's ``args`` dict.
        skills: Skills by name: a system prompt (sent to the LLM with the input) or a
            function ``input -> reply``.
    """

    def __init__(
        self,
        *,
        replies: Iterable[Any] | Callable[[list[dict[str, Any]], dict[str, Any]], Any] = (),
        tools: dict[str, Callable[[dict[str, Any]], Any]] | None = None,
        skills: dict[str, str | Callable[[Any], Any]] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._reply_fn = replies if callable(replies) else None
        self._replies = [] if callable(replies) else list(replies)
        self._tools = dict(tools or {})
        self._skills = dict(skills or {})
        self.calls: list[HostCall] = []
        """Every call received, in order."""
        self.messages: list[Any] = []
        """Everything sent with ``ctx.pi.send_message``."""

    def __repr__(self) -> str:
        return f"<InMemoryAgentHost tools={sorted(self._tools)} calls={len(self.calls)}>"

    def _record(self, method: str, **args: Any) -> None:
        with self._lock:
            self.calls.append(HostCall(method, args))

    def calls_to(self, method: str) -> list[HostCall]:
        """The calls of one method."""
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def _reply(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> Any:
        if self._reply_fn is not None:
            reply = self._reply_fn(messages, options)
        else:
            with self._lock:
                if not self._replies:
                    used = len([c for c in self.calls if c.method in ("llm", "prompt", "skill")])
                    msg = (
                        f"InMemoryAgentHost has no scripted LLM reply left ({used} LLM calls so far). "
                        "Give more replies=[...] or a function replies=lambda messages, options: ..."
                    )
                    raise LookupError(msg)
                reply = self._replies.pop(0)
        return {"role": "assistant", "content": reply} if isinstance(reply, str) else reply

    def llm(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> Any:
        """Play the next scripted reply."""
        self._record("llm", messages=messages, options=options)
        return self._reply(messages, options)

    def tool(self, name: str, args: dict[str, Any]) -> Any:
        """Call the tool function registered as ``name``."""
        self._record("tool", name=name, args=args)
        fn = self._tools.get(name)
        if fn is None:
            msg = f"InMemoryAgentHost has no tool {name!r}; it has {sorted(self._tools) or 'none'}. Pass tools={{...}}."
            raise LookupError(msg)
        return fn(args)

    def skill(self, name: str, input: Any) -> Any:
        """Run the skill ``name``: its function, or the LLM with its prompt as system message."""
        self._record("skill", name=name, input=input)
        skill = self._skills.get(name)
        if skill is None:
            known = sorted(self._skills) or "none"
            msg = f"InMemoryAgentHost has no skill {name!r}; it has {known}. Pass skills={{...}}."
            raise LookupError(msg)
        if callable(skill):
            return skill(input)
        text = input if isinstance(input, str) else repr(input)
        return self._reply([{"role": "system", "content": skill}, {"role": "user", "content": text}], {})

    def send_message(self, content: Any) -> Any:
        """Record ``content`` in ``messages``."""
        self._record("send_message", content=content)
        with self._lock:
            self.messages.append(content)
        return {"sent": True}

    def prompt(self, prompt: str, options: dict[str, Any]) -> Any:
        """Answer ``prompt`` as a one-message conversation."""
        self._record("prompt", prompt=prompt, options=options)
        return self._reply([{"role": "user", "content": prompt}], options)
