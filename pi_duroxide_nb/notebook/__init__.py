"""The notebook layer: ``%%workflow`` cells, ``%workflow`` commands, rich views and the dashboard.

Importing this package does not import IPython or ipywidgets: the magics load in
``load_ipython_extension`` and the widgets in ``dashboard()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cell import CellRegistration, DeterminismIssue, DeterminismWarning, check_determinism, define_workflow
from ._display import HistoryView, StateListView, StateView, TimelineBar, timeline_bars, view
from ._session import current_kernel_runtime, kernel_runtime, stop_kernel_runtime

if TYPE_CHECKING:
    from ..engine import WorkflowRuntime
    from .ui import WorkflowDashboard
    from .ui._replay import ReplayWidget

__all__ = [
    "CellRegistration",
    "DeterminismIssue",
    "DeterminismWarning",
    "HistoryView",
    "StateListView",
    "StateView",
    "TimelineBar",
    "check_determinism",
    "current_kernel_runtime",
    "dashboard",
    "define_workflow",
    "kernel_runtime",
    "replay_widget",
    "stop_kernel_runtime",
    "timeline_bars",
    "view",
]


def dashboard(runtime: WorkflowRuntime | None = None, **options: Any) -> WorkflowDashboard:
    """The live workflow dashboard (the Python twin of ``%workflows``); imports ipywidgets on first use.

    Example:
        pdn.dashboard()            # the kernel runtime's dashboard, refreshing itself
        pdn.dashboard(rt, page_size=100, live=False)

    Args:
        runtime: The runtime to show; ``pdn.kernel_runtime()`` by default.
        **options: ``page_size``, ``refresh_interval`` (seconds), ``live``.
    """
    from .ui import dashboard as _dashboard

    return _dashboard(runtime, **options)


def replay_widget(
    runtime: WorkflowRuntime | None, instance_id: str, *, workflow: Any = None, execution: int | None = None
) -> ReplayWidget:
    """The replay stepper widget on an instance (the Python twin of ``%workflow replay ID``).

    Example:
        pdn.replay_widget(None, iid)                 # the kernel runtime's instance
        pdn.replay_widget(rt, iid, workflow=edited)  # replay edited code against the history

    Args:
        runtime: The runtime whose store holds the instance; ``pdn.kernel_runtime()`` if ``None``.
        instance_id: The instance to replay.
        workflow: Replay this code instead of the version the instance started with.
        execution: Which execution (after continue-as-new); the current one by default.
    """
    from .ui._replay import replay_widget as _replay_widget

    rt = runtime if runtime is not None else kernel_runtime()
    return _replay_widget(rt, instance_id, workflow=workflow, execution=execution)
