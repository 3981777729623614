"""The dashboard widget (ipywidgets), its controller and its background refresher."""

from ._controller import DashboardController, DashboardSnapshot, HistorySnapshot
from ._dashboard import WorkflowDashboard, dashboard
from ._refresher import Refresher

__all__ = ["DashboardController", "DashboardSnapshot", "HistorySnapshot", "Refresher", "WorkflowDashboard", "dashboard"]
