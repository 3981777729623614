"""Errors of the agent host, in the package's one hierarchy (rooted at ``PiDuroxideError``).

* PiDuroxideError
  + ModelError            - an LLM provider failed, is misconfigured, or a scripted model ran out
  + ToolError             - a tool is unknown, got bad arguments, or failed
    - ToolDeniedError     - the host's tool policy refused the call
  + SkillNotFoundError    - no skill of that name in the places searched
  + PiProcessError        - a pi process (PiRpcHost) could not start, died, timed out or broke the protocol

Raised inside a ``ctx.pi`` activity, each reaches the workflow as a catchable
``pdn.ActivityError`` whose ``error_type`` is the class name and whose message is this one.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._errors import PiDuroxideError

__all__ = ["ModelError", "PiProcessError", "SkillNotFoundError", "ToolDeniedError", "ToolError"]


class ModelError(PiDuroxideError):
    """An LLM call failed: the provider answered an error, could not be reached, or is misconfigured."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self._provider = provider
        self._status_code = status_code

    @property
    def provider(self) -> str:
        """``openai``, ``anthropic`` or ``scripted``."""
        return self._provider

    @property
    def status_code(self) -> int | None:
        """The HTTP status the provider answered, when it answered one."""
        return self._status_code


class ToolError(PiDuroxideError):
    """A tool call failed: unknown tool, arguments not matching its schema, or the tool itself failed."""

    def __init__(self, message: str, *, tool: str, cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause)
        self._tool = tool

    @property
    def tool(self) -> str:
        """The tool's name."""
        return self._tool


class ToolDeniedError(ToolError):
    """The host's tool policy refused the call (not allowed, path outside the working directory, not approved)."""


class SkillNotFoundError(PiDuroxideError):
    """No skill of the requested name was found."""

    def __init__(self, name: str, *, searched: Sequence[str], found: Sequence[str]) -> None:
        places = "\n".join(f"  - {p}" for p in searched) or "  (none)"
        known = ", ".join(sorted(found)) or "none"
        msg = (
            f"Skill {name!r} not found. Searched (a skill is <dir>/<name>/SKILL.md or <dir>/<name>/<name>.md):\n"
            f"{places}\nSkills found: {known}. Create the skill file in one of these places, or fix the name."
        )
        super().__init__(msg)
        self._name = name
        self._searched = tuple(searched)
        self._found = tuple(sorted(found))

    @property
    def name(self) -> str:
        """The name asked for."""
        return self._name

    @property
    def searched(self) -> tuple[str, ...]:
        """The directories searched, in order."""
        return self._searched

    @property
    def found(self) -> tuple[str, ...]:
        """The skills that exist."""
        return self._found


class PiProcessError(PiDuroxideError):
    """The pi process behind ``PiRpcHost`` could not start, exited, did not answer in time, or broke the protocol.

    The message says which, with the last lines pi wrote to stderr; the next call starts pi again.
    """

    def __init__(
        self,
        message: str,
        *,
        stderr: str = "",
        returncode: int | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self._stderr = stderr
        self._returncode = returncode

    @property
    def stderr(self) -> str:
        """The last lines pi wrote to stderr ("" if none)."""
        return self._stderr

    @property
    def returncode(self) -> int | None:
        """The exit code of pi, if it had exited."""
        return self._returncode
