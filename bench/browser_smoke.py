"""Manual browser smoke check of the two ipywidgets UIs: the dashboard and the replay stepper.

NOT part of the test suite and not run by CI (it needs a Chromium binary and takes ~1 minute).
The headless widget tests (tests/test_notebook_dashboard.py, tests/test_replay_widget.py) check
the behaviour; this script checks that it renders and works in a real JupyterLab in a real browser.

Needs: ``pip install -e ".[notebook]" playwright`` and a Chromium (``apt-get install chromium``;
``playwright install`` is not needed: the system binary is launched directly).

    python bench/browser_smoke.py                       # screenshots in /tmp/shots/
    python bench/browser_smoke.py --shots DIR --chromium /usr/bin/chromium

What it does: copies notebooks/ to a temporary directory, adds a ``smoke.ipynb`` there, starts
JupyterLab on 127.0.0.1 with a random token (a temporary ``PI_DUROXIDE_DB``, temporary settings),
and drives the notebook with Playwright: load the extension, register workflows, start instances
(one waits for an event, one fails), open ``%workflows``, filter, page, select, raise the event
from the dashboard, watch the live refresh, open the replay stepper on a finished instance and
step it, and replay an edited workflow against the history (the red divergence panel). It prints
one line per check and the browser's console errors, and saves screenshots to look at.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    # 0: load the extension, an activity
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
    # 3: instances: 7 finished, 1 failed, 1 waiting
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
    # 6: the replay stepper on a finished instance
    """%workflow replay quick-3""",
    # 7: an edited workflow replayed against the history: the divergence panel
    """def quick_v2(ctx, input):
    first = yield ctx.schedule_activity("reserve", {"item": input["item"], "qty": 0})  # edited input
    second = yield ctx.schedule_activity("reserve", {"item": "x", "qty": 1})
    return {"first": first, "second": second}

edited = pdn.replay_widget(rt, "quick-3", workflow=quick_v2)
edited""",
    # 8: enough instances to scroll the list
    """for i in range(20):
    rt.start_workflow("quick", {"item": f"bulk-{i}", "qty": 1}, instance_id=f"bulk-{i:02}")
for i in range(20):
    rt.wait_for_workflow(f"bulk-{i:02}", timeout=60)""",
    # 9: start one more from code while the dashboards are live
    """rt.start_workflow("quick", {"item": "late", "qty": 9}, instance_id="quick-late")
rt.wait_for_workflow("quick-late", timeout=60).status""",
    # 10: clean up
    """dash.close(); small.close()
%unload_ext pi_duroxide_nb""",
]


def _notebook() -> dict[str, Any]:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
            for src in CELLS
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_settings(settings: Path) -> None:
    """No virtual scrolling (every cell in the DOM), no news pop-up."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }
    for name, value in files.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


class Smoke:
    """The browser session and the checks' results."""

    def __init__(self, page: Any, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.failures: list[str] = []
        self.console: list[str] = []
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}") if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}{(': ' + detail) if detail and not ok else ''}", flush=True)
        if not ok:
            self.failures.append(name)

    def cell(self, index: int) -> Any:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def output(self, index: int) -> Any:
        return self.cell(index).locator(".jp-OutputArea")

    def run(self, index: int, timeout: float = 90) -> None:
        cell = self.cell(index)
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Control+Enter")
        deadline = time.monotonic() + timeout
        while True:
            prompt = cell.locator(".jp-InputPrompt").inner_text().strip()
            if re.fullmatch(r"\[\d+\]:", prompt):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cell {index} still runs after {timeout} s ({prompt})")
            time.sleep(0.2)

    def shot(self, name: str, locator: Any = None) -> Path:
        path = self.shots / f"{name}.png"
        (locator or self.page).screenshot(path=str(path))
        return path

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    self.check(what, True)
                    return True
            except Exception:  # noqa: BLE001 - elements come and go while rendering
                pass
            time.sleep(0.25)
        self.check(what, False, f"not within {timeout} s")
        return False


def _options(select: Any) -> list[str]:
    return [o.strip() for o in select.locator("option").all_inner_texts()]


def _status_colour(dash: Any) -> str:
    return str(dash.locator("span[style*='color']").first.evaluate("el => getComputedStyle(el).color"))


def _drive(smoke: Smoke, url: str) -> None:
    page = smoke.page
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    status_bar = page.locator(".jp-StatusBar-Widget")
    smoke.wait_for("kernel idle", lambda: "Idle" in " ".join(status_bar.all_inner_texts()), 60)
    for index in range(4):
        smoke.run(index)
    text = smoke.output(3).inner_text()
    smoke.check("instances started", "Completed'>: 7" in text and "Failed'>: 1" in text, text)

    # --- the dashboard ----------------------------------------------------------------------------
    smoke.run(4)
    dash = smoke.output(4)
    smoke.wait_for("dashboard renders", lambda: dash.locator("select").count() >= 3, 30)
    smoke.shot("01_dashboard", dash)
    header = dash.locator(".widget-html").nth(1).inner_text()
    smoke.check("header shows counts", "9 instances" in header and "Completed 7" in header, header)
    instances = dash.locator("select[size]").first
    right = dash.evaluate("el => el.getBoundingClientRect().right")
    overflow = [
        (el, round(el_right - right))
        for el in ("select[size]", ".widget-hbox", ".widget-html")
        for el_right in dash.locator(el).evaluate_all("els => els.map(e => e.getBoundingClientRect().right)")
        if el_right > right + 1
    ]
    smoke.check("nothing sticks out of the output area", not overflow, str(overflow))
    options = instances.locator("option").all_inner_texts()
    smoke.check("instance list has 9 rows", len(options) == 9, str(len(options)))

    # select the waiting instance
    labels = [o.strip() for o in options]
    order = next(i for i, o in enumerate(labels) if o.startswith("order-1"))
    instances.select_option(index=order)
    smoke.wait_for(
        "selected instance detail",
        lambda: "timeline" in dash.inner_text() and "ExternalSubscribed" in dash.inner_text(),
    )
    smoke.shot("02_dashboard_selected", dash)

    # filter by status
    status = dash.locator(".widget-dropdown select").nth(1)
    status.select_option(label="Failed")
    smoke.wait_for("status filter", lambda: len(instances.locator("option").all_inner_texts()) == 1)
    status.select_option(label="all statuses")
    smoke.wait_for("filter reset", lambda: len(instances.locator("option").all_inner_texts()) >= 9)

    # raise the event from the dashboard: live refresh shows order-1 completed
    instances.select_option(
        index=next(
            i for i, o in enumerate(instances.locator("option").all_inner_texts()) if o.strip().startswith("order-1")
        )
    )
    dash.locator("input[placeholder='event name']").fill("approval")
    dash.locator("textarea[placeholder^='JSON payload']").fill('{"approved": true}')
    dash.locator("button", has_text="Raise event").click()
    smoke.wait_for("status line after raise", lambda: "Sent 'approval'" in dash.inner_text())
    smoke.wait_for(
        "live refresh shows order-1 completed",
        lambda: any(
            o.strip().startswith("order-1") and "Completed" in o for o in instances.locator("option").all_inner_texts()
        ),
        20,
    )
    smoke.shot("03_dashboard_after_event", dash)

    # replay from the dashboard
    dash.locator("button", has_text="Replay").click()
    smoke.wait_for("replay opens in dashboard", lambda: dash.locator(".pdn-replay").count() == 1)
    smoke.shot("04_dashboard_replay", dash)

    # start from the dashboard
    dash.locator("textarea").nth(1).fill('{"item": "pen", "qty": 1}')
    dash.locator("button", has_text="Start").click()
    smoke.wait_for(
        "start from the dashboard (workflow preselected)", lambda: "Started 'approve' as" in dash.inner_text()
    )
    smoke.shot("04b_dashboard_started", dash)

    # bad input: a readable red line; then cancel the instance just started
    started = re.search(r"Started 'approve' as (\w+)", dash.inner_text())
    new_id = started.group(1) if started else ""
    smoke.wait_for(
        "the started instance appears", lambda: any(o.startswith(new_id[:20]) for o in _options(instances)), 20
    )
    instances.select_option(index=next(i for i, o in enumerate(_options(instances)) if o.startswith(new_id[:20])))
    dash.locator("textarea[placeholder^='JSON payload']").fill("{not json")
    dash.locator("button", has_text="Raise event").click()
    smoke.wait_for("bad JSON: red status line", lambda: "rgb(207, 34, 46)" in _status_colour(dash))
    smoke.shot("04c_dashboard_bad_json", dash)
    dash.locator("button", has_text="Cancel").click()
    smoke.wait_for("cancel requested", lambda: f"Cancel requested for {new_id}" in dash.inner_text())
    smoke.wait_for(
        "live refresh shows it cancelled",
        lambda: any(o.startswith(new_id[:20]) and "Running" not in o for o in _options(instances)),
        20,
    )

    # --- paging -----------------------------------------------------------------------------------
    smoke.run(5)
    small = smoke.output(5)
    smoke.wait_for("small dashboard renders", lambda: small.locator("select").count() >= 3, 30)
    small_list = small.locator("select[size]").first
    first_page = small_list.locator("option").all_inner_texts()
    smoke.check("page 1 has 4 rows", len(first_page) == 4, str(len(first_page)))
    small.locator("button", has_text="▶").first.click()
    smoke.wait_for("next page", lambda: small_list.locator("option").all_inner_texts() != first_page)
    smoke.shot("05_dashboard_page2", small)
    small.locator("button", has_text="◀").first.click()
    smoke.wait_for("previous page", lambda: small_list.locator("option").all_inner_texts() == first_page)

    # --- replay stepper ---------------------------------------------------------------------------
    smoke.run(6)
    replay = smoke.output(6)
    smoke.wait_for("replay widget renders", lambda: replay.locator(".pdn-replay").count() == 1, 30)
    smoke.shot("06_replay_start", replay)
    step = replay.locator("button", has_text="step ▶")
    step.click()
    smoke.wait_for("step 1 highlights a line", lambda: replay.locator(".pdn-current").count() == 1)
    step.click()
    smoke.wait_for("step 2", lambda: "Step 2" in replay.inner_text())
    current = replay.locator(".pdn-current").inner_text()
    smoke.check("step 2 highlights its source line", "second = yield" in current, current)
    smoke.check("the whole %%workflow body is shown", replay.locator(".pdn-line").count() == 4)
    smoke.shot("07_replay_step2", replay)
    replay.locator("button", has_text="back").click()
    smoke.wait_for("back to step 1", lambda: "Step 1" in replay.inner_text())
    replay.locator("button", has_text="run to end").click()
    smoke.wait_for("run to end", lambda: "code ended" in replay.inner_text())
    smoke.check("step disabled at end", step.is_disabled())
    smoke.shot("08_replay_end", replay)
    replay.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowLeft")
    smoke.wait_for("the slider moves back a step", lambda: "Step 2" in replay.inner_text())
    replay.locator("button", has_text="first").click()
    smoke.wait_for("first", lambda: "Step 1" in replay.inner_text())

    smoke.run(7)
    edited = smoke.output(7)
    smoke.wait_for("divergence panel", lambda: edited.locator(".pdn-divergence").count() >= 1, 30)
    edited.locator("button", has_text="run to end").click()
    smoke.wait_for("divergence step", lambda: "history (expected)" in edited.inner_text())
    smoke.shot("09_replay_divergence", edited)
    scrolls = edited.locator(".pdn-src").evaluate(
        "el => el.scrollWidth > el.clientWidth && getComputedStyle(el).overflowX === 'auto'"
    )
    smoke.check("a long source line scrolls inside its pane", bool(scrolls))

    # --- live refresh from code ---------------------------------------------------------------------
    smoke.run(8)
    smoke.wait_for("live refresh shows 20 more", lambda: instances.locator("option").count() >= 30, 20)
    bottom = instances.evaluate("el => { el.scrollTop = el.scrollHeight; return el.scrollTop; }")
    smoke.run(9)
    smoke.wait_for(
        "live refresh shows an instance started from code",
        lambda: any("quick-late" in o for o in instances.locator("option").all_inner_texts()),
        20,
    )
    kept = instances.evaluate("el => el.scrollTop")
    smoke.check("the list keeps its scroll position across a refresh", kept >= bottom - 20, f"{bottom} -> {kept}")
    smoke.shot("10_dashboard_live", dash)
    smoke.run(10)
    smoke.wait_for("a closed dashboard leaves no widget behind", lambda: dash.locator("select").count() == 0)
    smoke.shot("11_page", None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=Path, default=Path("/tmp/shots"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    args.shots.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pdn-browser-"))
    work = tmp / "notebooks"
    shutil.copytree(ROOT / "notebooks", work)
    (work / "smoke.ipynb").write_text(json.dumps(_notebook(), indent=1))
    _write_settings(tmp / "settings")
    token, port = secrets.token_hex(16), _free_port()
    env = dict(os.environ, PI_DUROXIDE_DB=str(tmp / "workflows.db"), JUPYTER_CONFIG_DIR=str(tmp / "config"))
    log = (tmp / "jupyter.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
            f"--LabApp.user_settings_dir={tmp / 'settings'}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
        ],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    smoke: Smoke | None = None
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", 60)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.chromium)
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            smoke = Smoke(page, args.shots)
            try:
                _drive(smoke, f"http://127.0.0.1:{port}/lab/tree/smoke.ipynb?token={token}")
            except Exception as exc:  # noqa: BLE001 - report and keep the screenshot
                smoke.check("drive", False, repr(exc))
                smoke.shot("99_failure")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        if args.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    assert smoke is not None
    print(f"console errors: {len(smoke.console)}")
    for line in smoke.console:
        print("  ", line[:300])
    print(f"screenshots in {args.shots}")
    return 1 if smoke.failures else 0


if __name__ == "__main__":
    sys.exit(main())
