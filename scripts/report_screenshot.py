"""Make ``docs/report.png``: the HTML report of a batch over the sample data, as Chromium shows it.

Run from the repository root (needs Debian's ``chromium`` and ``pip install -e '.[test]'`` for Playwright)::

    python scripts/report_screenshot.py [OUT.png] [--html OUT.html]

The batch is ``rspolicy enforce`` over a copy of ``sample_data/`` with one damaged image beside it (so the
report has a blocked product to show first), run in a scratch folder so that paths read ``incoming/...``;
the report is ``rspolicy log report``. The screenshot is the top of the page (summary, blocked products, map,
the first quicklooks), 1280 pixels wide.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def build(folder: Path) -> Path:
    """Run the sample batch in ``folder`` and write its log's report; returns the page."""
    incoming = folder / "incoming"
    shutil.copytree(REPO / "sample_data", incoming, ignore=shutil.ignore_patterns("*.py", "*.md", "__pycache__"))
    # A damaged delivery: a GF-2 name on bytes that are not an image (blocked, with its reason).
    (incoming / "GF2_PMS1_E116.3_N40.1_20240105_L1A0009999999-PAN1.tiff").write_bytes(b"II*\0" + b"\0" * 64)
    env = {**os.environ, "XDG_STATE_HOME": str(folder / "state"), "XDG_CONFIG_HOME": str(folder / "config"),
           "RSPOLICY_LOG": "decisions.jsonl"}
    rspolicy = [sys.executable, "-m", "rspolicy"]
    subprocess.run([*rspolicy, "enforce", "incoming", "-o", "outgoing", "-q", "--recipient", "DE:DLR",
                    "--purpose", "flood mapping"], cwd=folder, env=env, check=False)
    subprocess.run([*rspolicy, "log", "report", "decisions.jsonl", "-o", "report.html"], cwd=folder, env=env,
                   check=True)
    return folder / "report.html"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", default=str(REPO / "docs" / "report.png"))
    parser.add_argument("--html", help="also keep the page here")
    parser.add_argument("--height", type=int, default=2300, help="pixels of the page to show")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rspolicy-report-"))
    try:
        page_path = build(folder)
        if args.html:
            shutil.copy(page_path, args.html)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(str(folder / "profile"), executable_path=CHROMIUM,
                                                            headless=True, args=ARGS,
                                                            viewport={"width": 1280, "height": args.height})
            try:
                page = context.new_page()
                page.goto(page_path.as_uri(), wait_until="load")
                page.screenshot(path=str(out), full_page=False)
            finally:
                context.close()
        print(f"wrote {out} ({out.stat().st_size} bytes)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
