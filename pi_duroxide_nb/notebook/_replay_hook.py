"""The one door to the replay stepper, which another package provides."""

from __future__ import annotations

import importlib
from typing import Any

from .._errors import PiDuroxideError
from ..engine import WorkflowRuntime

__all__ = ["ReplayUnavailableError", "_open_replay"]

_CANDIDATES = ("pi_duroxide_nb.replay", "pi_duroxide_nb.notebook.ui._replay")


class ReplayUnavailableError(PiDuroxideError):
    """The replay stepper is not part of this installation."""


def _open_replay(rt: WorkflowRuntime, instance_id: str) -> Any:
    """Open the replay stepper widget on an instance (the dashboard's Replay button, ``%workflow replay``).

    Raises:
        ReplayUnavailableError: no module provides ``replay_widget(rt, instance_id)``.
    """
    for module_name in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # not installed; a broken module's own import errors still surface
            raise
        factory = getattr(module, "replay_widget", None)
        if callable(factory):
            return factory(rt, instance_id)
    msg = (
        "The replay stepper is not available in this installation of pi_duroxide_nb "
        "(no pi_duroxide_nb.replay.replay_widget). Read the instance's events with "
        f"%workflow history {instance_id} meanwhile."
    )
    raise ReplayUnavailableError(msg)
