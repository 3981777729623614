"""``PiRpcHost``: the agent host behind ``ctx.pi`` is a real pi process, driven over ``pi --mode rpc``."""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .._errors import PayloadError
from ..engine import record_tool_call
from ._builtin_tools import BUILTIN_TOOLS
from ._errors import ModelError, PiProcessError, SkillNotFoundError, ToolDeniedError, ToolError
from ._messages import parse_options

__all__ = ["BRIDGE_EXTENSION", "PiRpcHost"]

BRIDGE_EXTENSION = Path(__file__).with_name("rpc_bridge.ts")
"""The pi extension PiRpcHost loads with ``-e``: runs pi's tools and single model calls for it."""

_BRIDGE_COMMAND = "pi-duroxide-nb"
_RESULT_PREFIX = "pi_duroxide_nb.result "
_DIALOGS = {"select", "confirm", "input", "editor"}
_STDERR_KEPT = 60
_INSTALL_HINT = (
    "Install pi with `npm install -g @mariozechner/pi-coding-agent` (Node.js >= 20.6; the renamed "
    "@earendil-works/pi-coding-agent needs Node.js >= 22.19), or pass PiRpcHost(command=[...]) with the "
    "path of its `pi` executable."
)
_NODE_HINT = (
    "pi runs on Node.js (>= 20.6): install it (Debian/Ubuntu: `apt-get install nodejs npm`; or from "
    "https://nodejs.org), or pass PiRpcHost(command=['/path/to/node', '/path/to/pi']) ."
)

UiHandler = Callable[[dict[str, Any]], "dict[str, Any] | None"]
"""Answers an ``extension_ui_request`` dialog: ``{"value": ...}``, ``{"confirmed": bool}``, or None to cancel."""

_EXIT = object()


def _seconds(value: float | timedelta, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        msg = f"PiRpcHost({name}=...) must be a positive duration, got {value!r}."
        raise ValueError(msg)
    return seconds


class _PiProcess:
    """One ``pi --mode rpc`` child: a stdout reader thread, a stderr tail, and the answers to UI dialogs."""

    def __init__(
        self, argv: list[str], cwd: Path, env: dict[str, str], on_ui_request: UiHandler | None, label: str
    ) -> None:
        self.label = label
        self._write_lock = threading.Lock()
        self._inbox: queue.Queue[Any] | None = None
        self._inbox_lock = threading.Lock()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_KEPT)
        self._on_ui_request = on_ui_request
        try:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError as exc:
            msg = f"{label}: cannot start {argv[0]!r}: {exc.strerror}. {_INSTALL_HINT}"
            raise PiProcessError(msg, cause=exc) from exc
        except OSError as exc:
            msg = f"{label}: cannot start {argv[0]!r}: {exc}. {_INSTALL_HINT}"
            raise PiProcessError(msg, cause=exc) from exc
        self._stdout_thread = threading.Thread(target=self._read_stdout, name="pi-rpc-stdout", daemon=True)
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="pi-rpc-stderr", daemon=True)
        self._stdout_thread.start()
        self._stderr_thread.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        # The reader thread may still be draining what pi wrote just before it exited.
        if not self.alive():
            self._stderr_thread.join(timeout=1)
        return "\n".join(self._stderr)

    def listen(self) -> queue.Queue[Any]:
        """A fresh inbox that receives every line pi writes from now on (one call at a time)."""
        inbox: queue.Queue[Any] = queue.Queue()
        with self._inbox_lock:
            self._inbox = inbox
        if not self.alive():
            inbox.put(_EXIT)
        return inbox

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8")
        assert self.proc.stdin is not None
        with self._write_lock:
            try:
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError) as exc:
                msg = f"{self.label}: pi is not reading its input (it exited?).{self._stderr_note()}"
                raise PiProcessError(msg, stderr=self.stderr_tail(), cause=exc) from exc

    def close(self, timeout: float = 5.0) -> None:
        """Close pi's input (pi shuts down), then kill it if it has not exited in ``timeout`` seconds."""
        if self.alive():
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            return
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def _stderr_note(self) -> str:
        tail = self.stderr_tail()
        return f"\npi's stderr (last lines):\n{tail}" if tail else ""

    def _deliver(self, item: Any) -> None:
        with self._inbox_lock:
            inbox = self._inbox
        if inbox is not None:
            inbox.put(item)

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        # pi frames records with "\n" only; readline() on a binary stream splits on b"\n" alone
        # (unlike str.splitlines, which would also split on U+2028 inside JSON strings).
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line:
                continue
            try:
                item = json.loads(line)
            except ValueError:
                self._stderr.append(f"[stdout, not JSON] {line.decode('utf-8', 'replace')}")
                continue
            if isinstance(item, dict) and item.get("type") == "extension_ui_request":
                self._answer_dialog(item)
            self._deliver(item)
        self._deliver(_EXIT)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def _answer_dialog(self, request: dict[str, Any]) -> None:
        """Answer a dialog at once (or cancel it), so a turn never waits for a person who is not there."""
        if request.get("method") not in _DIALOGS:
            return
        answer: dict[str, Any] | None = None
        if self._on_ui_request is not None:
            try:
                answer = self._on_ui_request(request)
            except Exception as exc:  # a failing handler cancels the dialog instead of stalling the turn
                self._stderr.append(f"[PiRpcHost] on_ui_request raised {type(exc).__name__}: {exc}; cancelled")
                answer = None
        response: dict[str, Any] = {"type": "extension_ui_response", "id": request.get("id")}
        if answer is not None and not isinstance(answer, dict):
            self._stderr.append(f"[PiRpcHost] on_ui_request returned {answer!r}, not a dict or None; cancelled")
            answer = None
        if answer is None:
            response["cancelled"] = True
        else:
            response.update({k: v for k, v in answer.items() if k in ("value", "confirmed", "cancelled")})
        try:
            self.send(response)
        except PiProcessError:
            pass  # pi is gone; the call waiting on it reports that


class PiRpcHost:
    """An agent host that is a real pi process: your providers, models, keys, skills and extensions.

    ``ctx.pi`` calls go to ``pi --mode rpc --no-session`` (the npm package
    ``@mariozechner/pi-coding-agent``), started at the first call and again after it dies. The
    answers are persisted like ``PiHost``'s, so a replay or a restart never calls pi again.

    Example:
        host = pdn.PiRpcHost(provider="anthropic", model="claude-sonnet-4-5", cwd=".")
        rt = pdn.WorkflowRuntime(db="workflows.db", host=host)   # the same workflows as with PiHost

    * ``prompt(text)`` is one pi agent turn (pi's tools, system prompt, extensions, skills); it
      returns ``{text, messages, usage, stopReason}`` with pi's own messages.
    * ``llm(messages)`` is one call of pi's model without tools (``tools=True`` or names offer some)
      and returns pi's assistant message.
    * ``tool(name, args)`` runs pi's own definition of a built-in tool (read, bash, edit, write, ls,
      grep, find) and returns its ``{content, details}``.
    * ``skill(name, input)`` is a turn on pi's ``/skill:name`` expansion; returns the reply text.
    * ``send_message(content)`` appends a ``workflow_message`` custom message to pi's session.

    Calls are serialised: one pi process answers one call at a time. Dialogs pi's extensions open
    (``extension_ui_request``) are answered by ``on_ui_request`` or cancelled, so a turn never waits.

    Args:
        provider: pi's ``--provider``; None leaves pi's default.
        model: pi's ``--model`` (an id or ``provider/id``); None leaves pi's default.
        cwd: The directory pi runs in (its tools' working directory, where project skills are).
        command: How to run pi, e.g. ``["/path/to/pi"]`` or ``["node", ".../dist/cli.js"]``; by default
            ``pi`` from ``PATH``.
        extensions: More pi extensions to load (``-e``), beside the bridge this host always loads.
        args: More arguments for pi (``--skill DIR``, ``--thinking low``, ``--session-dir D`` instead
            of ``--no-session``...).
        env: Variables added to the environment pi gets (``PI_OFFLINE=1``, ``PI_CODING_AGENT_DIR``...).
        tools: The built-in tools pi may use (``--tools``) and ``ctx.pi.tool`` may run; None: pi's
            defaults for its agent (read, bash, edit, write) and all seven for ``ctx.pi.tool``.
        keep_context: False (the default): each ``prompt`` and ``skill`` turn starts from the root
            of pi's session tree (as pi's ``/tree`` does), so an answer depends only on its input, as
            with ``PiHost``. True: the turns continue one conversation, in which ``send_message``
            contents are context for later turns (it starts empty again whenever pi is restarted).
        timeout: How long one call may take (seconds or a timedelta); then pi is stopped and the
            call fails; the next call starts a new pi.
        start_timeout: How long pi may take to start.
        on_ui_request: Answers extension dialogs (``select``, ``confirm``, ``input``, ``editor``):
            gets the request, returns ``{"value": ...}`` / ``{"confirmed": bool}``, or None to cancel.
    """

    def __init__(
        self,
        *,
        provider: str | None = None,
        model: str | None = None,
        cwd: str | Path = ".",
        command: Sequence[str] | str | None = None,
        extensions: Iterable[str | Path] = (),
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        tools: Iterable[str] | None = None,
        keep_context: bool = False,
        timeout: float | timedelta = 600.0,
        start_timeout: float | timedelta = 60.0,
        on_ui_request: UiHandler | None = None,
    ) -> None:
        self._cwd = Path(cwd).expanduser().resolve()
        if not self._cwd.is_dir():
            msg = f"PiRpcHost(cwd=...): {str(self._cwd)!r} is not a directory. Create it or pass another cwd."
            raise ValueError(msg)
        if isinstance(command, str):
            command = [command]
        self._command = list(command) if command is not None else None
        if self._command is not None and not self._command:
            msg = "PiRpcHost(command=[]) is empty: give the pi executable, e.g. command=['/usr/local/bin/pi']."
            raise ValueError(msg)
        self._extensions = [Path(e).expanduser().resolve() for e in extensions]
        for ext in self._extensions:
            if not ext.exists():
                msg = f"PiRpcHost(extensions=...): {str(ext)!r} does not exist."
                raise ValueError(msg)
        if isinstance(args, str):
            msg = "PiRpcHost(args=...) takes a list of arguments, e.g. ['--thinking', 'low'], not one string."
            raise TypeError(msg)
        self._args = list(args)
        self._env = dict(env or {})
        if tools is not None:
            tools = list(tools)
            unknown = sorted(set(tools) - set(BUILTIN_TOOLS))
            if unknown:
                known = sorted(BUILTIN_TOOLS)
                msg = f"PiRpcHost(tools=...): {unknown} are not pi's built-in tools; choose from {known}."
                raise ValueError(msg)
        self._tools: list[str] | None = tools
        self._provider = provider
        self._model = model
        self.keep_context = keep_context
        """Whether prompts and skills continue one pi conversation instead of starting a new session each."""
        self.timeout = _seconds(timeout, "timeout")
        """Seconds one call may take before pi is stopped."""
        self.start_timeout = _seconds(start_timeout, "start_timeout")
        """Seconds pi may take to start."""
        self.on_ui_request = on_ui_request
        """Answers extension dialogs (or None: they are cancelled)."""
        self._lock = threading.Lock()
        self._proc: _PiProcess | None = None
        self._ids = itertools.count(1)
        self._starts = 0
        self._state: dict[str, Any] | None = None

    def __repr__(self) -> str:
        running = f"pid={self._proc.pid}" if self._proc is not None and self._proc.alive() else "not running"
        return f"<PiRpcHost provider={self._provider!r} model={self._model!r} cwd={str(self._cwd)!r} {running}>"

    def __enter__(self) -> PiRpcHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- process lifecycle ------------------------------------------------------------------------

    @property
    def cwd(self) -> Path:
        """The directory pi runs in."""
        return self._cwd

    @property
    def tools(self) -> list[str]:
        """The built-in tools ``ctx.pi.tool`` may run."""
        return list(self._tools) if self._tools is not None else list(BUILTIN_TOOLS)

    @property
    def pid(self) -> int | None:
        """The running pi's process id, or None when none is running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.alive() else None

    @property
    def starts(self) -> int:
        """How many times this host has started pi."""
        return self._starts

    @property
    def model_info(self) -> dict[str, Any] | None:
        """The model pi reported when it last started (its ``get_state`` answer), or None."""
        return dict(self._state["model"]) if self._state and self._state.get("model") else None

    def command_line(self) -> list[str]:
        """The command that starts pi (``pi`` resolved on ``PATH`` only when it is started)."""
        argv = list(self._command) if self._command is not None else ["pi"]
        argv += ["--mode", "rpc"]
        if not any(a in ("--session", "--session-dir", "--continue", "-c", "--no-session") for a in self._args):
            argv.append("--no-session")
        if self._provider:
            argv += ["--provider", self._provider]
        if self._model:
            argv += ["--model", self._model]
        if self._tools is not None:
            argv += ["--tools", ",".join(self._tools)] if self._tools else ["--no-builtin-tools"]
        for ext in [BRIDGE_EXTENSION, *self._extensions]:
            argv += ["-e", str(ext)]
        return argv + self._args

    def close(self) -> None:
        """Stop pi (closing its input lets it shut down cleanly); the next call starts a new one."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                proc.close()

    def _resolve_argv(self) -> list[str]:
        argv = self.command_line()
        if self._command is None:
            found = shutil.which("pi", path=self._env.get("PATH", os.environ.get("PATH")))
            if found is None:
                msg = f"PiRpcHost: `pi` was not found on PATH. {_INSTALL_HINT}"
                raise PiProcessError(msg)
            argv[0] = found
        exe = Path(argv[0])
        if exe.is_file() and exe.name not in ("node", "node.exe"):
            try:
                with exe.open("rb") as f:
                    first_line = f.read(256).split(b"\n", 1)[0]
            except OSError:
                first_line = b""
            # npm's `pi` is a Node script (#!/usr/bin/env node); pi's standalone binary needs no Node.
            if first_line.startswith(b"#!") and b"node" in first_line:
                path = self._env.get("PATH", os.environ.get("PATH"))
                if shutil.which("node", path=path) is None:
                    msg = f"PiRpcHost: {argv[0]} needs Node.js, which was not found on PATH. {_NODE_HINT}"
                    raise PiProcessError(msg)
        return argv

    def _ensure(self) -> _PiProcess:
        """The running pi, started (again) if there is none or it died; caller holds ``_lock``."""
        if self._proc is not None and self._proc.alive():
            return self._proc
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        argv = self._resolve_argv()
        proc = _PiProcess(argv, self._cwd, {**os.environ, **self._env}, self._on_ui, "PiRpcHost")
        self._starts += 1
        try:
            state = self._request(proc, {"type": "get_state"}, self.start_timeout, "starting pi")
        except PiProcessError as exc:
            timed_out = proc.alive()
            proc.kill()
            tail = proc.stderr_tail()
            low = tail.lower()
            hint = ""
            if "node" in low and ("not found" in low or "no such file" in low):
                hint = f" {_NODE_HINT}"
            elif "SyntaxError" in tail or "ERR_REQUIRE_ESM" in tail or "Unsupported engine" in tail:
                hint = f" Is Node.js too old? {_NODE_HINT}"
            if timed_out or proc.proc.returncode == -9:
                why = f"it did not answer within {self.start_timeout:g} s (PiRpcHost(start_timeout=...))"
            else:
                why = f"it exited with code {proc.proc.returncode}"
            note = f"\npi's stderr (last lines):\n{tail}" if tail else " (nothing on stderr)"
            msg = f"PiRpcHost: pi did not start ({' '.join(argv)}): {why}.{hint}{note}"
            raise PiProcessError(msg, stderr=tail, returncode=proc.proc.returncode, cause=exc) from exc
        self._state = state.get("data") if isinstance(state.get("data"), dict) else None
        self._proc = proc
        return proc

    def _on_ui(self, request: dict[str, Any]) -> dict[str, Any] | None:
        handler = self.on_ui_request
        return handler(request) if handler is not None else None

    # --- the RPC exchange -------------------------------------------------------------------------

    def _failure(self, proc: _PiProcess, what: str, detail: str, *, kill: bool = False) -> PiProcessError:
        if kill:
            proc.kill()
            if self._proc is proc:
                self._proc = None
        tail = proc.stderr_tail()
        note = f"\npi's stderr (last lines):\n{tail}" if tail else ""
        code = proc.proc.poll()
        return PiProcessError(f"PiRpcHost: {what}: {detail}{note}", stderr=tail, returncode=code)

    def _next(self, proc: _PiProcess, inbox: queue.Queue[Any], deadline: float, what: str) -> Any:
        remaining = deadline - time.monotonic()
        try:
            item = inbox.get(timeout=max(remaining, 0.0))
        except queue.Empty:
            raise self._failure(
                proc,
                what,
                "no answer within the time limit; pi was stopped and the next call starts it again "
                "(raise PiRpcHost(timeout=...) for longer turns)",
                kill=True,
            ) from None
        if item is _EXIT:
            proc.kill()
            if self._proc is proc:
                self._proc = None
            raise self._failure(proc, what, f"pi exited (code {proc.proc.returncode}); the next call starts it again")
        return item

    def _request(self, proc: _PiProcess, command: dict[str, Any], timeout: float, what: str) -> dict[str, Any]:
        """Send one RPC command and return its successful response."""
        rid = f"pdn-{next(self._ids)}"
        inbox = proc.listen()
        proc.send({**command, "id": rid})
        deadline = time.monotonic() + timeout
        while True:
            item = self._next(proc, inbox, deadline, what)
            if isinstance(item, dict) and item.get("type") == "response" and item.get("id") == rid:
                if not item.get("success"):
                    raise self._failure(proc, what, f"pi refused {command['type']!r}: {item.get('error')}")
                return item

    def _bridge(self, proc: _PiProcess, op: str, payload: dict[str, Any], what: str) -> Any:
        """Run an operation of the bundled extension and return its result (or raise its error)."""
        rid = f"pdn-{next(self._ids)}"
        text = f"/{_BRIDGE_COMMAND} {json.dumps({'id': rid, 'op': op, **payload}, ensure_ascii=False)}"
        inbox = proc.listen()
        proc.send({"type": "prompt", "message": text, "id": rid})
        deadline = time.monotonic() + self.timeout
        outcome: dict[str, Any] | None = None
        while True:
            item = self._next(proc, inbox, deadline, what)
            if not isinstance(item, dict):
                continue
            if item.get("type") == "extension_ui_request" and item.get("method") == "notify":
                message = str(item.get("message") or "")
                if message.startswith(_RESULT_PREFIX):
                    parsed = json.loads(message[len(_RESULT_PREFIX) :])
                    if parsed.get("id") == rid:
                        outcome = parsed
            elif item.get("type") == "extension_error" and item.get("extensionPath") == f"command:{_BRIDGE_COMMAND}":
                raise self._failure(proc, what, f"the bridge extension failed: {item.get('error')}")
            elif item.get("type") == "response" and item.get("id") == rid:
                if not item.get("success"):
                    raise self._failure(proc, what, f"pi refused the bridge command: {item.get('error')}")
                break
        if outcome is None:
            detail = "the bridge extension gave no answer (was it loaded? see `pi --mode rpc -e` in command_line())"
            raise self._failure(proc, what, detail)
        if outcome.get("ok"):
            return outcome.get("result")
        kind, error = outcome.get("kind"), str(outcome.get("error"))
        if kind == "ToolDeniedError":
            raise ToolDeniedError(error, tool=str(payload.get("name", "")))
        if kind == "ToolError":
            raise ToolError(error, tool=str(payload.get("name", "")))
        if kind == "ModelError":
            raise ModelError(error, provider=self._provider_name())
        raise self._failure(proc, what, error)

    def _provider_name(self) -> str:
        model = self.model_info
        return str(model.get("provider")) if model else (self._provider or "pi")

    def _turn(
        self, message: str, options: dict[str, Any], what: str, *, check_command: bool = True
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """One agent turn on ``message``; returns pi's messages and the tool calls it ran."""
        with self._lock:
            proc = self._ensure()
            if check_command and message.startswith("/"):
                self._refuse_extension_command(proc, message, what)
            if options or not self.keep_context:
                self._bridge(proc, "turn", {"fresh": not self.keep_context, **options}, what)
            return self._prompt_events(proc, message, what)

    def _refuse_extension_command(self, proc: _PiProcess, message: str, what: str) -> None:
        name = message[1:].split(" ", 1)[0]
        commands = self._request(proc, {"type": "get_commands"}, self.timeout, what)["data"]["commands"]
        if any(c.get("source") == "extension" and c.get("name") == name for c in commands):
            msg = (
                f"{what}: the text starts with /{name}, which runs pi's extension command {name!r} "
                "instead of an agent turn. Rephrase it so it does not start with a slash command."
            )
            raise PayloadError(msg)

    def _prompt_events(self, proc: _PiProcess, message: str, what: str) -> tuple[list[dict[str, Any]], list[Any]]:
        rid = f"pdn-{next(self._ids)}"
        inbox = proc.listen()
        proc.send({"type": "prompt", "message": message, "id": rid})
        deadline = time.monotonic() + self.timeout
        messages: list[dict[str, Any]] = []
        started: dict[str, dict[str, Any]] = {}
        ran: list[Any] = []
        probe: str | None = None
        retrying = False
        accepted = False
        while True:
            item = self._next(proc, inbox, deadline, what)
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "response" and item.get("id") == rid:
                if not item.get("success"):
                    error = str(item.get("error"))
                    raise ModelError(f"{what}: pi did not start the turn: {error}", provider=self._provider_name())
                accepted = True  # pi answers before the turn's first event
                continue
            if not accepted:
                continue  # left over from before this call
            if kind == "tool_execution_start":
                started[str(item.get("toolCallId"))] = item
            elif kind == "tool_execution_end":
                begin = started.pop(str(item.get("toolCallId")), {})
                ran.append((item.get("toolName"), begin.get("args"), item.get("result"), item.get("isError")))
            elif kind == "auto_retry_start":
                retrying = True
                if messages and messages[-1].get("role") == "assistant":
                    messages.pop()  # pi drops the failed reply and asks again
            elif kind == "agent_end":
                messages.extend(m for m in item.get("messages") or [] if isinstance(m, dict))
                last = _last_assistant(messages)
                if last is None or last.get("stopReason") != "error":
                    break
                # pi decides on an automatic retry right after agent_end, in the same tick; a command
                # sent now is answered after that decision, so its answer tells whether one follows.
                retrying = False
                probe = f"pdn-{next(self._ids)}"
                proc.send({"type": "get_state", "id": probe})
            elif kind == "response" and probe is not None and item.get("id") == probe:
                probe = None
                if not retrying:
                    break
        return messages, ran

    # --- the AgentHost interface ------------------------------------------------------------------

    def llm(self, messages: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
        """One call of pi's model on ``messages`` (no agent loop); returns pi's assistant message.

        Tools are offered only when asked: ``tools=True`` (pi's active tools) or a list of names.
        The system prompt is the call's ``system_prompt``, else the ``system`` messages joined
        (pi's own coding-agent prompt is not used). ``model`` may name another of pi's models
        (``id`` or ``provider/id``); ``temperature`` and ``max_tokens`` are passed to the provider.

        Raises:
            ModelError: pi has no model or key for it, or the provider failed.
        """
        opts = parse_options(options, where="ctx.pi.llm")
        system, converted = _pi_messages(messages)
        if isinstance(opts.tools, list):
            self._check_allowed(opts.tools, "ctx.pi.llm(tools=...)")
        payload: dict[str, Any] = {
            "messages": converted,
            "systemPrompt": opts.system_prompt if opts.system_prompt is not None else system,
            "options": {
                "model": opts.model,
                "temperature": opts.temperature,
                "maxTokens": opts.max_tokens,
                "tools": opts.tools or None,
            },
        }
        with self._lock:
            proc = self._ensure()
            reply = self._bridge(proc, "llm", payload, "ctx.pi.llm")
        if not isinstance(reply, dict):
            msg = f"ctx.pi.llm: pi answered {reply!r} instead of an assistant message."
            raise ModelError(msg, provider=self._provider_name())
        return reply

    def tool(self, name: str, args: dict[str, Any]) -> Any:
        """Run pi's built-in tool ``name`` (pi's own code and argument schema); returns ``{content, details}``.

        Raises:
            ToolDeniedError: the tool is not in this host's ``tools``.
            ToolError: unknown tool, arguments not matching its schema, or the tool failed (a
                ``bash`` command that exits non-zero fails, as in pi).
        """
        if name not in self.tools:
            if name not in BUILTIN_TOOLS:
                msg = f"pi has no built-in tool {name!r}; PiRpcHost runs {sorted(BUILTIN_TOOLS)}."
                raise ToolError(msg, tool=name)
            msg = f"Tool {name!r} is not allowed by PiRpcHost(tools={self._tools}); add it there to allow it."
            raise ToolDeniedError(msg, tool=name)
        if not isinstance(args, dict):
            msg = f"ctx.pi.tool({name!r}, ...) takes the arguments as an object, not {type(args).__name__}."
            raise ToolError(msg, tool=name)
        with self._lock:
            proc = self._ensure()
            return self._bridge(proc, "tool", {"name": name, "args": args}, f"ctx.pi.tool({name!r})")

    def skill(self, name: str, input: Any) -> str:
        """An agent turn on pi's expansion of ``/skill:name`` with ``input``; returns the reply text.

        pi finds skills where it always does (``~/.pi/agent/skills``, ``~/.agents/skills``,
        ``.pi/skills``, ``.agents/skills``, settings, ``--skill``), when it starts.

        Raises:
            SkillNotFoundError: pi has no such skill; the message lists the ones it has.
        """
        text = input if isinstance(input, str) else json.dumps(input, ensure_ascii=False)
        with self._lock:
            proc = self._ensure()
            commands = self._request(proc, {"type": "get_commands"}, self.timeout, "ctx.pi.skill")["data"]["commands"]
        skills = {str(c["name"])[len("skill:") :]: c for c in commands if c.get("source") == "skill"}
        if name not in skills:
            searched = [
                "~/.pi/agent/skills (or $PI_CODING_AGENT_DIR/skills)",
                "~/.agents/skills",
                f"{self._cwd}/.pi/skills",
                f"{self._cwd}/.agents/skills (and its ancestors)",
                "pi's settings and --skill arguments (pi reads them when it starts: host.close() restarts it)",
            ]
            raise SkillNotFoundError(name, searched=searched, found=list(skills))
        message = f"/skill:{name} {text}" if text else f"/skill:{name}"
        messages, ran = self._turn(message, {}, "ctx.pi.skill", check_command=False)
        _record(ran)
        final = self._final(messages, "ctx.pi.skill")
        return _text(final)

    def send_message(self, content: Any) -> dict[str, Any]:
        """Append ``content`` to pi's session as a ``workflow_message`` custom message.

        The runtime also writes it to the transcript, whatever host is bound.
        """
        with self._lock:
            proc = self._ensure()
            result = self._bridge(proc, "send", {"content": content}, "ctx.pi.send_message")
        return result if isinstance(result, dict) else {"sent": True}

    def prompt(self, prompt: str, options: dict[str, Any]) -> dict[str, Any]:
        """A pi agent turn on ``prompt``: pi's model, tools, system prompt, extensions.

        Options: ``system_prompt`` (replaces pi's for this turn), ``tools`` (False or names: the
        tools active in this turn), ``model`` (another of pi's models for this turn).

        Returns:
            ``{"text": final text, "messages": [pi's messages of the turn, the prompt first],
            "usage": {input, output, cacheRead, cacheWrite, totalTokens, cost}, "stopReason": ...}``.
            Persisted with the activity's result, so a replay never calls pi again.

        Raises:
            ModelError: pi could not run the turn, or the model failed.
        """
        if not isinstance(prompt, str):
            msg = f"ctx.pi.prompt takes the prompt as a string, not {type(prompt).__name__}."
            raise TypeError(msg)
        opts = parse_options(options, where="ctx.pi.prompt")
        if opts.temperature is not None or opts.max_tokens is not None:
            msg = (
                "ctx.pi.prompt through PiRpcHost takes no temperature or max_tokens: pi's agent turn has "
                "no per-turn setting for them. Set them in pi's model configuration, or use ctx.pi.llm."
            )
            raise PayloadError(msg)
        turn: dict[str, Any] = {}
        if opts.system_prompt is not None:
            turn["systemPrompt"] = opts.system_prompt
        if opts.tools is not None and opts.tools is not True:
            if isinstance(opts.tools, list):
                self._check_allowed(opts.tools, "ctx.pi.prompt(tools=...)")
            turn["tools"] = opts.tools
        if opts.model is not None:
            turn["model"] = opts.model
        messages, ran = self._turn(prompt, turn, "ctx.pi.prompt")
        _record(ran)
        final = self._final(messages, "ctx.pi.prompt")
        return {
            "text": _text(final),
            "messages": messages,
            "usage": _usage(messages),
            "stopReason": final.get("stopReason", "stop"),
        }

    def _check_allowed(self, names: list[str], where: str) -> None:
        if self._tools is None:
            return
        denied = sorted(set(names) & set(BUILTIN_TOOLS) - set(self._tools))
        if denied:
            msg = f"{where} names tools PiRpcHost(tools={self._tools}) does not allow: {denied}."
            raise ToolDeniedError(msg, tool=denied[0])

    def _final(self, messages: list[dict[str, Any]], what: str) -> dict[str, Any]:
        final = _last_assistant(messages)
        if final is None:
            msg = f"{what}: pi's turn ended without a reply from the model."
            raise ModelError(msg, provider=self._provider_name())
        if final.get("stopReason") in ("error", "aborted"):
            reason = final.get("errorMessage") or final.get("stopReason")
            msg = f"{what}: the model failed in pi: {reason}"
            raise ModelError(msg, provider=str(final.get("provider") or self._provider_name()))
        return final


def _last_assistant(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = [m for m in messages if m.get("role") == "assistant"]
    return found[-1] if found else None


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _usage(messages: list[dict[str, Any]]) -> dict[str, Any]:
    total = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0, "cost": 0.0}
    for m in messages:
        usage = m.get("usage") if m.get("role") == "assistant" else None
        if not isinstance(usage, dict):
            continue
        for key in ("input", "output", "cacheRead", "cacheWrite", "totalTokens"):
            total[key] += int(usage.get(key) or 0)
        cost = usage.get("cost")
        if isinstance(cost, dict):
            total["cost"] += float(cost.get("total") or 0.0)
    return total


def _record(ran: list[Any]) -> None:
    for name, args, result, is_error in ran:
        if is_error:
            text = _text(result) if isinstance(result, dict) else str(result)
            record_tool_call(str(name), args or {}, error=text)
        else:
            record_tool_call(str(name), args or {}, result=result)


def _pi_messages(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """``ctx.pi.llm`` messages as pi-ai takes them: system messages become the system prompt."""
    if not isinstance(messages, list):
        msg = f"ctx.pi.llm takes a list of messages, not {type(messages).__name__}."
        raise PayloadError(msg)
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, item in enumerate(messages):
        if hasattr(item, "model_dump"):
            item = item.model_dump(mode="json", by_alias=True)
        if not isinstance(item, dict) or item.get("role") not in ("system", "user", "assistant", "toolResult"):
            msg = (
                f"ctx.pi.llm: message {i} is {item!r}; give dicts with a role of system, user, assistant or "
                "toolResult, like {'role': 'user', 'content': 'Hi'}."
            )
            raise PayloadError(msg)
        content = item.get("content")
        if item["role"] == "system":
            system.append(content if isinstance(content, str) else json.dumps(content))
            continue
        if item["role"] == "assistant" and isinstance(content, str):
            item = {**item, "content": [{"type": "text", "text": content}]}
        if item["role"] == "toolResult" and isinstance(content, str):
            item = {**item, "content": [{"type": "text", "text": content}]}
        if item["role"] == "toolResult" and not {"toolCallId", "toolName"} <= item.keys():
            msg = f"ctx.pi.llm: message {i} (a toolResult) needs toolCallId and toolName."
            raise PayloadError(msg)
        out.append(item)
    return ("\n\n".join(system) if system else None), out
