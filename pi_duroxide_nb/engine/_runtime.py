"""``WorkflowRuntime``: start, signal, watch and inspect durable workflows."""

from __future__ import annotations

import asyncio
import atexit
import enum
import gc
import logging
import os
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar, overload

import duroxide

from .._errors import (
    EngineError,
    InstanceExistsError,
    InstanceFinishedError,
    InstanceNotFoundError,
    InstanceRunningError,
    PayloadError,
    PiDuroxideError,
    RuntimeStateError,
    StoreError,
    WorkflowTimeoutError,
)
from ..models import DeleteResult, EventWait, HistoryEvent, HistoryList, WorkflowState, WorkflowStatus
from ._client_reader import ClientStoreReader
from ._codestore import CodeRecord, code_path_for, code_store_for
from ._context import PI_ACTIVITIES, _workflow_input
from ._engine import EngineConfig, PollingConfig, WorkflowEngine
from ._events import (
    add_schema_sink,
    event_model,
    model_name,
    model_schema,
    remove_schema_sink,
    validate_with_schema,
)
from ._host import AgentHost, pi_activity_functions
from ._json import loads_lenient, to_json_value, validate_model
from ._registry import WorkflowRegistry, default_registry, format_ref
from ._restore import RestoreError, rebuild_definition
from ._store import SqliteStoreReader, StoreReader
from ._transcript import TranscriptEntry, TranscriptStore, transcript_path_for
from ._workers import WorkerInfo, WorkerPresence, worker_table_for

__all__ = ["CodeNotice", "RuntimeState", "WorkflowRuntime", "default_db_path"]

_log = logging.getLogger("pi_duroxide_nb")

DB_ENV_VAR = "PI_DUROXIDE_DB"
_PI_DEFAULT_DB = Path.home() / ".pi" / "agent" / "workflows.db"


def default_db_path() -> Path:
    """Where the store lives when no ``db`` is given.

    ``$PI_DUROXIDE_DB`` if set, else ``~/.local/share/pi_duroxide_nb/workflows.db``
    (``$XDG_DATA_HOME`` is honoured). It is deliberately not pi's own
    ``~/.pi/agent/workflows.db``: pi expects to be that file's only user.
    """
    env = os.environ.get(DB_ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "pi_duroxide_nb" / "workflows.db"


_RUNNING: weakref.WeakSet[WorkflowRuntime] = weakref.WeakSet()
_OWNERS: dict[str, weakref.ref[WorkflowRuntime]] = {}
"""Which runtime of this process holds each store open: one engine per store per process."""
_OWNERS_LOCK = threading.Lock()


@dataclass(frozen=True)
class CodeNotice:
    """What a runtime did about unfinished instances whose workflow version was not registered.

    ``str()`` is the one line the notebook prints.
    """

    name: str
    """The workflow's name."""
    version: str
    """The version the instances started on."""
    instance_ids: tuple[str, ...]
    """The unfinished instances on that version."""
    restored: bool
    """True when the version was rebuilt from the code kept with the store."""
    reason: str | None = None
    """Why it could not be restored (when ``restored`` is False)."""

    @property
    def ref(self) -> str:
        """``name@short-version``."""
        return format_ref(self.name, self.version)

    def _instances(self) -> str:
        ids = ", ".join(self.instance_ids[:5]) + (", ..." if len(self.instance_ids) > 5 else "")
        n = len(self.instance_ids)
        return f"{n} unfinished instance{'s' if n != 1 else ''}: {ids}"

    def __str__(self) -> str:
        if self.restored:
            return f"restored {self.ref} for {self._instances()}"
        return (
            f"code missing: {self.ref} is not registered and cannot be restored ({self.reason}); "
            f"{self._instances()} wait for it. Fix: re-run the cell (or import the module) that defined "
            f"this version; or check edited code against their history with pdn.replay_check; or cancel them."
        )


@atexit.register
def _shutdown_at_exit() -> None:
    # The engine's threads call into Python; stop them before the interpreter goes away.
    for runtime in list(_RUNNING):
        runtime.shutdown(timeout=2.0)


_CHECK_TIMEOUT_S = 1.5
"""How long the integrity check of an existing store may take at open (a bigger store is opened unchecked)."""
_SQLITE_HEADER = b"SQLite format 3\x00"


def check_store_file(path: Path) -> None:
    """Refuse, at once, a store path SQLite would hang on: not a database, truncated, unwritable.

    Left to the engine, each of these blocks every call for 30 s and then reports "pool timed
    out". Nothing is created or written here.

    Raises:
        StoreError: what is wrong with the file, and what to do.
    """
    fix = "Point the runtime at another file (db=... or %workflow_config --db PATH)"
    fix_lower = fix[0].lower() + fix[1:]
    if path.is_dir():
        msg = f"The workflow store {path} is a folder, not a file. {fix}, e.g. {path / 'workflows.db'}."
        raise StoreError(msg)
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            msg = (
                f"The workflow store {path} cannot be read and written by this process (permissions). "
                f"Fix its permissions, or {fix_lower}."
            )
            raise StoreError(msg)
        size = path.stat().st_size
        if size > 0:
            with path.open("rb") as f:
                header = f.read(100)
            if not header.startswith(_SQLITE_HEADER):
                msg = (
                    f"The workflow store {path} is not an SQLite database (it starts with {header[:16]!r}). "
                    f"{fix}; nothing was written to it."
                )
                raise StoreError(msg)
            page = int.from_bytes(header[16:18], "big") if len(header) >= 18 else 0
            page = 65536 if page == 1 else page
            pages = int.from_bytes(header[28:32], "big") if len(header) >= 32 else 0
            valid_count = len(header) == 100 and header[92:96] == header[24:28]
            if (
                len(header) < 100
                or page < 512
                or page & (page - 1)
                or size % page
                or (valid_count and pages and size < pages * page)
            ):
                msg = (
                    f"The workflow store {path} is truncated or its header is damaged ({size} bytes). "
                    f"Restore it from a backup, or {fix_lower}; nothing was written to it."
                )
                raise StoreError(msg)
        folder = path.parent
    else:
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        msg = (
            f"The folder {folder} of the workflow store {path.name} is read-only: SQLite needs to write its "
            f"journal files beside the store. Make the folder writable, or {fix_lower}."
        )
        raise StoreError(msg)


class RuntimeState(enum.Enum):
    """Where a ``WorkflowRuntime`` is in its life."""

    CREATED = "created"
    """Built; ``start()`` has not been called. Calls that need the engine start it."""
    RUNNING = "running"
    """Running workflows in the background."""
    STOPPED = "stopped"
    """Shut down; create a new runtime to continue."""


def _timedelta(value: float | timedelta | None, what: str) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    msg = f"{what} must be seconds (a non-negative number) or a timedelta, not {value!r}."
    raise PayloadError(msg)


class WorkflowRuntime:
    """Runs durable workflows on a store (SQLite by default, PostgreSQL by URL).

    Example:
        rt = pdn.WorkflowRuntime(db="workflows.db")
        rt.start()
        iid = rt.start_workflow("deploy", {"service": "api"})
        rt.signal_workflow(iid, "deploy-decision", {"action": "approve"})
        state = rt.wait_for_workflow(iid, timeout=60)
        rt.shutdown()

    It is also a context manager (``with pdn.WorkflowRuntime(db=...) as rt:``) that starts
    and shuts down.
    """

    def __init__(
        self,
        *,
        db: str | os.PathLike[str] | None = None,
        host: AgentHost | None = None,
        registry: WorkflowRegistry | None = None,
        polling: PollingConfig | None = None,
        orchestration_concurrency: int = 2,
        worker_concurrency: int = 4,
        lock_timeout: timedelta = timedelta(seconds=2),
        log_level: str = "error",
        wal_limit_bytes: int = 16 * 1024 * 1024,
        share_with_pi: bool = False,
        namespace: Mapping[str, Any] | None = None,
        worker: bool = True,
        restore_code: bool = True,
    ) -> None:
        """Create a runtime; nothing runs until ``start()``.

        Args:
            db: A SQLite file path or a ``postgresql://`` URL. Defaults to
                ``default_db_path()`` (``$PI_DUROXIDE_DB`` or a per-user data file).
            host: The agent host behind ``ctx.pi`` (see ``set_host``).
            registry: Where workflows and activities come from; the module-level one by default.
            polling: Poll intervals; adaptive by default (see ``PollingConfig``): 1 ms while busy,
                2 ms on PostgreSQL, 50 ms when idle.
            orchestration_concurrency: Workflow steps run at once while busy.
            worker_concurrency: Activities run at once while busy.
            lock_timeout: How long work held by a crashed process stays locked before it is
                retried. Short, so a restarted kernel resumes within seconds.
            log_level: The engine's log level (error, warn, info, debug).
            wal_limit_bytes: Keep SQLite's write-ahead log near this size while work runs
                (it is truncated to zero whenever the runtime goes idle). Left alone, the
                engine's log grows by about 40 kB a step up to about 41 MB. Smaller limits
                cost throughput: each checkpoint during work makes some engine transactions
                back off (see README, "Engine settings").
            share_with_pi: Allow opening pi's own ``~/.pi/agent/workflows.db``.
            namespace: Where code defined in notebook cells resolves its globals when a version
                is restored from the store; the ``__main__`` module's (the notebook's) by default.
            worker: Run workflows and activities in this process. ``False`` makes a client only:
                it starts, signals, lists and inspects instances, and worker processes
                (``python -m pi_duroxide_nb worker``, see ``workers()``) do the work.
            restore_code: Rebuild unfinished instances' workflow versions from the code kept with
                the store when they are not registered. ``False`` leaves them "code missing".

        Raises:
            RuntimeStateError: ``db`` is pi's store and ``share_with_pi`` is not set.
            PayloadError: ``db`` is empty or names a folder.
        """
        self._registry = registry if registry is not None else default_registry
        self._host = host
        target = _db_target(db)
        self._postgres = target.startswith(("postgres://", "postgresql://"))
        if polling is None:
            # On PostgreSQL every poll is a round trip to a server that several hosts may share:
            # busy polling there stays at 2 ms (what bench/bench_workers.py measures).
            polling = PollingConfig(active_interval=timedelta(milliseconds=2)) if self._postgres else PollingConfig()
        self._config = EngineConfig(
            polling=polling,
            orchestration_concurrency=_positive(orchestration_concurrency, "orchestration_concurrency"),
            worker_concurrency=_positive(worker_concurrency, "worker_concurrency"),
            lock_timeout=_lease(lock_timeout),
            log_level=log_level,
            wal_limit_bytes=_positive(wal_limit_bytes, "wal_limit_bytes"),
        )
        self._lock = threading.RLock()
        self._state = RuntimeState.CREATED
        self._engine: WorkflowEngine | None = None
        if self._postgres:
            self._db_path: Path | None = None
            self._sqlite: SqliteStoreReader | None = None
        else:
            path = Path(target).expanduser().resolve()
            if path == _PI_DEFAULT_DB.resolve() and not share_with_pi:
                msg = (
                    f"{path} is the store of the pi coding agent's own pi-duroxide extension, and a running "
                    "pi session expects to be its only user. Use another file (db=... or $PI_DUROXIDE_DB), "
                    "or pass share_with_pi=True if pi is not running."
                )
                raise RuntimeStateError(msg)
            check_store_file(path)
            self._db_path = path
            self._sqlite = SqliteStoreReader(str(path))
        self._target = target
        self._transcript = TranscriptStore(transcript_path_for(self.db, fallback_dir=default_db_path().parent))
        self._codes = code_store_for(self.db, self._transcript.path)
        self._namespace = namespace
        self._worker = bool(worker)
        self._restore_code = bool(restore_code)
        self._worker_table: WorkerPresence | None = None
        self._missing: dict[tuple[str, str], CodeNotice] = {}
        self._notices: list[CodeNotice] = []
        self._unsubscribe_registry: Callable[[], None] | None = None
        self._reconciling = threading.RLock()
        self._in_reconcile = False
        self._provider: Any = None
        self._client: Any = None
        # One way to read, whatever the backend (see StoreReader).
        self._reader: StoreReader = (
            self._sqlite if self._sqlite is not None else ClientStoreReader(lambda: self._client)
        )

    def __repr__(self) -> str:
        return f"<WorkflowRuntime {self._state.value} db={self.db!r}>"

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def db(self) -> str:
        """The store: a file path or a PostgreSQL URL."""
        return str(self._db_path) if self._db_path is not None else self._target

    @property
    def state(self) -> RuntimeState:
        """``CREATED``, ``RUNNING`` or ``STOPPED``."""
        return self._state

    @property
    def registry(self) -> WorkflowRegistry:
        """The registry this runtime runs."""
        return self._registry

    @property
    def engine_mode(self) -> str:
        """``"active"`` (fast polling), ``"idle"`` (slow polling), ``"client"`` (``worker=False``) or ``"stopped"``."""
        if self._state is not RuntimeState.RUNNING:
            return "stopped"
        return self._engine.mode if self._engine is not None else "client"

    @property
    def is_worker(self) -> bool:
        """Whether this runtime runs workflows itself (``False``: a client of worker processes)."""
        return self._worker

    def start(self) -> WorkflowRuntime:
        """Start running workflows in the background; returns at once. Calling it again does nothing.

        Before the engine runs, unfinished instances whose workflow version is not registered
        are looked after: their version is rebuilt from the code kept with the store when it
        can be (``code_notices`` says which), and otherwise they wait, marked "code missing",
        until their code is registered again; the engine never fails them for it.

        Raises:
            RuntimeStateError: the runtime was shut down, or another runtime of this process
                has the store open.
            EngineError: the store cannot be opened (not a database, damaged, read-only).
        """
        with self._lock:
            if self._state is RuntimeState.RUNNING:
                return self
            if self._state is RuntimeState.STOPPED:
                msg = "This WorkflowRuntime was shut down and cannot restart. Create a new WorkflowRuntime."
                raise RuntimeStateError(msg)
            self._open()
            self.reconcile_code()
            add_schema_sink(self._keep_event_schema)
            if self._worker:
                self._engine = WorkflowEngine(
                    self._provider,
                    self._registry,
                    self._config,
                    self._activities,
                    self._sqlite,
                )
                self._engine.start()
            self._unsubscribe_registry = self._registry.subscribe(self._on_registration)
            self._state = RuntimeState.RUNNING
            _RUNNING.add(self)
        return self

    def _keep_event_schema(self, instance_id: str, event: str, schema: dict[str, Any], model: str) -> None:
        """Keep the schema of a typed wait a workflow turn just yielded (see ``_events``)."""
        try:
            self._codes.save_event_schema(instance_id, event, schema, model)
        except Exception:  # senders in this process still have the model; never fail the turn
            _log.warning("could not keep the schema of event %r of %r", event, instance_id, exc_info=True)

    def _activities(self) -> dict[str, Callable[[Any], Any]]:
        """The built-in activities the engine registers: ``ctx.pi``'s only while a host is bound.

        With no host, a ``ctx.pi`` call is work the engine cannot place: it sets it aside and
        retries it, and the call runs once a host is bound (``set_host`` rebuilds the engine
        and makes the work visible again). Failing it would cost the instance.
        """
        if self._host is None:
            return {}
        return pi_activity_functions(lambda: self._host, self._transcript)

    def shutdown(self, timeout: float | timedelta = 5.0) -> None:
        """Stop the runtime, letting running steps finish for up to ``timeout`` (seconds).

        Unfinished instances stay in the store and resume when a runtime opens it again. The
        store is released at once, whatever still references this runtime: another runtime of
        this process can open it next. Safe to call more than once.
        """
        delay = _timedelta(timeout, "timeout") or timedelta(0)
        with self._lock:
            if self._state is RuntimeState.STOPPED:
                return
            engine, self._engine = self._engine, None
            self._state = RuntimeState.STOPPED
            _RUNNING.discard(self)
            unsubscribe, self._unsubscribe_registry = self._unsubscribe_registry, None
        if unsubscribe is not None:
            unsubscribe()
        if engine is not None:
            engine.stop(delay)
        del engine
        remove_schema_sink(self._keep_event_schema)
        self._reader.close()
        self._transcript.close()
        self._codes.close()
        if self._worker_table is not None:
            self._worker_table.close()
        self._release()

    def _release(self) -> None:
        """Drop every reference to the engine's objects, so the store file is closed now.

        SQLite's POSIX locks belong to the process: a provider kept open by a forgotten
        reference makes later runtimes on the same file fail with "disk I/O error".
        """
        with self._lock:
            self._provider = None
            self._client = None
        gc.collect()
        with _OWNERS_LOCK:
            owner = _OWNERS.get(self._store_key)
            if owner is not None and owner() in (self, None):
                del _OWNERS[self._store_key]

    @property
    def _store_key(self) -> str:
        return self.db

    def __enter__(self) -> WorkflowRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def set_host(self, host: AgentHost | None) -> None:
        """Bind the agent host that ``ctx.pi`` calls (``None`` unbinds); takes effect at once.

        ``ctx.pi`` calls made while no host was bound have been waiting ("waiting for an agent
        host" in their state); they run now.
        """
        was_none = self._host is None
        self._host = host
        engine = self._engine
        if engine is None or was_none == (host is None):
            return
        engine.refresh(force=True)
        if host is not None:
            self._nudge(activities=list(PI_ACTIVITIES.values()))

    @property
    def host(self) -> AgentHost | None:
        """The bound agent host."""
        return self._host

    # --- code versions ------------------------------------------------------------------------

    def reconcile_code(self) -> list[CodeNotice]:
        """Look after unfinished instances whose workflow version is not registered; returns what is new.

        Every registered version is kept with the store first. Then each unfinished instance's
        ``name@version`` that is not registered is rebuilt from the kept code when it can be
        (cell-defined code is compiled in the notebook's namespace, so its globals resolve);
        otherwise its instances are marked "code missing" (``code_notices``, their state's
        ``blocked``) and wait: the engine retries them without ever failing them for it, and
        they resume the moment the version is registered again. Runs at ``start()`` and after
        every registration.
        """
        with self._reconciling:
            if self._in_reconcile:  # a restore registers a version, which calls back here
                return []
            self._in_reconcile = True
            try:
                return self._reconcile()
            finally:
                self._in_reconcile = False

    def _reconcile(self) -> list[CodeNotice]:
        self._codes.save(self._registry.all_workflow_versions())
        groups: dict[tuple[str, str], list[str]] = {}
        for name, version, iid in self._unfinished():
            if version:
                groups.setdefault((name, version), []).append(iid)
        missing: dict[tuple[str, str], CodeNotice] = {}
        fresh: list[CodeNotice] = []
        restored: list[tuple[str, str]] = []
        for (name, version), ids in sorted(groups.items()):
            if self._registry.has_version(name, version):
                continue
            record = self._codes.get(name, version)
            if not self._restore_code:
                reason = "restoring kept code is turned off for this runtime (restore_code=False)"
            elif record is None:
                reason = (
                    "its code was not kept with this store: it started before code versions were kept, or elsewhere"
                )
            else:
                try:
                    definition = rebuild_definition(record, self._restore_namespace())
                except RestoreError as exc:
                    reason = str(exc)
                else:
                    self._registry.restore_workflow(definition)
                    restored.append((name, version))
                    fresh.append(CodeNotice(name, version, tuple(sorted(ids)), restored=True))
                    continue
            notice = CodeNotice(name, version, tuple(sorted(ids)), restored=False, reason=reason)
            missing[(name, version)] = notice
            if (name, version) not in self._missing:
                fresh.append(notice)
        back = [key for key in self._missing if key not in missing]
        self._missing = missing
        wake = [iid for key in [*back, *restored] for iid in groups.get(key, ())]
        if wake:
            self._nudge(instances=wake)
        for notice in fresh:
            (_log.info if notice.restored else _log.warning)("pi_duroxide_nb: %s", notice)
        self._notices.extend(fresh)
        return fresh

    def _on_registration(self) -> None:
        try:
            self.reconcile_code()
            if self._state is RuntimeState.RUNNING:
                self._nudge(activities=[a.name for a in self._registry.activities()])
        except Exception:  # a registration must not fail because the store could not be read
            _log.exception("pi_duroxide_nb: could not check the store after a registration")

    def _nudge(self, *, instances: Sequence[str] = (), activities: Sequence[str] = ()) -> None:
        """Make work the engine set aside visible now, and again shortly after.

        A dispatcher may hold the item at this very moment (it is about to set it aside once
        more, with a longer backoff), so the nudge is repeated a little later: the code or host
        came back once, and from then on the item runs at its next look.
        """

        def nudge() -> None:
            if self._state is RuntimeState.STOPPED:
                return
            try:
                self._reader.nudge(instances=instances, activities=activities)
            except PiDuroxideError as exc:  # the engine's own retry (at most a minute) still comes
                _log.debug("could not nudge set-aside work: %s", exc)

        nudge()
        for delay in _NUDGE_AGAIN_S:
            timer = threading.Timer(delay, nudge)
            timer.daemon = True
            timer.start()

    def _restore_namespace(self) -> Mapping[str, Any]:
        if self._namespace is not None:
            return self._namespace
        main = sys.modules.get("__main__")
        return vars(main) if main is not None else {}

    def _unfinished(self) -> list[tuple[str, str, str]]:
        return self._reader.unfinished()

    @property
    def code_notices(self) -> list[CodeNotice]:
        """The workflow versions unfinished instances wait for ("code missing"), as of the last check."""
        return list(self._missing.values())

    def take_code_notices(self) -> list[CodeNotice]:
        """Notices (restored, code missing) not taken yet: what the notebook prints after a cell."""
        notices, self._notices = self._notices, []
        return notices

    def code_version(self, name: str, version: str) -> CodeRecord | None:
        """The code of ``name@version`` as kept with the store (what its instances ran), or None."""
        self._client_ready()
        return self._codes.get(name, version)

    # --- workers ------------------------------------------------------------------------------

    def workers(self, *, within: float | timedelta = 10.0) -> list[WorkerInfo]:
        """The worker processes serving this store that were seen within ``within`` seconds, oldest first.

        Workers (``python -m pi_duroxide_nb worker --db ...``) announce themselves every second
        beside the store (``<db>.code.sqlite``; for PostgreSQL in a table of the database, so
        every host's workers are listed); one shut down gracefully leaves at once, one killed
        leaves the list ``within`` seconds after its last heartbeat.
        """
        delay = _timedelta(within, "within") or timedelta(0)
        return self._workers_table().live(delay)

    def _workers_table(self) -> WorkerPresence:
        if self._state is RuntimeState.STOPPED:
            msg = "This WorkflowRuntime was shut down. Create a new WorkflowRuntime to list workers."
            raise RuntimeStateError(msg)
        with self._lock:
            if self._worker_table is None:
                self._worker_table = worker_table_for(self.db, code_path_for(self._transcript.path))
            return self._worker_table

    # --- transcript --------------------------------------------------------------------------

    def messages(self, instance_id: str | None = None, *, limit: int | None = None) -> list[TranscriptEntry]:
        """The session transcript, oldest first: ``ctx.pi.send_message`` and ``ctx.pi.tool`` entries.

        It is kept in its own SQLite file beside the store (``transcript_path``), so it
        survives a kernel restart. An entry can appear twice when the process died between
        writing it and the engine recording the activity's completion (activities run at
        least once).

        Args:
            instance_id: Only this instance's entries; ``None`` for every instance.
            limit: Only the newest ``limit`` entries (still oldest first); ``None`` for all.
        """
        if self._state is RuntimeState.STOPPED:
            msg = "This WorkflowRuntime was shut down. Create a new WorkflowRuntime to read the transcript."
            raise RuntimeStateError(msg)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            msg = f"limit must be a non-negative integer or None, not {limit!r}."
            raise PayloadError(msg)
        return self._transcript.entries(instance_id, limit=limit)

    def on_message(self, callback: Callable[[TranscriptEntry], None]) -> Callable[[], None]:
        """Call ``callback(entry)`` for every new transcript entry; returns an unsubscribe function.

        The callback runs in the engine's worker thread that wrote the entry, right after it
        was persisted: keep it short, and hand the entry to your UI thread-safely (ipywidgets
        trait updates are fine). Exceptions it raises are logged, not passed to the workflow.
        """
        return self._transcript.subscribe(callback)

    @property
    def transcript_path(self) -> str:
        """The SQLite file holding the transcript: ``<db>.transcript.sqlite``.

        A PostgreSQL store keeps its transcript in a local file named after the URL's hash.
        """
        return self._transcript.path

    def _open(self) -> None:
        if self._provider is not None:
            return
        with _OWNERS_LOCK:
            owner_ref = _OWNERS.get(self._store_key)
            owner = owner_ref() if owner_ref is not None else None
            # PostgreSQL serves many engines; SQLite's locks allow one per file per process.
            if not self._postgres and owner is not None and owner is not self and owner._provider is not None:
                msg = (
                    f"The workflow store {self.db!r} is already open in this process by {owner!r}. One store "
                    "file takes one engine per process (a second one breaks SQLite's locks). Use that runtime "
                    "(in a notebook: pdn.kernel_runtime()), or call its shutdown() first."
                )
                raise RuntimeStateError(msg)
            if not self._postgres:
                assert self._db_path is not None
                check_store_file(self._db_path)
                if self._db_path.exists() and self._db_path.stat().st_size > 0:
                    self._check_integrity()  # before the engine opens it: opening writes to it
            try:
                if self._postgres:
                    self._provider = duroxide.PostgresProvider.connect(self._target)
                else:
                    assert self._db_path is not None
                    self._db_path.parent.mkdir(parents=True, exist_ok=True)
                    self._provider = duroxide.SqliteProvider.open(str(self._db_path))
                self._client = duroxide.Client(self._provider)
            except Exception as exc:
                self._provider = self._client = None
                msg = (
                    f"Could not open the workflow store {self.db!r}: {exc}. Check the path or URL and its permissions."
                )
                raise EngineError(msg, cause=exc) from exc
            if not self._postgres:
                _OWNERS[self._store_key] = weakref.ref(self)
        if self._sqlite is not None:
            try:  # the engine has created its tables now
                self._sqlite.tune_planner()
            except PiDuroxideError as exc:  # slower under a backlog, nothing worse
                _log.debug("could not tune the store's query planner: %s", exc)

    def _check_integrity(self) -> None:
        """Refuse a store with damaged pages before the engine writes to it."""
        assert self._sqlite is not None
        try:
            problems = self._sqlite.integrity(timeout=_CHECK_TIMEOUT_S)
        except EngineError:
            return  # a big store that takes longer to check: the engine reports what it finds
        if problems != ["ok"]:
            self._sqlite.close()
            shown = "; ".join(problems[:3])
            msg = (
                f"The workflow store {self.db} is damaged ({shown}), so it was not opened and nothing was written. "
                "Restore it from a backup, or point the runtime at another file (db=...)."
            )
            raise StoreError(msg)

    def _client_ready(self) -> Any:
        if self._state is RuntimeState.STOPPED:
            msg = "This WorkflowRuntime was shut down. Create a new WorkflowRuntime to reach the store."
            raise RuntimeStateError(msg)
        with self._lock:
            self._open()
        return self._client

    # --- starting and signalling ---------------------------------------------------------

    def start_workflow(self, name: str, input: Any = None, *, instance_id: str | None = None) -> str:
        """Start an instance of the workflow ``name`` with its newest code; returns its id.

        Validation happens before anything is written: an unknown name, an input that is not
        JSON or fails the workflow's input model, or a taken ``instance_id`` raise and leave
        the store untouched. The runtime starts if it has not yet.

        Raises:
            WorkflowNotFoundError: ``name`` is not registered (the message lists what is).
            PayloadError: ``input`` is not JSON-serializable or fails the input model.
            InstanceExistsError: ``instance_id`` is taken.
        """
        definition = self._registry.workflow(name)
        iid = instance_id if instance_id is not None else uuid.uuid4().hex
        if not isinstance(iid, str) or not iid.strip():
            msg = f"instance_id must be a non-empty string, not {instance_id!r}."
            raise PayloadError(msg)
        data = _workflow_input(definition, input, iid)
        client = self._client_ready()
        with self._lock:
            # A generated id is a fresh uuid4: only a caller's own id can be taken.
            if instance_id is not None and self._exists(iid):
                raise InstanceExistsError(iid)
            self.start()
            if self._engine is not None:
                self._engine.refresh()
                self._engine.wake()
            try:
                client.start_orchestration_versioned(iid, name, data, definition.version)
            except Exception as exc:
                msg = f"The engine refused to start workflow {name!r} as {iid!r}: {exc}"
                raise EngineError(msg, cause=exc) from exc
            now = datetime.now(timezone.utc)
            self._reader.remember_queued(
                WorkflowState(
                    instance_id=iid,
                    name=name,
                    version=definition.version,
                    status=WorkflowStatus.PENDING,
                    created_at=now,
                    updated_at=now,
                )
            )
        return iid

    def _exists(self, instance_id: str) -> bool:
        if self._reader.exists(instance_id):
            return True
        # An instance the engine failed on its first step has no instances row; ask the client.
        return bool(self._client.get_status(instance_id).status != "NotFound")

    def signal_workflow(self, instance_id: str, event_name: str, data: Any = None) -> None:
        """Send the event ``event_name`` with ``data`` to an instance waiting in ``ctx.wait_for_event``.

        When the instance waits for ``event_name`` with a model (``ctx.wait_for_event(name,
        model=Approval)``), ``data`` is validated against it first: a payload that does not fit
        is refused with ``ModelValidationError`` naming the fields, nothing is sent, and the
        instance keeps waiting. ``rt.waiting_for(instance_id)`` tells what it waits for.

        An event sent before the instance waits for it is dropped by the engine, so signal
        after the instance reached its wait (``waiting_for`` lists it then).

        Raises:
            InstanceNotFoundError: no such instance.
            InstanceFinishedError: the instance has finished; nothing was sent.
            ModelValidationError: ``data`` does not fit the model of the wait.
            PayloadError: ``data`` is not JSON-serializable, or ``event_name`` is empty.
        """
        if not isinstance(event_name, str) or not event_name:
            msg = f"event_name must be a non-empty string, not {event_name!r}."
            raise PayloadError(msg)
        value = to_json_value(data, what=f"the data of signal {event_name!r}")
        client = self._client_ready()
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._refuse_finished(instance_id, f"signal {event_name!r}")
        value = self._check_event(instance_id, event_name, value)
        if self._engine is not None:
            self._engine.wake()
        client.raise_event(instance_id, event_name, value)

    def _refuse_finished(self, instance_id: str, what: str) -> None:
        state = self._read_state(instance_id)
        if state.status.is_terminal:
            how = f" ({state.error})" if state.error else ""
            msg = (
                f"Workflow instance {instance_id!r} has finished as {state.status.value}{how}, so the {what} was "
                "not sent: a finished instance takes no more events. Start a new instance "
                "(rt.start_workflow) to run it again."
            )
            raise InstanceFinishedError(msg, instance_id=instance_id, status=state.status.value)

    def _check_event(self, instance_id: str, event_name: str, value: Any) -> Any:
        """Validate the data of a signal against the model its wait expects; returns what to send."""
        what = f"The data of event {event_name!r}"
        model = event_model(instance_id, event_name)
        if model is not None:
            checked = validate_model(model, value, what=what, instance_id=instance_id)
            return to_json_value(checked, what=f"the data of signal {event_name!r}")
        kept = self._codes.event_schemas(instance_id).get(event_name)
        if kept is not None:
            validate_with_schema(kept[1], value, what=what, instance_id=instance_id)
        return value

    def waiting_for(self, instance_id: str, *, history: Sequence[HistoryEvent] | None = None) -> list[EventWait]:
        """The events the instance waits for now, each with the JSON Schema of its model, if any.

        Read from its history: the ``ctx.wait_for_event`` subscriptions of the current
        execution that no event has answered yet (empty once it has finished).

        Example:
            [wait] = rt.waiting_for(iid)
            rt.signal_workflow(iid, wait.name, {"approved": True})

        Args:
            instance_id: The instance.
            history: Its current execution's events, when the caller has just read them
                (``rt.history(instance_id)``): saves reading them again.

        Raises:
            InstanceNotFoundError: no such instance.
        """
        events = list(history) if history is not None else None
        if events is None:
            state = self._read_state(instance_id)
            if state.status.is_terminal or state.status is WorkflowStatus.PENDING:
                return []
            events = list(self.history(instance_id))
        open_waits: dict[int, tuple[str, datetime]] = {}
        for event in events:
            if event.kind == "ExternalSubscribed" and event.name:
                open_waits[event.event_id] = (event.name, event.timestamp)
            elif event.kind == "ExternalSubscribedCancelled" and event.source_event_id is not None:
                open_waits.pop(int(event.source_event_id), None)
            elif event.kind == "ExternalEvent" and event.name:
                answered = next((k for k, (n, _) in open_waits.items() if n == event.name), None)
                if answered is not None:
                    del open_waits[answered]
            elif event.kind in _ENDS:
                return []
        if not open_waits:
            return []
        kept: dict[str, tuple[str, dict[str, Any]]] | None = None
        waits: list[EventWait] = []
        for name, since in open_waits.values():
            if any(w.name == name for w in waits):
                continue
            model = event_model(instance_id, name)
            if model is not None:
                schema = model_schema(model)
                waits.append(EventWait(name=name, model=model_name(model), json_schema=schema, since=since))
                continue
            if kept is None:
                kept = self._codes.event_schemas(instance_id)
            if name in kept:
                waits.append(EventWait(name=name, model=kept[name][0], json_schema=kept[name][1], since=since))
            else:
                waits.append(EventWait(name=name, since=since))
        return waits

    def cancel_workflow(self, instance_id: str, reason: str = "cancelled by user") -> None:
        """Ask an instance to stop; it ends as ``Terminated`` (its error reads ``canceled: <reason>``).

        Raises:
            InstanceNotFoundError: no such instance.
            InstanceFinishedError: the instance has already finished; nothing was changed.
        """
        client = self._client_ready()
        if not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        self._refuse_finished(instance_id, "cancel request")
        if self._engine is not None:
            self._engine.wake()
        client.cancel_instance(instance_id, reason)

    # --- reading state ---------------------------------------------------------------------

    def get_workflow(self, instance_id: str) -> WorkflowState:
        """The state of one instance.

        Raises:
            InstanceNotFoundError: no such instance.
        """
        state = self._read_state(instance_id)
        if self._sqlite is not None and not state.status.is_terminal:
            state = state.model_copy(update={"history_events": self._sqlite.history_count(instance_id)})
        return state

    def _read_state(self, instance_id: str) -> WorkflowState:
        """``get_workflow`` without counting the history: for the checks that only need the status."""
        self._client_ready()
        states = self._reader.states(instance_id=instance_id)
        return self._typed(states[0] if states else self._state_from_client(instance_id))

    def list_workflows(
        self,
        *,
        name: str | None = None,
        status: str | WorkflowStatus | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[WorkflowState]:
        """States of every instance (newest first), optionally only one workflow or status.

        ``limit`` and ``offset`` page through the list with one store query per page, so a
        store with thousands of instances stays quick to browse (``count_workflows`` gives
        the totals).
        """
        status_value = _status(status) if status is not None else None
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            msg = f"limit must be a non-negative integer or None, not {limit!r}."
            raise PayloadError(msg)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            msg = f"offset must be a non-negative integer, not {offset!r}."
            raise PayloadError(msg)
        self._client_ready()
        status_text = status_value.value if status_value else None
        states = self._reader.states_page(name=name, status=status_text, limit=limit, offset=offset)
        held = self._set_aside()
        return [self._typed(s, held) for s in states]

    def count_workflows(self, *, name: str | None = None) -> dict[WorkflowStatus, int]:
        """How many instances are in each status (only statuses that occur), optionally for one workflow."""
        self._client_ready()
        return {WorkflowStatus(s): n for s, n in self._reader.status_counts(name=name).items()}

    def wait_for_workflow(
        self,
        instance_id: str,
        timeout: float | timedelta = 60.0,
        *,
        on_progress: Callable[[WorkflowState], None] | None = None,
    ) -> WorkflowState:
        """Block until the instance finishes (or continues as new past this execution); return its state.

        The wait listens: it waits in slices of a tenth of a second, so a kernel interrupt
        (Ctrl-C, Kernel > Interrupt) ends it within half a second with a plain
        ``KeyboardInterrupt``; the instance keeps running.

        Args:
            instance_id: The instance.
            timeout: Seconds (or a timedelta) to wait at most.
            on_progress: Called with the instance's state whenever its status, custom status,
                step or ``blocked`` reason changes while waiting (``%workflow wait`` shows it).

        Raises:
            InstanceNotFoundError: no such instance.
            WorkflowTimeoutError: it did not finish within ``timeout`` seconds; it keeps running.
        """
        return self._wait(instance_id, timeout, on_progress, None)

    def _wait(
        self,
        instance_id: str,
        timeout: float | timedelta,
        on_progress: Callable[[WorkflowState], None] | None,
        cancel: threading.Event | None,
    ) -> WorkflowState:
        delay = _timedelta(timeout, "timeout") or timedelta(0)
        client = self._client_ready()
        # Most waits find the instance already known (often already finished): one store read.
        known = self._reader.states(instance_id=instance_id)
        if known and known[0].status.is_terminal:
            return self._typed(known[0])
        if not known:
            first = client.get_status(instance_id)
            if first.status in ("Completed", "Failed"):
                return self.get_workflow(instance_id)
            if first.status == "NotFound" and not self._reader.may_appear(instance_id, min(delay.total_seconds(), 2.0)):
                raise InstanceNotFoundError(instance_id)
        try:
            return self._wait_slices(instance_id, delay, on_progress, cancel)
        except KeyboardInterrupt:
            # An interrupt lands wherever Python resumes, often while the engine's "timed out"
            # for a slice is being handled: show it alone, not chained to that.
            raise KeyboardInterrupt from None

    def _wait_slices(
        self,
        instance_id: str,
        delay: timedelta,
        on_progress: Callable[[WorkflowState], None] | None,
        cancel: threading.Event | None,
    ) -> WorkflowState:
        client = self._client
        deadline = time.monotonic() + delay.total_seconds()
        shown: tuple[Any, ...] | None = None
        next_look = 0.0
        while True:
            if cancel is not None and cancel.is_set():
                msg = f"The wait for {instance_id!r} was cancelled; the instance keeps running."
                raise WorkflowTimeoutError(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"Workflow instance {instance_id!r} did not finish within {delay.total_seconds():g} s; "
                    "it is still running. Wait again, or look at rt.get_workflow(...).custom_status."
                )
                raise WorkflowTimeoutError(msg)
            failure: Exception | None = None
            finished = False
            try:
                result = client.wait_for_orchestration(instance_id, max(1, int(min(remaining, _WAIT_SLICE_S) * 1000)))
                finished = result.status in ("Completed", "Failed")
            except Exception as exc:
                text = str(exc).lower()
                if "timeout" not in text and "timed out" not in text:
                    failure = exc
            # Outside the except block: an interrupt raised here is not chained to the engine's timeout.
            if failure is not None:
                msg = f"Waiting for {instance_id!r} failed in the engine: {failure}"
                raise EngineError(msg, cause=failure)
            if finished:
                return self.get_workflow(instance_id)
            if on_progress is not None and time.monotonic() >= next_look:
                next_look = time.monotonic() + _PROGRESS_EVERY_S
                state = self._read_state(instance_id)
                key = (state.status, state.custom_status, state.updated_at, state.blocked, state.execution_id)
                if key != shown:
                    shown = key
                    on_progress(state)

    async def wait_for_workflow_async(
        self,
        instance_id: str,
        timeout: float | timedelta = 60.0,
        *,
        on_progress: Callable[[WorkflowState], None] | None = None,
    ) -> WorkflowState:
        """``wait_for_workflow`` without blocking the event loop (it waits in a thread).

        Cancelling the task (or interrupting the kernel) ends the thread's wait too, within a
        tenth of a second.
        """
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._wait, instance_id, timeout, on_progress, cancel)
        finally:
            cancel.set()

    async def get_workflow_async(self, instance_id: str) -> WorkflowState:
        """``get_workflow`` without blocking the event loop."""
        return await asyncio.to_thread(self.get_workflow, instance_id)

    async def list_workflows_async(
        self, *, name: str | None = None, status: str | WorkflowStatus | None = None
    ) -> list[WorkflowState]:
        """``list_workflows`` without blocking the event loop."""
        return await asyncio.to_thread(lambda: self.list_workflows(name=name, status=status))

    async def history_async(self, instance_id: str, *, execution_id: int | None = None) -> HistoryList:
        """``history`` without blocking the event loop."""
        return await asyncio.to_thread(lambda: self.history(instance_id, execution_id=execution_id))

    def history(self, instance_id: str, *, execution_id: int | None = None) -> HistoryList:
        """The persisted events of an instance's current (or given) execution, with full payloads.

        A ``HistoryList``: a list of ``HistoryEvent`` with ``to_json()`` and ``to_dataframe()``.

        Raises:
            InstanceNotFoundError: no such instance.
        """
        self._client_ready()
        events = self._reader.history(instance_id, execution_id)
        if not events and not self._reader.states(instance_id=instance_id):
            raise InstanceNotFoundError(instance_id)
        return HistoryList(events)

    def history_rows(self, instance_id: str, *, execution_id: int | None = None) -> tuple[int, list[str]]:
        """The events of one execution exactly as the engine stored them: ``(execution_id, [json text])``.

        ``history()`` parses payloads; the replay stepper needs the stored texts, because the
        engine compares inputs byte for byte. SQLite stores only.

        Raises:
            InstanceNotFoundError: no such instance or execution.
            RuntimeStateError: the store is PostgreSQL (use ``history()``).
        """
        self._client_ready()
        found = self._reader.history_rows(instance_id, execution_id)
        if found is None:
            what = instance_id if execution_id is None else f"{instance_id} (execution {execution_id})"
            raise InstanceNotFoundError(what)
        return found

    def executions(self, instance_id: str) -> list[int]:
        """The execution ids of an instance (more than one after continue-as-new)."""
        self._client_ready()
        return self._reader.executions(instance_id)

    @overload
    def get_kv(self, instance_id: str) -> dict[str, Any]: ...

    @overload
    def get_kv(self, instance_id: str, key: str) -> Any: ...

    def get_kv(self, instance_id: str, key: str | None = None) -> Any:
        """The KV entries an instance has set (``ctx.kv``), values parsed from JSON.

        With ``key``, just that entry's value (None if unset); without, a dict of all of them.

        Raises:
            InstanceNotFoundError: no such instance.
            RuntimeStateError: all entries were asked of a PostgreSQL store, whose client can
                only read one key at a time.
        """
        client = self._client_ready()
        if key is not None:
            raw = client.get_kv_value(instance_id, key)
            if raw is None and not self._exists(instance_id):
                raise InstanceNotFoundError(instance_id)
            return loads_lenient(raw) if raw is not None else None
        entries = self._reader.kv(instance_id)
        if not entries and not self._exists(instance_id):
            raise InstanceNotFoundError(instance_id)
        return entries

    # --- deleting ----------------------------------------------------------------------------

    def delete_workflow(
        self, instance_id: str, *, force: bool = False, timeout: float | timedelta = 10.0
    ) -> DeleteResult:
        """Delete a finished instance with its sub-workflows, their history, KV and transcript entries.

        A running (or still queued) instance is refused unless ``force=True``: then it is
        cancelled first, given up to ``timeout`` seconds to stop, and deleted even if it has not
        (an activity that was running may still finish; its result is dropped). Sub-workflows go
        with their root: deleting one directly is refused.

        Example:
            rt.delete_workflow(iid)                 # finished instances
            rt.delete_workflow(iid, force=True)     # cancel it first

        Raises:
            InstanceNotFoundError: no such instance.
            InstanceRunningError: it (or one of its sub-workflows) still runs and ``force`` is not set.
            PayloadError: it is a sub-workflow; delete its root instead.
        """
        delay = _timedelta(timeout, "timeout") or timedelta(0)
        state = self._read_state(instance_id)
        if state.parent_instance_id:
            msg = (
                f"{instance_id!r} is a sub-workflow of {state.parent_instance_id!r}, and sub-workflows are "
                f"deleted with their root: rt.delete_workflow({state.parent_instance_id!r})."
            )
            raise PayloadError(msg)
        running = not state.status.is_terminal
        if running and not force:
            msg = (
                f"Workflow instance {instance_id!r} is {state.status.value}, so it was not deleted. Cancel it "
                f"first (rt.cancel_workflow) or pass force=True, which cancels it, waits up to "
                f"{delay.total_seconds():g} s for it to stop, then deletes it."
            )
            raise InstanceRunningError(msg, instance_id=instance_id, status=state.status.value)
        if running:
            self.cancel_workflow(instance_id, "deleted")
            try:
                self.wait_for_workflow(instance_id, timeout=delay)
            except WorkflowTimeoutError:
                pass  # deleted anyway below: force means the caller accepts it
        return self._delete_tree(instance_id, force=running)

    def purge(
        self,
        *,
        status: str | WorkflowStatus | None = None,
        older_than: float | timedelta | None = None,
        name: str | None = None,
    ) -> DeleteResult:
        """Delete finished instances in bulk, with their sub-workflows and transcript entries.

        Only finished top-level instances are deleted (``Completed`` and ``Failed`` unless
        ``status`` picks one); running ones are never touched. With no filter it deletes every
        finished instance.

        Example:
            rt.purge(status="Completed", older_than=timedelta(days=7))
            rt.purge(name="nightly-report")

        Args:
            status: Only instances in this finished status.
            older_than: Only instances that last changed at least this long ago (seconds or a timedelta).
            name: Only instances of this workflow.

        Raises:
            PayloadError: ``status`` is not a finished status, or ``older_than`` is not a duration.
        """
        statuses = [WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED]
        if status is not None:
            wanted = _status(status)
            if not wanted.is_terminal:
                msg = (
                    f"purge deletes finished instances only, not {wanted.value} ones. To delete a running "
                    "instance, use rt.delete_workflow(instance_id, force=True)."
                )
                raise PayloadError(msg)
            statuses = [wanted]
        age = _timedelta(older_than, "older_than")
        cutoff = datetime.now(timezone.utc) - age if age is not None else None
        roots: list[str] = []
        for wanted_status in statuses:
            for state in self.list_workflows(name=name, status=wanted_status):
                changed = state.updated_at or state.created_at
                if state.parent_instance_id is None and (cutoff is None or (changed is not None and changed <= cutoff)):
                    roots.append(state.instance_id)
        total = DeleteResult()
        for root in roots:
            try:
                total = total + self._delete_tree(root, force=False)
            except InstanceRunningError:
                total = total + DeleteResult(skipped=(root,))
            except InstanceNotFoundError:
                pass  # deleted meanwhile (another runtime on this store)
        return total

    def _delete_tree(self, instance_id: str, *, force: bool) -> DeleteResult:
        """Delete a root instance and its sub-workflows in the store, then their transcript entries."""
        client = self._client_ready()
        ids = tuple(str(i) for i in _retry_locked(lambda: client.get_instance_tree(instance_id)).all_ids)
        try:
            result = _retry_locked(lambda: client.delete_instance(instance_id, force))
        except Exception as exc:
            text = str(exc)
            if "not found" in text.lower():
                raise InstanceNotFoundError(instance_id) from None
            if "still running" in text.lower():
                msg = (
                    f"Workflow instance {instance_id!r} or one of its sub-workflows is still running, so nothing "
                    f"was deleted ({text}). Cancel it first, or use rt.delete_workflow({instance_id!r}, force=True)."
                )
                raise InstanceRunningError(msg, instance_id=instance_id, status="Running") from None
            msg = f"The engine could not delete {instance_id!r}: {text}"
            raise EngineError(msg, cause=exc) from exc
        self._reader.forget(ids)
        self._codes.forget_event_schemas(ids)
        return DeleteResult(
            instance_ids=ids,
            executions_deleted=int(result.executions_deleted),
            events_deleted=int(result.events_deleted),
            transcript_entries_deleted=self._transcript.delete(ids),
        )

    # --- helpers ---------------------------------------------------------------------------

    def _set_aside(self) -> dict[str, set[str]]:
        """Activity calls the engine is holding back, by instance (SQLite; empty elsewhere)."""
        try:
            return self._reader.set_aside_activities()
        except PiDuroxideError:  # a state without this detail beats no state
            return {}

    def _blocked(self, state: WorkflowState, held: dict[str, set[str]] | None) -> WorkflowState:
        if state.status in (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.TERMINATED):
            return state
        reason = None
        notice = self._missing.get((state.name, state.version))
        if notice is not None:
            reason = (
                f"code missing: {notice.ref} is not registered and cannot be restored ({notice.reason}). "
                "The instance waits and resumes when that version is registered again: re-run the cell (or "
                "import the module) that defined it; or check edited code with pdn.replay_check; or cancel it."
            )
        else:
            names = (held if held is not None else self._set_aside()).get(state.instance_id, set())
            if self._host is None and any(n.startswith("__pi_") for n in names):
                reason = (
                    "waiting for an agent host: a ctx.pi call waits until one is bound "
                    "(rt.set_host(host), or WorkflowRuntime(host=...)); it runs then."
                )
            else:
                missing = sorted(n for n in names if not n.startswith("__") and self._registry.activity(n) is None)
                if missing:
                    listed = ", ".join(repr(n) for n in missing)
                    reason = (
                        f"activity missing: {listed} is not registered in this process. The call waits and runs "
                        "once it is: run the cell that registers it (pdn.register_activity), or cancel the instance."
                    )
        return state if reason is None else state.model_copy(update={"blocked": reason})

    def _typed(self, state: WorkflowState, held: dict[str, set[str]] | None = None) -> WorkflowState:
        """Mark what blocks it; give the output its workflow's output model, when the version is registered."""
        state = self._blocked(state, held)
        if state.output is None or state.status is not WorkflowStatus.COMPLETED:
            return state
        try:
            definition = self._registry.workflow(state.name, state.version)
        except PiDuroxideError:
            return state
        if definition.output_model is None:
            return state
        try:
            return state.model_copy(update={"output": definition.output_model.model_validate(state.output)})
        except Exception:
            return state

    def _state_from_client(self, instance_id: str) -> WorkflowState:
        """An instance the store's tables do not show: one the engine failed before writing its row."""
        state = ClientStoreReader(lambda: self._client).state(instance_id)
        if state is None:
            raise InstanceNotFoundError(instance_id)
        return state


_ENDS = frozenset({"OrchestrationCompleted", "OrchestrationFailed", "OrchestrationContinuedAsNew"})
"""History events after which an execution waits for nothing."""

_NUDGE_AGAIN_S = (0.3, 1.5)
"""When a nudge is repeated, in seconds after the first (see ``_nudge``)."""
_WAIT_SLICE_S = 0.1
"""Waits check for an interrupt this often."""
_PROGRESS_EVERY_S = 0.5
"""Waits look at the instance for ``on_progress`` at most this often."""


def _status(value: str | WorkflowStatus) -> WorkflowStatus:
    try:
        return WorkflowStatus(value)
    except ValueError:
        valid = ", ".join(s.value for s in WorkflowStatus)
        msg = f"Unknown workflow status {value!r}. Use one of: {valid}."
        raise PayloadError(msg) from None


_T = TypeVar("_T")


def _retry_locked(call: Callable[[], _T], within: float = 10.0) -> _T:
    """Run a client call, retrying while SQLite reports the store locked (busy engine writers)."""
    deadline = time.monotonic() + within
    pause = 0.02
    while True:
        try:
            return call()
        except Exception as exc:
            text = str(exc).lower()
            if "database is locked" not in text or time.monotonic() >= deadline:
                raise
        time.sleep(pause)  # bounded backoff: the engine's own transactions hold the lock briefly
        pause = min(pause * 2, 0.5)


def _db_target(db: str | os.PathLike[str] | None) -> str:
    """The store ``db`` names: the default when None; an empty string or a folder is refused."""
    if db is None:
        return str(default_db_path())
    target = str(db)
    if not target.strip():
        msg = (
            f"db={db!r} names no store (an empty path would mean the current folder). Pass a SQLite file "
            f"such as db='workflows.db', a postgresql:// URL, or leave db out for the default {default_db_path()}."
        )
        raise PayloadError(msg)
    if not target.startswith(("postgres://", "postgresql://")) and Path(target).expanduser().is_dir():
        msg = (
            f"db={target!r} is a folder, not a store file. Name a file in it, e.g. "
            f"db={str(Path(target) / 'workflows.db')!r}."
        )
        raise PayloadError(msg)
    return target


def _lease(value: timedelta) -> timedelta:
    # duroxide renews an activity's lock every ceil(lease / 2) whole seconds: with a lease under
    # 2 s the renewal comes too late, another dispatcher takes the activity over and it runs
    # again (and again), so a long activity never completes. Measured with a 6 s activity.
    if not isinstance(value, timedelta) or value < timedelta(seconds=2):
        msg = (
            f"lock_timeout must be a timedelta of at least 2 seconds, not {value!r}: the engine renews a "
            "running activity's lock once a second, so a shorter lease runs out while the activity runs and "
            "another worker starts it again. Use timedelta(seconds=2) (the default) or more."
        )
        raise PayloadError(msg)
    return value


def _positive(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"{what} must be a positive integer, not {value!r}."
        raise PayloadError(msg)
    return value
