"""``python -m pi_duroxide_nb worker --db URL --module my_workflows.py``: see ``_worker``."""

from __future__ import annotations

import sys

from ._worker import main

if __name__ == "__main__":
    sys.exit(main())
