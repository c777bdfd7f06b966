"""The HTML report at scale: a 1000-decision log, its page's size, build time and render time in Chromium.

Run from the repository root::

    python benchmarks/bench_report.py                     # 1000 decisions, the sample data's mix of outcomes
    python benchmarks/bench_report.py --degraded 1.0      # every decision degraded: 2000 quicklooks
    python benchmarks/bench_report.py --decisions 200 --rounds 1

The log is made from a real ``enforce`` run over ``sample_data/`` (15 products): its decision records are
repeated, each copy with a new decision id, files at paths of its own (a degraded one's source and output
copied there) and its footprint moved somewhere else on the Earth, and appended to a fresh chained log (with
the ``released`` records that confirm them), so the report reads real records and real files. ``--degraded``
sets the share of degraded decisions (default: the sample data's, 4 of 15 decided ones). Render times come from Chromium
(Debian's, driven by Playwright; skipped without them): the navigation's ``loadEventEnd`` and the first
contentful paint, best of ``--rounds`` fresh pages, and the time the table filter takes to hide rows.
Everything is written under a fresh folder in the system temp directory, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import shapely
from shapely import affinity

from rspolicy.audit import CHAIN_FIELDS, AuditLog, new_decision_id
from rspolicy.htmlreport import log_report_html, write_html_report
from rspolicy.records import Requester, released_record

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def sample_records(folder: Path) -> list[dict[str, Any]]:
    """The decision records of a real enforce run over sample_data/."""
    log = folder / "sample.jsonl"
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "XDG_CONFIG_HOME": str(folder / "config")}
    subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(REPO / "sample_data"), "-o",
                    str(folder / "out"), "--log", str(log), "-q"], check=True, env=env)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    return [r for r in records if "event" not in r]


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # render times are left out without it
    sync_playwright = None


def _moved(wkt: str, dx: float, dy: float) -> str:
    return str(affinity.translate(shapely.from_wkt(wkt), dx, dy).wkt)


def _relocate(rec: dict[str, Any], folder: Path, copy: bool) -> None:
    """Give a record's files paths of their own under ``folder`` (copied there when ``copy``), as a real log has."""
    mapping: dict[str, str] = {}
    for side, files in (("in", rec["input"]["files"]), ("out", rec.get("output", {}).get("files", []))):
        for f in files:
            if "!" in f["path"]:
                continue
            target = folder / side / Path(f["path"]).name
            mapping[f["path"]] = str(target)
            if copy:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f["path"], target)
            f["path"] = str(target)
    rec["input"]["path"] = mapping.get(rec["input"]["path"], rec["input"]["path"])
    for e in rec["result"]["evidence"]:
        e["source"] = mapping.get(e["source"], e["source"])


def synthetic_log(path: Path, templates: list[dict[str, Any]], count: int, degraded: float | None,
                  seed: int = 14) -> tuple[int, int]:
    """``count`` decisions from the templates, chained in a fresh log; returns (records, degraded decisions).

    Every copy gets paths of its own; a degraded one gets its files copied there, so its quicklooks read
    (and hash) files of their own.
    """
    rng = random.Random(seed)
    resampled = [t for t in templates if t["result"]["action"] == "resample"]
    others = [t for t in templates if t["result"]["action"] != "resample"]
    log = AuditLog(path, fsync=False)
    requester = Requester("bench", "bench-host", "ESA", "benchmark")
    written = n_degraded = 0
    for i in range(count):
        if degraded is None:
            template = templates[i % len(templates)]
        else:
            template = rng.choice(resampled) if rng.random() < degraded else rng.choice(others)
        rec = json.loads(json.dumps({k: v for k, v in template.items() if k not in CHAIN_FIELDS}))
        rec["decision_id"] = new_decision_id()
        is_degraded = rec["result"]["action"] == "resample"
        _relocate(rec, path.parent / "products" / f"{i:04d}", copy=is_degraded)
        dx, dy = rng.uniform(-60, 60), rng.uniform(-25, 25)
        for e in rec["result"]["evidence"]:
            if e["fact"] == "footprint_wkt":
                e["value"] = _moved(e["value"], dx, dy)
        log.append(rec)
        written += 1
        n_degraded += is_degraded
        if rec.get("output", {}).get("files"):
            log.append(released_record(rec["decision_id"], rec["input"]["path"], requester))
            written += 1
    log.close()
    return written, n_degraded


def render_times(page_path: Path, rounds: int) -> dict[str, float] | None:
    if sync_playwright is None or not os.path.exists(CHROMIUM):
        return None
    best: dict[str, float] = {}
    with sync_playwright() as pw:
        for r in range(rounds):
            profile = tempfile.mkdtemp(prefix="bench-report-profile-")
            context = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                            args=ARGS, viewport={"width": 1280, "height": 900})
            try:
                page = context.new_page()
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                timing = page.evaluate("""() => {
                    const nav = performance.getEntriesByType('navigation')[0];
                    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                    const box = document.getElementById('filter');
                    const t0 = performance.now();
                    box.value = 'no-such-product';
                    box.dispatchEvent(new Event('input'));
                    const hidden = document.querySelectorAll('tr.row[hidden]').length;
                    const filter = performance.now() - t0;
                    return {load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd,
                            fcp: fcp ? fcp.startTime : NaN, filter: filter, hidden: hidden};
                }""")
            finally:
                context.close()
                shutil.rmtree(profile, ignore_errors=True)
            for key in ("load", "dcl", "fcp", "filter"):
                best[key] = min(best.get(key, float("inf")), float(timing[key]))
            best["hidden"] = float(timing["hidden"])
            print(f"  round {r + 1}: load {timing['load']:.0f} ms, first paint {timing['fcp']:.0f} ms, "
                  f"filter {timing['filter']:.0f} ms", file=sys.stderr)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--degraded", type=float, default=None, help="share of degraded decisions (0..1)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        templates = sample_records(folder)
        log = folder / "decisions.jsonl"
        records, degraded = synthetic_log(log, templates, args.decisions, args.degraded)
        start = time.perf_counter()
        html = log_report_html([log], base_dir=REPO)
        build = time.perf_counter() - start
        page = folder / "report.html"
        write_html_report(page, html)
        size = page.stat().st_size
        images = html.count('data-role="')
        image_bytes = sum(len(part.split('"', 1)[0]) for part in html.split('src="data:image/webp;base64,')[1:])
        times = render_times(page, args.rounds)
        print()
        print("| decisions | records | degraded | quicklooks | page MB | of which images MB | build s | "
              "load ms | first paint ms | filter ms |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        render = (f"{times['load']:.0f} | {times['fcp']:.0f} | {times['filter']:.0f}" if times
                  else "(no browser) | | ")
        print(f"| {args.decisions} | {records} | {degraded} | {images} | {size / 1e6:.2f} | {image_bytes / 1e6:.2f} "
              f"| {build:.2f} | {render} |")
        if times is not None and int(times["hidden"]) != args.decisions:
            print(f"warning: the filter hid {int(times['hidden'])} of {args.decisions} rows", file=sys.stderr)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
