"""Typed events: the models workflows wait for, and the JSON Schema kept for every sender.

A workflow waits with ``ctx.wait_for_event(name, model=Approval)``; the sender is elsewhere (a
magic, the dashboard, the agent's tool, another kernel). When the workflow yields the wait, the
model is noted here for this process and its JSON Schema is handed to every running runtime,
which keeps it in its code sidecar (``<db>.code.sqlite``, table ``event_schemas``) once per
``(instance, event)``. A sender validates against the model when this process has it, else
against the kept schema, before the event is raised: a bad payload is refused and the instance
keeps waiting.

duroxide keeps workflow functions in one process-global table, so the turn that yields the wait
cannot know which runtime's engine runs it: every running runtime of the process receives the
schema (a row in another store's sidecar is never shown: it is read only for an instance that
store's history says is waiting for that event).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from .._errors import ModelValidationError

__all__ = [
    "add_schema_sink",
    "event_model",
    "model_schema",
    "note_event_model",
    "remove_schema_sink",
    "validate_with_schema",
]

SchemaSink = Callable[[str, str, dict[str, Any], str], None]
"""``sink(instance_id, event_name, json_schema, model_name)``."""

_LOCK = threading.Lock()
_MODELS: OrderedDict[tuple[str, str], type[BaseModel]] = OrderedDict()
_SCHEMAS: dict[type[BaseModel], dict[str, Any]] = {}
_MAX_MODELS = 10_000
"""Models noted for the most recent waits (older ones are read back from the sidecar)."""
_SINKS: list[SchemaSink] = []


def model_name(model: type[BaseModel]) -> str:
    """``module.QualName`` of a model."""
    return f"{model.__module__}.{model.__qualname__}"


def note_event_model(instance_id: str, name: str, model: type[BaseModel]) -> None:
    """Note that ``instance_id`` waits for ``name`` with ``model``; hand its schema to the sinks once."""
    key = (instance_id, name)
    with _LOCK:
        if _MODELS.get(key) is model:
            _MODELS.move_to_end(key)
            return  # a replayed turn: already noted and kept
        _MODELS[key] = model
        while len(_MODELS) > _MAX_MODELS:
            _MODELS.popitem(last=False)
        sinks = list(_SINKS)
    schema = model_schema(model)
    for sink in sinks:
        sink(instance_id, name, schema, model_name(model))


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a model, computed once per model class."""
    with _LOCK:
        schema = _SCHEMAS.get(model)
    if schema is None:
        schema = model.model_json_schema()
        with _LOCK:
            _SCHEMAS[model] = schema
    return schema


def event_model(instance_id: str, name: str) -> type[BaseModel] | None:
    """The model ``instance_id`` waits for ``name`` with, if a turn of this process noted it."""
    with _LOCK:
        return _MODELS.get((instance_id, name))


def add_schema_sink(sink: SchemaSink) -> None:
    """Receive the schema of every typed wait yielded in this process."""
    with _LOCK:
        _SINKS.append(sink)


def remove_schema_sink(sink: SchemaSink) -> None:
    """Stop receiving schemas (safe to call twice)."""
    with _LOCK:
        if sink in _SINKS:
            _SINKS.remove(sink)


def validate_with_schema(schema: dict[str, Any], value: Any, *, what: str, instance_id: str | None) -> None:
    """Check ``value`` against a kept JSON Schema (for a model this process does not have).

    Uses ``jsonschema`` when it is installed (it comes with Jupyter); without it the check is
    left to the workflow, which refuses a bad payload and keeps waiting.

    Raises:
        ModelValidationError: the value does not match, naming the fields.
    """
    try:
        import jsonschema  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover - Jupyter installs it
        return
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    fields = [".".join(str(p) for p in e.absolute_path) or "$" for e in errors]
    problems = "; ".join(f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors)
    where = f" (instance {instance_id!r})" if instance_id else ""
    title = schema.get("title", "its schema")
    msg = f"{what}{where} does not match {title}: {problems}. Fix the value and try again."
    raise ModelValidationError(msg, fields=fields, instance_id=instance_id)
