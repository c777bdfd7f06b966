"""Throughput of rspolicy's area-averaging kernel against OpenCV and numpy.

Run ``python benchmarks/bench_resample.py`` (``--size 2000`` for a quick run).
Uses the ``bench`` extra opencv-python-headless; without it the OpenCV rows
are skipped.

Every case is a generated scene held in memory (12-bit data unless the case
says 16-bit, as most sensors deliver); each method is run once untimed, then
timed on the whole scene, best of ``--repeat`` runs, the methods of a case
interleaved so that a noisy machine penalises them alike. Columns:

``MP/s``
    input megapixels per second (wall clock).
``x read``
    that rate over the rate of one plain read pass of the same array (``max``
    over a uint64 view, split over the threads), the memory-bandwidth bound.
``max err``
    largest absolute difference from an exact float64 area average, computed
    on a top-left crop of ``--crop`` input pixels (a whole number of periods,
    so the crop's output pixels are complete) to keep the reference cheap.
``temp MB``
    peak of numpy allocations beyond the result during one extra run
    (tracemalloc): the kernel's temporaries. Each thread's scratch arrays
    are kept between calls, so after the warm-up run they are not counted
    (a few MB per thread whatever the scene size).

At integer factors the ``numpy floor`` row is a bound, not a kernel: one
reduction over the input and one store of the output per unit of rows, no
arithmetic, threaded as the kernel is. No exact numpy kernel makes fewer
passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import file_to_file  # the sibling script: the file-to-file table

from rspolicy.resample import area_average, as_fraction, output_shape

try:
    import cv2
except ImportError:  # pragma: no cover - bench extra
    cv2 = None

THREADS = 2


@dataclass
class Case:
    name: str
    make: Callable[[], np.ndarray]
    factor: Fraction
    sar_mode: str | None = None


@dataclass
class Row:
    case: str
    method: str
    mps: float
    ratio: float
    err: float | None
    temp_mb: float | None
    note: str = ""


# --------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------


def _field(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth float32 pattern in [0, 1): sums of a few separable waves."""
    y = np.linspace(0, 1, rows, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, cols, dtype=np.float32)[None, :]
    f = np.zeros((rows, cols), np.float32)
    for _ in range(3):
        fy, fx, ph = rng.uniform(2, 40), rng.uniform(2, 40), rng.uniform(0, 6)
        f += np.sin(fy * y + ph) * np.cos(fx * x - ph)
    f -= f.min()
    f /= f.max() + 1e-6
    return f


def pan(side: int, bits: int = 12, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = (1 << bits) - 1
    img = _field(side, side, rng)
    img *= top * 0.9
    noise = rng.integers(0, max(2, top // 10), (side, side), dtype=np.uint16)
    out = img.astype(np.uint16)
    out += noise
    return out


def ms(side: int, bands: int = 4, seed: int = 2) -> np.ndarray:
    return np.stack([pan(side, bits=11, seed=seed + b) for b in range(bands)])


def sar(side: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigma = 0.2 + _field(side, side, rng) * 50
    z = np.empty((side, side), np.complex64)
    z.real = rng.standard_normal((side, side), dtype=np.float32) * sigma
    z.imag = rng.standard_normal((side, side), dtype=np.float32) * sigma
    return z


# --------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------


def m_rspolicy(a: np.ndarray, f: Fraction, mode: str | None) -> np.ndarray:
    return area_average(a, f, sar_mode=mode, threads=THREADS)  # type: ignore[arg-type]


def _cv2_plane(plane: np.ndarray, f: Fraction) -> np.ndarray:
    rows, cols = output_shape(plane.shape[0], plane.shape[1], f)
    return cv2.resize(plane, (cols, rows), interpolation=cv2.INTER_AREA)


def m_cv2(a: np.ndarray, f: Fraction, mode: str | None) -> np.ndarray:
    if mode == "intensity":
        power = np.empty(a.shape, np.float32)
        np.multiply(a.real, a.real, out=power)
        power += a.imag * a.imag
        return _cv2_plane(power, f)
    if a.ndim == 3:
        return np.stack([_cv2_plane(band, f) for band in a])
    return _cv2_plane(a, f)


def m_numpy(a: np.ndarray, f: Fraction, mode: str | None) -> np.ndarray:
    k = int(f)
    if mode == "intensity":
        a = a.real.astype(np.float64) ** 2 + a.imag.astype(np.float64) ** 2
    rows, cols = (a.shape[-2] // k) * k, (a.shape[-1] // k) * k
    a = a[..., :rows, :cols]
    return a.reshape(*a.shape[:-2], rows // k, k, cols // k, k).mean(axis=(-3, -1))


FLOOR = "numpy floor: read + store"


def m_numpy_floor(a: np.ndarray, f: Fraction, mode: str | None) -> np.ndarray:
    """No arithmetic: per unit of rows, one reduction over the input and one store of the output.

    Those two passes are fewer than any numpy kernel can make (an exact one needs at least a pass that
    writes an intermediate and one that rounds and stores), run the way the kernel runs them: units of
    about 2 MB shared by THREADS threads, into a fresh output array. Its rate bounds what a numpy kernel
    can reach on this machine.
    """
    k = int(f)
    out = np.empty((*a.shape[:-2], a.shape[-2] // k, a.shape[-1] // k), a.dtype)
    planes = a.reshape(-1, *a.shape[-2:])
    dest = out.reshape(-1, *out.shape[-2:])
    rows = max(k, (2 << 20) // (a.shape[-1] * a.itemsize) // k * k)
    units = [(b, r) for b in range(planes.shape[0]) for r in range(0, planes.shape[1] - k + 1, rows)]

    def one(unit: tuple[int, int]) -> None:
        b, r = unit
        planes[b, r : r + rows].max()
        dest[b, r // k : (r + rows) // k] = 0

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, units))
    return out


def read_pass(a: np.ndarray) -> None:
    flat = a.reshape(-1)
    step = -(-flat.size // THREADS)
    chunks = [flat[i : i + step] for i in range(0, flat.size, step)]

    def one(c: np.ndarray) -> Any:
        if c.nbytes % 8 == 0 and c.ctypes.data % 8 == 0:
            return c.view(np.uint64).max()
        return c.view(np.uint8).max()

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(one, chunks))


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def _weights(n: int, f: Fraction) -> np.ndarray:
    """Dense exact overlap matrix (outputs x inputs) of an axis, float64."""
    p, q = f.numerator, f.denominator
    n_out = -(-n * q // p)
    w = np.zeros((n_out, n))
    for j in range(n_out):
        lo, hi = j * p, min((j + 1) * p, n * q)
        for i in range(lo // q, -(-hi // q)):
            w[j, i] = (min(hi, (i + 1) * q) - max(lo, i * q)) / q
    return w


def reference(a: np.ndarray, f: Fraction, mode: str | None) -> np.ndarray:
    x = a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
    if mode == "intensity":
        x = (x * x.conj()).real
    wr, wc = _weights(x.shape[-2], f), _weights(x.shape[-1], f)
    out = wr @ x @ wc.T
    return out / np.outer(wr.sum(1), wc.sum(1))


def crop_error(out: np.ndarray, a: np.ndarray, f: Fraction, mode: str | None, crop: int, integer_only: bool) -> float:
    p, q = f.numerator, f.denominator
    n_in = max(p, (min(crop, a.shape[-1], a.shape[-2]) // p) * p)
    n_out = n_in * q // p
    ref = reference(a[..., :n_in, :n_in], f, mode)
    got = out[..., :n_out, :n_out].astype(np.float64)
    if integer_only:
        ref = ref[..., : got.shape[-2], : got.shape[-1]]
    return float(np.abs(got - ref).max())


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def temp_mb(fn: Callable[[], np.ndarray]) -> float:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base - result.nbytes) / 2**20


def run_case(case: Case, repeat: int, crop: int) -> list[Row]:
    a = case.make()
    methods: list[tuple[str, Callable[..., np.ndarray], str]] = [("rspolicy area_average", m_rspolicy, "")]
    if cv2 is not None:
        note = "per band" if a.ndim == 3 else ""
        if case.sar_mode == "intensity":
            note = "|z|^2 by numpy first"
        methods.append(("cv2.resize INTER_AREA", m_cv2, note))
    if case.factor.denominator == 1:
        methods.append(("numpy reshape-mean", m_numpy, "1 thread, float64 out"))
        if case.sar_mode is None:
            methods.append((FLOOR, m_numpy_floor, f"no arithmetic, {THREADS} threads: a bound, not a kernel"))
    best: dict[str, float] = {}
    read_best = float("inf")
    outputs: dict[str, np.ndarray] = {}
    for _name, fn, _note in methods:
        fn(a, case.factor, case.sar_mode)  # warm-up: imports, thread pools, first-touch of code paths
    for _ in range(repeat):
        t0 = time.perf_counter()
        read_pass(a)
        read_best = min(read_best, time.perf_counter() - t0)
        for name, fn, _note in methods:
            t0 = time.perf_counter()
            out = fn(a, case.factor, case.sar_mode)
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            outputs[name] = out
            del out
    mpix = a.shape[-1] * a.shape[-2] * (a.shape[0] if a.ndim == 3 else 1) / 1e6
    read_rate = mpix / read_best
    rows = [Row(case.name, "one read pass (baseline)", read_rate, 1.0, None, None,
                f"max over uint64, {THREADS} threads")]
    for name, fn, note in methods:
        err = None if name == FLOOR else crop_error(outputs[name], a, case.factor, case.sar_mode, crop,
                                                      name.startswith("numpy"))
        temp = temp_mb(lambda fn=fn: fn(a, case.factor, case.sar_mode)) if name.startswith("rspolicy") else None
        rate = mpix / best[name]
        rows.append(Row(case.name, name, rate, rate / read_rate, err, temp, note))
    outputs.clear()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000, help="PAN side in pixels (MS is half, SAR 0.8 of it)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method, best kept")
    parser.add_argument("--crop", type=int, default=600, help="side of the crop checked against float64")
    parser.add_argument("--only", default="", help="run only cases whose name contains this")
    parser.add_argument("--no-files", action="store_true", help="skip the file-to-file table")
    parser.add_argument("--big", action="store_true", help="file to file: also a 30000^2 scene (peak RSS)")
    args = parser.parse_args(argv)
    if cv2 is not None:
        cv2.setNumThreads(THREADS)
    s = args.size
    ms_side, sar_side = s // 2, (s * 4) // 5
    cases = [
        Case(f"PAN {s}^2 u16 12-bit 0.3->0.5 m", lambda: pan(s), as_fraction(0.5 / 0.3)),
        Case(f"PAN {s}^2 u16 12-bit 0.25->0.5 m", lambda: pan(s), as_fraction(0.5 / 0.25)),
        Case(f"PAN {s}^2 u16 16-bit 0.25->0.5 m", lambda: pan(s, bits=16), as_fraction(0.5 / 0.25)),
        Case(f"PAN {s}^2 u16 12-bit 0.4->0.5 m", lambda: pan(s), as_fraction(0.5 / 0.4)),
        Case(f"MS 4x{ms_side}^2 u16 x5/3", lambda: ms(ms_side), Fraction(5, 3)),
        Case(f"MS 4x{ms_side}^2 u16 x2", lambda: ms(ms_side), Fraction(2)),
        Case(f"SAR {sar_side}^2 c64 x2 intensity", lambda: sar(sar_side), Fraction(2), "intensity"),
    ]
    cases = [c for c in cases if args.only in c.name]
    print(f"# {os.cpu_count()} CPUs, {THREADS} threads; numpy {np.__version__}"
          + (f", OpenCV {cv2.__version__}" if cv2 is not None else ", no OpenCV"))
    print(f"# load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    rows: list[Row] = []
    header = f"{'case':36s} {'method':26s} {'MP/s':>8s} {'x read':>7s} {'max err':>9s} {'temp MB':>8s}  note"
    print(header)
    print("-" * len(header))
    for case in cases:
        for row in run_case(case, args.repeat, args.crop):
            rows.append(row)
            err = "" if row.err is None else f"{row.err:.3g}"
            temp = "" if row.temp_mb is None else f"{row.temp_mb:.0f}"
            print(f"{row.case:36s} {row.method:26s} {row.mps:8.0f} {row.ratio:7.2f} {err:>9s} {temp:>8s}  {row.note}",
                  flush=True)
        print()
    if not args.no_files:
        print("# file to file (benchmarks/file_to_file.py): wall time of whole commands, best of --repeat")
        file_to_file.print_table(file_to_file.run_cases(args.size, args.repeat, big=args.big))
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
