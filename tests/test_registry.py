from __future__ import annotations

import pytest
from pydantic import BaseModel

import pi_duroxide_nb as pdn
from pi_duroxide_nb.engine import code_version


def test_decorator_and_plain_call_register(registry: pdn.WorkflowRegistry) -> None:
    @registry.register_workflow("a", description="first")
    def a(ctx, x):
        yield ctx.schedule_timer(1)

    def b(ctx, x):
        yield ctx.schedule_timer(1)

    assert registry.register_workflow("b", b) is b
    assert registry.workflow_names() == ["a", "b"]
    assert registry.workflow("a").description == "first"
    assert registry.workflow("a").fn is a


def test_async_workflow_is_refused_with_a_fix(registry: pdn.WorkflowRegistry) -> None:
    async def wf(ctx, x):
        return x

    with pytest.raises(pdn.RegistrationError, match="async function.*use `def` and `yield"):
        registry.register_workflow("wf", wf)
    assert registry.workflow_names() == []


def test_plain_function_workflow_is_refused(registry: pdn.WorkflowRegistry) -> None:
    with pytest.raises(pdn.RegistrationError, match="not a generator"):
        registry.register_workflow("wf", lambda ctx, x: x)


def test_generator_activity_is_refused(registry: pdn.WorkflowRegistry) -> None:
    def act(ctx, x):
        yield x

    with pytest.raises(pdn.RegistrationError, match="register_workflow"):
        registry.register_activity("act", act)


@pytest.mark.parametrize("name", ["", "__pi_llm", 3, "bad\nname"])
def test_bad_names_are_refused(registry: pdn.WorkflowRegistry, name: object) -> None:
    def wf(ctx, x):
        yield ctx.schedule_timer(1)

    with pytest.raises(pdn.RegistrationError):
        registry.register_workflow(name, wf)  # type: ignore[arg-type]


def test_models_must_be_pydantic(registry: pdn.WorkflowRegistry) -> None:
    def wf(ctx, x):
        yield ctx.schedule_timer(1)

    with pytest.raises(pdn.RegistrationError, match="pydantic"):
        registry.register_workflow("wf", wf, input_model=dict)  # type: ignore[arg-type]


def _source_variant(body: str):
    namespace: dict = {}
    exec(compile(body, "<cell>", "exec"), namespace)
    return namespace["wf"]


def test_version_follows_code_not_comments_or_lines() -> None:
    base = _source_variant("def wf(ctx, x):\n    y = yield ctx.schedule_activity('a', x)\n    return y\n")
    moved = _source_variant(
        "\n\n# a comment\ndef wf(ctx, x):\n    # why\n    y = yield ctx.schedule_activity('a', x)\n    return y\n"
    )
    changed = _source_variant("def wf(ctx, x):\n    y = yield ctx.schedule_activity('b', x)\n    return y\n")
    assert code_version(base) == code_version(moved)
    assert code_version(base) != code_version(changed)
    assert code_version(base).startswith("0.0.0-c")


def test_reregistering_keeps_old_versions(registry: pdn.WorkflowRegistry) -> None:
    v1 = _source_variant("def wf(ctx, x):\n    yield ctx.schedule_activity('a', x)\n")
    v2 = _source_variant("def wf(ctx, x):\n    yield ctx.schedule_activity('b', x)\n")
    registry.register_workflow("wf", v1)
    registry.register_workflow("wf", v2)
    registry.register_workflow("wf", v2)  # same code again: still two versions
    versions = registry.versions("wf")
    assert [d.fn for d in versions] == [v1, v2]
    assert registry.workflow("wf").fn is v2
    assert registry.workflow("wf", versions[0].version).fn is v1


def test_unknown_workflow_lists_registered(registry: pdn.WorkflowRegistry) -> None:
    def wf(ctx, x):
        yield ctx.schedule_timer(1)

    registry.register_workflow("known", wf)
    with pytest.raises(pdn.WorkflowNotFoundError, match="'missing'.*'known'") as info:
        registry.workflow("missing")
    assert info.value.registered == ("known",)


def test_listeners_hear_registrations(registry: pdn.WorkflowRegistry) -> None:
    heard: list[int] = []
    unsubscribe = registry.subscribe(lambda: heard.append(registry.generation))
    registry.register_activity("a", lambda ctx, x: x)
    unsubscribe()
    registry.register_activity("b", lambda ctx, x: x)
    assert len(heard) == 1


def test_module_level_register_uses_default_registry() -> None:
    class In(BaseModel):
        n: int

    def wf(ctx, x):
        yield ctx.schedule_timer(1)

    try:
        pdn.register_workflow("module-level-test", wf, input_model=In)
        assert pdn.default_registry.workflow("module-level-test").input_model is In
    finally:
        pdn.default_registry.clear()


def test_unregister_removes_one_workflow_and_runtimes_follow(registry: pdn.WorkflowRegistry, rt, iid) -> None:
    def keep(ctx, x):
        yield ctx.schedule_timer(1)
        return ["keep", x]

    def drop(ctx, x):
        yield ctx.schedule_timer(1)
        return ["drop", x]

    registry.register_workflow("keep", keep)
    registry.register_workflow("drop", drop)
    registry.register_workflow("drop", lambda ctx, x: (yield ctx.schedule_timer(2)))  # a second version
    changes: list[int] = []
    registry.subscribe(lambda: changes.append(registry.generation))

    removed = registry.unregister("drop")
    assert [d.name for d in removed] == ["drop", "drop"] and removed[0].fn is drop
    assert registry.workflow_names() == ["keep"] and registry.versions("drop") == []
    assert len(changes) == 1  # listeners (the runtime) heard of it
    with pytest.raises(pdn.WorkflowNotFoundError, match="'drop' is not registered. Registered workflows: 'keep'"):
        rt.start_workflow("drop", 1, instance_id=iid())
    assert rt.list_workflows() == []  # nothing was written
    assert rt.wait_for_workflow(rt.start_workflow("keep", 2, instance_id=iid()), timeout=30).output == ["keep", 2]
    with pytest.raises(pdn.WorkflowNotFoundError, match="'drop' is not registered"):
        registry.unregister("drop")
    registry.register_workflow("drop", drop)  # registering again works as before
    assert rt.wait_for_workflow(rt.start_workflow("drop", 3, instance_id=iid()), timeout=30).output == ["drop", 3]
