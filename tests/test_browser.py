"""Every notebook, Run All in a real JupyterLab in headless Chromium: no errors, and the widgets work.

JupyterLab runs on 127.0.0.1 (a random port, token auth, a temporary copy of ``notebooks/``);
Debian's ``chromium`` is driven through Playwright's Python API. For each notebook: Run All,
then check that every code cell ran, no cell has an error output (except cells tagged
``raises-exception``), no widget shows "Error displaying widget", and the notebook's own checks
(``CHECKS``: the dashboard lists its instances, the replay stepper's step and back buttons move
it, ...). A generated notebook (``SMOKE``) exercises the dashboard's controls: filters, paging,
raising an event, starting and cancelling, the replay button, the divergence panel.

Screenshots go to ``$PDN_SCREENSHOTS`` (default ``.ci/artifacts/screenshots``). The test is
skipped, with the reason, only when Playwright or the ``chromium`` binary is missing
(``pip install -e ".[test]"``; ``apt-get install chromium``, which ``.ci/run`` does).
``python bench/browser_smoke.py`` runs it by hand.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, ROOT, SCREENSHOTS, JupyterLab, NotebookPage, open_browser

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason='Playwright is not installed: pip install -e ".[test]" (its browser download is not needed)',
    ),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set PDN_CHROMIUM)",
    ),
]

# --- per-notebook checks: one function each, registered for the notebooks it applies to ------------

Check = Callable[[NotebookPage], None]
CHECKS: dict[str, list[Check]] = {}


def check(*notebooks: str) -> Callable[[Check], Check]:
    """Register ``fn(nb: NotebookPage)`` to run after Run All on each of ``notebooks``."""

    def register(fn: Check) -> Check:
        for name in notebooks:
            CHECKS.setdefault(name, []).append(fn)
        return fn

    return register


def dashboard_lists(*instance_ids: str) -> Check:
    """A check: the (first) dashboard of the notebook shows a list holding these instances."""

    def dashboard_lists_instances(nb: NotebookPage) -> None:
        dashboards = nb.panel.locator(".jp-OutputArea-output:has(select[size])")
        nb.wait_for("a dashboard renders", lambda: dashboards.count() >= 1, 30)
        dash = dashboards.first
        listed = dash.locator("select[size] option")

        def shows_all() -> bool:
            rows = " ".join(listed.all_inner_texts())
            return all(iid in rows for iid in instance_ids)

        nb.wait_for(f"the dashboard lists {', '.join(instance_ids)}", shows_all, 30)
        nb.shot("dashboard", dash)

    return dashboard_lists_instances


def _step_number(replay: Any) -> int:
    found = re.search(r"\bStep (\d+)\b", replay.inner_text())
    return int(found.group(1)) if found else 0


def stepper_moves(nb: NotebookPage) -> None:
    """The first replay stepper: "step" moves it forward one step, "back" one step back."""
    steppers = nb.panel.locator(".pdn-replay")
    nb.wait_for("a replay stepper renders", lambda: steppers.count() >= 1, 30)
    replay = steppers.first
    step, back = replay.locator("button", has_text="step ▶"), replay.locator("button", has_text="◀ back")
    assert step.is_enabled(), f"{nb.name}: the stepper's step button is disabled (already at the end?)"
    start = _step_number(replay)
    step.click()
    nb.wait_for(f"step moves the stepper from {start} to {start + 1}", lambda: _step_number(replay) == start + 1)
    if start == 0:  # at step 1 "back" has nowhere to go: take one more step first
        step.click()
        nb.wait_for("step moves the stepper to 2", lambda: _step_number(replay) == 2)
        start = 1
    nb.shot("stepper", replay)
    back.click()
    nb.wait_for(f"back moves the stepper to {start}", lambda: _step_number(replay) == start)
    assert replay.locator(".pdn-current").count() == 1, f"{nb.name}: no source line highlighted at step {start}"


check("02_notebook_magics.ipynb")(dashboard_lists("order-1", "order-2", "order-3"))
check("06_fan_out_sub_workflows.ipynb")(dashboard_lists("batch-1", "batch-1-chunk-2-retry", "batch-2"))
check("09_deploy_pipeline.ipynb")(dashboard_lists("deploy-api-1.4.2"))
check(
    "02_notebook_magics.ipynb",
    "04_replay_stepper.ipynb",
    "08_debugging_nondeterminism_and_versions.ipynb",
    "09_deploy_pipeline.ipynb",
)(stepper_moves)


@check("05_human_in_the_loop.ipynb")
def form_button_sends_the_approval(nb: NotebookPage) -> None:
    """The form of the waiting instance rel-4: click "true", then Send; the instance is signalled and completes."""
    dashboards = nb.panel.locator(".jp-OutputArea-output:has(select[size])")
    nb.wait_for("a dashboard renders", lambda: dashboards.count() >= 1, 30)
    dash = dashboards.first
    nb.wait_for("the form for rel-4's approval", lambda: "Waits for event approval" in dash.inner_text(), 30)
    assert "Ship this release?" in dash.inner_text(), "the field's description is not shown as help"
    nb.shot("event_form", dash)
    dash.locator("button.widget-toggle-button", has_text="true").first.click()
    dash.locator("button", has_text="Send approval").click()
    nb.wait_for("the dashboard says it sent the approval", lambda: "Sent 'approval' to rel-4." in dash.inner_text())
    instances = dash.locator("select[size]").first
    nb.wait_for(
        "the live refresh shows rel-4 completed",
        lambda: any(o.startswith("rel-4") and "Completed" in o for o in _options(instances)),
        20,
    )
    nb.shot("event_form_sent", dash)


@check("04_replay_stepper.ipynb", "08_debugging_nondeterminism_and_versions.ipynb")
def edited_code_shows_divergence(nb: NotebookPage) -> None:
    panel = nb.panel.locator(".pdn-replay:has(.pdn-divergence)")
    nb.wait_for("the edited workflow's stepper shows the divergence panel", lambda: panel.count() >= 1)
    panel.first.locator("button", has_text="run to end").click()
    nb.wait_for("run to end shows expected vs actual", lambda: "history (expected)" in panel.first.inner_text())
    nb.shot("divergence", panel.first)


# --- the dashboard's controls, on a generated notebook ------------------------------------------------

SMOKE_NAME = "dashboard_smoke.ipynb"
SMOKE_CELLS = [
    # 0: the extension and an activity
    """import time
import pi_duroxide_nb as pdn
%load_ext pi_duroxide_nb
rt = pdn.kernel_runtime()

@pdn.register_activity("reserve")
def reserve(ctx, order):
    return {"reserved": order["qty"], "item": order["item"]}""",
    # 1: a workflow that waits for an event
    """%%workflow approve --description "Reserve stock, then wait for a person to approve"
reservation = yield ctx.schedule_activity("reserve", input)
ctx.set_custom_status("awaiting-approval")
decision = yield ctx.wait_for_event("approval")
return {"order": reservation, "approved": decision["approved"]}""",
    # 2: a workflow that finishes on its own
    """%%workflow quick --description "Two reservations in a row"
first = yield ctx.schedule_activity("reserve", input)
ctx.set_custom_status("first done")
second = yield ctx.schedule_activity("reserve", {"item": first["item"] + "-2", "qty": 1})
return {"first": first, "second": second}""",
    # 3: 7 finished, 1 failed, 1 waiting
    """for i in range(1, 8):
    rt.start_workflow("quick", {"item": f"thing-{i}", "qty": i}, instance_id=f"quick-{i}")
rt.start_workflow("quick", {"item": "no-qty"}, instance_id="quick-bad")
rt.start_workflow("approve", {"item": "book", "qty": 2}, instance_id="order-1")
for i in range(1, 8):
    rt.wait_for_workflow(f"quick-{i}", timeout=60)
rt.wait_for_workflow("quick-bad", timeout=60)
deadline = time.monotonic() + 30
while rt.get_workflow("order-1").custom_status != "awaiting-approval" and time.monotonic() < deadline:
    time.sleep(0.05)
print(rt.count_workflows())""",
    # 4: the dashboard
    """dash = %workflows
dash""",
    # 5: a small page size, to see paging
    """small = pdn.dashboard(page_size=4)
small""",
    # 6: an edited workflow replayed against a history: the divergence panel
    """def quick_v2(ctx, input):
    first = yield ctx.schedule_activity("reserve", {"item": input["item"], "qty": 0})  # edited input
    second = yield ctx.schedule_activity("reserve", {"item": "x", "qty": 1})
    return {"first": first, "second": second}

pdn.replay_widget(rt, "quick-3", workflow=quick_v2)""",
]


def smoke_notebook() -> dict[str, Any]:
    blank = {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": []}
    return {
        "cells": [{**blank, "id": f"smoke-{i}", "source": src} for i, src in enumerate(SMOKE_CELLS)],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _options(select: Any) -> list[str]:
    return [o.strip() for o in select.locator("option").all_inner_texts()]


def _index_of(select: Any, prefix: str) -> int:
    return next(i for i, o in enumerate(_options(select)) if o.startswith(prefix))


@check(SMOKE_NAME)
def dashboard_controls_work(nb: NotebookPage) -> None:
    dash = nb.output(4)
    nb.wait_for("dashboard renders", lambda: dash.locator("select").count() >= 3, 30)
    instances = dash.locator("select[size]").first
    nb.wait_for("the list has the 9 instances", lambda: len(_options(instances)) == 9)
    header = dash.locator(".widget-html").nth(1).inner_text()
    assert "9 instances" in header and "Completed 7" in header, header
    right = dash.evaluate("el => el.getBoundingClientRect().right")
    lefts = dash.locator("select[size], .widget-hbox, .widget-html").evaluate_all(
        "els => els.map(e => e.getBoundingClientRect().right)"
    )
    assert all(x <= right + 1 for x in lefts), "a part of the dashboard sticks out of the output area"

    instances.select_option(index=_index_of(instances, "order-1"))
    nb.wait_for("the selected instance's history", lambda: "ExternalSubscribed" in dash.inner_text())
    nb.shot("smoke_selected", dash)

    status = dash.locator(".widget-dropdown select").nth(1)
    status.select_option(label="Failed")
    nb.wait_for("the status filter", lambda: len(_options(instances)) == 1)
    status.select_option(label="all statuses")
    nb.wait_for("the filter reset", lambda: len(_options(instances)) == 9)

    # raise the event from the form; the live refresh shows order-1 completed
    instances.select_option(index=_index_of(instances, "order-1"))
    dash.locator("input[placeholder='event name']").fill("approval")
    dash.locator("textarea[placeholder^='JSON payload']").fill('{"approved": true}')
    dash.locator("button", has_text="Raise event").click()
    nb.wait_for("the status line after raising", lambda: "Sent 'approval'" in dash.inner_text())
    nb.wait_for(
        "the live refresh shows order-1 completed",
        lambda: any(o.startswith("order-1") and "Completed" in o for o in _options(instances)),
        20,
    )

    dash.locator("button", has_text="Replay").click()
    replay = dash.locator(".pdn-replay")
    nb.wait_for("the Replay button opens the stepper", lambda: replay.count() == 1)
    # With the file browser open, neither pane is squeezed: they stack when side by side would not fit.
    widths = replay.locator(".pdn-pane").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
    assert len(widths) == 2 and min(widths) >= 300, f"a replay pane is cramped: {widths}"
    replay.locator("button", has_text="run to end").click()
    nb.wait_for("run to end", lambda: "code ended" in replay.inner_text())
    assert replay.locator("button", has_text="step ▶").is_disabled(), "step is still enabled at the end"
    last = _step_number(replay)
    replay.locator(".noUi-handle").first.focus()
    nb.page.keyboard.press("ArrowLeft")
    nb.wait_for("the slider moves back a step (keyboard)", lambda: _step_number(replay) == last - 1)

    # start from the form, then a bad payload (a red line, nothing sent), then cancel it
    dash.locator("textarea[placeholder^='JSON input']").fill('{"item": "pen", "qty": 1}')
    dash.locator("button", has_text="Start").click()
    nb.wait_for("start from the dashboard", lambda: "Started 'approve' as" in dash.inner_text())
    started = re.search(r"Started 'approve' as (\w+)", dash.inner_text())
    assert started is not None
    new_id = started.group(1)
    nb.wait_for("the started instance appears", lambda: any(o.startswith(new_id[:20]) for o in _options(instances)))
    instances.select_option(index=_index_of(instances, new_id[:20]))
    dash.locator("textarea[placeholder^='JSON payload']").fill("{not json")
    dash.locator("button", has_text="Raise event").click()
    status_line = dash.locator("span[style*='color']").first
    red = "rgb(207, 34, 46)"
    nb.wait_for("bad JSON: a red status line", lambda: status_line.evaluate("el => getComputedStyle(el).color") == red)
    dash.get_by_role("button", name="Cancel", exact=True).click()
    nb.wait_for("cancel asks first", lambda: f"Confirm to cancel {new_id}" in dash.inner_text())
    dash.get_by_role("button", name="Cancel it", exact=True).click()
    nb.wait_for("cancel requested", lambda: f"Cancel requested for {new_id}" in dash.inner_text())
    nb.wait_for(
        "the live refresh shows it ended",
        lambda: any(o.startswith(new_id[:20]) and "Running" not in o for o in _options(instances)),
        20,
    )
    nb.shot("smoke_dashboard", dash)

    # paging
    small = nb.output(5)
    nb.wait_for("the small dashboard renders", lambda: small.locator("select[size]").count() == 1, 30)
    small_list = small.locator("select[size]").first
    first_page = _options(small_list)
    assert len(first_page) == 4, first_page
    small.locator("button", has_text="▶").first.click()
    nb.wait_for("the next page", lambda: _options(small_list) != first_page)
    small.locator("button", has_text="◀").first.click()
    nb.wait_for("the previous page", lambda: _options(small_list) == first_page)

    # edited code replayed against a history: the red panel, expected against actual
    edited = nb.output(6)
    nb.wait_for("the divergence verdict", lambda: edited.locator(".pdn-divergence").count() >= 1, 30)
    edited.locator("button", has_text="run to end").click()
    nb.wait_for("the divergence step", lambda: "history (expected)" in edited.inner_text())
    nb.shot("smoke_divergence", edited)


# --- the generic checks, run on every notebook --------------------------------------------------------


def _errors(cells: list[dict[str, Any]]) -> list[str]:
    problems = []
    for cell in cells:
        if cell["type"] != "code" or "raises-exception" in cell["tags"]:
            continue
        first_line = cell["source"].splitlines()[0] if cell["source"] else ""
        if cell["count"] is None:
            problems.append(f"cell {cell['index']} did not run: {first_line}")
        for out in cell["outputs"]:
            if out.get("output_type") == "error":
                problems.append(f"cell {cell['index']} ({first_line}): {out.get('ename')}: {out.get('evalue')}")
    return problems


@pytest.fixture(scope="module")
def lab() -> Iterator[JupyterLab]:
    server = JupyterLab(ROOT / "notebooks", extra={SMOKE_NAME: smoke_notebook()})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(lab: JupyterLab) -> Iterator[Any]:
    with open_browser() as chromium:
        yield chromium


def _run_notebook(lab: JupyterLab, browser: Any, name: str) -> NotebookPage:
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    nb = NotebookPage(page, lab, name, SCREENSHOTS)
    started = time.monotonic()
    nb.open()
    opened = time.monotonic() - started
    seconds = nb.run_all()
    print(f"{name}: opened with an idle kernel in {opened:.1f} s, Run All took {seconds:.1f} s")
    return nb


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", [*NOTEBOOKS, SMOKE_NAME])
def test_notebook_runs_in_the_browser(lab: JupyterLab, browser: Any, name: str) -> None:
    nb = _run_notebook(lab, browser, name)
    try:
        cells = nb.cells()
        assert len(cells) > 1, f"{name}: no cells in the page"
        problems = _errors(cells)
        assert not problems, f"{name}: after Run All:\n" + "\n".join(problems)
        broken = nb.panel.locator("text=Error displaying widget")
        assert broken.count() == 0, f"{name}: a widget shows: {broken.first.inner_text()}"
        for fn in CHECKS.get(name, []):
            fn(nb)
        assert nb.panel.locator("text=Error displaying widget").count() == 0, f"{name}: a widget broke while used"
        nb.shot("page")
    finally:
        nb.shutdown_kernel()
        nb.page.close()


def test_every_notebook_with_widgets_has_checks() -> None:
    """A notebook that displays a dashboard or a stepper must say what the browser test checks on it."""
    missing = []
    for name in NOTEBOOKS:
        text = (ROOT / "notebooks" / name).read_text()
        if any(marker in text for marker in ("%workflows", "pdn.dashboard(", "%workflow replay", "replay_widget(")):
            if name not in CHECKS:
                missing.append(name)
    assert not missing, f"add browser checks (@check) for {missing}"
