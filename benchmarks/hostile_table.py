"""The hostile corpus as a table: per category, how many cases crashed, leaked or left things behind.

Run from the repository root::

    python benchmarks/hostile_table.py [--timeout SECONDS]

It builds the corpus of ``tests/hostile/corpus.py`` in a temporary folder, runs
``rspolicy enforce --json --log`` on every case in its own process (with a
timeout), measures what was released with ``tests/hostile/measure.py`` and
prints, per category: cases, cases whose outcome broke the rules (exit or
action), tracebacks, hangs, leaks, partial files, and unrecorded releases
(released files no log record names), plus totals.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile.corpus import CATEGORIES, build_corpus
from tests.hostile.measure import (
    enforce_args,
    leaks,
    leftovers,
    run_subprocess,
    unrecorded_releases,
)

COLUMNS = ("cases", "wrong", "tracebacks", "hangs", "leaks", "partial", "unrecorded")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per command (default 60)")
    parser.add_argument("--details", action="store_true", help="print every finding under the table")
    args = parser.parse_args()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    details: list[str] = []
    with tempfile.TemporaryDirectory(prefix="rspolicy-hostile-") as tmp:
        for case in build_corpus(Path(tmp) / "corpus"):
            row = counts[case.category]
            row["cases"] += 1
            log = case.folder / "audit.jsonl"
            run = run_subprocess(enforce_args(case, log), timeout=args.timeout)
            outdir = case.output_dir()
            wrong = run.exit_code not in case.expected_exit or any(
                d.get("action") not in case.expected_actions for d in run.decisions)
            found = {
                "wrong": int(wrong),
                "tracebacks": int("Traceback" in run.stdout + run.stderr),
                "hangs": int(run.timed_out),
                "leaks": int(bool([f for f in leaks(case, outdir) if ": left behind" not in f])),
                "partial": int(bool(leftovers(outdir))),
                "unrecorded": int(bool(unrecorded_releases(outdir, log))),
            }
            for key, value in found.items():
                row[key] += value
            if any(found.values()):
                details.append(f"{case.name}: " + ", ".join(k for k, v in found.items() if v)
                               + f" (exit {run.exit_code}; "
                               + "; ".join(f"{d.get('action')}" for d in run.decisions) + ")")
    print(f"{'category':<20}" + "".join(f"{c:>12}" for c in COLUMNS))
    totals = dict.fromkeys(COLUMNS, 0)
    for category in CATEGORIES:
        row = counts[category]
        print(f"{category:<20}" + "".join(f"{row[c]:>12}" for c in COLUMNS))
        for c in COLUMNS:
            totals[c] += row[c]
    print(f"{'total':<20}" + "".join(f"{totals[c]:>12}" for c in COLUMNS))
    if args.details:
        print()
        print("\n".join(details))
    return 0


if __name__ == "__main__":
    sys.exit(main())
