"""Tab completion for ``%workflow``: subcommands, workflow names, instance ids and flags.

IPython offers a ``complete_command`` hook, but its results are merged with Jedi's, which
adds Python keywords (``and``, ``if``, ``in``...) to every ``%workflow start <TAB>``. So the
extension also registers a matcher (IPython's matcher API v2) that answers ``%workflow``
lines alone and asks IPython to suppress every other matcher for them. The hook stays for
IPython versions without that API.
"""

from __future__ import annotations

import re
from typing import Any

from ..engine import WorkflowRuntime
from ..models import WorkflowStatus

__all__ = ["SUBCOMMANDS", "complete_workflow_line", "split_words", "workflow_matcher"]

SUBCOMMANDS = ("start", "status", "wait", "signal", "cancel", "history", "list", "replay", "delete", "purge")
_TAKES_INSTANCE = {"status", "wait", "signal", "cancel", "history", "replay", "delete"}
_RECENT_IDS = 200
_FLAGS = {
    "wait": ("--timeout",),
    "list": ("--name", "--status", "--limit"),
    "delete": ("--force",),
    "purge": ("--status", "--older-than", "--all"),
}
# A word as the magics read it: a quoted string (possibly still open at the cursor) or a run of non-spaces.
_WORD = re.compile(r"\"[^\"]*\"?|'[^']*'?|\S+")


def split_words(text: str) -> list[str]:
    """The words of a magic line, quotes kept (``'a "b c" d'`` is three words)."""
    return _WORD.findall(text)


def _unquote(word: str) -> str:
    if word[:1] in ("'", '"'):
        return word[1:-1] if len(word) > 1 and word[-1] == word[0] else word[1:]
    return word


def _quote(name: str) -> str:
    """A name as it must be typed: quoted when it holds spaces or quotes."""
    if name and not re.search(r"[\s\"']", name):
        return name
    return f'"{name}"' if '"' not in name else "'" + name.replace("'", "") + "'"


def complete_workflow_line(runtime: WorkflowRuntime | None, text_until_cursor: str) -> list[str]:
    """Candidates for the word under the cursor of a ``%workflow ...`` line (names quoted if needed).

    Instance ids are the newest ``200`` (one store query).
    """
    words = split_words(text_until_cursor)
    if not text_until_cursor.strip() or text_until_cursor.endswith((" ", "\t")):
        words.append("")
    if not words or not words[0].lstrip("%").startswith("workflow"):
        return []
    position = len(words) - 1  # index of the word being completed, the magic being 0
    if words[0].startswith("%%"):  # the cell magic: %%workflow NAME [--description ...]
        if position == 1 and runtime is not None:
            return [_quote(n) for n in runtime.registry.workflow_names()]
        return ["--description", "--input-model"] if position > 1 else []
    if position == 1:
        return list(SUBCOMMANDS)
    sub = words[1]
    if runtime is None:
        return []
    previous = words[-2]
    if sub == "start" and position == 2:
        return [_quote(n) for n in runtime.registry.workflow_names()]
    if sub in _TAKES_INSTANCE and position == 2:
        return [_quote(s.instance_id) for s in runtime.list_workflows(limit=_RECENT_IDS)]
    if previous == "--name":
        return [_quote(n) for n in runtime.registry.workflow_names()]
    if previous == "--status":
        statuses = [s.value for s in WorkflowStatus]
        return [s for s in statuses if WorkflowStatus(s).is_terminal] if sub == "purge" else statuses
    if sub == "wait" and position == 3:
        return ["--timeout"]
    if sub in ("list", "purge"):
        return list(_FLAGS[sub])
    if sub == "delete" and position == 3:
        return ["--force"]
    return []


def ipython_completer(shell: Any, event: Any) -> list[str]:
    """The ``complete_command`` hook IPython calls for ``%workflow`` lines."""
    from ._session import current_kernel_runtime

    return complete_workflow_line(current_kernel_runtime(), str(event.text_until_cursor))


# ``%workflow ...`` alone or assigned (``iid = %workflow start ...``); ``%%workflow`` opens a cell.
_MAGIC_LINE = re.compile(r"^\s*(?P<target>[\w.]+\s*=\s*)?(?P<magic>%%?workflow)(?=\s|$)")


def _matches(candidates: list[str], fragment: str) -> list[str]:
    bare = _unquote(fragment)
    exact = [c for c in candidates if c.startswith(fragment) or _unquote(c).startswith(bare)]
    if exact:
        return exact
    low = bare.lower()
    return [c for c in candidates if _unquote(c).lower().startswith(low)]


def _workflow_matcher(context: Any) -> dict[str, Any]:
    """Complete ``%workflow`` / ``%%workflow`` lines and nothing else, suppressing other matchers there."""
    from IPython.core.completer import SimpleCompletion

    from ._session import current_kernel_runtime

    found = _MAGIC_LINE.match(str(context.text_until_cursor))
    if found is None or (found["magic"] == "%%workflow" and (found["target"] or context.cursor_line != 0)):
        return {"completions": [], "suppress": False}
    stripped = str(context.text_until_cursor)[found.start("magic") :]
    words = split_words(stripped)
    fragment = "" if stripped.endswith((" ", "\t")) or len(words) < 2 else words[-1]
    if len(words) < 2 and not stripped.endswith((" ", "\t")):
        return {"completions": [], "suppress": False}  # still typing the magic's own name
    candidates = _matches(complete_workflow_line(current_kernel_runtime(), stripped), fragment)
    return {
        "completions": [SimpleCompletion(c, type="workflow") for c in candidates],
        "matched_fragment": fragment,
        "suppress": True,
        "ordered": True,
    }


def workflow_matcher() -> Any:
    """The matcher to add to ``shell.Completer.custom_matchers``; None when IPython lacks matcher API v2."""
    try:
        from IPython.core.completer import context_matcher
    except ImportError:  # IPython < 8.6: the complete_command hook alone
        return None
    return context_matcher()(_workflow_matcher)
