"""Child process that reads (and checkpoints) a duroxide SQLite store for the parent.

Why a process: duroxide links its own copy of SQLite. Two SQLite libraries in one process
do not see each other's POSIX locks, so a connection from Python's ``sqlite3`` (or
aiosqlite) in the kernel takes itself for the file's only user: closing it deleted the
write-ahead log under the running engine and lost a just-started instance in our tests.
From another process, SQLite's locking works as designed.

Protocol: one JSON request per line on stdin, ``{"id", "sql", "args"}``,
``{"id", "op": "checkpoint", "mode": "PASSIVE" | "TRUNCATE", "timeout": s}``,
``{"id", "op": "check"}`` (SQLite's quick_check) or ``{"id", "op": "nudge", "instances": [...],
"activities": [...]}``; one JSON reply per line on stdout, ``{"id", "rows"}`` or
``{"id", "error"}``. Only the standard library is imported, so it starts fast.

The nudge is the one write to the engine's tables: work the engine set aside with a backoff
(an unregistered workflow version or activity, retried after 1, 2, 4 ... 60 s) is made visible
again the moment its code or agent host is back, so the instance resumes at once instead of at
its next retry. It never moves a timer before its time and never touches locked work.
"""

import json
import sqlite3
import sys
import time


def main(path: str) -> None:
    """Serve requests for the store at ``path`` until stdin closes."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    # Reads are a page of instances or one history at a time: a 512 KiB page cache (SQLite's
    # default is 2 MiB) keeps this process small beside the kernel.
    db.execute("PRAGMA cache_size = -512")
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
            elif request.get("op") == "check":
                try:
                    reply["rows"] = [list(r) for r in db.execute("PRAGMA quick_check")]
                except sqlite3.DatabaseError as exc:  # "database disk image is malformed": the answer
                    reply["rows"] = [[str(exc)]]
            elif request.get("op") == "tune":
                reply["rows"] = [[_tune(path)]]
            elif request.get("op") == "nudge":
                reply["rows"] = [[_nudge(path, request.get("instances") or [], request.get("activities") or [])]]
            else:
                reply["rows"] = [list(r) for r in db.execute(request["sql"], request.get("args", []))]
        except sqlite3.Error as exc:
            reply["error"] = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps(reply) + "\n")
        out.flush()


_UNORDERED = "1000000 1000000 1000000 unordered"


def _tune(path: str) -> bool:
    """Tell SQLite's planner not to read the engine's queue through its ``visible_at`` index.

    duroxide picks the next orchestration item with ``... WHERE visible_at <= now ... ORDER BY
    id LIMIT 1``. Through the ``visible_at`` index SQLite joins and sorts every visible row
    (4.4 ms a fetch with 5 000 queued), and the engine's read-then-write transactions that
    take that long collide ("database is locked", backoffs of 200 ms to 3 s): throughput fell
    to about 12 workflows/s with 5 000 queued. Marked "unordered", the index is skipped and the
    queue is walked in id order to the first free row (0.008 ms), about 200 workflows/s
    (bench/bench_backlog.py). Returns True if the statistic was written now.
    """
    rw = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    try:
        if not rw.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'idx_orch_visible'").fetchone():
            return False
        if (
            rw.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone()
            and rw.execute(
                "SELECT 1 FROM sqlite_stat1 WHERE tbl = 'orchestrator_queue' AND idx = 'idx_orch_visible' AND stat = ?",
                (_UNORDERED,),
            ).fetchone()
        ):
            return False
        rw.executescript(
            "BEGIN IMMEDIATE; ANALYZE sqlite_master; "
            "DELETE FROM sqlite_stat1 WHERE tbl = 'orchestrator_queue' AND idx = 'idx_orch_visible'; "
            f"INSERT INTO sqlite_stat1 VALUES ('orchestrator_queue', 'idx_orch_visible', '{_UNORDERED}'); COMMIT;"
        )
        return True
    finally:
        rw.close()


def _nudge(path: str, instances: list[str], activities: list[str]) -> int:
    """Make set-aside work of these instances / activities visible now; returns the rows changed."""
    rw = sqlite3.connect(path, timeout=2.0, isolation_level=None)
    try:
        now = int(time.time() * 1000)
        changed = 0
        if instances:
            marks = ",".join("?" * len(instances))
            changed += rw.execute(
                "UPDATE orchestrator_queue SET visible_at = MAX(?1, "
                "COALESCE(json_extract(work_item, '$.TimerFired.fire_at_ms'), 0)) "
                f"WHERE visible_at > ?1 AND instance_id IN ({marks}) AND NOT EXISTS ("
                "SELECT 1 FROM instance_locks l WHERE l.instance_id = orchestrator_queue.instance_id "
                "AND l.locked_until > ?1)",
                [now, *instances],
            ).rowcount
        if activities:
            marks = ",".join("?" * len(activities))
            changed += rw.execute(
                "UPDATE worker_queue SET visible_at = ?1 WHERE visible_at > ?1 AND lock_token IS NULL "
                f"AND json_extract(work_item, '$.ActivityExecute.name') IN ({marks})",
                [now, *activities],
            ).rowcount
        return changed
    finally:
        rw.close()


if __name__ == "__main__":
    main(sys.argv[1])
