"""Rebuild a workflow version from its ``CodeRecord``, in a kernel that never ran its cell.

Cell-defined code is compiled into globals that hold what the version read when it was
registered (its notebook helpers, rebuilt from their kept source; its simple values; its
modules) and fall back to the notebook's namespace for everything else (classes, models,
objects), so its globals resolve as they did. The rebuilt function must hash to the kept code
version; if it does not, it is not the code the instances ran, and it is not used.
"""

from __future__ import annotations

import ast
import builtins
import dis
import importlib
import inspect
import types
from collections.abc import Mapping
from typing import Any

from ._codestore import CodeRecord
from ._registry import WorkflowDefinition, code_identity

__all__ = ["RestoreError", "RestoredGlobals", "rebuild_definition"]


class RestoreError(Exception):
    """A kept version cannot be rebuilt; the message says why (plain text for notices)."""


class RestoredGlobals(dict[str, Any]):
    """Globals of restored code: its own kept names first, then the notebook's namespace."""

    def __init__(self, fallback: Mapping[str, Any]) -> None:
        super().__init__()
        self._fallback = fallback

    def __missing__(self, key: str) -> Any:
        return self._fallback[key]


def _import(target: str) -> Any:
    module_name, _, qualname = target.partition(":")
    value: Any = importlib.import_module(module_name)
    for part in qualname.split(".") if qualname else ():
        value = getattr(value, part)
    return value


def _model(name: str | None, namespace: Mapping[str, Any]) -> Any:
    """The pydantic model a record names, or None when it cannot be found."""
    if name is None:
        return None
    module, _, qualname = name.rpartition(".")
    try:
        if module == "__main__" or "<locals>" in qualname:
            return namespace.get(qualname)
        return _import(f"{module}:{qualname}")
    except Exception:
        return None


def _global_loads(code: types.CodeType) -> set[str]:
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_loads(const)
    return {str(n) for n in names}


def _unresolved_globals(fn: Any, seen: set[int] | None = None) -> list[str]:
    """Global names ``fn`` (and the functions it calls from its globals) read that resolve nowhere.

    Replaying such code would fail the instance with a ``NameError``; restoring it waits instead.
    """
    seen = seen if seen is not None else set()
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    namespace = fn.__globals__
    missing: list[str] = []
    for name in sorted(_global_loads(fn.__code__)):
        try:
            value = namespace[name]
        except KeyError:
            if not hasattr(builtins, name):
                missing.append(name)
            continue
        if isinstance(value, types.FunctionType) and value.__globals__ is namespace:
            missing += [m for m in _unresolved_globals(value, seen) if m not in missing]
    return missing


def rebuild_definition(record: CodeRecord, namespace: Mapping[str, Any]) -> WorkflowDefinition:
    """The registered definition of ``record``'s version, rebuilt.

    Raises:
        RestoreError: the version cannot be rebuilt, or what is rebuilt is not the kept code.
    """
    if record.kind == "closure":
        msg = "it is a nested function whose captured variables cannot be rebuilt"
        raise RestoreError(msg)
    if record.kind == "module":
        if record.module is None:
            msg = "its module is unknown"
            raise RestoreError(msg)
        try:
            fn = _import(f"{record.module}:{record.function}")
        except Exception as exc:
            msg = f"importing {record.module}.{record.function} failed ({type(exc).__name__}: {exc})"
            raise RestoreError(msg) from exc
        rebuild = None
    else:
        if not record.rebuild:
            msg = "its source was not available when it was registered"
            raise RestoreError(msg)
        scope = RestoredGlobals(namespace)
        scope["__builtins__"] = __builtins__
        scope["__name__"] = "__main__"
        try:
            for name, target in record.imports.items():
                scope[name] = _import(target)
            for name, text in record.constants.items():
                scope[name] = ast.literal_eval(text)
            for helper_source in record.helpers.values():
                exec(compile(helper_source, f"<restored {record.name}@{record.version} helper>", "exec"), scope)  # noqa: S102
            exec(compile(record.rebuild, f"<restored {record.name}@{record.version}>", "exec"), scope)  # noqa: S102
            fn = scope[record.function]
        except Exception as exc:
            msg = f"rebuilding its source failed ({type(exc).__name__}: {exc})"
            raise RestoreError(msg) from exc
        rebuild = record.rebuild
    if not inspect.isgeneratorfunction(fn):
        msg = f"{record.function} is no longer a generator function"
        raise RestoreError(msg)
    unresolved = _unresolved_globals(fn)
    if unresolved:
        listed = ", ".join(unresolved)
        msg = (
            f"it reads {listed} from the notebook, not defined in this kernel yet: run the cells that define "
            f"{'it' if len(unresolved) == 1 else 'them'} (it is restored as soon as they ran)"
        )
        raise RestoreError(msg)
    code_hash, origin = code_identity(fn, rebuild=rebuild)
    if code_hash != record.code_hash:
        where = f"module {record.module}" if record.kind == "module" else "the rebuilt source"
        msg = f"the code in {where} changed since the instances started (it hashes to {code_hash})"
        raise RestoreError(msg)
    models: dict[str, Any] = {}
    for role, model_name in (("input", record.input_model), ("output", record.output_model)):
        models[role] = _model(model_name, namespace)
        if model_name is not None and models[role] is None:
            # Without it the workflow would get a plain dict instead of its model, and fail.
            short = model_name.rpartition(".")[2]
            msg = (
                f"its {role} model {short} is not defined in this kernel yet: run the cell that defines it "
                "(it is restored as soon as that cell ran)"
            )
            raise RestoreError(msg)
    return WorkflowDefinition(
        name=record.name,
        fn=fn,
        version=record.version,
        description=record.description,
        input_model=models["input"],
        output_model=models["output"],
        source=record.source,
        origin=origin,
        code_hash=code_hash,
        restored=True,
    )
