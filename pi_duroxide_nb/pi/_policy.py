"""The tool policy of a host: which tools may run, where, and who approves."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolPolicy"]


@dataclass(frozen=True)
class ToolPolicy:
    """Limits on the tools a host (or an ``Agent``) runs.

    Example:
        def ask(name, args):                        # the notebook can ask a person
            return input(f"Run {name} {args}? [y/N] ") == "y"

        policy = pdn.ToolPolicy(allow=["read", "ls", "bash"], confine_to_cwd=True, approve=ask)
        host = pdn.PiHost(model=model, cwd="project", policy=policy)

    A refused call raises ``ToolDeniedError`` (a workflow sees a catchable ``ActivityError``;
    inside an agent turn the model is told it was refused).
    """

    allow: frozenset[str] | None = None
    """Tool names that may run; ``None`` allows every tool the host has. Others are not offered to the model."""
    confine_to_cwd: bool = False
    """Refuse file paths outside the host's working directory (symlinks resolved).

    ``bash`` commands cannot be confined this way: leave ``bash`` out of ``allow`` to confine everything.
    """
    approve: Callable[[str, dict[str, Any]], bool] | None = field(default=None, compare=False)
    """Called as ``approve(name, args)`` before each tool call, in the thread running it; falsy refuses."""

    def __init__(
        self,
        *,
        allow: Iterable[str] | None = None,
        confine_to_cwd: bool = False,
        approve: Callable[[str, dict[str, Any]], bool] | None = None,
    ) -> None:
        if isinstance(allow, str):
            msg = f"ToolPolicy(allow=...) takes a list of tool names, not the string {allow!r}."
            raise TypeError(msg)
        if approve is not None and not callable(approve):
            msg = f"ToolPolicy(approve=...) takes a function (name, args) -> bool, not {approve!r}."
            raise TypeError(msg)
        object.__setattr__(self, "allow", None if allow is None else frozenset(allow))
        object.__setattr__(self, "confine_to_cwd", bool(confine_to_cwd))
        object.__setattr__(self, "approve", approve)

    def allows(self, name: str) -> bool:
        """Whether the allow-list lets ``name`` run."""
        return self.allow is None or name in self.allow
