"""Turn the text of a ``%%workflow`` cell into registered workflows, and flag code that breaks replay.

Plain Python, no IPython: the cell magic transforms the cell with IPython's input
transformers and calls ``define_workflow``; tests and scripts call it directly.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import linecache
import re
import types
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from .._errors import RegistrationError
from ..engine import VersionWarning, WorkflowRegistry, default_registry, format_ref

__all__ = [
    "CellRegistration",
    "DeterminismIssue",
    "DeterminismWarning",
    "check_determinism",
    "define_workflow",
]

_CELL_IDS = itertools.count(1)
_FUNCTION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


class DeterminismWarning(UserWarning):
    """Workflow code calls something that gives a different answer when the engine replays it."""


@dataclass(frozen=True)
class DeterminismIssue:
    """One call in workflow code that breaks deterministic replay, and what to use instead.

    Example:
        [str(i) for i in pdn.check_determinism("now = time.time()")]
        # ["line 1: time.time() reads the clock, which differs on every replay; use `now = yield ctx.utc_now()`"]
    """

    line: int
    """Line in the cell (from 1)."""
    call: str
    """The call as written, e.g. ``time.time``."""
    reason: str
    """Why it breaks replay."""
    instead: str
    """The replay-safe alternative."""

    def __str__(self) -> str:
        return f"line {self.line}: {self.call}() {self.reason}; use {self.instead}"


@dataclass(frozen=True)
class CellRegistration:
    """What registering one workflow from a cell did.

    ``str()`` is the one line the ``%%workflow`` magic prints.
    """

    name: str
    """The workflow's name."""
    version: str
    """The version now used by new starts."""
    previous_version: str | None
    """The newest version before this cell ran, if the name was registered."""
    issues: tuple[DeterminismIssue, ...] = ()
    """Determinism problems found in the code (also emitted as ``DeterminismWarning``)."""
    seen_before: bool = False
    """This version was registered before (an older cell run again)."""
    replaced: bool = False
    """The cell re-used a version number with different code: that code replaced the version's old code."""

    @property
    def changed(self) -> bool:
        """True when the cell registered a version that was not the newest before."""
        return self.version != self.previous_version

    def __str__(self) -> str:
        ref = format_ref(self.name, self.version)
        if self.previous_version is None:
            return f"Workflow {self.name!r} registered ({ref})."
        if self.replaced:
            return (
                f"Workflow {self.name!r}: {ref} now runs this cell's code, which replaced the code registered "
                "before under that number; instances in flight on it replay the new code."
            )
        if not self.changed:
            return f"Workflow {self.name!r} unchanged ({ref})."
        again = " again" if self.seen_before else ""
        return (
            f"Workflow {self.name!r}: new instances start on {ref}{again} "
            f"(was {format_ref(self.name, self.previous_version)}); instances in flight keep the version they "
            "started on."
        )


# --- determinism checks ------------------------------------------------------------------------

_CLOCK = ("reads the clock, which differs on every replay", "`now = yield ctx.utc_now()`")
_RANDOM = (
    "gives a different value on every replay",
    "`yield ctx.new_guid()` for ids, or draw the value in an activity",
)
_PRINT = ("runs again on every replay, so the output repeats", "ctx.trace_info(...)")
_FILE = ("does file I/O, which is not recorded and repeats on every replay", "an activity (pdn.register_activity)")
_NET = ("does network I/O, which is not recorded and repeats on every replay", "an activity (pdn.register_activity)")
_SLEEP = ("blocks the engine's thread and is not durable", "`yield ctx.schedule_timer(ms)`")
_ENV = (
    "reads process state that can differ when the instance resumes",
    "pass it in the input, or read it in an activity",
)

_EXACT: dict[str, tuple[str, str]] = {
    "time.time": _CLOCK,
    "time.time_ns": _CLOCK,
    "time.monotonic": _CLOCK,
    "time.monotonic_ns": _CLOCK,
    "time.perf_counter": _CLOCK,
    "time.perf_counter_ns": _CLOCK,
    "time.localtime": _CLOCK,
    "time.gmtime": _CLOCK,
    "time.sleep": _SLEEP,
    "datetime.datetime.now": _CLOCK,
    "datetime.datetime.utcnow": _CLOCK,
    "datetime.datetime.today": _CLOCK,
    "datetime.date.today": _CLOCK,
    "uuid.uuid1": ("is made from the clock and differs on every replay", "`guid = yield ctx.new_guid()`"),
    "uuid.uuid4": ("is random and differs on every replay", "`guid = yield ctx.new_guid()`"),
    "builtins.print": _PRINT,
    "builtins.open": _FILE,
    "builtins.input": ("waits for a person outside the engine", "`yield ctx.wait_for_event(name)` and a signal"),
    "io.open": _FILE,
    "os.getenv": _ENV,
    "os.environ.get": _ENV,
    "os.getcwd": _ENV,
    "os.urandom": _RANDOM,
    "secrets.token_hex": _RANDOM,
    "urllib.request.urlopen": _NET,
}
_MODULES: dict[str, tuple[str, str]] = {
    "random": _RANDOM,
    "numpy.random": _RANDOM,
    "secrets": _RANDOM,
    "shutil": _FILE,
    "subprocess": ("starts a process on every replay", "an activity (pdn.register_activity)"),
    "socket": _NET,
    "requests": _NET,
    "httpx": _NET,
    "aiohttp": _NET,
    "urllib.request": _NET,
    "http.client": _NET,
}
_OS_SAFE = ("os.path.join", "os.path.basename", "os.path.dirname", "os.path.splitext", "os.fspath", "os.path.normpath")
_FILE_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes"}


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _qualified(obj: Any) -> str | None:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        return f"{module}.{qualname}"
    return None


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Names bound by imports anywhere in the cell: ``{"dt": "datetime.datetime"}``."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _resolve(dotted: str, aliases: Mapping[str, str], namespace: Mapping[str, Any]) -> str | None:
    """The qualified name a call refers to, or ``None`` when its root is not imported or defined.

    Unknown roots are skipped rather than guessed, so a local list called ``requests`` is not
    taken for the HTTP library.
    """
    root, _, rest = dotted.partition(".")
    if root in aliases:
        base: str | None = aliases[root]
    elif root in namespace:
        base = _qualified(namespace[root])
    elif root in ("print", "open", "input"):
        base = f"builtins.{root}"
    else:
        return None
    if base is None:
        return None
    return f"{base}.{rest}" if rest else base


def _rule(qualified: str, attr: str | None) -> tuple[str, str] | None:
    if qualified in _EXACT:
        return _EXACT[qualified]
    for module, rule in _MODULES.items():
        if qualified.startswith(module + "."):
            return rule
    if qualified.startswith("os.") and not qualified.startswith(_OS_SAFE) and not qualified.startswith("os.path."):
        return _FILE
    if attr in _FILE_METHODS:
        return _FILE
    return None


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Walk statements without entering nested functions, lambdas or classes (they may be activities)."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, _FUNCTION_NODES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


# What IPython's input transformers make of `!cmd`, `x = !cmd` and `%magic` lines in a cell.
_SHELL: dict[str, tuple[str, str]] = {
    "system": ("runs a shell command (!cmd) on every replay", "an activity (pdn.register_activity)"),
    "getoutput": ("runs a shell command (!cmd) on every replay", "an activity (pdn.register_activity)"),
    "run_line_magic": ("runs an IPython magic (%magic) on every replay", "an activity, or run it outside the workflow"),
    "run_cell_magic": (
        "runs an IPython magic (%%magic) on every replay",
        "an activity, or run it outside the workflow",
    ),
}


def _shell_call(func: ast.expr) -> str | None:
    """``get_ipython().system`` and the like, as written by the transformers; else ``None``."""
    if (
        isinstance(func, ast.Attribute)
        and func.attr in _SHELL
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    ):
        return f"get_ipython().{func.attr}"
    return None


def _issues(body: list[ast.stmt], aliases: Mapping[str, str], namespace: Mapping[str, Any]) -> list[DeterminismIssue]:
    found: list[DeterminismIssue] = []
    for node in _own_nodes(body):
        if not isinstance(node, ast.Call):
            continue
        dotted = _dotted(node.func)
        attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
        if dotted is None and attr is None:
            continue
        rule = _rule((_resolve(dotted, aliases, namespace) if dotted else None) or "", attr)
        shell_call = _shell_call(node.func)
        if shell_call is not None:
            dotted, rule = shell_call, _SHELL.get(attr or "")
        if rule is not None:
            call = dotted or f"….{attr}"
            found.append(DeterminismIssue(line=node.lineno, call=call, reason=rule[0], instead=rule[1]))
    return found


def check_determinism(source: str, *, namespace: Mapping[str, Any] | None = None) -> list[DeterminismIssue]:
    """List the calls in workflow code that break deterministic replay.

    Checks a cell body or cell of ``def`` statements: clock reads (``time.time``,
    ``datetime.now``), randomness (``random``, ``uuid4``), ``print``, file and network I/O,
    ``time.sleep``, and ``!cmd`` / ``%magic`` lines (as IPython's transformers wrote them).
    Code inside nested functions is skipped (it may be an activity). Names are resolved
    through the cell's imports and ``namespace`` (the notebook's globals), so
    ``from random import choice`` in an earlier cell is still caught.

    Raises:
        SyntaxError: the code does not parse.
    """
    tree = ast.parse(source)
    ns = namespace or {}
    aliases = _aliases(tree)
    if _is_definitions(tree):
        found = []
        for fn in _generator_defs(tree):
            found.extend(_issues(fn.body, aliases, ns))
        return found
    return _issues(tree.body, aliases, ns)


# --- building the workflow function -------------------------------------------------------------


def _has_yield(body: list[ast.stmt]) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(body))


def _has_top_level(body: list[ast.stmt], kinds: tuple[type[ast.AST], ...]) -> bool:
    return any(isinstance(n, kinds) for n in _own_nodes(body))


def _generator_defs(tree: ast.Module) -> list[ast.FunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and _has_yield(n.body)]


def _is_definitions(tree: ast.Module) -> bool:
    """A cell that defines workflow functions rather than being one's body."""
    if _has_top_level(tree.body, (ast.Yield, ast.YieldFrom, ast.Return, ast.Await)):
        return False
    return bool(_generator_defs(tree)) or any(isinstance(n, ast.AsyncFunctionDef) for n in tree.body)


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return f"_{ident}" if not ident or ident[0].isdigit() else ident


def _cache_source(source: str) -> str:
    filename = f"<workflow-cell-{next(_CELL_IDS)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return filename


def _check_model(name: str, input_model: Any) -> None:
    if input_model is not None and not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
        msg = (
            f"--input-model for workflow {name!r} must name a pydantic BaseModel subclass, not {input_model!r}. "
            "Define `class MyInput(pydantic.BaseModel): ...` in a cell first."
        )
        raise RegistrationError(msg)


def define_workflow(
    name: str | None,
    source: str,
    *,
    description: str | None = None,
    input_model: type[BaseModel] | None = None,
    registry: WorkflowRegistry | None = None,
    namespace: dict[str, Any] | None = None,
    filename: str | None = None,
    version: str | None = None,
) -> list[CellRegistration]:
    r"""Register the workflow(s) written in a notebook cell; the Python twin of ``%%workflow``.

    Two shapes of cell are understood:

    * a **body** (it uses ``yield`` or ``return`` at its top level, or neither): it becomes
      ``def <name>(ctx, input): <body>``, a generator even without a ``yield``;
    * **definitions**: the cell defines generator functions with ``def``. It runs in
      ``namespace`` and each generator function is registered under its own name, or under
      ``name`` when it defines exactly one.

    Re-running edited code registers a new version (instances in flight keep theirs); the
    returned ``CellRegistration`` says which. Calls that break replay (``time.time``,
    ``random``, ``print``, I/O, ...) are reported as ``DeterminismWarning`` s, not errors.

    Example:
        pdn.define_workflow("greet", "name = yield ctx.pi.llm([...])\nreturn name")

    Args:
        name: The workflow's name; optional for a cell of definitions.
        source: The cell's code (already through IPython's input transformers).
        description: One line shown in listings and to LLMs.
        input_model: A pydantic model that validates inputs.
        registry: Where to register; ``pdn.default_registry`` by default.
        namespace: The globals the code runs with (the notebook's user namespace); a fresh
            dict by default.
        filename: The name tracebacks show for this code.
        version: A version number given by hand (``"2"``) instead of the code version (see
            ``register_workflow``); for a cell that defines one workflow.

    Returns:
        One ``CellRegistration`` per registered workflow.

    Raises:
        RegistrationError: ``async`` code, no workflow in a cell of definitions, a missing
            or ambiguous name, or an invalid name or model.
        SyntaxError: the code does not parse.
    """
    target = registry if registry is not None else default_registry
    ns: dict[str, Any] = namespace if namespace is not None else {}
    _check_model(name or "?", input_model)
    filename = filename or _cache_source(source)
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    async_defs = [n.name for n in tree.body if isinstance(n, ast.AsyncFunctionDef)]
    if _is_definitions(tree):
        if async_defs:
            msg = (
                f"{', '.join(async_defs)} is defined with `async def`. The engine replays a workflow by "
                "re-running a generator, so write `def` and `x = yield ctx....` instead of `await`; "
                "put async I/O in an activity (register_activity accepts async functions)."
            )
            raise RegistrationError(msg)
        defs = _generator_defs(tree)
        if name is not None and len(defs) > 1:
            listed = ", ".join(d.name for d in defs)
            msg = (
                f"This cell defines {len(defs)} generator functions ({listed}), so the name {name!r} is "
                "ambiguous. Put one workflow per %%workflow NAME cell, or leave NAME out to register each "
                "under its function name."
            )
            raise RegistrationError(msg)
        exec(compile(tree, filename, "exec"), ns)  # noqa: S102 - running the user's own cell is the point
        results = []
        for fn_node in defs:
            fn = ns[fn_node.name]
            issues = _issues(fn_node.body, aliases, ns)
            results.append(
                _register(target, name or fn_node.name, fn, description, input_model, issues, filename, version)
            )
        return results
    if name is None:
        msg = (
            "This cell is a workflow body (it yields or returns at its top level), so it needs a name: "
            "start it with `%%workflow NAME`."
        )
        raise RegistrationError(msg)
    if _has_top_level(tree.body, (ast.Await, ast.AsyncFor, ast.AsyncWith)):
        msg = (
            f"Workflow {name!r} uses `await`/`async for`/`async with`. The engine replays a workflow by "
            "re-running a generator, so write `x = yield ctx....` instead of `await`; put async I/O in an "
            "activity (register_activity accepts async functions)."
        )
        raise RegistrationError(msg)
    issues = _issues(tree.body, aliases, ns)
    fn = _body_function(name, tree, filename, ns)
    return [_register(target, name, fn, description, input_model, issues, filename, version)]


def _body_function(name: str, tree: ast.Module, filename: str, namespace: dict[str, Any]) -> Any:
    body = list(tree.body) or [ast.Pass()]
    if not _has_yield(body):
        # `if False: yield` makes a generator without running anything: the engine accepts
        # only generators, and a body that never yields is still a (one-step) workflow.
        body.append(ast.If(test=ast.Constant(False), body=[ast.Expr(ast.Yield(None))], orelse=[]))
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg("ctx"), ast.arg("input")],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[],
    )
    fn_def = ast.FunctionDef(name=_identifier(name), args=args, body=body, decorator_list=[], returns=None)
    fn_def.lineno, fn_def.col_offset = 1, 0
    module = ast.Module(body=[fn_def], type_ignores=[])
    ast.fix_missing_locations(module)
    scope: dict[str, Any] = {}
    exec(compile(module, filename, "exec"), namespace, scope)  # noqa: S102 - the user's own cell
    fn = scope[fn_def.name]
    # A new kernel rebuilds this version from the store with this source (see code_identity).
    fn.__pdn_rebuild__ = ast.unparse(fn_def)
    return fn


def _register(
    registry: WorkflowRegistry,
    name: str,
    fn: Any,
    description: str | None,
    input_model: type[BaseModel] | None,
    issues: list[DeterminismIssue],
    filename: str,
    version: str | None = None,
) -> CellRegistration:
    if not inspect.isgeneratorfunction(fn):  # pragma: no cover - _generator_defs guarantees it
        msg = f"{name!r} is not a generator function."
        raise RegistrationError(msg)
    # Versions restored from the store serve their instances; they are not what the user ran before.
    versions = [d for d in registry.versions(name) if not d.restored]
    previous = versions[-1].version if versions else None
    known = {d.version for d in versions}
    before = {d.version: d.code_hash for d in registry.versions(name)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", VersionWarning)
        registry.register_workflow(name, fn, description=description, input_model=input_model, version=version)
    definition = registry.workflow(name)
    version = definition.version
    for warning in caught:
        # Attributed to the cell (not to this module), like the determinism warnings below.
        if issubclass(warning.category, VersionWarning):
            warnings.warn_explicit(str(warning.message), VersionWarning, filename, 1, module=filename)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    for issue in issues:
        # warn_explicit with no registry: shown every time the cell runs, attributed to the cell.
        warnings.warn_explicit(f"workflow {name!r}, {issue}", DeterminismWarning, filename, issue.line, module=filename)
    return CellRegistration(
        name=name,
        version=version,
        previous_version=previous,
        issues=tuple(issues),
        seen_before=version in known,
        replaced=version in before and before[version] != definition.code_hash,
    )
