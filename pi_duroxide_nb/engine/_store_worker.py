"""Child process that reads (and checkpoints) a duroxide SQLite store for the parent.

Why a process: duroxide links its own copy of SQLite. Two SQLite libraries in one process
do not see each other's POSIX locks, so a connection from Python's ``sqlite3`` (or
aiosqlite) in the kernel takes itself for the file's only user: closing it deleted the
write-ahead log under the running engine and lost a just-started instance in our tests.
From another process, SQLite's locking works as designed.

Protocol: one JSON request per line on stdin, ``{"id", "sql", "args"}`` or
``{"id", "op": "checkpoint", "mode": "PASSIVE" | "TRUNCATE", "timeout": s}``; one JSON
reply per line on stdout, ``{"id", "rows"}`` or ``{"id", "error"}``. Only the standard
library is imported, so it starts fast.
"""

import json
import sqlite3
import sys


def main(path: str) -> None:
    """Serve requests for the store at ``path`` until stdin closes."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply: dict[str, object] = {"id": request.get("id")}
        try:
            if request.get("op") == "checkpoint":
                # TRUNCATE holds the engine's writers off while it waits for a moment with no
                # readers, so the caller bounds that wait; PASSIVE never waits.
                mode = "TRUNCATE" if request.get("mode") == "TRUNCATE" else "PASSIVE"
                rw = sqlite3.connect(path, timeout=float(request.get("timeout", 0)), isolation_level=None)
                try:
                    if mode == "TRUNCATE":  # copy the log first without holding writers off
                        rw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    reply["rows"] = [list(rw.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())]
                finally:
                    rw.close()
            else:
                reply["rows"] = [list(r) for r in db.execute(request["sql"], request.get("args", []))]
        except sqlite3.Error as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
