"""Tab completion for ``%workflow``: subcommands, workflow names, instance ids and flags."""

from __future__ import annotations

from typing import Any

from ..engine import WorkflowRuntime
from ..models import WorkflowStatus

__all__ = ["SUBCOMMANDS", "complete_workflow_line"]

SUBCOMMANDS = ("start", "status", "wait", "signal", "cancel", "history", "list", "replay")
_TAKES_INSTANCE = {"status", "wait", "signal", "cancel", "history", "replay"}
_RECENT_IDS = 200


def complete_workflow_line(runtime: WorkflowRuntime | None, text_until_cursor: str) -> list[str]:
    """Candidates for the word under the cursor of a ``%workflow ...`` line.

    Instance ids are the newest ``200`` (one store query).
    """
    words = text_until_cursor.split()
    if text_until_cursor.endswith((" ", "\t")):
        words.append("")
    if not words or not words[0].lstrip("%").startswith("workflow"):
        return []
    position = len(words) - 1  # index of the word being completed, the magic being 0
    if words[0].startswith("%%"):  # the cell magic: %%workflow NAME [--description ...]
        if position == 1 and runtime is not None:
            return runtime.registry.workflow_names()
        return ["--description", "--input-model"] if position > 1 else []
    if position == 1:
        return list(SUBCOMMANDS)
    sub = words[1]
    if runtime is None:
        return []
    if sub == "start" and position == 2:
        return runtime.registry.workflow_names()
    if sub in _TAKES_INSTANCE and position == 2:
        return [s.instance_id for s in runtime.list_workflows(limit=_RECENT_IDS)]
    if sub == "wait" and position == 3:
        return ["--timeout"]
    if sub == "list":
        previous = words[-2]
        if previous == "--name":
            return runtime.registry.workflow_names()
        if previous == "--status":
            return [s.value for s in WorkflowStatus]
        return ["--name", "--status", "--limit"]
    return []


def ipython_completer(shell: Any, event: Any) -> list[str]:
    """The ``complete_command`` hook IPython calls for ``%workflow`` lines."""
    from ._session import current_kernel_runtime

    return complete_workflow_line(current_kernel_runtime(), str(event.text_until_cursor))
