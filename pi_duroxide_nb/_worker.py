"""``python -m pi_duroxide_nb worker``: run a module's workflows and activities beside (or instead of) the kernel.

Several workers share one store (a PostgreSQL database, or one SQLite file on one host) and
split its work; the engine's lock lease hands the work of a killed worker to the others. Each
worker announces itself beside the store (``WorkflowRuntime.workers()``, the dashboard).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType, ModuleType
from urllib.parse import urlsplit

from ._errors import PiDuroxideError
from .engine import (
    AgentHost,
    WorkerBeacon,
    WorkerInfo,
    WorkflowRegistry,
    WorkflowRuntime,
    default_registry,
    format_ref,
    new_worker_id,
)

__all__ = ["main"]

_PROG = "python -m pi_duroxide_nb"
_RECHECK_S = 2.0
"""How often a worker with ``--restore-code`` looks for unfinished instances on versions it does not have."""


class _UsageError(Exception):
    """Bad command-line input: printed as ``error: ...`` with exit status 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_PROG, description="Durable agent workflows on duroxide.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    worker = commands.add_parser(
        "worker",
        help="run workflows and activities from a module against a shared store",
        description=(
            "Run the workflows and activities a module registers against a store, sharing its work with "
            "the other workers (and kernels) on it. Stop it with Ctrl-C or SIGTERM: running steps finish first. "
            "A killed worker loses nothing: its work resumes on another worker once its lock lease expires."
        ),
    )
    worker.add_argument("--db", required=True, help="the store: a postgresql:// URL or a SQLite file path")
    worker.add_argument(
        "--module",
        action="append",
        default=[],
        metavar="MODULE",
        help="a .py file or a dotted module name to import; its registrations are served "
        "(its `registry` attribute if it has one, else the default registry); its `host` attribute, "
        "if an AgentHost, answers ctx.pi. Repeatable; optional with --restore-code.",
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help="activities and workflow steps run at once (default 4)",
    )
    worker.add_argument(
        "--restore-code",
        action="store_true",
        help="also run unfinished instances on workflow versions kept in the store (e.g. defined in a notebook)",
    )
    worker.add_argument(
        "--lock-timeout",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="lock lease: how soon work held by a killed worker is retried elsewhere (default 2, at least 2)",
    )
    worker.add_argument("--log-level", default="error", choices=["error", "warn", "info", "debug"])
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a whole number of at least 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        msg = f"must be a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def load_module(spec: str) -> ModuleType:
    """Import ``spec``: a ``.py`` file path or a dotted module name.

    Raises:
        _UsageError: it cannot be found or fails to import (the message says which and why).
    """
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            msg = f"--module {spec}: no such file. Give the path of a .py file or a dotted module name."
            raise _UsageError(msg)
        path = path.resolve()
        name = path.stem
        if not name.isidentifier():
            name = "_pdn_worker_module"
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))  # its sibling modules import as they would from there
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            msg = f"--module {spec}: cannot be loaded as a Python module."
            raise _UsageError(msg)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(name, None)
            msg = f"--module {spec}: importing it failed with {type(exc).__name__}: {exc}"
            raise _UsageError(msg) from exc
        return module
    if "." not in sys.path and "" not in sys.path:
        sys.path.insert(0, "")  # `python -m` puts the current folder first; keep that for dotted names
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        if exc.name is not None and spec.startswith(exc.name):
            msg = (
                f"--module {spec}: no module named {exc.name!r} on the Python path. "
                "Give a .py file path, or run from the folder that contains the module."
            )
            raise _UsageError(msg) from exc
        msg = f"--module {spec}: importing it failed with ModuleNotFoundError: {exc}"
        raise _UsageError(msg) from exc
    except Exception as exc:
        msg = f"--module {spec}: importing it failed with {type(exc).__name__}: {exc}"
        raise _UsageError(msg) from exc


def _registry_of(modules: Sequence[ModuleType]) -> WorkflowRegistry:
    registries = [m.registry for m in modules if isinstance(getattr(m, "registry", None), WorkflowRegistry)]
    if len({id(r) for r in registries}) > 1:
        msg = "--module: the modules have different `registry` objects; one worker serves one registry."
        raise _UsageError(msg)
    return registries[0] if registries else default_registry


def _host_of(modules: Sequence[ModuleType]) -> AgentHost | None:
    hosts = [m.host for m in modules if isinstance(getattr(m, "host", None), AgentHost)]
    return hosts[0] if hosts else None


def _reach_postgres(db: str) -> None:
    """Fail in seconds, not after the engine's 30 s pool timeout, when a PostgreSQL server is unreachable."""
    if not db.startswith(("postgres://", "postgresql://")):
        return
    try:
        url = urlsplit(db)
        host, port = url.hostname, url.port or 5432
    except ValueError as exc:
        msg = f"--db: not a valid PostgreSQL URL ({exc}). Write postgresql://user[:password]@host[:port]/database."
        raise _UsageError(msg) from exc
    if not host:
        return  # a Unix socket (host given in the query): the engine reports what it finds
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        msg = (
            f"cannot reach the PostgreSQL server at {host}:{port} ({type(exc).__name__}: {exc}). "
            "Check that it is running and that the URL's host and port are right."
        )
        raise PiDuroxideError(msg) from exc


def _served(registry: WorkflowRegistry) -> tuple[str, ...]:
    return tuple(sorted(format_ref(d.name, d.version) for d in registry.all_workflow_versions()))


def _say(text: str) -> None:
    print(text, flush=True)


def run_worker(args: argparse.Namespace) -> int:
    """Serve the store until SIGTERM or SIGINT; returns the exit status."""
    if not args.module and not args.restore_code:
        msg = "give --module MODULE (a .py file or a dotted name) with the workflows to serve, or --restore-code."
        raise _UsageError(msg)
    modules = [load_module(spec) for spec in args.module]
    registry = _registry_of(modules)
    if not registry.workflow_names() and not registry.activities() and not args.restore_code:
        msg = (
            f"--module {' '.join(args.module)}: registers no workflow and no activity. Register them with "
            "@pdn.register_workflow / @pdn.register_activity (or on a `registry` attribute), "
            "or pass --restore-code to serve the versions kept in the store."
        )
        raise _UsageError(msg)
    _reach_postgres(args.db)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    rt = WorkflowRuntime(
        db=args.db,
        registry=registry,
        host=_host_of(modules),
        orchestration_concurrency=args.concurrency,
        worker_concurrency=args.concurrency,
        lock_timeout=timedelta(seconds=args.lock_timeout),
        log_level=args.log_level,
        namespace={},  # kept notebook code resolves its globals afresh; what it cannot stays "code missing"
        restore_code=args.restore_code,
    )
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    beacon: WorkerBeacon | None = None
    try:
        rt.start()
        now = datetime.now(timezone.utc)
        info = WorkerInfo(
            worker_id=new_worker_id(),
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=now,
            last_seen=now,
            concurrency=args.concurrency,
            workflows=_served(registry),
            activities=tuple(sorted(a.name for a in registry.activities())),
        )
        beacon = WorkerBeacon(rt._workers_table(), info).start()
        for notice in rt.take_code_notices():
            _say(f"{info.worker_id}: {notice}")
        _say(
            f"pi_duroxide_nb worker {info.worker_id} ready: pid {info.pid}, db {_shown(args.db)}, "
            f"{_count(len(info.workflows), 'workflow version')}, {_count(len(info.activities), 'activity')}, "
            f"concurrency {args.concurrency}{', restoring kept code' if args.restore_code else ''}"
        )
        while not stop.wait(_RECHECK_S):
            if args.restore_code:  # versions a notebook registered (and started) since
                rt.reconcile_code()
                for notice in rt.take_code_notices():
                    _say(f"{info.worker_id}: {notice}")
                beacon.update(workflows=_served(registry))
        _say(f"pi_duroxide_nb worker {info.worker_id} stopping: letting running steps finish")
    finally:
        if beacon is not None:
            beacon.stop()  # leaves the live view at once
        rt.shutdown(timeout=30.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(f"pi_duroxide_nb worker {info.worker_id} stopped")
    return 0


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def _shown(db: str) -> str:
    """The store without a password."""
    if "://" in db and "@" in db:
        scheme, rest = db.split("://", 1)
        credentials, place = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{place}"
    return db


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "worker":
            return run_worker(args)
    except _UsageError as exc:
        parser.exit(2, f"{_PROG} {args.command}: error: {exc}\n")
    except PiDuroxideError as exc:
        parser.exit(1, f"{_PROG} {args.command}: error: {exc}\n")
    parser.exit(2, f"{_PROG}: unknown command {args.command!r}\n")
