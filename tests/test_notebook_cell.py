"""%%workflow's plain-Python core: cells to workflows, determinism checks, views."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

import pi_duroxide_nb as pdn
from tests.conftest import wait_until


def _issues(source: str, **ns: object) -> list[tuple[int, str, str]]:
    return [(i.line, i.call, i.instead) for i in pdn.check_determinism(textwrap.dedent(source), namespace=ns)]


def test_import_does_not_load_ipython_widgets_or_threads() -> None:
    code = (
        "import sys, threading; before = threading.active_count(); import pi_duroxide_nb as pdn; "
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'ipykernel') if m in sys.modules), "
        "threading.active_count() - before)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[] 0"


def test_body_becomes_a_generator_workflow_with_ctx_and_input(registry, rt, iid) -> None:
    registry.register_activity("double", lambda ctx, x: 2 * x)
    [result] = pdn.define_workflow(
        "twice", "x = yield ctx.schedule_activity('double', input['n'])\nreturn {'x': x}", registry=registry
    )
    assert result.name == "twice" and result.previous_version is None and result.changed
    assert str(result) == f"Workflow 'twice' registered (twice@{result.version[6:14]})."
    assert inspect.isgeneratorfunction(registry.workflow("twice").fn)
    instance = rt.start_workflow("twice", {"n": 21}, instance_id=iid())
    assert rt.wait_for_workflow(instance, timeout=30).output == {"x": 42}


def test_a_body_keeps_its_whole_source(registry) -> None:
    # The body has no def line of its own: inspect alone finds only its first statement.
    body = 'first = yield ctx.schedule_activity("a", input)\nctx.set_custom_status("half")\nreturn first\n'
    pdn.define_workflow("whole", body, registry=registry)
    assert registry.workflow("whole").source == body


def test_body_without_yield_is_still_a_workflow(registry, rt, iid) -> None:
    pdn.define_workflow("plain", "ctx.set_custom_status('seen')\nreturn input + 1", registry=registry)
    assert inspect.isgeneratorfunction(registry.workflow("plain").fn)
    state = rt.wait_for_workflow(rt.start_workflow("plain", 1, instance_id=iid()), timeout=30)
    assert state.status is pdn.WorkflowStatus.COMPLETED and state.output == 2 and state.custom_status == "seen"


def test_body_sees_the_notebook_namespace(registry, rt, iid) -> None:
    namespace = {"GREETING": "hello"}
    pdn.define_workflow(
        "ns", "yield ctx.schedule_timer(1)\nreturn f'{GREETING} {input}'", registry=registry, namespace=namespace
    )
    assert rt.wait_for_workflow(rt.start_workflow("ns", "Ada", instance_id=iid()), timeout=30).output == "hello Ada"


def test_rerun_same_code_is_unchanged_and_edit_is_a_new_version(registry) -> None:
    first = pdn.define_workflow("w", "yield ctx.schedule_timer(1)\nreturn 1", registry=registry)[0]
    same = pdn.define_workflow("w", "yield ctx.schedule_timer(1)\nreturn 1", registry=registry)[0]
    edited = pdn.define_workflow("w", "yield ctx.schedule_timer(1)\nreturn 2", registry=registry)[0]
    assert not same.changed and str(same) == f"Workflow 'w' unchanged (w@{first.version[6:14]})."
    assert edited.changed and edited.previous_version == first.version
    assert str(edited) == (
        f"Workflow 'w': new instances start on w@{edited.version[6:14]} (was w@{first.version[6:14]}); "
        "instances in flight keep the version they started on."
    )
    assert [d.version for d in registry.versions("w")] == [first.version, edited.version]


def test_reusing_a_version_number_for_other_code_says_it_replaced_it(registry) -> None:
    first = pdn.define_workflow("n", "yield ctx.schedule_timer(1)\nreturn 1", registry=registry, version="2")[0]
    again = pdn.define_workflow("n", "yield ctx.schedule_timer(1)\nreturn 1", registry=registry, version="2")[0]
    assert not first.replaced and not again.replaced and str(again) == "Workflow 'n' unchanged (n@2.0.0)."
    with pytest.warns(pdn.VersionWarning, match=r"version 2\.0\.0 was registered before with different code") as seen:
        edited = pdn.define_workflow(
            "n", "yield ctx.schedule_timer(1)\nreturn 2", registry=registry, version="2", filename="<cell-n>"
        )[0]
    # The warning points at the cell that re-used the number, not at the library.
    assert [(w.filename, w.lineno) for w in seen] == [("<cell-n>", 1)]
    assert edited.replaced and edited.version == "2.0.0" and not edited.changed
    assert str(edited) == (
        "Workflow 'n': n@2.0.0 now runs this cell's code, which replaced the code registered before under "
        "that number; instances in flight on it replay the new code."
    )
    assert [d.version for d in registry.versions("n")] == ["2.0.0"]


def test_cell_of_definitions_registers_each_generator(registry) -> None:
    source = textwrap.dedent(
        """
        def helper(x):
            return x + 1

        def first(ctx, input):
            yield ctx.schedule_timer(1)
            return helper(input)

        def second(ctx, input):
            return (yield ctx.wait_for_event("go"))
        """
    )
    namespace: dict[str, object] = {}
    results = pdn.define_workflow(None, source, registry=registry, namespace=namespace)
    assert [r.name for r in results] == ["first", "second"]
    assert registry.workflow_names() == ["first", "second"]
    assert callable(namespace["helper"])  # the cell ran in the notebook's namespace
    with pytest.raises(pdn.RegistrationError, match="ambiguous"):
        pdn.define_workflow("both", source, registry=registry)
    [one] = pdn.define_workflow("renamed", "def f(ctx, input):\n    yield ctx.schedule_timer(1)\n", registry=registry)
    assert one.name == "renamed" and registry.workflow("renamed").fn.__name__ == "f"


def test_async_code_is_refused_with_the_reason(registry) -> None:
    with pytest.raises(pdn.RegistrationError, match="async def.*yield ctx"):
        pdn.define_workflow(None, "async def w(ctx, input):\n    return 1\n", registry=registry)
    with pytest.raises(pdn.RegistrationError, match="await"):
        pdn.define_workflow("w", "x = await something()\nreturn x", registry=registry)
    with pytest.raises(pdn.RegistrationError, match="needs a name"):
        pdn.define_workflow(None, "yield ctx.schedule_timer(1)", registry=registry)
    assert registry.workflow_names() == []


def test_determinism_checks_name_the_safe_alternative() -> None:
    found = _issues(
        """
        import time, random, uuid
        from datetime import datetime
        t = time.time()
        now = datetime.now()
        r = random.random()
        g = uuid.uuid4()
        print("hi")
        data = open("f.txt").read()
        import requests
        page = requests.get("http://x")
        def activity_like():
            return time.time()          # nested functions are not checked
        ok = yield ctx.utc_now()
        """
    )
    assert [(line, call) for line, call, _ in found] == [
        (4, "time.time"),
        (5, "datetime.now"),
        (6, "random.random"),
        (7, "uuid.uuid4"),
        (8, "print"),
        (9, "open"),
        (11, "requests.get"),
    ]
    instead = {call: alt for _, call, alt in found}
    assert "ctx.utc_now()" in instead["time.time"] and "ctx.utc_now()" in instead["datetime.now"]
    assert "ctx.new_guid()" in instead["uuid.uuid4"] and "ctx.new_guid()" in instead["random.random"]
    assert "ctx.trace_info" in instead["print"]
    assert "activity" in instead["open"] and "activity" in instead["requests.get"]


def test_determinism_checks_resolve_names_from_earlier_cells() -> None:
    import datetime as dt_module
    from random import choice

    assert _issues("x = choice([1, 2])", choice=choice) == [
        (1, "choice", _issues("import random\nrandom.choice()")[0][2])
    ]
    assert [c for _, c, _ in _issues("d = dt.datetime.now()", dt=dt_module)] == ["dt.datetime.now"]
    assert _issues("x = yield ctx.schedule_activity('a', 1)\nctx.trace_info('fine')") == []
    # Names that are not imported are not guessed: a local list is not the requests library.
    assert _issues("requests = []\nrequests.append(1)\nyield ctx.schedule_timer(1)") == []


def test_registering_warns_but_does_not_fail(registry) -> None:
    with pytest.warns(pdn.DeterminismWarning, match=r"line 1: time\.time\(\).*ctx\.utc_now\(\)"):
        [result] = pdn.define_workflow(
            "clock",
            "t = time.time()\nyield ctx.schedule_timer(1)",
            registry=registry,
            namespace={"time": __import__("time")},
        )
    assert registry.workflow_names() == ["clock"] and len(result.issues) == 1


def test_views_have_deterministic_text_and_html(registry, rt, iid) -> None:
    pdn.define_workflow(
        "v", "ctx.set_custom_status('half')\nyield ctx.schedule_timer(1)\nreturn {'a': 1}", registry=registry
    )
    instance = rt.start_workflow("v", None, instance_id="view-1")
    state = rt.wait_for_workflow(instance, timeout=30)
    assert repr(pdn.view(state)) == 'view-1  v  Completed\n  custom status: half\n  output: {"a": 1}'
    assert "Completed" in pdn.view(state)._repr_html_()
    assert repr(pdn.view([state])) == "view-1  v  Completed  half"
    history = pdn.view(rt.history(instance))
    lines = repr(history).splitlines()
    assert lines[0].split() == ["1", "OrchestrationStarted", "v"]
    assert lines[-1].split() == ["5", "OrchestrationCompleted", '{"a":', "1}"]
    with pytest.raises(TypeError, match="pdn.view shows"):
        pdn.view(42)


def test_timeline_pairs_schedules_with_completions(registry, rt, iid) -> None:
    registry.register_activity("work", lambda ctx, x: x)
    pdn.define_workflow(
        "tl",
        "yield ctx.schedule_timer(20)\n"
        "yield ctx.schedule_activity('work', 1)\n"
        "ctx.set_custom_status('waiting')\n"
        "v = yield ctx.wait_for_event('go')\n"
        "return v",
        registry=registry,
    )
    instance = rt.start_workflow("tl", None, instance_id=iid())
    wait_until(lambda: rt.get_workflow(instance).custom_status == "waiting")
    open_bars = pdn.timeline_bars(rt.history(instance))
    assert [(b.kind, b.label, b.outcome) for b in open_bars] == [
        ("timer", "timer", "completed"),
        ("activity", "work", "completed"),
        ("event", "go", "open"),
    ]
    assert open_bars[0].duration is not None and open_bars[0].duration.total_seconds() >= 0.015
    rt.signal_workflow(instance, "go", 1)
    rt.wait_for_workflow(instance, timeout=30)
    bars = pdn.timeline_bars(rt.history(instance))
    assert bars[-1].outcome == "completed" and bars[-1].end is not None


def test_history_text_leaves_out_values_that_differ_per_run(registry, rt, iid) -> None:
    pdn.define_workflow(
        "ids", "g = yield ctx.new_guid()\nt = yield ctx.utc_now()\nreturn len(str(g))", registry=registry
    )
    texts = []
    for _ in range(2):
        instance = rt.start_workflow("ids", None, instance_id=iid())
        rt.wait_for_workflow(instance, timeout=30)
        texts.append(repr(pdn.view(rt.history(instance))))
    assert texts[0] == texts[1]  # what nbval compares
    assert "(new_guid result)" in texts[0] and "(utc_now result)" in texts[0]
