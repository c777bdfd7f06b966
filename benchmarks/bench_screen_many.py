"""Screening many small products, and the command's start-up, against a bare rasterio loop and GDAL.

Generates ``--products`` small 0.3 m PAN GeoTIFFs (the batch benchmark's
products) in one folder and prints two tables:

* throughput: products per second and CPU milliseconds per product (this
  process and its worker processes together) for ``screen()`` with one and
  with every core, against a bare ``rasterio.open`` + ``tags()`` loop over the
  same files, plain and at its best (GDAL settings entered once, no
  directory listing on open: what rspolicy's reads use). Each is the best of
  ``--rounds`` warm passes, so start-up is not in it: the marginal cost.
* start-up: wall seconds of a new process for ``rspolicy --help``,
  ``rspolicy log verify`` of a small log, importing what ``screen`` imports,
  and ``rspolicy screen`` of one product, beside ``gdalinfo`` and
  ``rio info`` of the same file.

Run from the repository root::

    python benchmarks/bench_screen_many.py [--products 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_batch import make_products

from rspolicy.isolation import shutdown
from rspolicy.policy import load_policy
from rspolicy.readers.gdalopen import READ_ENV
from rspolicy.screen import screen

RSPOLICY = str(Path(sys.executable).with_name("rspolicy"))


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Best wall seconds and the CPU seconds of that round, over ``rounds`` warm runs."""
    fn()
    results = []
    for _ in range(rounds):
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        fn()
        results.append((time.perf_counter() - wall0, cpu_seconds() - cpu0))
    return min(results)


def new_process(cmd: list[str], repeat: int = 7) -> float:
    """Best wall seconds of a command in a new process, as an installed tool runs: with its bytecode cached.

    (A sandbox may set PYTHONDONTWRITEBYTECODE, which would charge compiling rspolicy's modules to every
    start; the first of the runs writes the cache.)
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times = []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False, env=env)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--size", type=int, default=64, help="pixels per side (default 64)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    policy = load_policy()
    with tempfile.TemporaryDirectory(prefix="rspolicy-bench-") as tmp:
        folder = Path(tmp) / "products"
        paths = make_products(folder, args.products, args.size)

        def bare() -> None:
            for path in paths:
                with rasterio.open(path) as ds:
                    ds.tags()

        def bare_best() -> None:
            with rasterio.Env(**READ_ENV):
                for path in paths:
                    with rasterio.open(path, driver="GTiff") as ds:
                        ds.tags()

        def screening(jobs: int) -> Callable[[], object]:
            def run() -> None:
                decisions = screen([folder], policy, jobs=jobs)
                # Ends (and reaps) the worker processes, so that their CPU time is counted.
                shutdown()
                if len(decisions) != len(paths):
                    sys.exit(f"screen found {len(decisions)} products, expected {len(paths)}")
            return run

        rows = [("rasterio.open + tags(), plain", *best(bare, args.rounds)),
                ("rasterio.open + tags(), at its best", *best(bare_best, args.rounds)),
                ("rspolicy screen(), jobs=1", *best(screening(1), args.rounds))]
        if cores > 1:
            rows.append((f"rspolicy screen(), jobs={cores}", *best(screening(cores), args.rounds)))
        print(f"{args.products} products of {args.size} x {args.size} pixels, one folder; best of {args.rounds} "
              f"warm passes, {cores} cores")
        print(f"{'method':<40} {'products/s':>11} {'wall ms/product':>16} {'CPU ms/product':>15}")
        for label, wall, cpu in rows:
            print(f"{label:<40} {args.products / wall:>11.0f} {wall / args.products * 1e3:>16.3f} "
                  f"{cpu / args.products * 1e3:>15.3f}")

        one = paths[0]
        log = Path(tmp) / "decisions.jsonl"
        subprocess.run([RSPOLICY, "screen", str(one), "--log", str(log)], capture_output=True, check=False)
        startup = [("rspolicy --help", new_process([RSPOLICY, "--help"])),
                   ("rspolicy log verify (one record)", new_process([RSPOLICY, "log", "verify", str(log)])),
                   ("python -c 'import rspolicy.cli.screen'",
                    new_process([sys.executable, "-c", "import rspolicy.cli.screen"])),
                   ("python -c 'import rasterio, pyproj'",
                    new_process([sys.executable, "-c", "import rasterio, pyproj"])),
                   ("rspolicy screen ONE.tif", new_process([RSPOLICY, "screen", str(one)]))]
        if shutil.which("gdalinfo"):
            startup.append(("gdalinfo ONE.tif", new_process(["gdalinfo", str(one)])))
        rio = Path(sys.executable).with_name("rio")
        if rio.exists():
            startup.append(("rio info ONE.tif", new_process([str(rio), "info", str(one)])))
        print()
        print(f"{'new process':<40} {'best s':>8}")
        for label, seconds in startup:
            print(f"{label:<40} {seconds:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
