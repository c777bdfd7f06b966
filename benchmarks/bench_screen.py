"""How long ``screen`` takes: a full-size L1A scene, a delivery package, the sample folder.

Screening reads headers only, so a 1.6 GB GF-2 PAN L1A screens as fast as
``gdalinfo`` reads its header. Prints a table; run from the repository root:

    python benchmarks/bench_screen.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import rasterio

from rspolicy.policy import load_policy
from rspolicy.samples.gf_optical import OpticalScene, linear_rpc, synthetic_pixels, write_rpb, write_sidecar
from rspolicy.screen import screen

REPO = Path(__file__).resolve().parents[1]


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


def main() -> int:
    policy = load_policy()
    rows: list[tuple[str, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="rspolicy-bench-") as tmp:
        scene = full_size_l1a(Path(tmp))
        size_gb = scene.stat().st_size / 1e9
        rows.append((f"GF-2 PAN L1A 29200x27620 ({size_gb:.1f} GB)", "rspolicy.screen() in process",
                     best_of(lambda: screen([scene], policy))))
        if shutil.which("gdalinfo"):
            rows.append((f"GF-2 PAN L1A 29200x27620 ({size_gb:.1f} GB)", "gdalinfo (header only, new process)",
                         best_of(lambda: subprocess.run(["gdalinfo", str(scene)], capture_output=True, check=True))))
        rows.append((f"GF-2 PAN L1A 29200x27620 ({size_gb:.1f} GB)", "rspolicy screen (new process)",
                     best_of(lambda: subprocess.run([sys.executable, "-m", "rspolicy", "screen", str(scene)],
                                                    capture_output=True, check=False), 5)))
    package = next((REPO / "sample_data").glob("*.tar.gz"))
    rows.append((f"sample GF-2 package ({package.stat().st_size / 1e6:.1f} MB)", "rspolicy.screen() in process",
                 best_of(lambda: screen([package], policy))))
    rows.append(("sample_data/ (15 products)", "rspolicy.screen() in process",
                 best_of(lambda: screen([REPO / "sample_data"], policy))))
    print(f"{'input':<44} {'method':<38} {'best ms':>9}")
    for what, how, seconds in rows:
        print(f"{what:<44} {how:<38} {seconds * 1e3:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
