"""The magics in a real in-process IPython shell."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError
from IPython.core.getipython import get_ipython as _running_shell
from IPython.testing.globalipapp import start_ipython

import pi_duroxide_nb as pdn
from tests.conftest import wait_until

EXT = "pi_duroxide_nb"


def get_ipython() -> Any:
    """The process's one test shell (``start_ipython`` returns it only on its first call)."""
    return start_ipython() or _running_shell()


@pytest.fixture
def shell(registry, db_path: Path, capsys) -> Iterator[Any]:
    """A shell with the extension loaded on a temporary store and a fresh registry."""
    ip = get_ipython()
    pdn.kernel_runtime(db=db_path, registry=registry)  # %load_ext attaches to it
    ip.run_line_magic("load_ext", EXT)
    yield ip
    if EXT in ip.extension_manager.loaded:
        ip.run_line_magic("unload_ext", EXT)
    pdn.stop_kernel_runtime()


def run(ip: Any, line: str) -> Any:
    """Run one line like a notebook cell; raise what it raised."""
    result = ip.run_cell(line)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def wait_for_custom_status(instance: str, value: str) -> None:
    wait_until(lambda: pdn.kernel_runtime().get_workflow(instance).custom_status == value)


def _our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("pi_duroxide_nb")}


def test_load_ext_shows_the_store_once_and_unload_stops_threads(registry, db_path, capsys, no_leaked_comms) -> None:
    ip = get_ipython()
    before = _our_threads()
    pdn.kernel_runtime(db=db_path, registry=registry)
    ip.run_line_magic("load_ext", EXT)
    try:
        ip.run_line_magic("load_ext", EXT)  # loading again is a no-op: no second banner
        out = capsys.readouterr().out
        assert out.count(str(db_path)) == 1 and out.count("%workflow_config") == 1
        rt = pdn.kernel_runtime()
        assert rt.state is pdn.RuntimeState.RUNNING and "workflow" in ip.magics_manager.magics["cell"]
        run(ip, "%workflows")  # a live dashboard adds its refresh thread
        old_threads = _our_threads() - before
        assert {t.name for t in old_threads} >= {"pi_duroxide_nb-engine", "pi_duroxide_nb-dashboard"}
        ip.run_line_magic("reload_ext", EXT)
        assert rt.state is pdn.RuntimeState.STOPPED  # reload stopped the old runtime's threads
        assert not any(t.is_alive() for t in old_threads)
        again = pdn.kernel_runtime()
        assert again is not rt and "workflows" in ip.magics_manager.magics["line"]
        assert again.db == rt.db and again.registry is registry  # reload came back on the same store
        assert capsys.readouterr().out.count("%workflow_config") == 1  # the reload's own banner
    finally:
        ip.run_line_magic("unload_ext", EXT)
    assert "workflow" not in ip.magics_manager.magics["line"]
    assert _our_threads() - before == set()
    from pi_duroxide_nb.notebook import current_kernel_runtime

    assert current_kernel_runtime() is None


def test_cell_and_line_magics_end_to_end(shell, registry) -> None:
    shell.run_cell_magic(
        "workflow",
        'deploy --description "Build and deploy"',
        "ctx.set_custom_status('awaiting')\n"
        "decision = yield ctx.wait_for_event('approval')\n"
        "return {'service': input['service'], 'ok': decision['ok']}\n",
    )
    assert registry.workflow("deploy").description == "Build and deploy"
    shell.user_ns["iid"] = run(shell, '%workflow start deploy --id dep-1 {"service": "api"}')
    assert shell.user_ns["iid"] == "dep-1"
    wait_for_custom_status("dep-1", "awaiting")
    status = run(shell, "%workflow status dep-1")
    assert repr(status) == "dep-1  deploy  Running\n  custom status: awaiting"
    assert repr(run(shell, "%workflow list --status Running")) == "dep-1  deploy  Running  awaiting"
    run(shell, '%workflow signal $iid approval {"ok": true}')
    done = run(shell, "%workflow wait dep-1 --timeout 30")
    assert repr(done).splitlines()[0] == "dep-1  deploy  Completed"
    assert done.state.output == {"service": "api", "ok": True}
    kinds = [e.kind for e in run(shell, "%workflow history dep-1").events]
    assert kinds[0] == "OrchestrationStarted" and "ExternalEvent" in kinds and kinds[-1] == "OrchestrationCompleted"
    assert repr(run(shell, "%workflow list --name nothing")) == "no workflow instances"

    run(shell, '%workflow start deploy --id dep-2 {"service": "web"}')
    wait_for_custom_status("dep-2", "awaiting")
    run(shell, "%workflow cancel dep-2")
    cancelled = run(shell, "%workflow wait dep-2").state
    assert cancelled.status is pdn.WorkflowStatus.TERMINATED and "cancel" in (cancelled.error or "")


def test_start_input_defaults_to_empty_object(shell) -> None:
    shell.run_cell_magic("workflow", "echo", "yield ctx.schedule_timer(1)\nreturn input")
    instance = run(shell, "%workflow start echo")
    assert pdn.kernel_runtime().wait_for_workflow(instance, timeout=30).output == {}


def test_quoted_names_mean_the_same_in_cell_and_line_magics(shell, registry) -> None:
    shell.run_cell_magic(
        "workflow", '"my flow" --description "Has a space"', "yield ctx.schedule_timer(1)\nreturn input"
    )
    assert registry.workflow("my flow").description == "Has a space"
    instance = run(shell, '%workflow start "my flow" --id \'id with space\' {"n": 1}')
    assert instance == "id with space"
    assert run(shell, '%workflow wait "id with space" --timeout 30').state.output == {"n": 1}
    assert run(shell, "%workflow start 'my flow'") != instance  # single quotes too, input defaults to {}


def test_magic_results_read_like_the_data_they_show(shell) -> None:
    shell.run_cell_magic("workflow", "echo", "ctx.set_custom_status('busy')\nyield ctx.schedule_timer(1)\nreturn input")
    run(shell, '%workflow start echo --id echo-1 {"n": 1}')
    run(shell, "st = %workflow wait echo-1 --timeout 30")
    assert run(shell, "st.output") == {"n": 1}
    assert run(shell, "st.status") is pdn.WorkflowStatus.COMPLETED
    assert run(shell, "(st.instance_id, st.name, st.custom_status, st.error)") == ("echo-1", "echo", "busy", None)
    assert run(shell, "st.model_dump()['output']") == {"n": 1} and run(shell, "st.state.output") == {"n": 1}
    assert {"output", "status", "custom_status"} <= set(run(shell, "dir(st)"))  # tab completion sees them
    with pytest.raises(AttributeError, match="has no attribute 'outptu'"):
        run(shell, "st.outptu")
    assert run(shell, "%workflow status echo-1").output == {"n": 1}
    listing = run(shell, "%workflow list")
    assert [s.instance_id for s in listing] == ["echo-1"] and listing[0].output == {"n": 1}
    history = run(shell, "%workflow history echo-1")
    assert history[0].kind == "OrchestrationStarted" and [e.kind for e in history][-1] == "OrchestrationCompleted"


def test_delete_and_purge_from_the_line(shell, capsys) -> None:
    shell.run_cell_magic("workflow", "gate", "ctx.set_custom_status('waiting')\nyield ctx.wait_for_event('go')")
    shell.run_cell_magic("workflow", "quick", "yield ctx.schedule_timer(1)\nreturn input")
    rt = pdn.kernel_runtime()
    for i in range(3):
        rt.wait_for_workflow(run(shell, f"%workflow start quick --id quick-{i}"), timeout=30)
    run(shell, "%workflow start gate --id gate-1")
    wait_for_custom_status("gate-1", "waiting")
    capsys.readouterr()

    run(shell, "%workflow delete quick-0")
    assert capsys.readouterr().out.startswith("Deleted 1 instance (1 executions, ")
    with pytest.raises(UsageError, match="'gate-1' is Running, so it was not deleted.*force=True"):
        run(shell, "%workflow delete gate-1")
    run(shell, "%workflow purge --older-than 1h")  # all of them are younger
    assert capsys.readouterr().out.startswith("Deleted 0 instances")
    run(shell, "%workflow purge --status Completed --older-than 0s --name quick")
    assert capsys.readouterr().out.startswith("Deleted 2 instances")
    run(shell, "%workflow delete gate-1 --force")
    assert capsys.readouterr().out.startswith("Deleted 1 instance")
    assert rt.list_workflows() == []
    run(shell, "%workflow purge --all")
    assert capsys.readouterr().out.startswith("Deleted 0 instances")
    help_text = shell.find_line_magic("workflow").__doc__
    assert "%workflow delete ID [--force]" in help_text and "%workflow purge [--status S]" in help_text


def test_rerunning_an_edited_cell_keeps_the_waiting_instance_on_old_code(shell, registry, capsys) -> None:
    body = "ctx.set_custom_status('waiting')\nv = yield ctx.wait_for_event('go')\nreturn ['{tag}', v]\n"
    shell.run_cell_magic("workflow", "review", body.replace("{tag}", "v1"))
    old = run(shell, "%workflow start review --id review-old")
    wait_for_custom_status(old, "waiting")
    capsys.readouterr()

    shell.run_cell_magic("workflow", "review", body.replace("{tag}", "v2"))  # the edited cell, re-run
    line = capsys.readouterr().out.strip()
    v1, v2 = (d.version for d in registry.versions("review"))
    assert line == (
        f"Workflow 'review': new instances start on review@{v2[6:14]} (was review@{v1[6:14]}); "
        "instances in flight keep the version they started on."
    )

    run(shell, "%workflow signal review-old go 1")
    old_state = run(shell, "%workflow wait review-old --timeout 30").state
    assert old_state.output == ["v1", 1] and old_state.version == v1
    new = run(shell, "%workflow start review --id review-new")
    wait_for_custom_status(new, "waiting")
    run(shell, "%workflow signal review-new go 2")
    new_state = run(shell, "%workflow wait review-new --timeout 30").state
    assert new_state.output == ["v2", 2] and new_state.version == v2


def test_cell_goes_through_input_transformers(shell, registry) -> None:
    # An indented paste and IPython syntax are fixed by transform_cell before parsing.
    shell.run_cell_magic("workflow", "indented", "    x = yield ctx.schedule_timer(1)\n    return 'ok'\n")
    shell.run_cell_magic("workflow", "", "def magic_defs(ctx, input):\n    yield ctx.schedule_timer(1)\nhome = %pwd\n")
    assert {"indented", "magic_defs"} <= set(registry.workflow_names())
    assert isinstance(shell.user_ns["home"], str)
    # `!cmd` and `%magic` inside a body become get_ipython() calls: they parse, and are flagged.
    with pytest.warns(pdn.DeterminismWarning) as caught:
        shell.run_cell_magic("workflow", "shelly", "files = !ls\nwhere = %pwd\nyield ctx.schedule_timer(1)\n")
    assert [str(w.message).split(" on every")[0] for w in caught] == [
        "workflow 'shelly', line 1: get_ipython().getoutput() runs a shell command (!cmd)",
        "workflow 'shelly', line 2: get_ipython().run_line_magic() runs an IPython magic (%magic)",
    ]
    assert "shelly" in registry.workflow_names()


def test_cell_of_definitions_and_input_model(shell, registry) -> None:
    shell.run_cell("from pydantic import BaseModel\nclass Order(BaseModel):\n    qty: int\n")
    shell.run_cell_magic("workflow", "order --input-model Order", "yield ctx.schedule_timer(1)\nreturn input.qty * 2")
    assert registry.workflow("order").input_model is shell.user_ns["Order"]
    with pytest.raises(UsageError, match="qty"):
        run(shell, '%workflow start order {"qty": "many"}')
    assert pdn.kernel_runtime().list_workflows() == []  # nothing was written
    instance = run(shell, '%workflow start order {"qty": 4}')
    assert pdn.kernel_runtime().wait_for_workflow(instance, timeout=30).output == 8
    with pytest.raises(UsageError, match="could not be found"):
        shell.run_cell_magic("workflow", "x --input-model Missing", "yield ctx.schedule_timer(1)")


def test_async_cell_is_a_usage_error_with_the_reason(shell, registry) -> None:
    with pytest.raises(UsageError, match="async def"):
        shell.run_cell_magic("workflow", "", "async def bad(ctx, input):\n    return 1\n")
    result = shell.run_cell("%%workflow bad2\nx = await thing()\nreturn x\n")
    assert isinstance(result.error_in_exec, UsageError) and "await" in str(result.error_in_exec)
    assert registry.workflow_names() == []


def test_determinism_warnings_from_the_cell_name_the_alternative(shell, registry) -> None:
    # Imported in an earlier cell, as in a notebook: names resolve through the user namespace.
    shell.run_cell("import random, time, urllib.request\nfrom datetime import datetime\nfrom uuid import uuid4")
    body = (
        "t = time.time()\n"
        "now = datetime.now()\n"
        "n = random.randint(1, 6)\n"
        "g = uuid4()\n"
        "print(n)\n"
        "text = open('notes.txt').read()\n"
        "page = urllib.request.urlopen('http://127.0.0.1:9')\n"
        "yield ctx.schedule_timer(1)\n"
        "return n\n"
    )
    with pytest.warns(pdn.DeterminismWarning) as caught:
        shell.run_cell_magic("workflow", "dice", body)
    messages = [str(w.message) for w in caught if issubclass(w.category, pdn.DeterminismWarning)]
    expected = [
        ("line 1: time.time()", "ctx.utc_now()"),
        ("line 2: datetime.now()", "ctx.utc_now()"),
        ("line 3: random.randint()", "ctx.new_guid()"),
        ("line 4: uuid4()", "ctx.new_guid()"),
        ("line 5: print()", "ctx.trace_info"),
        ("line 6: open()", "an activity"),
        ("line 7: urllib.request.urlopen()", "an activity"),
    ]
    assert len(messages) == len(expected)
    for message, (call, instead) in zip(messages, expected, strict=True):
        assert message.startswith(f"workflow 'dice', {call}") and instead in message.split("; use ")[1], message
    assert registry.workflow_names() == ["dice"]  # a warning, not a failure


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("%workflow", "Use one of: start, status"),
        ("%workflow launch x", "Unknown subcommand 'launch'"),
        ("%workflow start", "Give the workflow to start"),
        ("%workflow start nope", "Workflow 'nope' is not registered. Registered workflows: 'known'"),
        ('%workflow start known {"a": 1,, }', 'not valid JSON: .* column 9:\n  {"a": 1,, }\n          \\^'),
        ("%workflow status", "Give the instance id"),
        ("%workflow status missing-id", "No workflow instance 'missing-id'"),
        ("%workflow wait missing-id --timeout soon", "--timeout must be a non-negative number"),
        ("%workflow list --limit -3", "--limit must be a non-negative number"),
        ("%workflow list --colour red", "Unexpected '--colour'"),
        ("%workflow wait missing-id --timeout", "--timeout needs a value"),
        ("%workflows all", "takes no arguments: run it alone"),
        ("%workflow list --status Sleeping", "Unknown workflow status 'Sleeping'"),
        ("%workflow signal x", "No workflow instance 'x'"),
        ("%workflow status a b", "takes one instance id; remove 'b'"),
        ("%workflow cancel a --force", "takes one instance id; remove '--force'"),
        ('%workflow start "my flow', "A quote is not closed"),
        ("%workflow delete", "Give the instance id: %workflow delete ID"),
        ("%workflow delete x --now", "Unexpected '--now'. Usage: %workflow delete ID \\[--force\\]"),
        ("%workflow delete missing-id", "No workflow instance 'missing-id'"),
        ("%workflow purge", "Say what to purge: --status Completed"),
        ("%workflow purge --older-than soon", "--older-than takes an age like 90"),
        ("%workflow purge --status Running", "purge deletes finished instances only"),
        ("%workflow start known " + "[" * 5000 + "]" * 5000, "is nested too deeply to read"),
        ("%workflow start known " + "[" * 300 + "]" * 300, "is nested more than 200 levels deep"),
    ],
)
def test_mistakes_are_short_usage_errors(shell, line, message) -> None:
    shell.run_cell_magic("workflow", "known", "yield ctx.schedule_timer(1)")
    with pytest.raises(UsageError, match=message):
        run(shell, line)
    result = shell.run_cell(line)
    assert isinstance(result.error_in_exec, UsageError)


def test_tab_completion(shell) -> None:
    shell.run_cell_magic("workflow", "alpha", "yield ctx.schedule_timer(1)")
    shell.run_cell_magic("workflow", "beta", "yield ctx.schedule_timer(1)")
    shell.run_cell_magic("workflow", '"my flow"', "yield ctx.schedule_timer(1)")
    run(shell, "%workflow start alpha --id alpha-123")
    wait_until(lambda: pdn.kernel_runtime().count_workflows(name="alpha"))  # the queued start reached the store

    def complete(line: str) -> list[str]:
        # The API Jupyter kernels use for completion requests; nothing filtered out here:
        # Python keywords ("and", "if", ...) from Jedi must not come along.
        with provisionalcompleter():
            return [c.text for c in shell.Completer.completions(line, len(line))]

    assert complete("%workflow st") == ["start", "status"]
    assert complete("%workflow start ") == ["alpha", "beta", '"my flow"']
    assert complete("%workflow status al") == ["alpha-123"]
    assert complete("%workflow list --status Comp") == ["Completed"]
    assert complete("%workflow list --name b") == ["beta"]
    assert complete("%%workflow al") == ["alpha"]
    assert complete("iid = %workflow start b") == ["beta"]  # assigned, as in `iid = %workflow start ...`
    assert complete('%workflow start "my') == ['"my flow"']
    assert complete("%workflow de") == ["delete"]
    assert complete("%workflow delete alpha-123 ") == ["--force"]
    assert complete("%workflow purge --") == ["--status", "--older-than", "--all"]
    assert complete("%workflow purge --status ") == ["Completed", "Failed", "Terminated"]
    # The older completion API (ip.complete) gives the same, without keywords either.
    with provisionalcompleter(), warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # ip.complete is pending deprecation
        assert shell.complete("", "%workflow start ", len("%workflow start "))[1] == ["alpha", "beta", '"my flow"']
    # Other lines are left to IPython: Python completion still works.
    assert "isinstance" in complete("isinst")


def test_list_is_capped_and_says_how_many_matched(shell) -> None:
    shell.run_cell_magic("workflow", "many", "yield ctx.schedule_timer(1)")
    for i in range(4):
        run(shell, f"%workflow start many --id many-{i}")
    # A start is queued; the store has its row once the engine picked it up.
    wait_until(lambda: sum(pdn.kernel_runtime().count_workflows(name="many").values()) == 4)
    listing = run(shell, "%workflow list --name many --limit 2")
    assert [s.instance_id for s in listing.states] == ["many-3", "many-2"]
    assert repr(listing).splitlines()[-1] == "2 of 4 shown (newest first); use --limit N for more"
    assert len(run(shell, "%workflow list --limit 10")) == 4


def test_workflow_config_switches_the_store(shell, tmp_path, capsys, monkeypatch) -> None:
    old = pdn.kernel_runtime()
    shell.run_line_magic("workflow_config", f"--db {tmp_path / 'other.db'}")
    assert "other.db" in capsys.readouterr().out
    assert old.state is pdn.RuntimeState.STOPPED and pdn.kernel_runtime().db.endswith("other.db")
    current = pdn.kernel_runtime()
    import pi_duroxide_nb.engine._runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_PI_DEFAULT_DB", tmp_path / "pi.db")
    with pytest.raises(UsageError, match="pi coding agent"):
        shell.run_line_magic("workflow_config", f"--db {tmp_path / 'pi.db'}")
    assert pdn.kernel_runtime() is current and current.state is pdn.RuntimeState.RUNNING  # left as it was


def test_workflow_config_client_makes_the_kernel_a_client_of_workers(shell, capsys) -> None:
    shell.run_cell_magic("workflow", "quick", "return 1")
    try:
        shell.run_line_magic("workflow_config", "--client")
        assert "client only: worker processes run the work" in capsys.readouterr().out
        client = pdn.kernel_runtime()
        assert not client.is_worker and client.engine_mode == "client"
        run(shell, "%workflow start quick --id quick-1")
        assert client.get_workflow("quick-1").status is pdn.WorkflowStatus.PENDING  # queued for a worker
        with pytest.raises(UsageError, match="not both"):
            shell.run_line_magic("workflow_config", "--client --worker")
    finally:
        shell.run_line_magic("workflow_config", "--worker")
    kernel = pdn.kernel_runtime()
    assert kernel.is_worker and client.state is pdn.RuntimeState.STOPPED
    assert kernel.wait_for_workflow("quick-1", timeout=30).output == 1  # the kernel runs work again


def test_workflows_magic_shows_the_dashboard_and_rerun_replaces_it(shell, no_leaked_comms) -> None:
    first = run(shell, "%workflows")
    assert first.controller.runtime is pdn.kernel_runtime() and first.live
    second = run(shell, "%workflows")
    assert not first.live and second.live  # the old output's refresh stopped
    shell.run_line_magic("unload_ext", EXT)
    assert not second.live


def test_signal_without_event_name_sends_the_awaited_one_and_validates(shell, registry) -> None:
    from pydantic import BaseModel

    class Approval(BaseModel):
        approved: bool

    @registry.register_workflow("gate")
    def gate(ctx, input):
        ctx.set_custom_status("waiting")
        decision = yield ctx.wait_for_event("approval", model=Approval)
        extra = yield ctx.all([ctx.wait_for_event("a"), ctx.wait_for_event("b")])
        return [decision.approved, extra]

    rt = pdn.kernel_runtime()
    run(shell, "%workflow start gate --id gate-1")
    wait_until(lambda: rt.waiting_for("gate-1"), timeout=10)
    with pytest.raises(UsageError, match=r"does not match Approval: approved: Input should be a valid boolean"):
        run(shell, '%workflow signal gate-1 {"approved": "perhaps"}')
    assert [w.name for w in rt.waiting_for("gate-1")] == ["approval"]
    run(shell, '%workflow signal gate-1 {"approved": true}')
    wait_until(lambda: len(rt.waiting_for("gate-1")) == 2, timeout=10)
    with pytest.raises(UsageError, match=r"waits for several events \(a, b\); name one"):
        run(shell, "%workflow signal gate-1 [1]")
    run(shell, "%workflow signal gate-1 a 1")
    wait_until(lambda: [w.name for w in rt.waiting_for("gate-1")] == ["b"], timeout=10)
    run(shell, "%workflow signal gate-1")
    assert rt.wait_for_workflow("gate-1", timeout=10).output == [True, [1, None]]
    with pytest.raises(UsageError, match="waits for no event now"):
        run(shell, "%workflow signal gate-1")
    with pytest.raises(UsageError, match="has finished as Completed"):
        run(shell, "%workflow signal gate-1 a 2")
    with pytest.raises(UsageError, match="has finished as Completed"):
        run(shell, "%workflow cancel gate-1")
