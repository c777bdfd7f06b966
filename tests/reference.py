"""An independent float64 reference for area averaging, for tests of whole rasters.

It shares no code with :mod:`rspolicy.resample`: per axis, a dense matrix of
the exact overlap of every output pixel with every input pixel (built from
:class:`fractions.Fraction` intervals), two float64 matrix products, and
rounding half to even. Where float64 leaves a mean within 1e-7 of a
half-integer, that pixel is recomputed in exact rational arithmetic, so ties
round as the exact mean says.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np


def overlaps(n: int, factor: Fraction) -> list[list[tuple[int, Fraction]]]:
    """For each output pixel of an axis of ``n`` inputs: (input index, covered length)."""
    out = []
    for j in range(math.ceil(n / factor)):
        lo, hi = j * factor, min((j + 1) * factor, Fraction(n))
        out.append([(i, min(Fraction(i + 1), hi) - max(Fraction(i), lo))
                    for i in range(math.floor(lo), math.ceil(hi))
                    if min(Fraction(i + 1), hi) - max(Fraction(i), lo) > 0])
    return out


def _matrix(n: int, factor: Fraction) -> tuple[np.ndarray, list[list[tuple[int, Fraction]]]]:
    spans = overlaps(n, factor)
    weights = np.zeros((len(spans), n))
    for j, pairs in enumerate(spans):
        for i, w in pairs:
            weights[j, i] = float(w)
    return weights, spans


def reference_average(pixels: np.ndarray, factors: Fraction | tuple[Fraction, Fraction]) -> np.ndarray:
    """The area average of integer ``pixels`` (2-D or bands x rows x cols), rounded half to even, as int64."""
    fr, fc = factors if isinstance(factors, tuple) else (factors, factors)
    stack = pixels[np.newaxis] if pixels.ndim == 2 else pixels
    rows, cols = stack.shape[-2:]
    wr, rspans = _matrix(rows, Fraction(fr))
    wc, cspans = _matrix(cols, Fraction(fc))
    area = np.outer(wr.sum(axis=1), wc.sum(axis=1))
    result = []
    for band in stack:
        mean = (wr @ band.astype(np.float64) @ wc.T) / area
        rounded = np.rint(mean)
        near_tie = np.abs(np.abs(mean - np.floor(mean)) - 0.5) < 1e-7
        for r, c in zip(*np.nonzero(near_tie), strict=True):
            total = sum(a * b * int(band[i, j]) for i, a in rspans[r] for j, b in cspans[c])
            weight = sum(a * b for _, a in rspans[r] for _, b in cspans[c])
            rounded[r, c] = round(Fraction(total) / weight)
        result.append(rounded.astype(np.int64))
    out = np.stack(result)
    return out[0] if pixels.ndim == 2 else out
