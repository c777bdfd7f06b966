"""Exact area-weighted downsampling: the kernel that degrades too-fine imagery.

Grid
----
A factor ``f`` (per axis, ``f >= 1``) makes every output pixel exactly ``f``
input pixels wide. The top-left corner of the grid stays where it is, so
output pixel ``j`` covers the input interval ``[j*f, (j+1)*f)`` along its
axis, and there are ``ceil(n / f)`` output pixels: the output covers the
whole input. The last output pixel of an axis may reach past the input's
edge; it averages only the part it covers (its weights are renormalised over
that part), so edge pixels are neither darkened nor dropped. A caller who
updates a geotransform scales the pixel size by ``f`` and keeps the origin.

Weights
-------
Each input pixel contributes to an output pixel with the fraction of it that
the output pixel covers, independently per axis; the 2-D weight is the
product. Factors are handled as exact rationals ``p/q`` (see
:func:`as_fraction`): ``q`` output pixels cover exactly ``p`` input pixels,
so one small ``(p, q)`` matrix of overlaps describes the whole axis. Scaled by
``q`` every weight is an integer, and the kernel contracts row strips with
those matrices (BLAS) rather than gathering pixels. Integer factors reduce to
plain block sums.

Values
------
* Integer rasters come back in their own dtype, rounded to nearest with ties
  to even (as :func:`numpy.rint`): ties are frequent (a quarter of all 2x2
  sums) and rounding them up would brighten a scene by 1/8 DN. The result
  is the correctly rounded exact mean: sums are formed in float32 only when
  every partial sum is an exactly representable integer and the final
  division cannot cross a rounding boundary, otherwise in float64 (exact for
  every practical factor; see ``_exact_in``). The exact mean of in-range
  values is in range, so nothing is clipped in practice; values are clipped
  to the dtype's range wherever exactness is not proven.
* Float rasters keep their dtype; sums are formed in float64, so the result is
  the float64 mean rounded once to the output dtype.
* 64-bit integer rasters are refused: float64 cannot average them exactly.

Invalid pixels
--------------
Pixels equal to ``nodata``, pixels where ``mask`` is False (or masked in a
:class:`numpy.ma.MaskedArray`) and non-finite values (NaN, +-inf: no
radiometry to average) of float or complex rasters are left out of the mean
and the weights are renormalised over the valid part. An output pixel with
no valid input gets ``nodata``, or NaN for floats when ``nodata`` is None; an
integer raster with masked pixels therefore needs a ``nodata`` value.

SAR
---
Complex input must say how it is to be averaged (``sar_mode``):

``"coherent"``
    complex mean of the samples; returns the input's complex dtype. Keeps
    phase, so only meaningful for interferometric work.
``"intensity"``
    mean of ``|z|**2``; returns real power (float32 for complex64, float64 for
    complex128). This is the multilook of detected imagery.
``"amplitude"``
    for detected real amplitude input: averages in power (mean of ``a**2``)
    and returns amplitude ``sqrt(mean)`` in the input dtype (integers rounded
    as above), so speckle statistics are not biased by averaging amplitudes.

Performance
-----------
Bands are cut into row units of whole periods, about 1 MB each, processed
by a thread pool (numpy releases the GIL in its loops and in BLAS). A unit is
converted to the accumulation dtype, contracted along rows (one small matmul
per period, or row sums for integer factors) and then along columns (one
matmul per row over all its periods, or strided sums), divided and stored:
temporaries stay unit-sized whatever the raster size. Factor 2 on 8/16-bit
integers skips the float conversion and sums packed pixel pairs as integer
words, with a cheaper variant for data of at most 14 bits.

Streaming
---------
:func:`period` gives ``(p, q)`` for an axis. Processing the rows of a raster
in strips of ``p * k`` input rows (any ``k >= 1``, the last strip whatever
remains) yields ``q * k`` output rows per strip, and the concatenated strips
are bit-for-bit the result of processing the whole raster: no state crosses
a strip boundary, and every computation is laid out relative to period
boundaries so it is repeated identically.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Literal, TypeAlias, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rspolicy.errors import ResampleError

__all__ = [
    "MAX_DENOMINATOR",
    "FactorLike",
    "SarMode",
    "area_average",
    "as_fraction",
    "output_shape",
    "period",
]

#: One axis' factor: a number >= 1 (int, float or :class:`fractions.Fraction`).
FactorLike: TypeAlias = int | float | Fraction | numbers.Real
SarMode: TypeAlias = Literal["coherent", "intensity", "amplitude"]

#: Largest denominator :func:`as_fraction` returns by default. Big enough that
#: any float is honoured to within float precision (or rounded up by less than
#: 1e-7 relative), small enough that the integer arithmetic on the grid stays
#: well inside int64.
MAX_DENOMINATOR: Final = 2**24

_A: TypeAlias = NDArray[Any]

# Tuning. A "unit" is the piece of one band that one task converts and
# contracts at once; it should stay in a core's L2 cache.
_UNIT_BYTES: Final = 1 << 20
# Row periods up to this long are processed several periods per unit with
# one stacked matmul per weight group; longer ones one group at a time.
_STACK_MAX_P: Final = 32
# Outputs per weight group: the dense group matrix costs 2*group flops per
# input pixel, so groups are kept small for long periods.
_GROUP_OUT: Final = 16
# Input rows converted at once when one output row needs many input rows.
_ROW_CHUNK: Final = 64
# OpenBLAS runs a gemm on its own threads once m*n*k reaches 4 * 65536;
# inside our worker threads that would oversubscribe the cores, so every
# matmul is cut below it.
_BLAS_MNK: Final = 1 << 18
# Below this many input pixels a thread pool costs more than it saves.
_INLINE_PIXELS: Final = 1 << 18


class _Helpers:
    """Helper threads, kept for the life of the process, one pool per size.

    A streamed scene calls the kernel once per strip, and starting fresh
    threads for every call measured about 3 ms a thread on a busy machine.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[int, ThreadPoolExecutor] = {}

    def pool(self, size: int) -> ThreadPoolExecutor:
        with self._lock:
            pool = self._pools.get(size)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="rspolicy-resample")
                self._pools[size] = pool
            return pool

    def forget(self) -> None:
        """After a fork: the child inherits the pools but not their threads, so work queued there would never run."""
        self._lock = threading.Lock()
        self._pools = {}


_HELPERS: Final = _Helpers()
os.register_at_fork(after_in_child=_HELPERS.forget)

# --------------------------------------------------------------------------
# Factors
# --------------------------------------------------------------------------


def _exact_factor(factor: object) -> tuple[Fraction, float | None]:
    """The exact value of one axis factor, and the float it came from if any."""
    if isinstance(factor, bool | np.bool_) or not isinstance(factor, numbers.Real):
        raise ResampleError(f"factor must be a real number >= 1, got {factor!r}")
    if isinstance(factor, Fraction):
        value, source = factor, None
    elif isinstance(factor, numbers.Integral):
        value, source = Fraction(int(factor)), None
    else:
        source = float(factor)
        if not math.isfinite(source):
            raise ResampleError(f"factor must be finite, got {factor!r}")
        value = Fraction(source)
    if value < 1:
        raise ResampleError(f"factor must be >= 1 (output pixels may not be finer than input), got {factor!r}")
    return value, source


def _simplest_between(lo: Fraction, hi: Fraction) -> Fraction:
    """The fraction with the smallest denominator in ``[lo, hi]``, ``0 < lo <= hi``."""
    whole = lo.numerator // lo.denominator
    if whole == lo or whole + 1 <= hi:
        return Fraction(whole if whole == lo else whole + 1)
    # Both ends lie in (whole, whole + 1): recurse on the reciprocals of the
    # fractional parts, i.e. one step down the continued fraction.
    return whole + 1 / _simplest_between(1 / (hi - whole), 1 / (lo - whole))


def _ceil_fraction(value: Fraction, max_denominator: int) -> Fraction:
    """The smallest fraction ``>= value`` whose denominator is at most ``max_denominator``.

    :meth:`Fraction.limit_denominator` computes the two best approximations
    on either side of ``value`` and returns the closer one, which may be the
    smaller; this is the same continued-fraction walk returning the upper one.
    """
    if value.denominator <= max_denominator:
        return value
    p0, q0, p1, q1 = 0, 1, 1, 0
    n, d = value.numerator, value.denominator
    while True:
        a = n // d
        q2 = q0 + a * q1
        if q2 > max_denominator:
            break
        p0, q0, p1, q1 = p1, q1, p0 + a * p1, q2
        n, d = d, n - a * d
    k = (max_denominator - q0) // q1
    semi = Fraction(p0 + k * p1, q0 + k * q1)
    last = Fraction(p1, q1)
    return semi if semi >= value else last


def as_fraction(factor: FactorLike, *, max_denominator: int = MAX_DENOMINATOR) -> Fraction:
    """The exact rational factor the kernel uses for one axis.

    A float is taken to mean the simplest fraction that is indistinguishable
    from it in float64 (``0.5 / 0.3`` becomes ``5/3``, ``1 / 0.81`` becomes
    ``100/81``). The result never makes a pixel finer than requested: it
    always satisfies ``float(result) >= factor``, and when no fraction with a
    denominator up to ``max_denominator`` rounds to the float, the smallest
    fraction above the float's exact value with such a denominator is used
    (a coarsening by less than ``1 / max_denominator`` relative).

    Integers and :class:`fractions.Fraction` are exact already and kept, unless
    the denominator exceeds ``max_denominator``: then they too are rounded up.

    Parameters
    ----------
    factor
        Output pixel size over input pixel size along one axis, ``>= 1``.
    max_denominator
        Bound on the result's denominator, hence on the period ``q`` (see
        :func:`period`). Streaming callers wanting short periods may pass a
        small bound, e.g. 100, at the cost of a slightly coarser pixel.

    Returns
    -------
    fractions.Fraction
        ``p/q >= 1`` in lowest terms.

    Raises
    ------
    ResampleError
        If the factor is not a finite real number >= 1.

    Examples
    --------
    >>> as_fraction(0.5 / 0.3)
    Fraction(5, 3)
    >>> as_fraction(0.5 / 0.4), as_fraction(2)
    (Fraction(5, 4), Fraction(2, 1))
    >>> as_fraction(1.6666667, max_denominator=100) >= 1.6666667
    True
    """
    if isinstance(max_denominator, bool) or not isinstance(max_denominator, numbers.Integral) or max_denominator < 1:
        raise ResampleError(f"max_denominator must be a positive integer, got {max_denominator!r}")
    limit = int(max_denominator)
    value, source = _exact_factor(factor)
    if source is None:
        return _ceil_fraction(value, limit)
    # Every real in [lo, hi] rounds to `source` (or to a neighbour at an exact
    # midpoint, which the check below catches).
    below = Fraction(math.nextafter(source, -math.inf))
    above = Fraction(math.nextafter(source, math.inf))
    simplest = _simplest_between(max((below + value) / 2, Fraction(1)), (value + above) / 2)
    if float(simplest) != source:
        simplest = value
    if simplest.denominator <= limit:
        return simplest
    return _ceil_fraction(value, limit)


def period(factor: FactorLike, *, max_denominator: int = MAX_DENOMINATOR) -> tuple[int, int]:
    """The period ``(p, q)`` of one axis: ``q`` output pixels cover exactly ``p`` input pixels.

    Streaming contract: cut the rows (or columns) of a raster into strips of
    ``p * k`` input pixels, ``k >= 1`` (``k`` may differ between strips), the
    strips starting at multiples of ``p`` and the last one holding whatever
    remains. Then :func:`area_average` of each strip, with the same factor and
    options, gives exactly ``q * k`` output rows for every full strip (and
    ``ceil(rest * q / p)`` for the last), no state is carried between strips,
    and stacking the pieces is bit-for-bit identical to averaging the whole
    raster. Pass the same ``max_denominator`` to :func:`as_fraction` (or pass
    the returned fraction itself as the factor).

    Parameters
    ----------
    factor
        One axis' factor, as for :func:`as_fraction`.
    max_denominator
        As for :func:`as_fraction`.

    Returns
    -------
    tuple of int
        ``(p, q)`` with ``p / q == as_fraction(factor)``.

    Examples
    --------
    >>> period(0.5 / 0.3)
    (5, 3)
    >>> period(2)
    (2, 1)
    """
    if isinstance(factor, Sequence | np.ndarray):
        raise ResampleError("period() takes one axis' factor; call it once per axis")
    frac = as_fraction(factor, max_denominator=max_denominator)
    return frac.numerator, frac.denominator


def _factor_pair(factor: object) -> tuple[Fraction, Fraction]:
    if isinstance(factor, np.ndarray) and factor.ndim == 0:
        factor = factor.item()
    if isinstance(factor, str | bytes):
        raise ResampleError(f"factor must be a number or a (row, col) pair, got {factor!r}")
    if isinstance(factor, Sequence | np.ndarray):
        items = list(factor)
        if len(items) != 2:
            raise ResampleError(f"factor must be one number or a (row, col) pair, got {len(items)} values")
        return as_fraction(items[0]), as_fraction(items[1])
    frac = as_fraction(factor)  # type: ignore[arg-type]  # validated inside
    return frac, frac


def _axis_len(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or int(n) < 1:
        raise ResampleError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def output_shape(rows: int, cols: int, factor: FactorLike | tuple[FactorLike, FactorLike]) -> tuple[int, int]:
    """Output ``(rows, cols)`` for an input of ``rows x cols`` pixels.

    Each axis gets ``ceil(n / f)`` pixels with ``f`` the exact rational factor
    (:func:`as_fraction`): the output covers the whole input.

    Parameters
    ----------
    rows, cols
        Input size, positive integers.
    factor
        One factor for both axes or a ``(row, col)`` pair.

    Returns
    -------
    tuple of int

    Examples
    --------
    >>> output_shape(10000, 10000, 0.5 / 0.3)
    (6000, 6000)
    >>> output_shape(3, 7, (1.5, 2))
    (2, 4)
    """
    fr, fc = _factor_pair(factor)
    n_r, n_c = _axis_len(rows, "rows"), _axis_len(cols, "cols")
    return _ceil_div(n_r * fr.denominator, fr.numerator), _ceil_div(n_c * fc.denominator, fc.numerator)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------
# Weight plans
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """A dense block of weights: outputs ``[j0, j1)`` from inputs ``[i0, i1)``.

    Indices are relative to the start of a period (or of the tail region) and
    may be in lane units. ``mats`` holds the integer overlap weights (in
    units of ``1/q`` input pixel) as float32 and float64, already oriented
    for the matmul that uses them.
    """

    i0: int
    i1: int
    j0: int
    j1: int
    mats: dict[str, _A] = field(compare=False)

    def mat(self, acc: np.dtype[Any]) -> _A:
        return self.mats[acc.char]


def _overlaps(p: int, q: int, j_lo: int, j_hi: int, n_lim: int) -> tuple[int, int, NDArray[np.int64]]:
    """Overlap weights of outputs ``[j_lo, j_hi)`` with inputs clipped to ``[0, n_lim)``.

    Returns ``(i0, i1, w)``, ``w[i - i0, j - j_lo]`` being the length (in
    ``1/q`` input pixels) of input ``i``'s interval ``[i*q, (i+1)*q)`` that
    output ``j``'s interval ``[j*p, (j+1)*p)`` covers. Coordinates are taken
    relative to ``i0*q`` in Python integers so int64 never overflows.
    """
    i0 = (j_lo * p) // q
    i1 = min(_ceil_div(j_hi * p, q), n_lim)
    base = i0 * q
    span = (i1 - i0) * q
    in_edges = np.arange(i1 - i0 + 1, dtype=np.int64) * q
    out_edges = np.array([min(j * p - base, span) for j in range(j_lo, j_hi + 1)], dtype=np.int64)
    lo = np.maximum(in_edges[:-1, None], out_edges[None, :-1])
    hi = np.minimum(in_edges[1:, None], out_edges[None, 1:])
    return i0, i1, np.clip(hi - lo, 0, None)


def _mats(w: NDArray[np.int64]) -> dict[str, _A]:
    return {"f": np.ascontiguousarray(w, dtype=np.float32), "d": np.ascontiguousarray(w, dtype=np.float64)}


def _groups(p: int, q: int, n_out: int, n_lim: int, size: int) -> list[tuple[int, int, int, int, NDArray[np.int64]]]:
    out = []
    for j0 in range(0, n_out, size):
        j1 = min(j0 + size, n_out)
        i0, i1, w = _overlaps(p, q, j0, j1, n_lim)
        out.append((i0, i1, j0, j1, w))
    return out


@dataclass(frozen=True)
class _Axis:
    """The exact geometry of one axis."""

    p: int
    q: int
    n_in: int
    n_out: int
    n_full: int  # whole periods
    divisors: NDArray[np.float64]  # sum of weights per output pixel

    @property
    def max_weight(self) -> int:
        """The largest sum of weights of one output pixel (the largest divisor)."""
        return min(self.p, self.n_in * self.q)

    @property
    def tail_in(self) -> int:
        return self.n_in - self.n_full * self.p

    @property
    def tail_out(self) -> int:
        return self.n_out - self.n_full * self.q


def _axis(frac: Fraction, n: int) -> _Axis:
    # No shortcut for factors beyond the axis length (p >= n*q): a strip
    # must weigh its pixels exactly as the whole raster does.
    p, q = frac.numerator, frac.denominator
    n_out = _ceil_div(n * q, p)
    divisors = np.full(n_out, float(min(p, n * q)))
    divisors[-1] = float(n * q - (n_out - 1) * p)
    return _Axis(p, q, n, n_out, n // p, divisors)


@dataclass(frozen=True)
class _Taps:
    """The columns after the last whole period, as a banded sum of gathers.

    Output value ``k`` of the region is ``sum_t weights[t][k] * row[index[t][k]]``
    over the taps ``t``, always in the same order. A matmul would be faster
    but BLAS may round a row differently depending on how many rows it is
    given, and a strip must reproduce the whole raster's result bit for bit.
    This also serves periods far longer than the row, where the weight
    matrix of a period could not even be built.
    """

    index: tuple[NDArray[np.intp], ...]
    weights: tuple[dict[str, _A], ...]
    width: int  # output values


def _taps(p: int, q: int, n_in: int, n_out: int, lanes: int, keep: bool) -> _Taps:
    j = np.arange(n_out, dtype=object)  # Python integers: p and q may be large
    i_lo = np.array((j * p) // q, dtype=np.int64)
    i_hi = np.minimum(np.array(-((-(j + 1) * p) // q), dtype=np.int64), n_in)
    count = int((i_hi - i_lo).max())
    index: list[NDArray[np.intp]] = []
    weights: list[dict[str, _A]] = []
    for t in range(count):
        i = np.minimum(i_lo + t, n_in - 1)
        # Overlap of [i*q, (i+1)*q) and [j*p, (j+1)*p), relative to j*p so
        # that the numbers stay small; zero for taps past an output's end.
        start = np.array(i.astype(object) * q - j * p, dtype=np.int64)
        end_in = start + q
        end_out = np.array(np.minimum((j + 1) * p, n_in * q) - j * p, dtype=np.int64)
        w = np.clip(np.minimum(end_in, end_out) - np.maximum(start, 0), 0, None)
        w[i_lo + t >= i_hi] = 0
        for lane in range(lanes):
            index.append((i * lanes + lane).astype(np.intp))
            weights.append({"f": w.astype(np.float32), "d": w.astype(np.float64)})
    if keep and lanes > 1:
        # Output lane l of pixel j gathers lane l only: interleave per lane.
        index = [np.stack(index[t * lanes : (t + 1) * lanes], axis=1).ravel() for t in range(count)]
        weights = [{k: np.repeat(v, lanes) for k, v in weights[t * lanes].items()} for t in range(count)]
    return _Taps(tuple(index), tuple(weights), n_out * (lanes if keep else 1))


@dataclass(frozen=True)
class _Cols:
    """How one row of a unit is contracted along the columns.

    ``lanes`` values make one pixel (2 for complex data seen as float pairs);
    ``keep_lanes`` keeps them apart in the output (coherent complex mean),
    otherwise they are summed into one output value (intensity re**2 + im**2).
    """

    axis: _Axis
    lanes: int
    keep_lanes: bool
    periodic: tuple[_Group, ...]
    tail: _Taps | None
    width_in: int  # values per input row
    width_out: int  # values per output row
    dc: dict[str, _A]  # per-output-value column divisors

    @property
    def out_lanes(self) -> int:
        return self.lanes if self.keep_lanes else 1


def _lane_group(i0: int, i1: int, j0: int, j1: int, w: NDArray[np.int64], lanes: int, keep: bool) -> _Group:
    if lanes == 1:
        return _Group(i0, i1, j0, j1, _mats(w))
    if keep:
        return _Group(i0 * lanes, i1 * lanes, j0 * lanes, j1 * lanes, _mats(np.kron(w, np.eye(lanes, dtype=np.int64))))
    return _Group(i0 * lanes, i1 * lanes, j0, j1, _mats(np.repeat(w, lanes, axis=0)))


def _cols(axis: _Axis, lanes: int = 1, keep_lanes: bool = False) -> _Cols:
    p, q = axis.p, axis.q
    periodic: list[_Group] = []
    if axis.n_full and q > 1:
        periodic = [_lane_group(*g, lanes, keep_lanes) for g in _groups(p, q, q, p, _GROUP_OUT)]
    tail = _taps(p, q, axis.tail_in, axis.tail_out, lanes, keep_lanes) if axis.tail_in else None
    out_lanes = lanes if keep_lanes else 1
    dc = np.repeat(axis.divisors, out_lanes)
    return _Cols(
        axis, lanes, keep_lanes, tuple(periodic), tail, axis.n_in * lanes, axis.n_out * out_lanes,
        {"f": dc.astype(np.float32), "d": dc},
    )


@dataclass(frozen=True)
class _RowUnit:
    """Input rows ``[i0, i1)`` making output rows ``[o0, o1)``.

    ``stack`` units hold whole periods and use the axis' periodic groups;
    the others carry their own groups, relative to ``i0`` and ``o0``.
    """

    i0: int
    i1: int
    o0: int
    o1: int
    stack: bool
    groups: tuple[_Group, ...] = ()


def _row_mats(w: NDArray[np.int64]) -> dict[str, _A]:
    return _mats(np.ascontiguousarray(w.T))


def _row_units(axis: _Axis, periods_per_unit: int) -> tuple[list[_RowUnit], tuple[_Group, ...]]:
    """Units covering the rows of one band, and the periodic row groups."""
    p, q = axis.p, axis.q
    units: list[_RowUnit] = []
    periodic: tuple[_Group, ...] = ()
    if axis.n_full:
        if p <= _STACK_MAX_P:
            if q > 1:
                periodic = tuple(_Group(i0, i1, j0, j1, _row_mats(w)) for i0, i1, j0, j1, w in _groups(p, q, q, p, q))
            for k0 in range(0, axis.n_full, periods_per_unit):
                k1 = min(k0 + periods_per_unit, axis.n_full)
                units.append(_RowUnit(k0 * p, k1 * p, k0 * q, k1 * q, stack=True))
        else:
            # Long periods: one unit per group of outputs, laid out identically
            # in every period so strips starting at a period repeat it exactly.
            in_period = [(i0, j0, _Group(0, i1 - i0, 0, j1 - j0, _row_mats(w))) for i0, i1, j0, j1, w in
                         _groups(p, q, q, p, _GROUP_OUT)]
            for k in range(axis.n_full):
                for i0, j0, g in in_period:
                    units.append(_RowUnit(k * p + i0, k * p + i0 + g.i1, k * q + j0, k * q + j0 + g.j1, False, (g,)))
    if axis.tail_in:
        base_i, base_o = axis.n_full * p, axis.n_full * q
        tail = _groups(p, q, axis.tail_out, axis.tail_in, _GROUP_OUT)
        if axis.tail_in <= _STACK_MAX_P:
            gs = tuple(_Group(i0, i1, j0, j1, _row_mats(w)) for i0, i1, j0, j1, w in tail)
            units.append(_RowUnit(base_i, base_i + axis.tail_in, base_o, axis.n_out, stack=False, groups=gs))
        else:
            for i0, i1, j0, j1, w in tail:
                g = _Group(0, i1 - i0, 0, j1 - j0, _row_mats(w))
                units.append(_RowUnit(base_i + i0, base_i + i1, base_o + j0, base_o + j1, stack=False, groups=(g,)))
    return units, periodic


# --------------------------------------------------------------------------
# Exactness
# --------------------------------------------------------------------------


def _exact_in(mantissa: int, maxabs: float, total_weight: int) -> bool:
    """Whether sums in a float with ``mantissa`` bits give the correctly rounded mean.

    Every partial sum is an integer of magnitude at most ``maxabs *
    total_weight``; it is exact if that fits the mantissa. The quotient
    ``S / D`` (``D <= total_weight``) is then correctly rounded, off by at most
    half an ulp of ``maxabs``, while a mean that is not a tie lies at least
    ``1 / (2 D)`` from the nearest half-integer; so rounding the quotient to an
    integer cannot go wrong if ``ulp(maxabs) * total_weight < 1``. That
    condition implies the first: with ``maxabs < 2**e`` and ``ulp = 2**(e -
    mantissa)``, ``total_weight < 2**(mantissa - e)`` bounds every sum by
    ``2**mantissa``.

    >>> _exact_in(24, 255.0, 65535), _exact_in(24, 255.0, 65536)
    (True, False)
    """
    ulp = 2.0 ** (math.frexp(max(maxabs, 1.0))[1] - mantissa)
    return ulp * total_weight < 1


# --------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------


def _blas_step(matrix_size: int, n: int) -> int:
    """How much of a dimension of length ``n`` one matmul may take (see ``_BLAS_MNK``)."""
    return max(1, min(n, (_BLAS_MNK - 1) // matrix_size))


class _Workspace:
    """Per-thread scratch arrays, reused from unit to unit and from call to call.

    Fresh strip-sized arrays come from mmap and are page-faulted on every
    use, which measured as a large share of the run time.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, _A] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: np.dtype[Any]) -> _A:
        key = f"{name}{dtype.char}"
        arr = self._arrays.get(key)
        size = math.prod(shape)
        if arr is None or arr.size < size:
            arr = np.empty(size, dtype)
            self._arrays[key] = arr
        return arr[:size].reshape(shape)


_SCRATCH: Final = threading.local()


def _workspace() -> _Workspace:
    """The calling thread's scratch arrays (a few unit-sized arrays, kept for the thread's life)."""
    ws: _Workspace | None = getattr(_SCRATCH, "ws", None)
    if ws is None:
        ws = _Workspace()
        _SCRATCH.ws = ws
    return ws


_F32: Final = np.dtype(np.float32)
_F64: Final = np.dtype(np.float64)

# Factor-2 fast path for 8- and 16-bit integers: two pixels in one wider
# word, split into two lanes by mask and shift, so the 2x2 sums are formed
# with integer adds on whole words. {itemsize: (word, low mask, shift, bias)}
_SWAR: Final[dict[int, tuple[np.dtype[Any], int, int, int]]] = {
    1: (np.dtype(np.uint16), 0x00FF, 8, 0x8080),
    2: (np.dtype(np.uint32), 0x0000FFFF, 16, 0x80008000),
}


class _Kernel:
    """Everything fixed for one call: plans, dtypes, validity, output."""

    def __init__(
        self,
        data: _A,
        valid: _A | None,
        fr: Fraction,
        fc: Fraction,
        nodata: float | None,
        sar_mode: SarMode | None,
        threads: int,
    ) -> None:
        self.src = data
        self.valid = valid
        self.mode = sar_mode
        self.threads = threads
        bands, rows, cols = data.shape
        kind = data.dtype.kind
        self.is_float_input = kind in "fc"
        self.rows = _axis(fr, rows)
        col_axis = _axis(fc, cols)
        lanes = 2 if kind == "c" else 1
        self.cols = _cols(col_axis, lanes, keep_lanes=sar_mode == "coherent")
        # Validity counts pixels, not lanes.
        self.cols_px = self.cols if lanes == 1 else _cols(col_axis)

        if kind == "c":
            real = np.dtype(data.dtype.char.lower())
            self.out_dtype = data.dtype.newbyteorder("=") if sar_mode == "coherent" else real
        else:
            self.out_dtype = data.dtype.newbyteorder("=")
        self.int_out = self.out_dtype.kind in "iu"

        total = self.rows.max_weight * col_axis.max_weight
        self.acc: np.dtype[Any] = _F64
        self.exact = not self.int_out
        self.check_range = False
        self.total_weight = total
        if self.int_out and sar_mode is None:
            info = np.iinfo(data.dtype)
            maxabs = float(max(-info.min, info.max))
            if _exact_in(24, maxabs, total):
                self.acc, self.exact = _F32, True
            elif _exact_in(53, maxabs, total):
                self.exact = True
                # The data may still fit float32 (12-bit data in uint16...):
                # decided per unit, both choices give identical results.
                self.check_range = True
            else:
                self.exact = False
        elif self.int_out:
            info = np.iinfo(data.dtype)
            self.exact = _exact_in(53, float(max(-info.min, info.max)) ** 2, total)

        self.fill = self._fill(nodata)
        self.nodata_cmp = None if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else nodata
        if self.nodata_cmp is not None and kind in "iu":
            self.nodata_cmp = data.dtype.type(nodata)

        self.swar: tuple[np.dtype[Any], int, int, int] | None = None
        self.wide_seen = False
        self.cols_last: _Cols | None = None
        if (
            sar_mode is None
            and data.dtype.kind in "iu"
            and data.dtype.itemsize in _SWAR
            and data.dtype.isnative
            and (self.rows.p, self.rows.q, col_axis.p, col_axis.q) == (2, 1, 2, 1)
            and cols >= 2
        ):
            self.swar = _SWAR[data.dtype.itemsize]
            self.cols_last = _cols(_axis(Fraction(2), 1)) if cols % 2 else None

        # The packed factor-2 path makes few, cheap passes: bigger units
        # amortise its per-unit Python overhead, which holds the GIL.
        unit_bytes = _UNIT_BYTES * (2 if self.swar is not None else 1)
        unit_rows = max(1, unit_bytes // max(1, self.cols.width_in * self.acc.itemsize))
        per_unit = max(1, unit_rows // self.rows.p)
        if self.rows.n_full:
            # Enough units to keep every thread busy on small bands.
            per_unit = max(1, min(per_unit, _ceil_div(self.rows.n_full * bands, 4 * threads)))
        self.units, self.row_groups = _row_units(self.rows, per_unit)

        self.out = np.empty((bands, self.rows.n_out, col_axis.n_out), self.out_dtype)

    def _fill(self, nodata: float | None) -> Any:
        if nodata is not None:
            return self.out_dtype.type(nodata)
        if self.out_dtype.kind in "fc":
            return self.out_dtype.type(math.nan)
        return None  # an integer output can only lack data if a mask is given, refused upfront

    # -- driving ----------------------------------------------------------

    def run(self) -> _A:
        bands = self.src.shape[0]
        tasks = [(b, u) for b in range(bands) for u in self.units]
        workers = min(self.threads, len(tasks))
        if workers <= 1 or self.src.size < _INLINE_PIXELS:
            ws = _workspace()
            for band, unit in tasks:
                self._unit(band, unit, ws)
            return self.out
        counter = itertools.count()
        lock = threading.Lock()
        failed = threading.Event()

        def work() -> None:
            ws = _workspace()
            while not failed.is_set():
                with lock:
                    index = next(counter)
                if index >= len(tasks):
                    return
                try:
                    self._unit(*tasks[index], ws)
                except BaseException:
                    failed.set()
                    raise

        # The calling thread works too; the helpers share the queue of units with it.
        helpers = [_HELPERS.pool(workers - 1).submit(work) for _ in range(workers - 1)]
        try:
            work()
        finally:
            wait(helpers)  # never return (or raise) while a helper may still write into the output
        for fut in helpers:
            fut.result()
        return self.out

    # -- one unit ---------------------------------------------------------

    def _unit(self, band: int, unit: _RowUnit, ws: _Workspace) -> None:
        src = self.src[band, unit.i0 : unit.i1]
        valid = None if self.valid is None else self.valid[min(band, self.valid.shape[0] - 1), unit.i0 : unit.i1]
        invalid = self._has_invalid(src, valid)
        out = self.out[band, unit.o0 : unit.o1]
        if self.swar is not None and unit.stack and not invalid:
            self._swar(src, unit, out, ws)
            return
        acc: np.dtype[Any] = self.acc
        if self.check_range:
            top = int(src.max()) if src.dtype.kind == "u" else max(-int(src.min()), int(src.max()))
            if _exact_in(24, float(top), self.total_weight):
                acc = _F32
        self._general(src, valid, invalid, unit, self.cols, out, acc, ws)

    def _has_invalid(self, src: _A, valid: _A | None) -> bool:
        if valid is not None and not valid.all():
            return True
        return self.nodata_cmp is not None and bool((src == self.nodata_cmp).any())

    def _general(
        self, src: _A, valid: _A | None, invalid: bool, unit: _RowUnit, cols: _Cols, out: _A, acc: np.dtype[Any],
        ws: _Workspace,
    ) -> None:
        if not invalid:
            # Optimistic pass: a NaN or inf in the input (0 * inf, inf - inf)
            # only shows as non-finite sums, caught below, so no warnings.
            with np.errstate(invalid="ignore", over="ignore"):
                x = self._load(src, ws, acc, "x")
                s = self._contract(x, unit, cols, ws, acc, "s")
            if not self.is_float_input or np.isfinite(s).all():
                self._finish(s, None, unit, cols, out, acc)
                return
            # Non-finite input somewhere in the unit: recompute it masked.
        ok = self._valid(src, valid, ws)
        x = self._load(src, ws, acc, "x")
        bad = ws.get("bad", ok.shape, np.dtype(bool))
        np.logical_not(ok, out=bad)
        np.copyto(x.reshape(*ok.shape, cols.lanes), 0, where=bad[..., None])
        s = self._contract(x, unit, cols, ws, acc, "s")
        vf = ws.get("vf", ok.shape, acc)
        np.copyto(vf, ok)
        # Validity counts pixels, not lanes; only the main plan has lanes.
        d = self._contract(vf, unit, self.cols_px if cols is self.cols else cols, ws, acc, "d")
        self._finish(s, d, unit, cols, out, acc)

    def _valid(self, src: _A, valid: _A | None, ws: _Workspace) -> _A:
        ok = ws.get("ok", src.shape, np.dtype(bool))
        if self.is_float_input:
            np.isfinite(src, out=ok)
        else:
            ok[...] = True
        if self.nodata_cmp is not None:
            ok &= src != self.nodata_cmp
        if valid is not None:
            ok &= valid
        return ok

    def _load(self, src: _A, ws: _Workspace, acc: np.dtype[Any], name: str) -> _A:
        """The unit's input in the accumulation dtype, transformed for the mode."""
        rows, width = src.shape
        if src.dtype.kind == "c":
            if src.strides[-1] != src.itemsize or not src.dtype.isnative:
                src = np.ascontiguousarray(src, dtype=src.dtype.newbyteorder("="))
            src = src.view(np.dtype(src.dtype.char.lower()))
            width *= 2
        x = ws.get(name, (rows, width), acc)
        np.copyto(x, src, casting="unsafe")
        if self.mode in ("intensity", "amplitude"):
            np.multiply(x, x, out=x)
        return x

    def _contract(self, x: _A, unit: _RowUnit, cols: _Cols, ws: _Workspace, acc: np.dtype[Any], name: str) -> _A:
        y = self._rows(x, unit, ws, acc, name + "r")
        return self._columns(y, cols, ws, acc, name)

    def _rows(self, x: _A, unit: _RowUnit, ws: _Workspace, acc: np.dtype[Any], name: str) -> _A:
        axis = self.rows
        width = x.shape[1]
        if unit.stack:
            p, q = axis.p, axis.q
            k = x.shape[0] // p
            if p == 1 and q == 1:
                return x
            xr = x.reshape(k, p, width)
            if q == 1:
                y = ws.get(name, (k, width), acc)
                np.add(xr[:, 0], xr[:, 1], out=y)
                for i in range(2, p):
                    y += xr[:, i]
                return y
            y = ws.get(name, (k * q, width), acc)
            yr = y.reshape(k, q, width)
            for g in self.row_groups:
                mat = g.mat(acc)
                step = _blas_step(mat.size, width)
                for c0 in range(0, width, step):
                    c1 = c0 + step
                    np.matmul(mat, xr[:, g.i0 : g.i1, c0:c1], out=yr[:, g.j0 : g.j1, c0:c1])
            return y
        y = ws.get(name, (unit.o1 - unit.o0, width), acc)
        for g in unit.groups:
            mat = g.mat(acc)
            n = g.i1 - g.i0
            # Many input rows per output row (large factors): partial products
            # of row chunks are added up rather than one huge matmul.
            part = ws.get(name + "c", (g.j1 - g.j0, width), acc) if n > _ROW_CHUNK else None
            for r0 in range(0, n, _ROW_CHUNK):
                r1 = min(r0 + _ROW_CHUNK, n)
                target = y[g.j0 : g.j1] if part is None or r0 == 0 else part
                step = _blas_step((r1 - r0) * (g.j1 - g.j0), width)
                for c0 in range(0, width, step):
                    c1 = c0 + step
                    np.matmul(mat[:, r0:r1], x[g.i0 + r0 : g.i0 + r1, c0:c1], out=target[:, c0:c1])
                if target is part:
                    y[g.j0 : g.j1] += part
        return y

    def _columns(self, y: _A, cols: _Cols, ws: _Workspace, acc: np.dtype[Any], name: str) -> _A:
        axis = cols.axis
        h = y.shape[0]
        p, q, n = axis.p, axis.q, axis.n_full
        lanes, out_lanes = cols.lanes, cols.out_lanes
        if p == 1 and out_lanes == lanes:
            return y
        s = ws.get(name, (h, cols.width_out), acc)
        if n:
            pw, qw = p * lanes, q * out_lanes
            yc = y[:, : n * pw].reshape(h, n, pw)
            if q == 1:
                # Block sums: add the strided slices, one pass each.
                sc = s[:, : n * out_lanes].reshape(h, n, out_lanes)
                step = out_lanes
                terms = [yc[:, :, i : i + step] for i in range(0, pw, step)]
                if len(terms) == 1:
                    np.copyto(sc, terms[0])
                else:
                    np.add(terms[0], terms[1], out=sc)
                    for term in terms[2:]:
                        sc += term
            else:
                sc = s[:, : n * qw].reshape(h, n, qw)
                for g in cols.periodic:
                    # One gemm per row (numpy loops over the leading axis), so
                    # a row's result does not depend on how many rows there are.
                    mat = g.mat(acc)
                    step = _blas_step(mat.size, n)
                    for k0 in range(0, n, step):
                        k1 = k0 + step
                        np.matmul(yc[:, k0:k1, g.i0 : g.i1], mat, out=sc[:, k0:k1, g.j0 : g.j1])
        if cols.tail is not None:
            region = y[:, n * p * lanes :]
            dest = s[:, n * q * out_lanes :]
            tmp = ws.get(name + "t", dest.shape, acc)
            for t, (index, weights) in enumerate(zip(cols.tail.index, cols.tail.weights, strict=True)):
                np.take(region, index, axis=1, out=dest if t == 0 else tmp)
                if t == 0:
                    dest *= weights[acc.char]
                else:
                    tmp *= weights[acc.char]
                    dest += tmp
        return s

    def _finish(self, s: _A, d: _A | None, unit: _RowUnit, cols: _Cols, out: _A, acc: np.dtype[Any]) -> None:
        """Divide by the covered weight, round or cast, and store."""
        out_lanes = cols.out_lanes
        empty = None
        if d is None:
            pr = self.rows.p
            dr = self.rows.divisors[unit.o0 : unit.o1]
            dc = cols.dc[acc.char]
            last = dr[-1] != pr  # only an axis' last output pixel can be partial
            body = s[:-1] if last else s
            np.divide(body, dc * acc.type(pr), out=body)
            if last:
                np.divide(s[-1], dc * acc.type(dr[-1]), out=s[-1])
        else:
            empty = d == 0
            s3 = s.reshape(d.shape[0], d.shape[1], out_lanes)
            np.divide(s3, d[..., None], out=s3, where=~empty[..., None])
        if self.mode == "amplitude":
            np.sqrt(s, out=s)
        target = out.view(np.dtype(out.dtype.char.lower())) if out.dtype.kind == "c" else out
        if self.int_out:
            np.rint(s, out=s)
            if not self.exact or self.mode == "amplitude":
                info = np.iinfo(out.dtype)
                np.clip(s, info.min, info.max, out=s)
        if empty is not None and empty.any():
            # Keep the unwritten quotient out of the integer cast.
            s3 = s.reshape(empty.shape[0], empty.shape[1], out_lanes)
            np.copyto(s3, 0, where=empty[..., None])
            np.copyto(target, s, casting="unsafe")
            out[empty] = self.fill
            return
        np.copyto(target, s, casting="unsafe")

    # -- factor 2, 8/16-bit integers ------------------------------------------

    def _swar(self, src: _A, unit: _RowUnit, out: _A, ws: _Workspace) -> None:
        """Factor 2 on 8/16-bit integers: 2x2 sums with integer adds on packed words.

        Two neighbouring pixels of a row share one word (of twice their
        size); masks and shifts split it into column pairs, whole-word adds
        then form the sums, and the float unit rounds. Every step is exact,
        so the result is identical to the general path's.
        """
        assert self.swar is not None
        word, low, shift, bias = self.swar
        rows, cols = src.shape
        even = cols - cols % 2
        half, k = even // 2, rows // 2
        body = src[:, :even]
        if body.strides[-1] != body.itemsize or body.strides[0] % word.itemsize or not body.flags.aligned:
            copy = ws.get("swc", body.shape, body.dtype)
            np.copyto(copy, body)
            body = copy
        signed = src.dtype.kind == "i"
        dest = out[:, :half]
        if signed:
            dest = dest.view(np.dtype(f"u{src.dtype.itemsize}"))
        total = ws.get("swt", (k, half), np.dtype(np.uint32))
        if word.itemsize == 4 and not signed and not self.wide_seen and int(body.max()) < 1 << 14:
            # 14-bit data (most sensors): the row pairs cannot overflow 16
            # bits, so add them as uint16, then each word v holding two such
            # sums gives their total as (v * 0x10001) >> 16.
            pairs = ws.get("sw2", (k, even), body.dtype)
            br = body.reshape(k, 2, even)
            np.add(br[:, 0], br[:, 1], out=pairs)
            np.multiply(pairs.view(word), 0x10001, out=total)
            np.right_shift(total, 16, out=total)
        else:
            if word.itemsize == 4 and not signed:
                # Not worth checking again: either path gives the same result.
                self.wide_seen = True
            v = body.view(word)
            lo = ws.get("swl", (rows, half), word)
            hi = ws.get("swh", (rows, half), word)
            if signed:
                # Offset binary: x + 2**(bits-1) per lane keeps the lanes unsigned.
                np.bitwise_xor(v, bias, out=hi)
                v = hi
            np.bitwise_and(v, low, out=lo)
            np.right_shift(v, shift, out=hi)
            np.add(lo, hi, out=lo)  # pairs of columns
            lr = lo.reshape(k, 2, half)
            if word.itemsize == 4:
                np.add(lr[:, 0], lr[:, 1], out=total)  # pairs of rows: 2x2 sums
            else:
                total = hi[:k]
                np.add(lr[:, 0], lr[:, 1], out=total)
        if total.dtype.itemsize == 4:
            # total / 4 rounded half to even by the float unit: with the bits
            # of 2**21 ORed in, the word reads as the float 2**21 + total / 4
            # (the mantissa's last bit is worth 1/4 there); adding 2**23 - 2**21
            # moves it to [2**23, 2**24), where the ulp is 1, so the add rounds
            # half to even and the word's low bits are the rounded mean.
            as_float = total.view(np.float32)
            np.bitwise_or(total, 0x4A000000, out=total)
            np.add(as_float, np.float32(2**23 - 2**21), out=as_float)
            rnd = total
        else:
            # floor((total + 1 + bit2(total)) / 4) is total / 4 rounded half to even.
            rnd = ws.get("swr", (k, half), word)
            np.right_shift(total, 2, out=rnd)
            np.bitwise_and(rnd, 1, out=rnd)
            rnd += total
            rnd += 1
            np.right_shift(rnd, 2, out=rnd)
        if signed:
            np.bitwise_xor(rnd, bias & low, out=rnd)  # undo the offset: back to two's complement
        # The cast keeps the low bits of each word.
        np.copyto(dest, rnd, casting="unsafe")
        if cols % 2:
            # The odd last column: a partial output pixel, done the general way.
            assert self.cols_last is not None
            self._general(src[:, even:], None, False, unit, self.cols_last, out[:, half:], _F32, ws)


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def _check_array(array: ArrayLike) -> tuple[_A, _A | None]:
    masked = np.ma.isMaskedArray(array)
    if masked:
        data = np.asarray(np.ma.getdata(array))
        bad = np.ma.getmaskarray(cast(Any, array))
        valid: _A | None = np.logical_not(bad)
    else:
        try:
            data = np.asarray(array)
        except Exception as exc:  # noqa: BLE001 - anything numpy cannot take is a bad argument
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ResampleError(f"array cannot be read as a numpy array: {first_line}") from None
        valid = None
    if data.dtype.kind not in "iufc":
        raise ResampleError(f"array must be numeric (integer, float or complex), got dtype {data.dtype}")
    if data.dtype.kind in "iu" and data.dtype.itemsize > 4:
        raise ResampleError(f"{data.dtype} rasters cannot be averaged exactly; convert to float64 first")
    if data.ndim not in (2, 3):
        raise ResampleError(f"array must be (rows, cols) or (bands, rows, cols), got {data.ndim} dimensions")
    if data.size == 0:
        raise ResampleError(f"array is empty (shape {data.shape})")
    return data, valid


def _check_mask(mask: ArrayLike, shape: tuple[int, ...]) -> _A:
    m = np.asarray(mask)
    if m.dtype.kind not in "biu":
        raise ResampleError(f"mask must be boolean (True = valid) or GDAL-style integers, got dtype {m.dtype}")
    if m.shape != shape and m.shape != shape[-2:]:
        raise ResampleError(f"mask shape {m.shape} matches neither the array {shape} nor its last two axes")
    return m if m.dtype == bool else m != 0


def _check_nodata(nodata: object, dtype: np.dtype[Any]) -> float | None:
    if nodata is None:
        return None
    if isinstance(nodata, bool | np.bool_) or not isinstance(nodata, numbers.Number):
        raise ResampleError(f"nodata must be a number or None, got {nodata!r}")
    if dtype.kind in "iu":
        value = float(nodata) if isinstance(nodata, numbers.Real) else math.nan
        if not value.is_integer():
            raise ResampleError(f"nodata {nodata!r} is not an integer, so it cannot occur in a {dtype} raster")
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ResampleError(f"nodata {nodata!r} is outside the range of {dtype}")
        return value
    if not isinstance(nodata, numbers.Real):
        raise ResampleError(f"nodata must be a real number (as in GDAL), got {nodata!r}")
    return float(nodata)


def area_average(
    array: ArrayLike,
    factor: FactorLike | tuple[FactorLike, FactorLike],
    *,
    nodata: float | None = None,
    mask: ArrayLike | None = None,
    sar_mode: SarMode | None = None,
    threads: int | None = None,
) -> _A:
    """Degrade a raster by exact area averaging.

    See the module documentation for the grid, the weights, the rounding and
    the treatment of invalid pixels and SAR data.

    Parameters
    ----------
    array
        ``(rows, cols)`` or ``(bands, rows, cols)``; integer (up to 32-bit),
        float or complex. A :class:`numpy.ma.MaskedArray` has its mask
        honoured.
    factor
        Output over input pixel size, one number for both axes or a
        ``(row, col)`` pair, each ``>= 1``: int, float or
        :class:`fractions.Fraction` (see :func:`as_fraction`).
    nodata
        Value marking invalid pixels, and the value given to output pixels
        with no valid input.
    mask
        Boolean validity (True = valid; GDAL-style 0/255 masks are accepted),
        shaped like ``array`` or like one band.
    sar_mode
        ``"coherent"``, ``"intensity"`` (complex input) or ``"amplitude"``
        (real, detected amplitude input). Required for complex input.
    threads
        Worker threads; default :func:`os.cpu_count`.

    Returns
    -------
    numpy.ndarray
        Shaped like ``array`` with the last two axes of
        :func:`output_shape`.

    Raises
    ------
    ResampleError
        For a bad factor, array, mask, nodata or mode.

    Examples
    --------
    A 4x4 block mean (float input, so no rounding):

    >>> import numpy as np
    >>> a = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> area_average(a, 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)

    Integers are rounded half to even:

    >>> area_average(a.astype(np.uint16), 2)
    array([[ 2,  4],
           [10, 12]], dtype=uint16)

    A 3x3 image at factor 1.5: the first output pixel covers input pixel
    (0, 0) fully and its neighbours by half (weights 1, 1/2, 1/2, 1/4):

    >>> b = np.arange(9, dtype=np.float64).reshape(3, 3)
    >>> area_average(b, 1.5)
    array([[1.33333333, 2.66666667],
           [5.33333333, 6.66666667]])

    Nodata pixels are left out and the others reweighted:

    >>> c = np.array([[1, 3], [-1, -1]], dtype=np.int16)
    >>> area_average(c, 2, nodata=-1)
    array([[2]], dtype=int16)
    >>> area_average(np.full((2, 2), -1, np.int16), 2, nodata=-1)
    array([[-1]], dtype=int16)
    """
    data, valid = _check_array(array)
    fr, fc = _factor_pair(factor)
    kind = data.dtype.kind
    if sar_mode not in (None, "coherent", "intensity", "amplitude"):
        raise ResampleError(f"sar_mode must be 'coherent', 'intensity', 'amplitude' or None, got {sar_mode!r}")
    if kind == "c" and sar_mode not in ("coherent", "intensity"):
        raise ResampleError(
            "complex input needs sar_mode='coherent' (complex mean) or 'intensity' (mean of |z|**2)"
            + ("; 'amplitude' is for detected real amplitude" if sar_mode == "amplitude" else "")
        )
    if kind != "c" and sar_mode in ("coherent", "intensity"):
        raise ResampleError(f"sar_mode={sar_mode!r} needs complex input; for detected amplitude use 'amplitude'")
    if threads is None:
        threads = os.cpu_count() or 1
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ResampleError(f"threads must be a positive integer, got {threads!r}")
    value = _check_nodata(nodata, data.dtype)
    if mask is not None:
        m = _check_mask(mask, data.shape)
        valid = m if valid is None else valid & m
    if valid is not None and valid.all():
        valid = None  # nothing hidden: no per-unit checks, and no nodata needed
    if valid is not None and value is None and kind in "iu":
        raise ResampleError("an integer raster with a mask needs nodata, to mark output pixels with no valid input")

    flat = data[None] if data.ndim == 2 else data
    if valid is not None:
        valid = valid[None] if valid.ndim == 2 else valid
    if fr == 1 and fc == 1 and sar_mode is None and valid is None and kind in "iu":
        # Every output pixel is its input pixel (a nodata pixel stays nodata).
        return data.copy()
    kernel = _Kernel(flat, valid, fr, fc, value, sar_mode, int(threads))
    out = kernel.run()
    return out[0] if data.ndim == 2 else out
