"""Helpers shared by the notebook's widgets (the dashboard and the replay stepper)."""

from __future__ import annotations

import ipywidgets as widgets

__all__ = ["close_children", "close_tree"]


def close_tree(widget: widgets.Widget, seen: set[int]) -> None:
    """Close a widget and every widget it references (children, layout, style): no leaked comms.

    Args:
        widget: The root to close.
        seen: Ids of widgets already closed (or being closed by their own ``close``); filled in.
    """
    if id(widget) in seen:
        return
    seen.add(id(widget))
    close_children(widget, seen)
    widget.close()


def close_children(widget: widgets.Widget, seen: set[int]) -> None:
    """Close every widget ``widget`` references, but not ``widget`` itself (for its own ``close``)."""
    for name in widget.keys:
        value = getattr(widget, name, None)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, widgets.Widget):
                close_tree(item, seen)
