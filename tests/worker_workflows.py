"""Workflows for tests/test_worker_cli.py, served by `python -m pi_duroxide_nb worker --module <this file>`.

The activity ``hold`` leaves a flag file ``running-<x>-<pid>`` in ``$PDN_WORKER_FLAGS`` (so the
test knows which worker is inside it) and returns only once the file ``release`` exists there.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pi_duroxide_nb as pdn

registry = pdn.WorkflowRegistry()


@registry.register_activity("hold")
def hold(_ctx, x):
    flags = Path(os.environ["PDN_WORKER_FLAGS"])
    (flags / f"running-{x}-{os.getpid()}").touch()
    deadline = time.monotonic() + 60
    while not (flags / "release").exists():  # bounded: a test that never releases fails on its own timeout
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the activity")
        time.sleep(0.02)
    return {"x": x, "pid": os.getpid()}


@registry.register_workflow("job")
def job(ctx, x):
    done = yield ctx.schedule_activity("hold", x)
    return done
