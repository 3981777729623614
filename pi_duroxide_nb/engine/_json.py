"""JSON payload helpers: everything persisted goes through here first."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .._errors import ModelValidationError, PayloadError

JSON_SCALARS = (str, int, bool, type(None))
"""Types whose values are JSON as they are (``float`` is not: NaN and infinities are not JSON)."""


def to_json_value(value: Any, *, what: str) -> Any:
    """Return ``value`` as plain JSON data (pydantic models dumped), or raise PayloadError.

    Args:
        value: The value to persist.
        what: Words naming the value for the error message, e.g. "the input of 'deploy'".

    Raises:
        PayloadError: a part of the value cannot be written as JSON (the message names its
            path), or it is nested deeper than ``MAX_DEPTH`` levels.
    """
    try:
        return _convert(value, what, "$", 0)
    except RecursionError:  # a deep value met an already deep stack
        raise PayloadError(_too_deep(what, "$")) from None


MAX_DEPTH = 200
"""How deeply lists and objects may nest in a payload (Python's own limits give out near 500)."""


def _too_deep(what: str, path: str) -> str:
    where = path if len(path) <= 60 else path[:57] + "..."
    return (
        f"{what[:1].upper() + what[1:]} is nested more than {MAX_DEPTH} levels deep (at {where}), "
        "which cannot be persisted reliably. Flatten the structure, or store the deep part as a string "
        "(json.dumps) and parse it where it is used."
    )


def _convert(value: Any, what: str, path: str, depth: int) -> Any:
    if isinstance(value, JSON_SCALARS):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            msg = f"{what} holds {value!r} at {path}, which JSON cannot represent. Use a finite number or None."
            raise PayloadError(msg)
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, (Mapping, list, tuple)) and depth >= MAX_DEPTH:
        raise PayloadError(_too_deep(what, path))
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                msg = (
                    f"{what} has a key {k!r} ({type(k).__name__}) at {path}; JSON object keys must be "
                    "strings. Convert the key with str() first."
                )
                raise PayloadError(msg)
            out[k] = _convert(v, what, f"{path}.{k}", depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(v, what, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    msg = (
        f"{what} is not JSON-serializable: {path} is a {type(value).__name__} ({_short_repr(value)}). "
        "Workflow payloads are persisted as JSON: pass dicts, lists, strings, numbers, booleans, "
        "None or pydantic models."
    )
    raise PayloadError(msg)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def dumps(value: Any, *, what: str) -> str:
    """Serialize ``value`` the way the engine's Python SDK does (``json.dumps``)."""
    return json.dumps(to_json_value(value, what=what))


def loads_lenient(text: Any) -> Any:
    """Parse JSON text, keeping the text when it is not JSON (as the engine's SDK does)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def strip_timestamps(value: Any) -> Any:
    """Drop every ``timestamp`` key at any depth, so replayed inputs match history."""
    if isinstance(value, Mapping):
        return {k: strip_timestamps(v) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        return [strip_timestamps(v) for v in value]
    return value


def validate_model(model: type[BaseModel], value: Any, *, what: str, instance_id: str | None = None) -> BaseModel:
    """Validate ``value`` against ``model``, raising our error that names the fields."""
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        fields = [".".join(str(p) for p in err["loc"]) or "$" for err in exc.errors()]
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
        )
        where = f" (instance {instance_id!r})" if instance_id else ""
        msg = f"{what}{where} does not match {model.__name__}: {problems}. Fix the value and try again."
        raise ModelValidationError(msg, fields=fields, instance_id=instance_id, cause=exc) from exc
