"""Owns the duroxide runtimes: builds them from the registry, swaps them, keeps the WAL small.

duroxide fixes three things at construction that a notebook needs to change while running:
its registrations (late ones are ignored), its poll interval, and its concurrency. So this
module never changes a runtime; it builds a new one and drains the old one gracefully (the
engine lets in-flight work finish and keeps renewing its locks while it does).

Adaptive polling: the engine's dispatchers poll, and polling costs CPU even when nothing
happens. While work flows the engine runs "active" (fast polling, full concurrency); after
``idle_after`` without a step it swaps to "idle" (one slow poller per queue), also while a
long activity (an LLM call, a tool) is still running: the replaced runtime finishes it, and
its end is a step that swaps back at once. Any step seen while idle (a timer fired, an
activity ended, another process enqueued work) or any start/signal from this process swaps
back to active.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import duroxide

from ._context import _CURRENT_ACTIVITY, ActivityContext, drive
from ._host import run_maybe_async
from ._json import to_json_value
from ._registry import ActivityDefinition, WorkflowDefinition, WorkflowRegistry, semver_key
from ._store import SqliteStoreReader
from ._wal import WalKeeper

__all__ = ["EngineConfig", "PollingConfig", "WorkflowEngine"]

_log = logging.getLogger("pi_duroxide_nb.engine")


@dataclass(frozen=True)
class PollingConfig:
    """How often the engine looks for work, while busy and while idle.

    Example:
        PollingConfig()                                        # adaptive: 1 ms busy, 50 ms idle
        PollingConfig.fixed(timedelta(milliseconds=100))       # one interval, never swaps
    """

    active_interval: timedelta = timedelta(milliseconds=1)
    """Poll interval while work flows: bounds the latency each sequential step adds."""
    idle_interval: timedelta = timedelta(milliseconds=50)
    """Poll interval while idle: bounds how late a fired timer or outside work is noticed."""
    idle_after: timedelta = timedelta(seconds=1)
    """How long without a step before switching to idle, even while an activity still runs."""

    @classmethod
    def fixed(cls, interval: timedelta) -> PollingConfig:
        """Poll at ``interval`` always, with full concurrency (duroxide's own behaviour)."""
        return cls(active_interval=interval, idle_interval=interval, idle_after=timedelta.max)

    @property
    def adaptive(self) -> bool:
        """Whether the engine switches between the two intervals."""
        return self.idle_after != timedelta.max

    def __post_init__(self) -> None:
        for name in ("active_interval", "idle_interval"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(milliseconds=1):
                msg = f"PollingConfig.{name} must be a timedelta of at least 1 ms, not {value!r}."
                raise ValueError(msg)


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings a ``WorkflowRuntime`` passes down (see its constructor)."""

    polling: PollingConfig = PollingConfig()
    orchestration_concurrency: int = 2
    worker_concurrency: int = 4
    lock_timeout: timedelta = timedelta(seconds=2)
    """Worker and orchestrator lock lease: an item held by a crashed process is retried after it."""
    log_level: str = "error"
    wal_limit_bytes: int = 16 * 1024 * 1024
    """Checkpoint and truncate the SQLite write-ahead log once it grows past this."""
    wal_busy_wait: timedelta = timedelta(milliseconds=10)
    """The longest a checkpoint during work may hold the engine's writers off, waiting for readers."""
    drain_timeout: timedelta = timedelta(hours=1)
    """How long a replaced runtime may take to finish the activities it is running."""
    max_attempts: int = 100_000
    """How often the engine retries work whose code is not registered before failing it for good.

    duroxide's default, 10, fails ("poisons") an instance about 5 minutes after its workflow
    version or an activity went missing, even if the code comes back later. A notebook's code
    comes and goes with its kernel and its cells, so the engine is told to wait (its retries
    back off to one a minute: 100 000 of them is about 69 days of running)."""


class _Mode(enum.Enum):
    ACTIVE = "active"
    IDLE = "idle"


class _Pulse:
    """Process-wide signal of engine work, fed by every orchestration turn and activity.

    duroxide keeps workflow functions in one process-global table, so the code that runs a
    step cannot know which of several engines in the process picked it up: every engine
    listens to the same pulse.
    """

    def __init__(self) -> None:
        self.last = time.monotonic()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def add(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def beat(self) -> None:
        """Work happened: an orchestration turn, or an activity started or ended."""
        self.last = time.monotonic()
        for listener in list(self._listeners):
            listener()


PULSE = _Pulse()


def _orchestration(definition: WorkflowDefinition, registry: WorkflowRegistry) -> Callable[..., Any]:
    def orchestration(dctx: Any, raw_input: Any) -> Any:
        PULSE.beat()
        return drive(definition, registry, dctx, raw_input)

    orchestration.__qualname__ = f"workflow[{definition.name}@{definition.version}]"
    return orchestration


def _activity(definition: ActivityDefinition) -> Callable[..., Any]:
    fn, name = definition.fn, definition.name

    def activity(dctx: Any, value: Any) -> Any:
        PULSE.beat()
        actx = ActivityContext(dctx)
        token = _CURRENT_ACTIVITY.set(actx)
        try:
            result = run_maybe_async(fn(actx, value))
            return to_json_value(result, what=f"the return value of activity {name!r}")
        finally:
            _CURRENT_ACTIVITY.reset(token)
            PULSE.beat()

    return activity


def _plain_activity(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    def activity(dctx: Any, value: Any) -> Any:
        PULSE.beat()
        token = _CURRENT_ACTIVITY.set(ActivityContext(dctx))
        try:
            return fn(value)
        finally:
            _CURRENT_ACTIVITY.reset(token)
            PULSE.beat()

    return activity


def _quiet_engine_logs(level: str) -> None:
    """Make ``log_level`` govern all of duroxide's logging, not just workflow traces.

    duroxide's log filter is ``warn`` for everything but workflow and activity traces, so
    routine, retried "database is locked" warnings would print into notebook cells (the
    engine writes straight to the process's stdout). Its filter yields to ``RUST_LOG``,
    which we set once, before the first runtime, unless the user set it.
    """
    os.environ.setdefault("RUST_LOG", f"{level},duroxide::orchestration={level},duroxide::activity={level}")


class WorkflowEngine:
    """Runs duroxide for one store, keeping its runtime in step with the registry."""

    def __init__(
        self,
        provider: Any,
        registry: WorkflowRegistry,
        config: EngineConfig,
        builtin_activities: Callable[[], dict[str, Callable[[Any], Any]]],
        store: SqliteStoreReader | None,
    ) -> None:
        self._provider = provider
        self._registry = registry
        self._config = config
        self._builtins = builtin_activities
        self._wal = WalKeeper(store, config.wal_limit_bytes, config.wal_busy_wait) if store is not None else None
        self._cond = threading.Condition()
        self._runtime: Any = None
        self._mode = _Mode.ACTIVE
        self._built_generation = -1
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._drains: list[threading.Thread] = []
        self._swaps = 0
        self._unsubscribe: Callable[[], None] | None = None
        self._stale = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Build and start the first runtime and the supervising thread.

        It starts idle (slow polling) when polling is adaptive: a runtime that has just been
        opened usually waits for its first start or signal, which swaps it to active at once,
        and work already in the store is picked up within one idle poll and does the same.
        Starting active cost 6-8 % of a core in the first seconds (bench/bench_footprint.py).
        """
        with self._cond:
            self._install(_Mode.IDLE if self._config.polling.adaptive else _Mode.ACTIVE)
        PULSE.add(self._on_pulse)
        self._unsubscribe = self._registry.subscribe(self.refresh)
        self._thread = threading.Thread(target=self._supervise, name="pi_duroxide_nb-engine", daemon=True)
        self._thread.start()

    def stop(self, timeout: timedelta) -> None:
        """Stop supervising, then shut the runtime down, letting running work finish."""
        PULSE.remove(self._on_pulse)
        if self._unsubscribe is not None:
            self._unsubscribe()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            runtime, self._runtime = self._runtime, None
        deadline = time.monotonic() + timeout.total_seconds()
        if runtime is not None:
            runtime.shutdown(int(timeout.total_seconds() * 1000))
        for drain in list(self._drains):
            drain.join(timeout=max(0.0, deadline - time.monotonic()))
        late = [d for d in self._drains if d.is_alive()]
        if late:
            # duroxide's shutdown cannot be cut short once started (a second call waits for the
            # first, then fails), so a replaced runtime finishing a long activity outlives this.
            _log.warning(
                "pi_duroxide_nb: %d replaced engine runtime(s) still finishing running activities; they stop "
                "when those finish (at most %s)",
                len(late),
                self._config.drain_timeout,
            )
        if self._wal is not None:
            self._wal.tend(quiet=True, force=True)

    @property
    def mode(self) -> str:
        """``"active"`` or ``"idle"``."""
        return self._mode.value

    @property
    def swaps(self) -> int:
        """How many times a runtime was replaced (mode changes and late registrations)."""
        return self._swaps

    def wake(self) -> None:
        """Work is about to arrive from this process (a start or a signal): be active now."""
        PULSE.beat()

    def refresh(self, *, force: bool = False) -> None:
        """Rebuild the runtime now if the registry changed since it was built (or ``force``).

        Runs in the registering thread, so a workflow registered (or edited) after ``start()``
        can be started the moment its registration returns. ``force`` is for changes outside
        the registry: binding an agent host adds the ``ctx.pi`` activities.
        """
        with self._cond:
            if force:
                self._stale = True
            if self._stopping or (self._registry.generation == self._built_generation and not self._stale):
                return
            self._install(self._mode)

    # --- runtime building ------------------------------------------------------------------

    def _options(self, mode: _Mode) -> Any:
        cfg, poll = self._config, self._config.polling
        active = mode is _Mode.ACTIVE
        interval = poll.active_interval if active else poll.idle_interval
        lock_ms = int(cfg.lock_timeout.total_seconds() * 1000)
        return duroxide.RuntimeOptions(
            dispatcher_poll_interval_ms=max(1, int(interval.total_seconds() * 1000)),
            orchestration_concurrency=cfg.orchestration_concurrency if active else 1,
            worker_concurrency=cfg.worker_concurrency if active else 1,
            worker_lock_timeout_ms=lock_ms,
            orchestrator_lock_timeout_ms=lock_ms,
            log_level=cfg.log_level,
            max_attempts=cfg.max_attempts,
        )

    def _build(self, mode: _Mode) -> tuple[Any, int]:
        _quiet_engine_logs(self._config.log_level)
        generation = self._registry.generation
        runtime = duroxide.Runtime(self._provider, self._options(mode))
        self._stale = False
        for name, fn in self._builtins().items():
            runtime.register_activity(name, _plain_activity(fn))
        for activity in self._registry.activities():
            runtime.register_activity(activity.name, _activity(activity))
        # duroxide panics unless each name's versions are registered in ascending semver order.
        for definition in sorted(self._registry.all_workflow_versions(), key=lambda d: (d.name, semver_key(d.version))):
            runtime.register_orchestration_versioned(
                definition.name, definition.version, _orchestration(definition, self._registry)
            )
        runtime.start()
        return runtime, generation

    def _install(self, mode: _Mode) -> None:
        """Start a runtime for ``mode``, then drain the previous one. Hold ``_cond``."""
        runtime, generation = self._build(mode)
        old, self._runtime = self._runtime, runtime
        self._mode, self._built_generation = mode, generation
        if old is not None:
            self._swaps += 1
            drain = threading.Thread(target=self._drain, args=(old,), name="pi_duroxide_nb-drain", daemon=True)
            self._drains = [d for d in self._drains if d.is_alive()] + [drain]
            drain.start()

    def _drain(self, runtime: Any) -> None:
        runtime.shutdown(int(self._config.drain_timeout.total_seconds() * 1000))

    # --- supervision -----------------------------------------------------------------------

    def _on_pulse(self) -> None:
        if self._mode is _Mode.IDLE:
            self._wake()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wanted_mode(self) -> _Mode:
        poll = self._config.polling
        if not poll.adaptive:
            return _Mode.ACTIVE
        # Activities in flight do not keep the engine active: an LLM call of 30 s would burn
        # 20-40 % of a core in fast polling. The replaced runtime finishes it (duroxide drains
        # in-flight activities and keeps renewing their locks), and its end beats the pulse.
        quiet = time.monotonic() - PULSE.last
        return _Mode.ACTIVE if quiet < poll.idle_after.total_seconds() else _Mode.IDLE

    def _supervise(self) -> None:
        poll = self._config.polling
        while True:
            with self._cond:
                if self._stopping:
                    return
                if self._mode is _Mode.ACTIVE:
                    # Short rounds while busy: the engine can write 10+ MB of log a second.
                    wait = 0.1
                    if poll.adaptive:
                        remaining = poll.idle_after.total_seconds() - (time.monotonic() - PULSE.last)
                        wait = min(wait, max(0.01, remaining))
                    self._cond.wait(timeout=wait)
                else:
                    self._cond.wait(timeout=5.0)
                if self._stopping:
                    return
                wanted = self._wanted_mode()
                if wanted is not self._mode or self._registry.generation != self._built_generation or self._stale:
                    try:
                        self._install(wanted)
                    except Exception:  # keep supervising; the current runtime still runs
                        _log.exception("pi_duroxide_nb: could not rebuild the engine runtime")
            if self._wal is not None:
                self._wal.tend(quiet=self._mode is _Mode.IDLE)
