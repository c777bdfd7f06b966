"""Audit log throughput: appends (fsync on/off, 1 and 2 processes) and verification.

Run from the repository root::

    python benchmarks/bench_audit.py              # full: verify a 100k-record log
    python benchmarks/bench_audit.py --quick      # smaller counts, a few seconds

Everything is written under a fresh folder in the system temp directory
(``tempfile``), removed at the end. Records are shaped like the decision
records the screen command writes (about 1 KB each).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rspolicy.audit import AuditLog, new_decision_id, utc_timestamp, verify


def record(i: int, worker: int = 0) -> dict[str, Any]:
    return {
        "decision_id": new_decision_id(),
        "timestamp": utc_timestamp(),
        "rspolicy": "0.1.0",
        "policy": {"name": "cnsa-2022", "version": "2022.1", "sha256": "ab" * 32},
        "input": {"path": f"/data/incoming/GF2_PMS1_E113.2_N23.1_20240101_L1A{i:010d}-PAN1.tiff",
                  "satellite": "GF-2", "sensor": "PMS1", "product_class": "panchromatic", "gsd_m": 0.81,
                  "evidence": [{"fact": "gsd_m", "value": 0.81, "source": "GF2_PMS1.xml", "field": "ImageGSD"},
                               {"fact": "satellite", "value": "GF2", "source": "GF2_PMS1.xml",
                                "field": "SatelliteID"}]},
        "result": {"action": "resample", "target_gsd_m": 2.0, "rule": "optical-pan-2m",
                   "reasons": ["panchromatic 0.81 m is finer than the 2 m export limit"], "warnings": []},
        "output": {"path": f"/data/outgoing/GF2_{i:010d}_2m.tiff", "sha256": "cd" * 32},
        "recipient": "Example Geodata GmbH", "purpose": "agricultural monitoring", "operator": "alice",
        "host": "screen-01", "worker": worker,
    }


def _append(path: str, count: int, fsync: bool, worker: int) -> None:
    log = AuditLog(path, fsync=fsync)
    for i in range(count):
        log.append(record(i, worker))
    log.close()


def bench_append(folder: Path, name: str, count: int, procs: int, fsync: bool) -> tuple[str, int, float]:
    path = folder / f"{name}.jsonl"
    start = time.perf_counter()
    if procs == 1:
        _append(str(path), count, fsync, 0)
    else:
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_append, args=(str(path), count // procs, fsync, w)) for w in range(procs)]
        for p in workers:
            p.start()
        for p in workers:
            p.join()
            if p.exitcode != 0:
                raise SystemExit(f"worker failed with {p.exitcode}")
    elapsed = time.perf_counter() - start
    result = verify([path])
    assert result.ok and result.records == (count // procs) * procs, result
    label = f"append, {procs} process{'es' if procs > 1 else ''}, fsync {'on' if fsync else 'off'}"
    return label, result.records, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--verify-records", type=int, default=None, help="records in the verified log")
    args = parser.parse_args()
    n_sync, n_nosync = (200, 2000) if args.quick else (1000, 20000)
    n_verify = args.verify_records or (10_000 if args.quick else 100_000)

    rows: list[tuple[str, str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="rspolicy-bench-") as tmp:
        folder = Path(tmp)
        for procs in (1, 2):
            for fsync, count in ((True, n_sync), (False, n_nosync)):
                label, done, secs = bench_append(folder, f"a{procs}{fsync}", count, procs, fsync)
                rows.append((label, f"{done:,}", f"{secs:.2f}", f"{done / secs:,.0f}", ""))

        path = folder / "verify.jsonl"
        start = time.perf_counter()
        _append(str(path), n_verify, False, 0)
        build = time.perf_counter() - start
        size_mb = os.path.getsize(path) / 1e6
        rows.append((f"append, 1 process, fsync off ({n_verify:,}-record build)", f"{n_verify:,}",
                     f"{build:.2f}", f"{n_verify / build:,.0f}", f"{size_mb / build:.1f}"))
        for strict in (True, False):
            start = time.perf_counter()
            result = verify([path], strict=strict)
            secs = time.perf_counter() - start
            assert result.ok and result.records == n_verify, result
            rows.append((f"verify {'(strict, re-canonicalise)' if strict else '(--fast, stored bytes)'}",
                         f"{n_verify:,}", f"{secs:.2f}", f"{n_verify / secs:,.0f}", f"{size_mb / secs:.1f}"))

    header = ("operation", "records", "seconds", "records/s", "MB/s")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"rspolicy audit log benchmark ({os.cpu_count()} CPUs, temp dir {tempfile.gettempdir()}, "
          f"~{size_mb * 1e6 / n_verify:.0f} bytes/record)")
    for i, row in enumerate([header, *rows]):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
