"""Replay: re-run a persisted history one ``yield`` at a time, with duroxide's matching rules.

Pure Python (no widgets): history value objects, the matcher, ``ReplayStepper`` and
``replay_check``. The notebook widget lives in ``pi_duroxide_nb.notebook.ui``.
"""

from ._history import RecordedEvent, ReplayHistory, load_history
from ._stepper import (
    Divergence,
    ReplayDivergenceError,
    ReplayOutcome,
    ReplayStep,
    ReplayStepper,
    ReplayTask,
    ReplayWarning,
    replay_check,
)

__all__ = [
    "Divergence",
    "RecordedEvent",
    "ReplayDivergenceError",
    "ReplayHistory",
    "ReplayOutcome",
    "ReplayStep",
    "ReplayStepper",
    "ReplayTask",
    "ReplayWarning",
    "load_history",
    "replay_check",
]
