"""Workflows whose histories are checked in under ``tests/replay_fixtures`` (see ``record_fixtures``).

Run ``python -m tests.replay_workflows`` to re-record the fixtures after an intended change.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import pi_duroxide_nb as pdn

FIXTURES = Path(__file__).with_name("replay_fixtures")


def fetch(ctx, url):
    return {"url": url, "status": 200}


def deploy(ctx, input):
    service = input["service"]
    build = yield ctx.pi.tool("bash", {"command": f"make build {service}"})
    page = yield ctx.schedule_activity("fetch", f"https://{service}.example")
    ctx.set_custom_status("awaiting-approval")
    ctx.kv.set("build", {"exit": build["exitCode"]})
    decision = yield ctx.wait_for_event("deploy-decision")
    if decision["action"] != "approve":
        return {"status": "rejected"}
    yield ctx.schedule_timer(timedelta(milliseconds=20))
    return {"status": "deployed", "page": page["status"]}


def _checks(ctx, n):
    results = []
    for i in range(n):
        results.append((yield ctx.schedule_activity("fetch", f"check-{i}")))
    return results


def nested(ctx, n):
    ctx.trace_info("starting checks")
    checks = yield from _checks(ctx, n)
    return len(checks)


def register(registry: pdn.WorkflowRegistry) -> None:
    """Register the fixture workflows and their activity."""
    registry.register_activity("fetch", fetch)
    registry.register_workflow("deploy", deploy)
    registry.register_workflow("nested", nested)


def record_fixtures(target: Path = FIXTURES) -> None:
    """Run the workflows on a throwaway store and save their histories as JSON."""
    registry = pdn.WorkflowRegistry()
    register(registry)
    host = pdn.InMemoryAgentHost(tools={"bash": lambda args: {"exitCode": 0, "stdout": args["command"]}})
    with (
        tempfile.TemporaryDirectory() as tmp,
        pdn.WorkflowRuntime(db=Path(tmp) / "fixtures.db", registry=registry, host=host) as rt,
    ):
        done = rt.start_workflow("deploy", {"service": "api"}, instance_id="deploy-approved")
        waiting = rt.start_workflow("deploy", {"service": "web"}, instance_id="deploy-waiting")
        nest = rt.start_workflow("nested", 3, instance_id="nested-3")
        for instance in (done, waiting):
            _wait_status(rt, instance, "awaiting-approval")
        rt.signal_workflow(done, "deploy-decision", {"action": "approve"})
        rt.wait_for_workflow(done, timeout=30)
        rt.wait_for_workflow(nest, timeout=30)
        pdn.ReplayHistory.from_runtime(rt, done).save(target / "deploy_approved.json")
        pdn.ReplayHistory.from_runtime(rt, waiting).save(target / "deploy_waiting.json")
        pdn.ReplayHistory.from_runtime(rt, nest).save(target / "nested.json")


def _wait_status(rt: pdn.WorkflowRuntime, instance: str, status: str) -> None:
    import time

    deadline = time.monotonic() + 30
    while rt.get_workflow(instance).custom_status != status:
        if time.monotonic() > deadline:
            raise TimeoutError(instance)
        time.sleep(0.02)


if __name__ == "__main__":
    record_fixtures()
    print(f"recorded fixtures in {FIXTURES}")
