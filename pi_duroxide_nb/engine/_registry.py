"""Workflow and activity registrations, with versions derived from the code itself."""

from __future__ import annotations

import hashlib
import inspect
import linecache
import re
import sys
import threading
import types
import warnings
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
    "CodeOrigin",
    "VersionWarning",
    "code_identity",
    "code_version",
    "default_registry",
    "explicit_version",
    "format_ref",
    "format_version",
    "is_notebook_code",
    "semver_key",
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


_SIMPLE = (type(None), bool, int, float, str, bytes)
_NOTEBOOK_FILES = ("<workflow-cell-", "<ipython-input-", "<cell-")


def _is_simple(value: Any) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_is_simple(v) for v in value)
    return isinstance(value, _SIMPLE)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _lookup(namespace: Any, name: str) -> Any:
    """``namespace[name]``, honouring a dict subclass's ``__missing__`` (restored code's globals)."""
    try:
        return namespace[name]
    except KeyError:
        return _MISSING


_MISSING = object()


def is_notebook_code(fn: Any) -> bool:
    """Whether a function was defined in a notebook cell (or a ``%%workflow`` cell), not a module file."""
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        return False
    filename = code.co_filename
    if filename.startswith(_NOTEBOOK_FILES) or getattr(fn, "__module__", None) == "__main__":
        return True
    # ipykernel compiles cells to files named after the cell's hash in a temp folder.
    return "ipykernel_" in filename and filename.endswith(".py")


def _helper(owner: Callable[..., Any], value: Any) -> bool:
    """Whether ``value`` is a function whose code is part of ``owner``'s (a helper it calls)."""
    if not isinstance(value, types.FunctionType) or value is owner:
        return False
    return is_notebook_code(value) or value.__module__ == getattr(owner, "__module__", None)


@dataclass(frozen=True)
class CodeOrigin:
    """How a workflow version was defined, and what a new process needs to rebuild it."""

    kind: str
    """``"cell"`` (a ``%%workflow`` cell or a ``def`` in a notebook), ``"module"`` (importable),
    or ``"closure"`` (a nested function: its captured variables cannot be rebuilt)."""
    function: str
    """The name the rebuild source defines, or the function's qualified name in its module."""
    module: str | None = None
    """The importable module, for ``kind == "module"``."""
    rebuild: str | None = None
    """Python source that defines ``function`` (decorators stripped), for ``kind == "cell"``."""
    helpers: dict[str, str] = field(default_factory=dict)
    """Rebuild sources of the notebook functions it calls, by global name."""
    constants: dict[str, str] = field(default_factory=dict)
    """``repr`` of the simple global values it reads (numbers, strings, tuples), by name."""
    imports: dict[str, str] = field(default_factory=dict)
    """Modules it refers to (global name -> module name) and imported objects (name -> ``module:qualname``)."""


def _def_source(fn: Callable[..., Any]) -> str | None:
    """``def name(...): ...`` for a function, decorators stripped, or None when its source is unknown."""
    source = function_source(fn)
    if source is None:
        return None
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn.__name__:
            node.decorator_list = []
            return ast.unparse(node)
    return None


def code_identity(fn: Callable[..., Any], *, rebuild: str | None = None) -> tuple[str, CodeOrigin]:
    """The code version of ``fn`` and what is needed to rebuild it in another process.

    The hash covers the bytecode, constants, names and nested code objects, the default
    arguments, the values a closure captured, and what the code reads from its globals: the
    code of the notebook (or same-module) helper functions it calls, recursively, the simple
    values it reads (numbers, strings, tuples) and the names of modules it uses. Not line
    numbers or comments: moving a cell or editing a comment keeps the version; changing what
    runs, in the workflow or in a helper edited in another cell, makes a new one. The same code
    gives the same version in every process, which is what lets a restarted kernel resume.

    Args:
        fn: The workflow function.
        rebuild: Source that defines ``fn`` when its own source is not a ``def`` (a
            ``%%workflow`` body is wrapped into one); the function's ``__pdn_rebuild__``
            attribute by default.
    """
    if rebuild is None:
        rebuild = getattr(fn, "__pdn_rebuild__", None)
    h = hashlib.sha256()
    helpers: dict[str, str] = {}
    constants: dict[str, str] = {}
    imports: dict[str, str] = {}
    seen: set[int] = set()

    def visit(func: Callable[..., Any]) -> None:
        if id(func) in seen:
            h.update(b"<recursion>")
            return
        seen.add(id(func))
        code = func.__code__
        _hash_code(h, code)
        h.update(repr(getattr(func, "__defaults__", None)).encode())
        h.update(repr(sorted((getattr(func, "__kwdefaults__", None) or {}).items())).encode())
        for cell in getattr(func, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell (a name assigned later)
                h.update(b"<empty cell>")
                continue
            if isinstance(value, types.FunctionType):
                visit(value)
            elif _is_simple(value):
                h.update(repr(value).encode())
            else:
                h.update(f"<{type(value).__module__}.{type(value).__qualname__}>".encode())
        namespace = getattr(func, "__globals__", {})
        for name in sorted(_global_names(code)):
            value = _lookup(namespace, name)
            if value is _MISSING:
                continue
            if _helper(fn, value):
                h.update(f"helper {name}:".encode())
                if name not in helpers:
                    source = _def_source(value)
                    if source is not None and not value.__code__.co_freevars:
                        helpers[name] = source
                visit(value)
            elif isinstance(value, types.ModuleType):
                h.update(f"module {name}={value.__name__}".encode())
                imports[name] = value.__name__
            elif _is_simple(value) and not name.startswith("__"):
                h.update(f"const {name}={value!r}".encode())
                constants[name] = repr(value)
            elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
                # Imported from a library (``from json import dumps``): rebuilt by importing it.
                owner = getattr(value, "__module__", None)
                qualname = getattr(value, "__qualname__", "")
                if isinstance(owner, str) and owner != "__main__" and "<locals>" not in qualname:
                    imports.setdefault(name, f"{owner}:{qualname}")

    visit(fn)
    version = f"0.0.0-c{h.hexdigest()[:12]}"
    module = getattr(fn, "__module__", None)
    mod = sys.modules.get(module) if isinstance(module, str) else None
    if fn.__code__.co_freevars:
        origin = CodeOrigin(kind="closure", function=fn.__qualname__, module=module)
    elif (
        module not in (None, "__main__")
        and mod is not None
        and getattr(mod, "__file__", None) == fn.__code__.co_filename
        and "<locals>" not in fn.__qualname__
    ):
        origin = CodeOrigin(kind="module", function=fn.__qualname__, module=module)
    else:
        origin = CodeOrigin(
            kind="cell",
            function=fn.__name__,
            rebuild=rebuild if rebuild is not None else _def_source(fn),
            helpers=helpers,
            constants=constants,
            imports=imports,
        )
    return version, origin


def code_version(fn: Callable[..., Any]) -> str:
    """Return a semver version string that identifies the code of ``fn`` (see ``code_identity``)."""
    return code_identity(fn)[0]


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


_EXPLICIT = re.compile(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def explicit_version(version: Any) -> str:
    """Normalise a version given by hand (``"2"``, ``"1.3"``, ``"1.3.0"``) to ``X.Y.Z``.

    Raises:
        RegistrationError: it is not one to three dot-separated numbers.
    """
    m = _EXPLICIT.match(version) if isinstance(version, str) else None
    if m is None:
        msg = (
            f"version={version!r} is not a version number. Use one to three dot-separated numbers, "
            "e.g. version='2' or version='1.4.0'; leave it out to version by code."
        )
        raise RegistrationError(msg)
    return ".".join(str(int(p or 0)) for p in m.groups())


def semver_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key in semver order (duroxide needs each name's versions registered in that order)."""
    core, _, pre = version.partition("-")
    parts = [int(p) if p.isdigit() else 0 for p in core.split(".")] + [0, 0, 0]
    return (parts[0], parts[1], parts[2], 0 if pre else 1, pre)


def format_version(version: str) -> str:
    """The short form every message uses: ``c7b9a1f2`` for a code version, ``1.2.0`` for an explicit one."""
    if version.startswith("0.0.0-c"):
        return version[6:14]
    return version


def format_ref(name: str, version: str) -> str:
    """``name@short-version``, the one way messages name a workflow version."""
    return f"{name}@{format_version(version)}"


class VersionWarning(UserWarning):
    """A registration reused a version number for different code."""


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
    origin: CodeOrigin | None = None
    """How it was defined and how to rebuild it (kept with the store for restarted kernels)."""
    code_hash: str = ""
    """The code version, also when ``version`` was given by hand."""
    restored: bool = False
    """Rebuilt from the store's code versions rather than registered by the user's code."""

    @property
    def ref(self) -> str:
        """``name@short-version`` (see ``format_ref``)."""
        return format_ref(self.name, self.version)


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
        version: str | None = None,
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
        version: str | None = None,
    ) -> F: ...

    def register_workflow(
        self,
        name: str,
        fn: Callable[..., Any] | None = None,
        *,
        description: str | None = None,
        input_model: type[BaseModel] | None = None,
        output_model: type[BaseModel] | None = None,
        version: str | None = None,
    ) -> Any:
        """Register a generator function as a workflow; usable as a decorator or a plain call.

        Args:
            name: The workflow's name.
            fn: ``fn(ctx, input)``, a generator function. Omit it to use this as a decorator.
            description: One line shown to people and LLMs.
            input_model: Validates the input before anything is persisted; the workflow
                receives an instance of it.
            output_model: Validates the return value; states carry an instance of it.
            version: A version number given by hand (``"2"``, ``"1.4.0"``) instead of the code
                version. Use it to name a version yourself; registering the same number again
                with different code replaces it and warns (``VersionWarning``): instances in
                flight then replay the new code.

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

        pinned = explicit_version(version) if version is not None else None

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            self._add_workflow(name, func, description, input_model, output_model, version=pinned)
            return func

        return decorate if fn is None else decorate(fn)

    def _add_workflow(
        self,
        name: str,
        fn: Callable[..., Any],
        description: str | None,
        input_model: type[BaseModel] | None,
        output_model: type[BaseModel] | None,
        *,
        version: str | None = None,
        rebuild: str | None = None,
        source: str | None = None,
        restored: bool = False,
    ) -> WorkflowDefinition:
        _check_workflow_function(name, fn)
        code_hash, origin = code_identity(fn, rebuild=rebuild)
        definition = WorkflowDefinition(
            name=name,
            fn=fn,
            version=version or code_hash,
            description=description if description is not None else inspect.getdoc(fn),
            input_model=input_model,
            output_model=output_model,
            source=source if source is not None else function_source(fn),
            origin=origin,
            code_hash=code_hash,
            restored=restored,
        )
        with self._lock:
            versions = self._workflows.setdefault(name, [])
            for old in versions:
                if old.version == definition.version and old.code_hash != code_hash:
                    msg = (
                        f"Workflow {name!r} version {definition.version} was registered before with different "
                        f"code ({format_version(old.code_hash)}, now {format_version(code_hash)}). The new code "
                        "replaces it, and instances in flight on this version replay it: if they diverge they "
                        "fail. Give changed code a new version number to keep running instances on the old code."
                    )
                    warnings.warn(msg, VersionWarning, stacklevel=4)
            # Same version again: keep one entry per version, moved to the end (newest).
            versions[:] = [d for d in versions if d.version != definition.version]
            versions.append(definition)
            self._generation += 1
        self._notify()
        return definition

    def restore_workflow(self, definition: WorkflowDefinition) -> None:
        """Register a version rebuilt from the store, without making it the newest.

        Restored versions serve the instances that started on them; new starts keep using the
        version the user's code registered last.
        """
        with self._lock:
            versions = self._workflows.setdefault(definition.name, [])
            if any(d.version == definition.version for d in versions):
                return
            versions.insert(0, definition)
            self._generation += 1
        self._notify()

    def has_version(self, name: str, version: str) -> bool:
        """Whether ``name@version`` is registered."""
        with self._lock:
            return any(d.version == version for d in self._workflows.get(name, ()))

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
    version: str | None = None,
) -> Any:
    """Register a workflow in the default registry (see ``WorkflowRegistry.register_workflow``).

    Example:
        @pdn.register_workflow("deploy", description="Build, test and deploy a service")
        def deploy(ctx, input):
            build = yield ctx.pi.tool("bash", {"command": "make build"})
            return {"status": "deployed"}
    """
    options: dict[str, Any] = {
        "description": description,
        "input_model": input_model,
        "output_model": output_model,
        "version": version,
    }
    if fn is None:
        return default_registry.register_workflow(name, **options)
    return default_registry.register_workflow(name, fn, **options)


def register_activity(name: str, fn: Callable[..., Any] | None = None, *, description: str | None = None) -> Any:
    """Register an activity in the default registry (see ``WorkflowRegistry.register_activity``).

    Example:
        @pdn.register_activity("fetch")
        def fetch(ctx, url):
            return httpx.get(url).text
    """
    return default_registry.register_activity(name, fn, description=description)
