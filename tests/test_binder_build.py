"""The Binder build, done here the way repo2docker does it, then the quickstart notebook run in it.

mybinder.org cannot be reached from CI, so this test repeats repo2docker's steps for a
``binder/`` folder: a fresh virtualenv on the Python of ``binder/runtime.txt``, ``pip install -r
binder/requirements.txt`` from the root of a copy of the repository (repo2docker copies the
repository into the image), ``binder/postBuild`` if there is one, then the quickstart notebook
executed by a kernel of that environment. Its outputs must match the ones stored in the notebook
(the ones a Binder user sees before running it).

It needs PyPI (or a warm pip cache) and takes about a minute; pip's cache keeps reruns quick.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
QUICKSTART = "notebooks/01_durable_basics.ipynb"

# Run by the virtualenv's Python: execute the notebook with that environment's kernel, then one
# more cell that says where the kernel's Python and the package come from.
_EXECUTE = """
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

source, target = Path(sys.argv[1]), Path(sys.argv[2])
nb = nbformat.read(source, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import json, sys, pi_duroxide_nb\\n"
    "print(json.dumps({'prefix': sys.prefix, 'package': pi_duroxide_nb.__file__}))"
))
NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}).execute()
nbformat.write(nb, target)
"""


def _runtime_python() -> tuple[str, str]:
    """The Python version binder/runtime.txt asks for, and an interpreter of that version here."""
    text = (BINDER / "runtime.txt").read_text().strip()
    found = re.fullmatch(r"python-(\d+)\.(\d+)(?:\.\d+)?", text)
    assert found, f"binder/runtime.txt must read like 'python-3.11' (repo2docker's format), not {text!r}"
    version = f"{found.group(1)}.{found.group(2)}"
    if sys.version_info[:2] == tuple(int(p) for p in version.split(".")):
        return version, sys.executable
    other = shutil.which(f"python{version}")
    if other is None:
        pytest.skip(f"binder/runtime.txt asks for Python {version}, which is not installed here")
    return version, other


def _copy_repository(target: Path) -> None:
    """The files git tracks, as repo2docker copies a repository (no virtualenvs, caches or stores)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _run(command: list[str], *, cwd: Path, env: dict[str, str], what: str, timeout: float) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _texts(cell: dict[str, object]) -> list[str]:
    """A code cell's stream and plain-text outputs, as a user reads them."""
    texts = []
    for out in cell.get("outputs", []):  # type: ignore[union-attr]
        if out.get("output_type") == "stream":
            texts.append("".join(out["text"]) if isinstance(out["text"], list) else out["text"])
        elif "data" in out and "text/plain" in out["data"]:
            plain = out["data"]["text/plain"]
            texts.append("".join(plain) if isinstance(plain, list) else plain)
    return ["".join(texts)]


@pytest.mark.timeout(600)
def test_binder_environment_builds_and_runs_the_quickstart(tmp_path: Path) -> None:
    version, python = _runtime_python()
    repo = tmp_path / "repo"
    _copy_repository(repo)
    venv = tmp_path / "venv"
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PI_DUROXIDE_DB")
    }
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(tmp_path / "home"),  # no user kernels or settings from this machine
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "PI_DUROXIDE_DB": str(tmp_path / "home-store" / "workflows.db"),
    }
    started = time.monotonic()
    _run([python, "-m", "venv", str(venv)], cwd=repo, env=env, what="python -m venv", timeout=120)
    vpy = str(venv / "bin" / "python")
    _run(
        [vpy, "-m", "pip", "install", "--quiet", "-r", "binder/requirements.txt"],
        cwd=repo, env=env, what="pip install -r binder/requirements.txt", timeout=480,
    )  # fmt: skip
    if (repo / "binder" / "postBuild").exists():
        _run(["bash", "binder/postBuild"], cwd=repo, env=env, what="binder/postBuild", timeout=300)
    built = time.monotonic() - started
    reported = _run([vpy, "-c", "import sys; print(sys.version)"], cwd=repo, env=env, what="python", timeout=30)
    assert reported.startswith(version + "."), f"the environment runs Python {reported}, runtime.txt says {version}"

    executed = tmp_path / "executed.ipynb"
    script = tmp_path / "execute.py"
    script.write_text(_EXECUTE)
    _run([vpy, str(script), str(repo / QUICKSTART), str(executed)], cwd=repo, env=env, what=QUICKSTART, timeout=180)
    ran = time.monotonic() - started - built
    print(f"binder environment built in {built:.0f} s; {QUICKSTART} ran in {ran:.0f} s")

    result = json.loads(executed.read_text())
    where = json.loads(_texts(result["cells"][-1])[0])
    assert Path(where["prefix"]).resolve() == venv.resolve(), f"the kernel ran outside the Binder environment: {where}"
    assert Path(where["package"]).resolve().is_relative_to(repo.resolve()), where
    stored = json.loads((ROOT / QUICKSTART).read_text())
    pairs = zip(stored["cells"], result["cells"][:-1], strict=True)
    for number, (expected, actual) in enumerate(pairs):
        if expected["cell_type"] != "code" or "NBVAL_IGNORE_OUTPUT" in "".join(expected["source"]):
            continue
        assert _texts(actual) == _texts(expected), f"cell {number} of {QUICKSTART} shows something else in Binder"
