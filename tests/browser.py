"""A real JupyterLab in a real headless browser, for tests/test_browser.py and bench/browser_smoke.py.

``JupyterLab`` starts ``python -m jupyterlab`` on 127.0.0.1 (a random free port, a random token,
a temporary root folder, settings, workspaces, config and ``PI_DUROXIDE_DB``) and ``open_browser``
launches Debian's ``chromium`` through Playwright's Python API with ``executable_path``
(Playwright's own browser download is never used). ``NotebookPage`` drives one notebook: Run All,
wait until every cell ran, then look at cells, outputs and widgets.
"""

from __future__ import annotations

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("PDN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("PDN_SCREENSHOTS", ROOT / ".ci" / "artifacts" / "screenshots"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_settings(settings: Path) -> None:
    """No virtual scrolling (every cell stays in the DOM), no news or update pop-ups."""
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


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 serving a temporary copy of the notebooks."""

    def __init__(self, notebooks: Path, *, extra: dict[str, dict[str, Any]] | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="pdn-browser-"))
        self.root = self.tmp / "notebooks"
        shutil.copytree(notebooks, self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        for name, notebook in (extra or {}).items():
            (self.root / name).write_text(json.dumps(notebook, indent=1))
        _write_settings(self.tmp / "settings")
        self.token = secrets.token_hex(16)
        self.port = _free_port()
        self.log_path = self.tmp / "jupyterlab.log"
        self._server: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The notebook alone in a fresh workspace (no tabs restored from an earlier page)."""
        workspace = re.sub(r"\W+", "-", Path(notebook).stem)
        return f"{self.base}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={self.token}"

    def start(self, timeout: float = 60) -> None:
        env = dict(
            os.environ,
            PI_DUROXIDE_DB=str(self.tmp / "workflows.db"),
            JUPYTER_CONFIG_DIR=str(self.tmp / "config"),
            JUPYTER_RUNTIME_DIR=str(self.tmp / "runtime"),
        )
        with self.log_path.open("wb") as log:
            self._server = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                    f"--port={self.port}", f"--IdentityProvider.token={self.token}",
                    f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={self.tmp / 'settings'}",
                    f"--LabApp.workspaces_dir={self.tmp / 'workspaces'}",
                    # window.jupyterapp: run commands and read the notebook's cells and outputs
                    "--LabApp.expose_app_in_browser=True",
                ],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2):
                    return
            except OSError:
                if self._server.poll() is not None or time.monotonic() > deadline:
                    msg = f"JupyterLab did not start within {timeout} s; its log:\n{self.log_tail()}"
                    raise RuntimeError(msg) from None
                time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait(timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextmanager
def open_browser(executable: str = CHROMIUM) -> Iterator[Any]:
    """Headless Debian Chromium through Playwright's Python API (no Playwright browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


_NOTEBOOK = "window.jupyterapp.shell.currentWidget"
_KERNEL_IDLE = f"""() => {{
    const panel = window.jupyterapp && {_NOTEBOOK};
    const kernel = panel && panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!kernel && kernel.status === 'idle';
}}"""
_ALL_RAN = f"""() => {{
    const panel = {_NOTEBOOK};
    const code = panel.content.widgets.filter(c => c.model.type === 'code');
    const failed = code.some(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'));
    const busy = code.some(c => c.promptNode.textContent.includes('*'));
    const done = code.every(c => c.model.executionCount !== null);
    // Run All stops at a cell that raised: then the cells after it never run.
    return !busy && (done || failed) && panel.sessionContext.session.kernel.status === 'idle';
}}"""
_CELLS = f"""() => {{
    const source = cell => cell.model.sharedModel.getSource();
    return {_NOTEBOOK}.content.widgets.map((cell, index) => ({{
        index,
        type: cell.model.type,
        source: source(cell),
        count: cell.model.type === 'code' ? cell.model.executionCount : null,
        tags: cell.model.getMetadata('tags') || [],
        outputs: cell.model.type === 'code' ? cell.model.outputs.toJSON() : [],
    }}));
}}"""


class NotebookPage:
    """One notebook open in JupyterLab: Run All, then its cells, outputs and widgets."""

    def __init__(self, page: Any, lab: JupyterLab, name: str, shots: Path) -> None:
        self.page = page
        self.lab = lab
        self.name = name
        self.shots = shots
        self.panel: Any = None
        """The notebook's panel in the page (a Playwright locator); look for cells and widgets in it."""
        self.console_errors: list[str] = []
        page.on("console", lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.console_errors.append(f"pageerror: {exc}"))

    def open(self, timeout: float = 90) -> None:
        self.page.goto(self.lab.url(self.name))
        self.page.wait_for_function(_KERNEL_IDLE, timeout=timeout * 1000, polling=200)
        self.panel = self.page.locator("#" + self.page.evaluate(f"() => {_NOTEBOOK}.id"))

    def run_all(self, timeout: float = 120) -> float:
        """Run every cell (JupyterLab's Run > Run All Cells) and wait until all ran; returns the seconds."""
        started = time.monotonic()
        self.page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(_ALL_RAN, timeout=timeout * 1000, polling=250)
        return time.monotonic() - started

    def cells(self) -> list[dict[str, Any]]:
        """Every cell: index, type, source, execution count, tags and outputs (nbformat JSON)."""
        return list(self.page.evaluate(_CELLS))

    def output(self, index: int) -> Any:
        """The output area of cell ``index`` (a Playwright locator)."""
        return self.panel.locator(".jp-Cell").nth(index).locator(".jp-OutputArea")

    def shot(self, label: str, locator: Any = None) -> Path:
        self.shots.mkdir(parents=True, exist_ok=True)
        path = self.shots / f"{Path(self.name).stem}__{label}.png"
        (locator if locator is not None else self.page).screenshot(path=str(path))
        return path

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float = 15) -> None:
        """Poll ``predicate`` (every 0.2 s, at most ``timeout`` s) until it is true; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except Exception as exc:  # noqa: BLE001 - widgets re-render while we look at them
                last = exc
            time.sleep(0.2)
        self.shot("failure_" + re.sub(r"\W+", "_", what)[:40])
        detail = f" (last error: {last})" if last else ""
        raise AssertionError(f"{self.name}: {what}: not within {timeout} s{detail}")

    def shutdown_kernel(self) -> None:
        self.page.evaluate(f"() => {_NOTEBOOK}.sessionContext.shutdown()")
