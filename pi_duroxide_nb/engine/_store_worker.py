"""Child process that reads (and checkpoints) a duroxide SQLite store for the parent.

Why a process: duroxide links its own copy of SQLite. Two SQLite libraries in one process
do not see each other's POSIX locks, so a connection from Python's ``sqlite3`` (or
aiosqlite) in the kernel takes itself for the file's only user: closing it deleted the
write-ahead log under the running engine and lost a just-started instance in our tests.
From another process, SQLite's locking works as designed.

Protocol: one JSON request per line on stdin, ``{"id", "sql", "args"}`` or
``{"id", "op": "checkpoint", "mode": "PASSIVE" | "TRUNCATE"}``; one JSON reply per line on stdout, ``{"id", "rows"}`` or
``{"id", "error"}``. Only the standard library is imported, so it starts fast.
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
                # PASSIVE never waits and never blocks the engine's writers; TRUNCATE waits
                # (up to the timeout) for a moment with no readers, holding writers off meanwhile.
                truncate = request.get("mode") == "TRUNCATE"
                with sqlite3.connect(path, timeout=2 if truncate else 0) as rw:
                    pragma = "PRAGMA wal_checkpoint(TRUNCATE)" if truncate else "PRAGMA wal_checkpoint(PASSIVE)"
                    reply["rows"] = [list(rw.execute(pragma).fetchone())]
            else:
                reply["rows"] = [list(r) for r in db.execute(request["sql"], request.get("args", []))]
        except sqlite3.Error as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
