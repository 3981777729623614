"""Run the browser test by hand: every notebook and the dashboard's controls in a real JupyterLab.

The checks live in tests/test_browser.py (CI runs them with the rest of the suite); this script
only runs that test with the screenshots and the Chromium binary you choose, and prints which
check failed. It needs ``pip install -e ".[test]"`` (Playwright's Python package; its browser
download is not used) and Debian's ``chromium`` (``apt-get install chromium``).

    python bench/browser_smoke.py                          # screenshots in /tmp/shots/
    python bench/browser_smoke.py --shots DIR --chromium /usr/bin/chromium -k smoke
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shots", type=Path, default=Path("/tmp/shots"), help="where the screenshots go")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    parser.add_argument("-k", dest="select", default=None, help="only the notebooks matching this pytest -k expression")
    args = parser.parse_args()
    env = dict(os.environ, PDN_SCREENSHOTS=str(args.shots.resolve()), PDN_CHROMIUM=args.chromium)
    command = [sys.executable, "-m", "pytest", "tests/test_browser.py", "-p", "no:randomly", "-rs", "-s", "-v"]
    if args.select:
        command += ["-k", args.select]
    code = subprocess.call(command, cwd=ROOT, env=env)
    print(f"screenshots in {args.shots}")
    return code


if __name__ == "__main__":
    sys.exit(main())
