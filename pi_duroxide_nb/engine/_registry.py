"""Workflow and activity registrations, with versions derived from the code itself."""

from __future__ import annotations

import hashlib
import inspect
import linecache
import re
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from .._errors import RegistrationError, WorkflowNotFoundError

__all__ = [
    "ActivityDefinition",
    "WorkflowDefinition",
    "WorkflowRegistry",
    "code_version",
    "default_registry",
    "register_activity",
    "register_workflow",
]

F = TypeVar("F", bound=Callable[..., Any])

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-/ ]*$")
_RESERVED_PREFIXES = ("__pi_", "__duroxide", "__pdn")


def _code_lines(code: types.CodeType) -> list[int]:
    """Every line a code object (and the functions and classes nested in it) runs."""
    lines = [line for _, _, line in code.co_lines() if line is not None]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            lines += _code_lines(const)
    return lines


def function_source(fn: Callable[..., Any]) -> str | None:
    """A function's source text, from its first line to the last line its code runs.

    ``inspect.getsource`` reads a block from the ``def`` line; a ``%%workflow`` cell body
    has no ``def`` line of its own (it is wrapped into one), so there it finds only the first
    statement. When the code runs past what it found, the lines are read from the code's
    file (a notebook cell is kept in ``linecache``).
    """
    try:
        source: str | None = inspect.getsource(fn)
    except (OSError, TypeError):
        source = None
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return source
    first = code.co_firstlineno
    last = max(_code_lines(code), default=first)
    if source is None or first + len(source.splitlines()) - 1 < last:
        lines = linecache.getlines(code.co_filename)
        if len(lines) >= last:
            return "".join(lines[first - 1 : last])
    return source


def code_version(fn: Callable[..., Any]) -> str:
    """Return a semver version string that identifies the code of ``fn``.

    The hash covers the bytecode, constants, names and nested code objects plus the default
    arguments, but not line numbers or comments: moving a cell or editing a comment keeps the
    version, changing what the code does makes a new one. The same code gives the same
    version in every process, which is what lets a restarted kernel resume old instances.
    """
    h = hashlib.sha256()
    _hash_code(h, fn.__code__)
    h.update(repr(getattr(fn, "__defaults__", None)).encode())
    h.update(repr(sorted((getattr(fn, "__kwdefaults__", None) or {}).items())).encode())
    return f"0.0.0-c{h.hexdigest()[:12]}"


def _hash_code(h: Any, code: types.CodeType) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    h.update(repr(code.co_freevars).encode())
    h.update(repr(code.co_cellvars).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _hash_code(h, const)
        else:
            h.update(repr(const).encode())


def _check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        msg = (
            f"{kind} name {name!r} is not valid: use a non-empty string of letters, digits and "
            "'_', '-', '.', ':', '/' or spaces, e.g. 'deploy-service'."
        )
        raise RegistrationError(msg)
    if name.startswith(_RESERVED_PREFIXES):
        msg = f"{kind} name {name!r} is reserved for pi_duroxide_nb's own activities; choose another name."
        raise RegistrationError(msg)
    return name


@dataclass(frozen=True)
class WorkflowDefinition:
    """One registered version of a workflow."""

    name: str
    fn: Callable[..., Any]
    version: str
    """Derived from the code (see ``code_version``)."""
    description: str | None = None
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    registered_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    source: str | None = None
    """The function's source text, when Python can find it."""


@dataclass(frozen=True)
class ActivityDefinition:
    """A registered activity: ``fn(ctx, input)``, sync or ``async def``."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    description: str | None = None


class WorkflowRegistry:
    """The workflows and activities a runtime can run.

    Registering a name again with changed code adds a new version: new instances use it,
    instances already running keep the version they started with, and every version stays
    listed by ``versions(name)``. Runtimes built on the registry pick up changes at once.

    Example:
        registry = WorkflowRegistry()
        registry.register_workflow("echo", lambda ctx, x: (yield from ()) or x)
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._workflows: dict[str, list[WorkflowDefinition]] = {}
        self._activities: dict[str, ActivityDefinition] = {}
        self._listeners: list[Callable[[], None]] = []
        self._generation = 0

    # --- registration -------------------------------------------------------------------

    @overload
    def register_workflow(
        self,
        name: str,
        fn: None = None,
        *,
        description: str | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def register_workflow(
        self,
        name: str,
        fn: F,
        *,
        description: str | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> F: ...

    def register_workflow(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *,
        description: str | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
    ) -> Any:
        """Register a generator function as a workflow; usable as a decorator or a plain call.

        Args:
            name: The workflow's name.
            fn: ``fn(ctx, input)``, a generator function. Omit it to use this as a decorator.
            description: One line shown to people and LLMs.
            input_model: Validates the input before anything is persisted; the workflow
                receives an instance of it.
            output_model: Validates the return value; states carry an instance of it.

        Returns:
            ``fn`` unchanged (or a decorator that returns it).

        Raises:
            RegistrationError: the name is invalid or ``fn`` is not a generator function.
        """
        _check_name("Workflow", name)
        for label, model in (("input_model", input_model), ("output_model", output_model)):
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                msg = f"{label} for workflow {name!r} must be a pydantic BaseModel subclass, not {model!r}."
                raise RegistrationError(msg)

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self._add_workflow(name, func, description, input_model, output_model)
            return func

        return decorate if fn is None else decorate(fn)

    def _add_workflow(
        self,
        name: str,
        fn: Callable[..., Any],
        description: str | None,
        input_model: type[BaseModel] | None,
        output_model: type[BaseModel] | None,
    ) -> None:
        _check_workflow_function(name, fn)
        version = code_version(fn)
        source = function_source(fn)
        definition = WorkflowDefinition(
            name=name,
            fn=fn,
            version=version,
            description=description if description is not None else inspect.getdoc(fn),
            input_model=input_model,
            output_model=output_model,
            source=source,
        )
        with self._lock:
            versions = self._workflows.setdefault(name, [])
            # Same code again: keep one entry per version, moved to the end (newest).
            versions[:] = [d for d in versions if d.version != version]
            versions.append(definition)
            self._generation += 1
        self._notify()

    def register_activity(
        self, name: str, fn: Callable[..., Any] | None = None, *, description: str | None = None
    ) -> Any:
        """Register an activity ``fn(ctx, input)``; usable as a decorator or a plain call.

        Activities do the real work (I/O, side effects). They run at least once per scheduled
        call and their result is persisted. ``async def`` activities run on an event loop of
        their own in the worker thread.

        Raises:
            RegistrationError: the name is invalid or ``fn`` is not callable.
        """
        _check_name("Activity", name)

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(func):
                msg = f"Activity {name!r} must be a function fn(ctx, input), not {func!r}."
                raise RegistrationError(msg)
            if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
                msg = (
                    f"Activity {name!r} is a generator function. Activities return a value; "
                    "generators with yield are workflows: use register_workflow for it."
                )
                raise RegistrationError(msg)
            self._add_activity(ActivityDefinition(name, func, inspect.iscoroutinefunction(func), description))
            return func

        return decorate if fn is None else decorate(fn)

    def _add_activity(self, definition: ActivityDefinition) -> None:
        with self._lock:
            self._activities[definition.name] = definition
            self._generation += 1
        self._notify()

    # --- lookup -------------------------------------------------------------------------

    def workflow(self, name: str, version: str | None = None) -> WorkflowDefinition:
        """Return the newest definition of ``name`` (or the given version).

        Raises:
            WorkflowNotFoundError: no such workflow (or version) is registered.
        """
        with self._lock:
            versions = self._workflows.get(name)
            if not versions:
                raise WorkflowNotFoundError(name, list(self._workflows))
            if version is None:
                return versions[-1]
            for definition in versions:
                if definition.version == version:
                    return definition
        msg_names = [f"{name}@{v.version}" for v in versions]
        raise WorkflowNotFoundError(f"{name}@{version}", msg_names)

    def versions(self, name: str) -> list[WorkflowDefinition]:
        """Every registered version of ``name``, oldest first."""
        with self._lock:
            return list(self._workflows.get(name, ()))

    def workflow_names(self) -> list[str]:
        """The registered workflow names, sorted."""
        with self._lock:
            return sorted(self._workflows)

    def all_workflow_versions(self) -> list[WorkflowDefinition]:
        """Every version of every workflow."""
        with self._lock:
            return [d for versions in self._workflows.values() for d in versions]

    def activities(self) -> list[ActivityDefinition]:
        """The registered activities."""
        with self._lock:
            return list(self._activities.values())

    def activity(self, name: str) -> ActivityDefinition | None:
        """The activity called ``name``, if registered."""
        with self._lock:
            return self._activities.get(name)

    @property
    def generation(self) -> int:
        """Increases with every registration; runtimes compare it to know they are stale."""
        return self._generation

    # --- change notification --------------------------------------------------------------

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after every registration; returns the function that unsubscribes."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def unregister(self, name: str) -> list[WorkflowDefinition]:
        """Remove the workflow ``name`` (every version of it); returns what was removed, oldest first.

        New starts of it then fail with ``WorkflowNotFoundError``, and runtimes on this registry
        stop offering it at once. Instances of it that are still running need its code: the
        engine retries them with a growing backoff and fails them after about 5 minutes unless
        the workflow is registered again, so cancel or finish them first.

        Example:
            registry.unregister("deploy")

        Raises:
            WorkflowNotFoundError: no workflow of that name is registered.
        """
        with self._lock:
            removed = self._workflows.pop(name, None)
            if removed is None:
                raise WorkflowNotFoundError(name, list(self._workflows))
            self._generation += 1
        self._notify()
        return list(removed)

    def clear(self) -> None:
        """Forget every registration (for tests)."""
        with self._lock:
            self._workflows.clear()
            self._activities.clear()
            self._generation += 1
        self._notify()


def _check_workflow_function(name: str, fn: Any) -> None:
    if not callable(fn):
        msg = f"Workflow {name!r} must be a generator function fn(ctx, input), not {fn!r}."
        raise RegistrationError(msg)
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        msg = (
            f"Workflow {name!r} is an async function. The engine replays workflows by re-running "
            "generators, so write it as a plain generator: use `def` and `yield ctx....` instead "
            "of `async def` and `await`. Put async I/O in an activity (register_activity accepts "
            "async functions)."
        )
        raise RegistrationError(msg)
    if not inspect.isgeneratorfunction(fn):
        msg = (
            f"Workflow {name!r} is a plain function, not a generator: it never yields, so no step "
            "would be persisted. Write `x = yield ctx.schedule_activity(...)` (or any ctx call) "
            "in its body."
        )
        raise RegistrationError(msg)
    if not hasattr(fn, "__code__"):
        msg = f"Workflow {name!r} must be a Python function defined with def, not {type(fn).__name__}."
        raise RegistrationError(msg)


default_registry = WorkflowRegistry()
"""The registry used by ``register_workflow``/``register_activity`` and by runtimes by default."""


def register_workflow(
    name: str,
    fn: Callable[..., Any] | None = None,
    *,
    description: str | None = None,
    input_model: type[BaseModel] | None = None,
    output_model: type[BaseModel] | None = None,
) -> Any:
    """Register a workflow in the default registry (see ``WorkflowRegistry.register_workflow``).

    Example:
        @pdn.register_workflow("deploy", description="Build, test and deploy a service")
        def deploy(ctx, input):
            build = yield ctx.pi.tool("bash", {"command": "make build"})
            return {"status": "deployed"}
    """
    return default_registry.register_workflow(
        name, fn, description=description, input_model=input_model, output_model=output_model
    )


def register_activity(name: str, fn: Callable[..., Any] | None = None, *, description: str | None = None) -> Any:
    """Register an activity in the default registry (see ``WorkflowRegistry.register_activity``).

    Example:
        @pdn.register_activity("fetch")
        def fetch(ctx, url):
            return httpx.get(url).text
    """
    return default_registry.register_activity(name, fn, description=description)
