"""The kernel's workflow runtime: one per kernel, started by ``%load_ext`` or on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from ..engine import RuntimeState, WorkflowRegistry, WorkflowRuntime, default_registry

__all__ = ["kernel_runtime", "on_kernel_runtime_stop", "stop_kernel_runtime"]

_lock = threading.RLock()
_runtime: WorkflowRuntime | None = None
_closers: list[Callable[[], None]] = []
# The store and registry last asked for, so %reload_ext comes back on the same ones.
_chosen_db: str | os.PathLike[str] | None = None
_chosen_registry: WorkflowRegistry | None = None
_chosen_worker: bool | None = None


def kernel_runtime(
    *,
    db: str | os.PathLike[str] | None = None,
    registry: WorkflowRegistry | None = None,
    worker: bool | None = None,
) -> WorkflowRuntime:
    """The kernel's runtime, started on first use; what the magics and ``%workflows`` use.

    ``%load_ext pi_duroxide_nb`` calls it, so the Python twin of the magics is plain
    ``rt = pdn.kernel_runtime()``. With no argument it returns the running one (or starts one
    on ``$PI_DUROXIDE_DB`` / the per-user default). Passing a ``db`` or ``registry`` other
    than the running runtime's stops it (dashboards close, instances stay in the store) and
    starts a new one: that is what ``%workflow_config --db PATH`` does. The choice is
    remembered, so ``%reload_ext`` comes back on the same store.

    Example:
        rt = pdn.kernel_runtime(db="project.db")
        rt.start_workflow("deploy", {"service": "api"})

    Args:
        db: A SQLite path or ``postgresql://`` URL.
        registry: Where workflows come from; ``pdn.default_registry`` (what ``%%workflow``
            and ``pdn.register_workflow`` fill) by default.
        worker: ``False``: the kernel is a client only (it starts, signals and watches) and
            worker processes (``python -m pi_duroxide_nb worker``) run the work; ``True`` (the
            default) runs it in the kernel too.
    """
    global _runtime, _chosen_db, _chosen_registry, _chosen_worker
    with _lock:
        want_db = db if db is not None else _chosen_db
        want_registry = registry if registry is not None else _chosen_registry
        want_worker = worker if worker is not None else _chosen_worker
        current = _runtime
        if current is not None and current.state is not RuntimeState.STOPPED:
            same_db = want_db is None or _same_db(current.db, want_db)
            same_registry = want_registry is None or want_registry is current.registry
            same_role = want_worker is None or want_worker == current.is_worker
            if same_db and same_registry and same_role:
                return current
        # Built before the old one stops: a bad db raises here and leaves the kernel as it was.
        new = WorkflowRuntime(
            db=want_db,
            registry=want_registry if want_registry is not None else default_registry,
            worker=want_worker is not False,
        )
        if current is not None:
            stop_kernel_runtime()
        new.start()
        _runtime, _chosen_db, _chosen_registry, _chosen_worker = new, want_db, want_registry, want_worker
        return new


def current_kernel_runtime() -> WorkflowRuntime | None:
    """The kernel's runtime if one is running, without starting one."""
    with _lock:
        if _runtime is not None and _runtime.state is not RuntimeState.STOPPED:
            return _runtime
        return None


def stop_kernel_runtime(timeout: float = 5.0) -> None:
    """Close the kernel's dashboards and shut its runtime down (``%unload_ext`` does this).

    Unfinished instances stay in the store and resume when a runtime opens it again.
    """
    global _runtime
    with _lock:
        closers, _closers[:] = list(_closers), []
        runtime, _runtime = _runtime, None
    for close in closers:
        close()
    if runtime is not None:
        runtime.shutdown(timeout=timeout)


def on_kernel_runtime_stop(close: Callable[[], None]) -> Callable[[], None]:
    """Call ``close()`` when the kernel runtime stops (dashboards stop their refresh this way).

    Returns the function that cancels the registration.
    """
    with _lock:
        _closers.append(close)

    def cancel() -> None:
        with _lock:
            if close in _closers:
                _closers.remove(close)

    return cancel


def _same_db(current: str, wanted: str | os.PathLike[str]) -> bool:
    text = str(wanted)
    if text.startswith(("postgres://", "postgresql://")):
        return text == current
    return str(Path(text).expanduser().resolve()) == current
