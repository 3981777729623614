"""IPython magics: ``%%workflow``, ``%workflow``, ``%workflows`` and ``%workflow_config``.

Thin by design: each magic parses its line, calls a plain function (``define_workflow``,
the kernel runtime's methods, the dashboard) and returns something that displays.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import timedelta
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from .._errors import EngineError, PiDuroxideError
from ..models import WorkflowStatus
from ._cell import define_workflow
from ._completion import SUBCOMMANDS, ipython_completer, workflow_matcher
from ._display import HistoryView, StateListView, StateView
from ._session import current_kernel_runtime, kernel_runtime, stop_kernel_runtime

__all__ = ["WorkflowMagics", "load", "unload"]

_COMPLETER_KEYS = ("%workflow", "workflow", "%%workflow")
_LIST_LIMIT = 50
_USAGE = """\
%workflow start NAME [--id ID] [JSON]      start an instance (input defaults to {})
%workflow status ID                        its state
%workflow wait ID [--timeout S]            wait until it finishes (default 60 s)
%workflow signal ID [EVENT] [JSON]         send an event to ctx.wait_for_event (default: the one it waits for)
%workflow cancel ID                        cancel it
%workflow history ID                       its events and a timeline
%workflow list [--name N] [--status S] [--limit N]   newest first (50 by default)
%workflow replay ID                        open the replay stepper
%workflow delete ID [--force]              delete a finished instance, its sub-workflows and transcript
                                           (--force cancels a running one first)
%workflow purge [--status S] [--older-than AGE] [--name N] [--all]
                                           delete finished instances in bulk (AGE: 90, 30s, 15m, 12h, 7d)"""


def _awaited_event(runtime: Any, instance_id: str) -> str:
    """The one event ``instance_id`` waits for (``%workflow signal ID`` without an event name)."""
    names = [w.name for w in runtime.waiting_for(instance_id)]
    if len(names) == 1:
        return str(names[0])
    if not names:
        state = runtime.get_workflow(instance_id)
        msg = (
            f"{instance_id} waits for no event now (it is {state.status.value}), so there is nothing to send "
            "without a name. Give one: %workflow signal ID EVENT [JSON]; %workflow status ID shows where it is."
        )
    else:
        listed = ", ".join(names)
        msg = f"{instance_id} waits for several events ({listed}); name one: %workflow signal ID EVENT [JSON]."
    raise UsageError(msg)


def _parse_json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        line = exc.doc.splitlines()[exc.lineno - 1] if exc.doc.splitlines() else ""
        msg = (
            f"{what} is not valid JSON: {exc.msg} at column {exc.colno}:\n"
            f"  {line}\n  {' ' * (exc.colno - 1)}^\n"
            'Write JSON, e.g. {"service": "api"}: keys and strings in double quotes, true/false/null in lower case.'
        )
        raise UsageError(msg) from None
    except RecursionError:
        msg = f"{what} is nested too deeply to read. Flatten the JSON (a workflow payload may nest 200 levels)."
        raise UsageError(msg) from None


_WORD_AT = re.compile(r"\s*(?:\"(?P<double>[^\"]*)\"|'(?P<single>[^']*)'|(?P<bare>[^\s\"']\S*))")


def _split(text: str, count: int) -> tuple[list[str], str]:
    """The first ``count`` words of ``text`` and the rest, untouched (JSON keeps its spaces).

    A word may be quoted, as in ``%%workflow "my flow"`` (which ``shlex`` reads): ``"my flow"``
    is the one word ``my flow``.
    """
    text = text.strip()
    words: list[str] = []
    pos = 0
    while len(words) < count and pos < len(text):
        found = _WORD_AT.match(text, pos)
        if found is None:
            msg = f'A quote is not closed in {text[pos:].strip()!r}: write names with spaces as "my flow".'
            raise UsageError(msg)
        words.append(next(v for v in found.group("double", "single", "bare") if v is not None))
        pos = found.end()
    return words, text[pos:].strip()


def _flags(text: str, allowed: tuple[str, ...], usage: str) -> dict[str, str]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        msg = f"Could not read the arguments ({exc}). Usage: {usage}"
        raise UsageError(msg) from None
    found: dict[str, str] = {}
    while words:
        flag = words.pop(0)
        if flag not in allowed:
            msg = f"Unexpected {flag!r}. Usage: {usage}"
            raise UsageError(msg)
        if not words:
            msg = f"{flag} needs a value. Usage: {usage}"
            raise UsageError(msg)
        found[flag] = words.pop(0)
    return found


@magics_class
class WorkflowMagics(Magics):
    """Durable workflows from notebook cells (``%load_ext pi_duroxide_nb``)."""

    @property
    def _shell(self) -> Any:
        assert self.shell is not None, "the magics are registered on a shell"
        return self.shell

    @no_var_expand
    @line_cell_magic("workflow")
    def workflow(self, line: str, cell: str | None = None) -> Any:
        """Define a workflow from a cell, or start, signal and inspect instances from a line.

        As a cell magic, ``%%workflow NAME [--description TEXT] [--input-model MODEL]`` makes the
        cell the body of ``def NAME(ctx, input)`` (``yield`` and ``return`` work) and registers
        it. A cell that instead defines generator functions registers each of them (under
        NAME when there is exactly one). Re-running an edited cell registers a new version;
        instances already running keep theirs. Code that breaks replay (``time.time()``,
        ``random``, ``print``, I/O...) is flagged with a warning naming the safe alternative.

        In [1]: %%workflow deploy --description "Build and deploy"
           ...: build = yield ctx.pi.tool("bash", {"command": "make"})
           ...: decision = yield ctx.wait_for_event("approval")
           ...: return {"deployed": decision["ok"]}
        Workflow 'deploy' registered (deploy@c5b1f0a2).

        As a line magic::

            {usage}

        In [2]: iid = %workflow start deploy {"service": "api"}
        In [3]: %workflow signal $iid approval {"ok": true}

        In [4]: %workflow delete $iid
        In [5]: %workflow purge --status Completed --older-than 7d

        Python twins: ``pdn.define_workflow(name, source)`` and the methods of
        ``pdn.kernel_runtime()`` (``start_workflow``, ``get_workflow``, ``wait_for_workflow``,
        ``signal_workflow``, ``cancel_workflow``, ``history``, ``list_workflows``,
        ``delete_workflow``, ``purge``).
        """
        try:
            if cell is not None:
                return self._define(line, cell)
            return self._command(_expand_names(line, self._shell.user_ns))
        except EngineError:
            raise
        except PiDuroxideError as exc:
            raise UsageError(str(exc)) from None

    # One list of the line forms: %workflow? shows it, and so does a mistyped subcommand.
    workflow.__doc__ = (workflow.__doc__ or "").replace("{usage}", _USAGE.replace("\n", "\n" + " " * 12))

    @magic_arguments()
    @argument("name", nargs="?", help="The workflow's name (optional for a cell of def statements).")
    @argument("--description", "-d", default=None, help="One line shown in listings and to LLMs.")
    @argument("--input-model", default=None, help="A pydantic model (a name in the notebook) validating inputs.")
    @argument("--version", default=None, help="A version number given by hand ('2', '1.4.0') instead of the code's.")
    def _workflow_cell_args(self, line: str) -> None:
        """%%workflow NAME [--description TEXT] [--input-model MODEL]."""

    def _define(self, line: str, cell: str) -> None:
        try:
            # shlex, unlike parse_argstring, drops the quotes around a --description.
            args = self._workflow_cell_args.parser.parse_args(shlex.split(line))
        except (UsageError, ValueError) as exc:
            msg = f"{exc}. Usage: %%workflow NAME [--description TEXT] [--input-model MODEL] [--version N]"
            raise UsageError(msg) from None
        model = None
        if args.input_model:
            try:
                model = self._shell.ev(args.input_model)
            except Exception as exc:
                msg = (
                    f"--input-model {args.input_model!r} could not be found ({exc}). Define the model in a cell first."
                )
                raise UsageError(msg) from None
        runtime = kernel_runtime()
        source = self._shell.transform_cell(cell)
        filename = self._shell.compile.cache(source)
        results = define_workflow(
            args.name,
            source,
            description=args.description,
            input_model=model,
            registry=runtime.registry,
            namespace=self._shell.user_ns,
            filename=filename,
            version=args.version,
        )
        for result in results:
            print(result)
        _print_notices(runtime)

    def _command(self, line: str) -> Any:
        (sub, *_), rest = _split(line, 1) if line.strip() else ([""], "")
        runtime = kernel_runtime()
        if sub == "start":
            (name, *_), rest = _split(rest, 1) if rest.strip() else ([""], "")
            if not name:
                msg = 'Give the workflow to start: %workflow start NAME [JSON], e.g. %workflow start deploy {"x": 1}'
                raise UsageError(msg)
            instance_id = None
            if rest.startswith("--id"):
                (_, instance_id), rest = _split(rest, 2) if len(rest.split()) >= 2 else (["", ""], "")
                if not instance_id:
                    raise UsageError("--id needs a value: %workflow start NAME --id ID [JSON]")
            data = _parse_json(rest, f"The input of {name!r}") if rest.strip() else {}
            return runtime.start_workflow(name, data, instance_id=instance_id)
        if sub in ("status", "wait", "cancel", "history", "replay", "signal"):
            (iid, *_), rest = _split(rest, 1) if rest.strip() else ([""], "")
            if not iid:
                msg = f"Give the instance id: %workflow {sub} ID (Tab completes ids; %workflow list shows them)."
                raise UsageError(msg)
            if sub in ("status", "cancel", "history", "replay") and rest.strip():
                msg = f"%workflow {sub} takes one instance id; remove {rest.strip()!r}. Usage: %workflow {sub} ID"
                raise UsageError(msg)
            if sub == "status":
                return StateView(runtime.get_workflow(iid))
            if sub == "history":
                return HistoryView(tuple(runtime.history(iid)))
            if sub == "cancel":
                runtime.cancel_workflow(iid)
                print(f"Cancel requested for {iid}.")
                return None
            if sub == "replay":
                from .ui._replay import replay_widget  # ipywidgets only when a widget is asked for

                return replay_widget(runtime, iid)
            if sub == "wait":
                flags = _flags(rest, ("--timeout",), "%workflow wait ID [--timeout SECONDS]")
                timeout = _number(flags.get("--timeout", "60"), "--timeout")
                return StateView(_wait_with_progress(runtime, iid, timeout))
            if not rest.strip() or rest.lstrip()[0] in "{[":
                event = _awaited_event(runtime, iid)  # no name given: the one it waits for
            else:
                (event, *_), rest = _split(rest, 1)
            data = _parse_json(rest, f"The data of event {event!r}") if rest.strip() else None
            runtime.signal_workflow(iid, event, data)
            print(f"Sent {event!r} to {iid}.")
            blocked = runtime.get_workflow(iid).blocked
            if blocked:
                print(f"{iid} cannot act on it yet: {blocked}")
            return None
        if sub == "delete":
            (iid, *_), rest = _split(rest, 1) if rest.strip() else ([""], "")
            if not iid:
                raise UsageError("Give the instance id: %workflow delete ID [--force] (Tab completes ids).")
            words = rest.split()
            if any(w != "--force" for w in words):
                msg = f"Unexpected {rest.strip()!r}. Usage: %workflow delete ID [--force]"
                raise UsageError(msg)
            print(runtime.delete_workflow(iid, force=bool(words)))
            return None
        if sub == "purge":
            return self._purge(runtime, rest)
        if sub == "list":
            usage = "%workflow list [--name NAME] [--status STATUS] [--limit N]"
            flags = _flags(rest, ("--name", "--status", "--limit"), usage)
            limit = int(_number(flags.get("--limit", str(_LIST_LIMIT)), "--limit"))
            only, status = flags.get("--name"), flags.get("--status")
            states = runtime.list_workflows(name=only, status=status, limit=limit)
            total = len(states)
            if len(states) == limit:
                counts = runtime.count_workflows(name=only)
                total = counts.get(WorkflowStatus(status), 0) if status else sum(counts.values())
            return StateListView(tuple(states), total=total)
        hint = f"Unknown subcommand {sub!r}. " if sub else ""
        msg = f"{hint}Use one of: {', '.join(SUBCOMMANDS)}.\n{_USAGE}"
        raise UsageError(msg)

    def _purge(self, runtime: Any, rest: str) -> None:
        usage = "%workflow purge [--status STATUS] [--older-than AGE] [--name NAME] [--all]"
        without_all = re.sub(r"(?<!\S)--all(?!\S)", " ", rest)
        everything = without_all != rest
        flags = _flags(without_all, ("--status", "--older-than", "--name"), usage)
        if not flags and not everything:
            msg = (
                "Say what to purge: --status Completed, --older-than 7d, --name NAME (combined as AND), "
                f"or --all for every finished instance. Usage: {usage}"
            )
            raise UsageError(msg)
        age = _duration(flags["--older-than"]) if "--older-than" in flags else None
        print(runtime.purge(status=flags.get("--status"), older_than=age, name=flags.get("--name")))

    @line_magic("workflows")
    def workflows(self, line: str) -> Any:
        """Show the live workflow dashboard of this kernel.

        Registered workflows, instances (filter by workflow and status, paged), the runtime's
        state, the session transcript; select an instance for its history and timeline; start,
        signal, cancel or replay from the buttons. It refreshes itself until it is closed.

        In [1]: %workflows

        Python twin: ``pdn.dashboard()``.
        """
        if line.strip():
            raise UsageError("%workflows takes no arguments: run it alone, then filter with the dashboard's dropdowns.")
        from .ui import dashboard

        # Re-running the cell replaces its output: close the previous one so its refresh stops.
        previous, self._dashboard = getattr(self, "_dashboard", None), None
        if previous is not None:
            previous.close()
        self._dashboard = dashboard(kernel_runtime())
        return self._dashboard

    @magic_arguments()
    @argument("--db", default=None, help="SQLite file or postgresql:// URL; restarts the kernel's runtime on it.")
    @argument(
        "--client",
        action="store_true",
        help="the kernel only starts, signals and watches; worker processes run the work",
    )
    @argument("--worker", action="store_true", help="the kernel runs the work too (the default)")
    @line_magic("workflow_config")
    def workflow_config(self, line: str) -> None:
        """Show or change where this kernel's workflows are stored.

        In [1]: %workflow_config
        In [2]: %workflow_config --db project.db
        In [3]: %workflow_config --client

        Changing the store stops the current runtime (instances stay in their store) and starts
        one on the new store. ``$PI_DUROXIDE_DB`` sets the default before ``%load_ext``.
        ``--client`` makes the kernel a client of worker processes
        (``python -m pi_duroxide_nb worker --db STORE --module my_workflows.py``, listed by the
        dashboard); ``--worker`` makes it run work again.
        Python twin: ``pdn.kernel_runtime(db=..., worker=...)``.
        """
        args = parse_argstring(self.workflow_config, line)
        if args.client and args.worker:
            raise UsageError("%workflow_config takes --client or --worker, not both.")
        role = False if args.client else True if args.worker else None
        try:
            runtime = kernel_runtime(db=args.db, worker=role)
        except PiDuroxideError as exc:
            raise UsageError(str(exc)) from None
        how = "" if runtime.is_worker else " (client only: worker processes run the work)"
        print(f"Workflow runtime {runtime.state.value} on {runtime.db}{how}")


_DOLLAR_NAME = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand_names(line: str, namespace: dict[str, Any]) -> str:
    """Replace ``$name`` with the value of a notebook variable; braces stay as typed (they are JSON)."""
    return _DOLLAR_NAME.sub(lambda m: str(namespace[m.group(1)]) if m.group(1) in namespace else m.group(0), line)


_DURATION = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>s|m|h|d)?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> timedelta:
    """``90``, ``30s``, ``15m``, ``12h`` or ``7d`` as a timedelta (a bare number is seconds)."""
    found = _DURATION.match(text.strip().lower())
    if found is None:
        msg = f"--older-than takes an age like 90 (seconds), 30s, 15m, 12h or 7d, not {text!r}."
        raise UsageError(msg)
    return timedelta(seconds=float(found["n"]) * _UNIT_SECONDS[found["unit"] or "s"])


def _number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        msg = f"{flag} must be a non-negative number, not {text!r}."
        raise UsageError(msg)
    return value


def load(shell: Any) -> None:
    """Register the magics and the completer, and start (or attach to) the kernel runtime."""
    runtime = kernel_runtime()
    shell.register_magics(WorkflowMagics)
    for key in _COMPLETER_KEYS:
        shell.set_hook("complete_command", ipython_completer, str_key=key)
    _add_matcher(shell)
    if _after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _after_cell)
    print(
        f"pi_duroxide_nb: workflow runtime on {runtime.db} "
        "(%workflow_config --db PATH to change; %workflows for the dashboard)",
        file=sys.stdout,
    )
    _print_notices(runtime)


def _after_cell(result: Any = None) -> None:
    """After each cell: versions still missing may be restorable now (the cell defined what they read)."""
    runtime = current_kernel_runtime()
    if runtime is None or not runtime.code_notices:
        return
    try:
        runtime.reconcile_code()
    except Exception:  # the user's cell ran; a failed check must not turn it into an error
        return
    _print_notices(runtime)


def _print_notices(runtime: Any) -> None:
    """One line per version restored from the store or still missing (see ``reconcile_code``)."""
    for notice in runtime.take_code_notices():
        print(f"pi_duroxide_nb: {notice}", file=sys.stdout if notice.restored else sys.stderr)


def _wait_with_progress(runtime: Any, instance_id: str, timeout: float) -> Any:
    """Wait, showing one line that follows the instance (status, custom status, last step)."""
    from IPython.display import display, update_display

    display_id = f"pdn-wait-{instance_id}-{id(runtime)}"
    shown = False

    def progress(state: Any) -> None:
        nonlocal shown
        parts = [f"waiting for {state.instance_id}: {state.status.value}"]
        if state.custom_status:
            parts.append(f"custom status {state.custom_status!r}")
        try:
            events = runtime.history(state.instance_id)
            parts.append(f"{len(events)} events, last {events[-1].kind}" if events else "no events yet")
        except Exception:  # the progress line is a courtesy; the wait goes on
            pass
        if state.blocked:
            parts.append(state.blocked)
        text = {"text/plain": " · ".join(parts)}
        if shown:
            update_display(text, display_id=display_id, raw=True)
        else:
            display(text, display_id=display_id, raw=True)
            shown = True

    state = runtime.wait_for_workflow(instance_id, timeout=timeout, on_progress=progress)
    if shown:
        update_display({"text/plain": f"{instance_id}: {state.status.value}"}, display_id=display_id, raw=True)
    return state


def unload(shell: Any) -> None:
    """Close dashboards, stop the runtime's threads and remove the magics and completer."""
    if _after_cell in shell.events.callbacks["post_run_cell"]:
        shell.events.unregister("post_run_cell", _after_cell)
    stop_kernel_runtime()
    magics = shell.magics_manager.magics
    for kind, name in (("line", "workflow"), ("cell", "workflow"), ("line", "workflows"), ("line", "workflow_config")):
        magics[kind].pop(name, None)
    dispatcher = shell.strdispatchers.get("complete_command")
    if dispatcher is not None:
        for key in _COMPLETER_KEYS:
            dispatcher.strs.pop(key, None)
    completer = getattr(shell, "Completer", None)
    if completer is not None and hasattr(completer, "custom_matchers"):
        completer.custom_matchers[:] = [m for m in completer.custom_matchers if m is not _MATCHER]


_MATCHER = workflow_matcher()


def _add_matcher(shell: Any) -> None:
    """Answer ``%workflow`` completions alone (the hook's are merged with Python keywords)."""
    completer = getattr(shell, "Completer", None)
    if _MATCHER is None or completer is None or not hasattr(completer, "custom_matchers"):
        return
    if _MATCHER not in completer.custom_matchers:
        completer.custom_matchers.insert(0, _MATCHER)
