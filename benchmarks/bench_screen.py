"""How long ``screen`` takes: a full-size L1A scene, a delivery package, the sample folder.

Screening reads headers only, so a 1.6 GB GF-2 PAN L1A screens as fast as
``gdalinfo`` reads its header. Prints a table; run from the repository root:

    python benchmarks/bench_screen.py                 # this tree
    python benchmarks/bench_screen.py --against REV   # and an earlier commit, in the same run

``--against`` checks REV out into a temporary git worktree and measures both
trees in turn, in fresh processes, on the same files (the earlier tree's own
``sample_data``), alternating rounds so that a machine busy for a moment
weighs on both; the table then shows each tree's best and their ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rasterio

from rspolicy.samples.gf_optical import OpticalScene, linear_rpc, synthetic_pixels, write_rpb, write_sidecar

REPO = Path(__file__).resolve().parents[1]

#: Run in a fresh interpreter with one tree first on sys.path: prints {input: best seconds} as JSON.
_MEASURE = r"""
import json, sys, time
from pathlib import Path
repo, scene, repeat = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, repo)
import rspolicy
assert rspolicy.__file__.startswith(repo), rspolicy.__file__
from rspolicy.policy import load_policy
from rspolicy.screen import screen
policy = load_policy()
package = next(Path(repo, "sample_data").glob("*.tar.gz"))
def best(paths, n):
    screen(paths, policy)
    times = []
    for _ in range(n):
        start = time.perf_counter(); screen(paths, policy); times.append(time.perf_counter() - start)
    return min(times)
print(json.dumps({"l1a": best([scene], repeat), "package": best([package], repeat),
                  "sample_data": best([Path(repo, "sample_data")], max(3, repeat // 3))}))
"""


def full_size_l1a(folder: Path) -> Path:
    """A GF-2 PAN L1A of the real size, 29200 x 27620 uint16 (1.6 GB of pixels, written in full)."""
    name = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1"
    scene = OpticalScene(width=29200, height=27620)
    write_sidecar(folder / f"{name}.xml", scene)
    write_rpb(folder / f"{name}.rpb", linear_rpc(scene.center_lon, scene.center_lat, 0.81, 29200, 27620))
    path = folder / f"{name}.tiff"
    block = synthetic_pixels(1, 1024, 29200, seed=1)
    with rasterio.open(path, "w", driver="GTiff", width=29200, height=27620, count=1, dtype="uint16") as dst:
        for row0 in range(0, 27620, 1024):
            rows = min(1024, 27620 - row0)
            dst.write(block[:, :rows], window=((row0, row0 + rows), (0, 29200)))
    return path


def best_of(fn: Callable[[], object], repeat: int = 30) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(repo: Path, scene: Path, repeat: int) -> dict[str, float]:
    """Best seconds per input for the tree at ``repo``, in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(repo), str(scene), str(repeat)],
                         capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REV", help="also measure this commit, in the same run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per tree (default 3)")
    parser.add_argument("--repeat", type=int, default=30, help="screens per input and round (default 30)")
    args = parser.parse_args()
    labels = {"l1a": "GF-2 PAN L1A 29200x27620 (1.6 GB)", "package": "sample GF-2 package (0.5 MB)",
              "sample_data": "sample_data/ (15 products)"}
    with tempfile.TemporaryDirectory(prefix="rspolicy-bench-") as tmp:
        scene = full_size_l1a(Path(tmp))
        trees = {"this tree": REPO}
        if args.against:
            base = Path(tmp) / "base"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(base), args.against],
                           check=True)
            trees[args.against] = base
        try:
            best: dict[str, dict[str, float]] = {name: {} for name in trees}
            for _ in range(args.rounds):
                for name, repo in trees.items():
                    for key, seconds in measure(repo, scene, args.repeat).items():
                        best[name][key] = min(seconds, best[name].get(key, seconds))
            extra: list[tuple[str, str, float]] = []
            if shutil.which("gdalinfo"):
                extra.append((labels["l1a"], "gdalinfo (header only, new process)", best_of(
                    lambda: subprocess.run(["gdalinfo", str(scene)], capture_output=True, check=True), 5)))
            extra.append((labels["l1a"], "rspolicy screen (new process)", best_of(
                lambda: subprocess.run([sys.executable, "-m", "rspolicy", "screen", str(scene)],
                                       capture_output=True, check=False), 5)))
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees[args.against])],
                               check=False)
    names = list(trees)
    header = f"{'input':<36} " + " ".join(f"{name + ' ms':>14}" for name in names)
    print(header + (f" {'ratio':>7}" if len(names) == 2 else ""))
    for key, label in labels.items():
        row = f"{label:<36} " + " ".join(f"{best[name][key] * 1e3:>14.2f}" for name in names)
        if len(names) == 2:
            row += f" {best[names[0]][key] / best[names[1]][key]:>7.2f}"
        print(row)
    print()
    print(f"{'input':<36} {'method':<38} {'best ms':>9}")
    for what, how, seconds in extra:
        print(f"{what:<36} {how:<38} {seconds * 1e3:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
