"""What keeping the SQLite write-ahead log small costs: ``wal_limit_bytes`` against raw duroxide.

While work runs, the runtime truncates the log whenever it passes ``wal_limit_bytes``. A
truncating checkpoint holds the engine's writers off for a moment, and a duroxide transaction
that meets it fails with "database is locked" and backs off (200 ms and more), so small limits
cost throughput. This runs the two throughput tests of ``bench_overhead.py`` (200 workflows x 1
activity, 1 workflow x 200 activities) for raw duroxide and for our runtime at several limits,
alternating in one run, and prints medians and ratios to raw.

    python bench/bench_wal_limit.py [--reps 7] [--limits 4,16,64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("RUST_LOG", "error")  # duroxide's retried "database is locked" warnings, not wanted here

import bench_overhead as b  # noqa: E402 - the sibling benchmark's workloads and environments

import pi_duroxide_nb as pdn  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--limits", default="4,16,64", help="limits in MB, comma-separated")
    args = parser.parse_args(argv)
    limits = [int(x) for x in args.limits.split(",")]

    original = pdn.WorkflowRuntime.__init__
    current = {"limit": limits[0]}

    def init(self: pdn.WorkflowRuntime, **kwargs: object) -> None:
        kwargs.setdefault("wal_limit_bytes", current["limit"] * 1024 * 1024)
        original(self, **kwargs)  # type: ignore[arg-type]

    pdn.WorkflowRuntime.__init__ = init  # type: ignore[method-assign]
    tests = {
        "200 workflows x 1 activity": (b.fan_raw, b.fan_ours),
        "1 workflow x 200 activities": (b.seq_raw_metered, b.seq_ours_metered),
    }
    print(f"wal_limit_bytes vs raw duroxide | reps={args.reps} | wall time, median of alternating runs")
    for test, (raw_fn, ours_fn) in tests.items():
        times: dict[str, list[float]] = {"raw": [], **{f"{mb} MB": [] for mb in limits}}
        for _ in range(args.reps):
            times["raw"].append(raw_fn(200).wall)
            for mb in limits:
                current["limit"] = mb
                times[f"{mb} MB"].append(ours_fn(200).wall)
        raw = statistics.median(times["raw"])
        medians = {k: statistics.median(v) for k, v in times.items()}
        cells = "  ".join(f"{k} {m:.3f} s ({m / raw:.3f}x)" for k, m in medians.items())
        print(f"  {test:<28} {cells}")
    if b.FAILURES:
        print("instances that did not complete normally:", len(b.FAILURES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
