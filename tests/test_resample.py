"""Tests of the area-averaging kernel against an independent exact reference.

The reference walks every output pixel's interval and every input pixel it
overlaps, with :class:`fractions.Fraction` arithmetic throughout, so it shares
no code, no float rounding and no period structure with the kernel.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rspolicy.errors import ResampleError
from rspolicy.resample import MAX_DENOMINATOR, area_average, as_fraction, output_shape, period

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32]
FLOAT_DTYPES = [np.float32, np.float64]


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def _spans(n: int, f: Fraction) -> list[list[tuple[int, Fraction]]]:
    """For each output pixel on an axis of n inputs: (input index, covered length)."""
    n_out = math.ceil(n / f)
    spans = []
    for j in range(n_out):
        lo, hi = j * f, min((j + 1) * f, Fraction(n))
        pairs = []
        for i in range(math.floor(lo), math.ceil(hi)):
            w = min(Fraction(i + 1), hi) - max(Fraction(i), lo)
            if w > 0:
                pairs.append((i, w))
        spans.append(pairs)
    return spans


def reference(
    a: np.ndarray, fr: Fraction, fc: Fraction, valid: np.ndarray | None = None, square: bool = False
) -> list[list[Fraction | None]]:
    """Exact area-weighted mean of a 2-D array; None where nothing is valid."""
    rows, cols = a.shape
    out: list[list[Fraction | None]] = []
    for rspan in _spans(rows, fr):
        line: list[Fraction | None] = []
        for cspan in _spans(cols, fc):
            total = Fraction(0)
            weight = Fraction(0)
            for i, wr in rspan:
                for j, wc in cspan:
                    if valid is not None and not valid[i, j]:
                        continue
                    v = a[i, j]
                    x = Fraction(int(v)) if a.dtype.kind in "iu" else Fraction(float(v))
                    total += wr * wc * (x * x if square else x)
                    weight += wr * wc
            line.append(total / weight if weight else None)
        out.append(line)
    return out


def ref_int(a: np.ndarray, fr: Fraction, fc: Fraction, **kw: Any) -> np.ndarray:
    """Correctly rounded (half to even) reference for integer input."""
    ref = reference(a, fr, fc, **kw)
    return np.array([[round(v) if v is not None else -(2**40) for v in line] for line in ref], dtype=np.int64)


def ref_float(a: np.ndarray, fr: Fraction, fc: Fraction, **kw: Any) -> np.ndarray:
    ref = reference(a, fr, fc, **kw)
    return np.array([[float(v) if v is not None else math.nan for v in line] for line in ref])


def assert_float_close(out: np.ndarray, ref: np.ndarray, a: np.ndarray) -> None:
    """Within one ulp of the output dtype (plus float64 cancellation noise)."""
    assert out.shape == ref.shape
    nan = np.isnan(ref)
    assert (np.isnan(out) == nan).all()
    o, r = out[~nan].astype(np.float64), ref[~nan]
    scale = float(np.nanmax(np.abs(a.astype(np.float64)))) if a.size else 0.0
    tol = np.spacing(np.abs(r).astype(out.dtype)).astype(np.float64) + 1e-12 * scale
    assert (np.abs(o - r) <= tol).all(), np.abs(o - r).max()


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

small_fractions = st.builds(
    lambda q, extra: Fraction(q + extra, q), st.integers(1, 7), st.integers(0, 14)
)
axis_factors = st.one_of(small_fractions, st.sampled_from([Fraction(5, 3), Fraction(5, 4), Fraction(2), Fraction(1)]))


def int_arrays(dtype: Any, max_side: int = 11) -> st.SearchStrategy[np.ndarray]:
    info = np.iinfo(dtype)
    values = st.one_of(
        st.integers(int(info.min), int(info.max)),
        st.sampled_from([int(info.min), int(info.max), 0, 1, 2]),
    )
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=max_side), elements=values)


# --------------------------------------------------------------------------
# Factors, periods, shapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.5 / 0.3, Fraction(5, 3)),
        (0.5 / 0.4, Fraction(5, 4)),
        (1.0 / 0.81, Fraction(100, 81)),
        (2, Fraction(2)),
        (1.0, Fraction(1)),
        (Fraction(7, 3), Fraction(7, 3)),
        (np.float64(1.5), Fraction(3, 2)),
        (np.int32(3), Fraction(3)),
    ],
)
def test_as_fraction_known(value: Any, expected: Fraction) -> None:
    assert as_fraction(value) == expected


@pytest.mark.parametrize(
    "value",
    [0.5 / 0.3, 0.5 / 0.4, 1.0 / 0.81, 2 / 1.999999, 0.5 / 0.29999999999999993, 1 + 2**-52, 1.0 / 0.3, 0.7 / 0.5],
)
def test_as_fraction_never_finer(value: float) -> None:
    frac = as_fraction(value)
    assert float(frac) >= value
    assert frac.denominator <= MAX_DENOMINATOR
    # Only float noise below, never a real refinement.
    assert frac >= Fraction(math.nextafter(value, 0.0))


@given(st.floats(1.0, 1e4, allow_nan=False, allow_infinity=False), st.integers(1, 60))
@SETTINGS
def test_as_fraction_bounded_denominator(value: float, limit: int) -> None:
    frac = as_fraction(value, max_denominator=limit)
    assert frac.denominator <= limit
    assert float(frac) >= value
    # It is the smallest such fraction: brute force over every denominator.
    candidates = [Fraction(math.ceil(Fraction(value) * q), q) for q in range(1, limit + 1)]
    best = min(candidates)
    assert frac == best or float(frac) == value


@given(st.floats(1.0, 1e6, allow_nan=False, allow_infinity=False))
@SETTINGS
def test_as_fraction_any_float(value: float) -> None:
    frac = as_fraction(value)
    assert float(frac) >= value
    assert abs(frac - Fraction(value)) <= Fraction(value) * Fraction(1, 10**6)


def test_period_and_shape() -> None:
    assert period(0.5 / 0.3) == (5, 3)
    assert period(2) == (2, 1)
    assert period(Fraction(10, 4)) == (5, 2)
    assert output_shape(10000, 10000, 0.5 / 0.3) == (6000, 6000)
    assert output_shape(7, 5, (2, Fraction(5, 3))) == (4, 3)
    assert output_shape(1, 1, 1000) == (1, 1)
    with pytest.raises(ResampleError):
        period((2, 2))  # type: ignore[arg-type]
    with pytest.raises(ResampleError):
        output_shape(0, 3, 2)


# --------------------------------------------------------------------------
# Exactness against the reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", INT_DTYPES)
@given(data=st.data(), fr=axis_factors, fc=axis_factors)
@SETTINGS
def test_integer_mean_correctly_rounded(dtype: Any, data: st.DataObject, fr: Fraction, fc: Fraction) -> None:
    a = data.draw(int_arrays(dtype))
    out = area_average(a, (fr, fc))
    assert out.dtype == a.dtype
    assert out.shape == output_shape(*a.shape, (fr, fc))
    np.testing.assert_array_equal(out.astype(np.int64), ref_int(a, fr, fc))


@pytest.mark.parametrize("dtype", [*FLOAT_DTYPES, np.float16])
@given(data=st.data(), fr=axis_factors, fc=axis_factors)
@SETTINGS
def test_float_mean_within_rounding(dtype: Any, data: st.DataObject, fr: Fraction, fc: Fraction) -> None:
    a = data.draw(
        hnp.arrays(
            dtype,
            hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=10),
            elements=st.floats(-1e3, 1e3, width=np.dtype(dtype).itemsize * 8),
        )
    )
    out = area_average(a, (fr, fc))
    assert out.dtype == a.dtype
    assert_float_close(out, ref_float(a, fr, fc), a)


@pytest.mark.parametrize(
    "factor",
    [
        Fraction(100, 81),  # long period: grouped weights
        Fraction(37, 30),  # row period > 32: one unit per group
        Fraction(40),  # integer factor with a long period
        Fraction(201, 2),  # one output row from > 64 input rows: chunked
        Fraction(20, 13),  # uint16 needs float64 unless the data are small
        as_fraction(2 / 1.999999),  # a huge period: everything is "tail"
    ],
)
def test_long_periods_exact(factor: Fraction) -> None:
    rng = np.random.default_rng(7)
    rows = max(130, 3 * factor.numerator // factor.denominator)
    a = rng.integers(0, 65536, (rows, 23), dtype=np.uint16)
    a[: rows // 2] &= 0x0FFF  # small values: the float32 branch for part of the units
    np.testing.assert_array_equal(area_average(a, (factor, Fraction(5, 3))).astype(np.int64),
                                  ref_int(a, factor, Fraction(5, 3)))
    np.testing.assert_array_equal(area_average(a.T, (Fraction(5, 3), factor)).astype(np.int64),
                                  ref_int(a.T, Fraction(5, 3), factor))


@given(a=int_arrays(np.uint16, max_side=30), nodata=st.sampled_from([None, 0, 65535]))
@SETTINGS
def test_factor_two_fast_path(a: np.ndarray, nodata: int | None) -> None:
    # The packed-integer path for factor 2 against the reference, odd sizes included.
    out = area_average(a, 2, nodata=nodata)
    valid = None if nodata is None else a != nodata
    ref = ref_int(a, Fraction(2), Fraction(2), valid=valid)
    if nodata is not None:
        ref[ref == -(2**40)] = nodata
    np.testing.assert_array_equal(out.astype(np.int64), ref)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16])
def test_factor_two_ties_and_extremes(dtype: Any) -> None:
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    a = rng.choice(np.array([info.min, info.min + 1, info.max - 1, info.max, 0, 1, 2, 3], dtype=dtype), (64, 65))
    out = area_average(a, 2, threads=2)
    np.testing.assert_array_equal(out.astype(np.int64), ref_int(a, Fraction(2), Fraction(2)))


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64])
@given(data=st.data(), fr=axis_factors, fc=axis_factors, rows=st.integers(1, 40), cols=st.integers(1, 40))
@SETTINGS
def test_constant_stays_constant(
    dtype: Any, data: st.DataObject, fr: Fraction, fc: Fraction, rows: int, cols: int
) -> None:
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        value = data.draw(st.integers(int(info.min), int(info.max)))
    else:
        value = data.draw(st.floats(-1e30, 1e30))
    a = np.full((rows, cols), value, dtype=dtype)
    out = area_average(a, (fr, fc))
    assert out.shape == output_shape(rows, cols, (fr, fc))
    if np.dtype(dtype) != np.float64:
        # Sums of float32 (or integer) values times integer weights are exact
        # in float64, so the mean of a constant is the constant, bit for bit.
        assert (out == a.flat[0]).all()
    else:
        np.testing.assert_allclose(out, a.flat[0], rtol=4 * np.finfo(dtype).eps)


@given(
    fr=axis_factors,
    fc=axis_factors,
    value=st.complex_numbers(max_magnitude=1e3, allow_nan=False, allow_infinity=False, width=64),
)
@SETTINGS
def test_constant_complex_modes(fr: Fraction, fc: Fraction, value: complex) -> None:
    a = np.full((9, 7), value, dtype=np.complex64)
    coherent = area_average(a, (fr, fc), sar_mode="coherent")
    assert coherent.dtype == np.complex64
    np.testing.assert_allclose(coherent, a[0, 0], rtol=1e-6, atol=1e-6 * abs(value))
    intensity = area_average(a, (fr, fc), sar_mode="intensity")
    assert intensity.dtype == np.float32
    # (atol: the power of a tiny sample is a float32 subnormal, with fewer digits.)
    np.testing.assert_allclose(intensity, abs(complex(a[0, 0])) ** 2, rtol=1e-6, atol=np.finfo(np.float32).tiny)
    amp = area_average(np.abs(a), (fr, fc), sar_mode="amplitude")
    assert amp.dtype == np.float32
    np.testing.assert_allclose(amp, abs(a[0, 0]), rtol=1e-6)


@given(
    f=st.integers(1, 5),
    blocks=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    data=st.data(),
)
@SETTINGS
def test_mean_preserved_on_whole_blocks(f: int, blocks: tuple[int, int], data: st.DataObject) -> None:
    shape = (blocks[0] * f, blocks[1] * f)
    a = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e6, 1e6)))
    out = area_average(a, f)
    np.testing.assert_allclose(out.mean(), a.mean(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(out, a.reshape(blocks[0], f, blocks[1], f).mean(axis=(1, 3)), rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("dtype", [*INT_DTYPES, *FLOAT_DTYPES, np.float16])
def test_factor_one_is_identity(dtype: Any) -> None:
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, (13, 17), endpoint=True).astype(dtype)
    else:
        a = (rng.normal(size=(13, 17)) * 1e3).astype(dtype)
        a[3, 4] = np.nan
    for factor in (1, 1.0, Fraction(1), (1, 1)):
        out = area_average(a, factor)
        assert out.dtype == a.dtype
        np.testing.assert_array_equal(out, a)  # NaN == NaN here: bit-exact
        assert out is not a
    c = (a[..., None] + 1j * a[..., None]).astype(np.complex64)[..., 0] if np.dtype(dtype).kind == "f" else None
    if c is not None:
        np.testing.assert_array_equal(area_average(c, 1, sar_mode="coherent"), c)


@given(data=st.data(), fr=axis_factors, fc=axis_factors)
@SETTINGS
def test_distinct_axes_and_3d(data: st.DataObject, fr: Fraction, fc: Fraction) -> None:
    bands = data.draw(st.integers(1, 3))
    a = data.draw(hnp.arrays(np.int16, (bands, data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12)))))
    out = area_average(a, (fr, fc))
    assert out.shape == (bands, *output_shape(a.shape[1], a.shape[2], (fr, fc)))
    for b in range(bands):
        np.testing.assert_array_equal(out[b], area_average(a[b], (fr, fc)))
        np.testing.assert_array_equal(out[b].astype(np.int64), ref_int(a[b], fr, fc))


def test_rows_and_cols_not_swapped() -> None:
    a = np.arange(6 * 4, dtype=np.float64).reshape(6, 4)
    out = area_average(a, (3, 2))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, a.reshape(2, 3, 2, 2).mean(axis=(1, 3)))


def test_edges_average_what_they_cover() -> None:
    a = np.array([[1.0, 2.0, 3.0, 4.0, 5.0]])
    # Factor 2: [1, 2], [3, 4], then 5 alone (not 5/2).
    np.testing.assert_allclose(area_average(a, (1, 2)), [[1.5, 3.5, 5.0]])
    # Factor 5/3 on 5 columns: [0, 5/3) [5/3, 10/3) [10/3, 5).
    np.testing.assert_allclose(
        area_average(a, (1, Fraction(5, 3))), [[(1 + 2 * 2 / 3) / (5 / 3), (2 / 3 + 3 + 4 / 3) / (5 / 3), 4.6]]
    )
    # An edge pixel covering a third of one input pixel is that pixel's value.
    b = np.arange(4.0).reshape(1, 4) + 10
    np.testing.assert_allclose(area_average(b, (1, Fraction(3, 2))), [[(10 + 11 / 2) / 1.5, (11 / 2 + 12) / 1.5, 13.0]])


# --------------------------------------------------------------------------
# Invalid pixels
# --------------------------------------------------------------------------


@given(data=st.data(), fr=axis_factors, fc=axis_factors)
@SETTINGS
def test_nodata_excluded_integers(data: st.DataObject, fr: Fraction, fc: Fraction) -> None:
    a = data.draw(hnp.arrays(np.uint16, data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=12)),
                             elements=st.sampled_from([0, 1, 7, 1000, 65535])))
    out = area_average(a, (fr, fc), nodata=0)
    ref = ref_int(a, fr, fc, valid=a != 0)
    ref[ref == -(2**40)] = 0
    np.testing.assert_array_equal(out.astype(np.int64), ref)


@given(data=st.data(), fr=axis_factors, fc=axis_factors, nodata=st.sampled_from([None, -9999.0, np.nan]))
@SETTINGS
def test_nan_and_nodata_excluded_floats(data: st.DataObject, fr: Fraction, fc: Fraction, nodata: float | None) -> None:
    a = data.draw(hnp.arrays(np.float32, data.draw(hnp.array_shapes(min_dims=2, max_dims=2, max_side=12)),
                             elements=st.sampled_from([np.nan, -9999.0, 1.5, -2.25, 100.0, np.inf, -np.inf])))
    out = area_average(a, (fr, fc), nodata=nodata)
    valid = np.isfinite(a)
    if nodata is not None and not math.isnan(nodata):
        valid &= a != nodata
    ref = ref_float(a, fr, fc, valid=valid)
    fill = math.nan if nodata is None else nodata
    if not math.isnan(fill):
        ref[np.isnan(ref)] = fill
    assert_float_close(out, ref, np.where(valid, a, 0))


def test_all_nodata_block() -> None:
    a = np.full((4, 4), 7, dtype=np.uint16)
    a[:2, :2] = 0
    np.testing.assert_array_equal(area_average(a, 2, nodata=0), [[0, 7], [7, 7]])
    f = a.astype(np.float32)
    f[:2, :2] = np.nan
    out = area_average(f, 2)
    assert np.isnan(out[0, 0]) and (out.ravel()[1:] == 7).all()
    assert area_average(f, 2, nodata=-1.0)[0, 0] == -1.0


def test_masks() -> None:
    a = np.array([[1, 3, 5, 7], [1, 3, 5, 7]], dtype=np.uint8)
    mask = np.array([[True, False, True, True], [True, False, False, False]])
    # Block 1: 1, 1 valid; block 2: only 5 and 7 valid.
    np.testing.assert_array_equal(area_average(a, 2, mask=mask, nodata=255), [[1, 6]])
    gdal_mask = mask.astype(np.uint8) * 255
    np.testing.assert_array_equal(area_average(a, 2, mask=gdal_mask, nodata=255), [[1, 6]])
    # A one-band mask applies to every band.
    cube = np.stack([a, a * 2])
    np.testing.assert_array_equal(area_average(cube, 2, mask=mask, nodata=255), [[[1, 6]], [[2, 12]]])
    # numpy masked arrays: their mask is True where *invalid*.
    ma = np.ma.masked_array(a, mask=~mask)
    np.testing.assert_array_equal(area_average(ma, 2, nodata=255), [[1, 6]])
    everything_masked = np.zeros_like(mask)
    np.testing.assert_array_equal(area_average(a, 2, mask=everything_masked, nodata=255), [[255, 255]])
    # Masking without a nodata value to mark empty output is refused for integers ...
    with pytest.raises(ResampleError, match="nodata"):
        area_average(a, 2, mask=mask)
    # ... but fine when the mask hides nothing.
    np.testing.assert_array_equal(area_average(a, 2, mask=np.ones_like(mask)), [[2, 6]])
    out = area_average(a.astype(np.float32), 2, mask=mask)
    np.testing.assert_allclose(out, [[1, 6]])


def test_large_masked_threaded_matches_serial() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 4000, (2, 700, 409), dtype=np.uint16)
    a[:, 100:130, 50:90] = 0
    for factor in (2, Fraction(5, 3), (Fraction(5, 4), 3)):
        one = area_average(a, factor, nodata=0, threads=1)
        two = area_average(a, factor, nodata=0, threads=2)
        np.testing.assert_array_equal(one, two)



def _threaded_size_ramp() -> np.ndarray:
    """Big enough that the kernel uses its helper threads."""
    return np.arange(700 * 409, dtype=np.uint16).reshape(700, 409)


def _threaded_in_child(conn: Any) -> None:
    conn.send(area_average(_threaded_size_ramp(), Fraction(5, 3), threads=2))


def test_threaded_kernel_works_in_a_forked_child() -> None:
    """The helper threads are kept between calls; a forked child must not wait on its parent's."""
    import multiprocessing

    a = _threaded_size_ramp()
    expected = area_average(a, Fraction(5, 3), threads=2)  # the parent's helper threads now exist
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_threaded_in_child, args=(child,))
    proc.start()
    try:
        assert parent.poll(60), "the kernel hung in a forked child"
        np.testing.assert_array_equal(parent.recv(), expected)
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def test_a_helper_thread_error_reaches_the_caller_and_the_next_call_works(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    import rspolicy.resample as resample_module

    original = resample_module._Kernel._unit
    helper_failed = threading.Event()

    def failing_in_helpers(self: Any, band: int, unit: Any, ws: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            helper_failed.set()
            raise MemoryError("helper failed")
        # On a busy machine the calling thread could otherwise finish every unit before a helper takes one.
        helper_failed.wait(10)
        original(self, band, unit, ws)

    a = _threaded_size_ramp()
    monkeypatch.setattr(resample_module._Kernel, "_unit", failing_in_helpers)
    with pytest.raises(MemoryError, match="helper failed"):
        area_average(a, Fraction(5, 3), threads=2)
    monkeypatch.undo()
    np.testing.assert_array_equal(area_average(a, Fraction(5, 3), threads=2),
                                  area_average(a, Fraction(5, 3), threads=1))

# --------------------------------------------------------------------------
# Streaming contract
# --------------------------------------------------------------------------


def _strips(rows: int, p: int, ks: list[int]) -> list[tuple[int, int]]:
    cuts, start, i = [], 0, 0
    while start < rows:
        stop = min(rows, start + p * ks[i % len(ks)])
        cuts.append((start, stop))
        start, i = stop, i + 1
    return cuts


@pytest.mark.parametrize(
    ("dtype", "kw"),
    [
        (np.uint16, {}),
        (np.uint16, {"nodata": 0}),
        (np.int16, {}),
        (np.float32, {}),
        (np.float64, {"nodata": -1.0}),
        (np.complex64, {"sar_mode": "intensity"}),
        (np.complex64, {"sar_mode": "coherent"}),
        (np.float32, {"sar_mode": "amplitude"}),
    ],
)
@given(
    fr=st.one_of(axis_factors, st.just(Fraction(37, 30))),
    fc=axis_factors,
    ks=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=25, deadline=None)
def test_streaming_strips_bit_exact(
    dtype: Any, kw: dict[str, Any], fr: Fraction, fc: Fraction, ks: list[int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 90)), int(rng.integers(1, 40)))
    if np.dtype(dtype).kind in "iu":
        a = rng.integers(0, 3000, shape).astype(dtype)
    else:
        a = (rng.normal(size=shape) * 100).astype(dtype)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * (rng.normal(size=shape) * 100).astype(np.float32)
        a.flat[rng.integers(0, a.size, 3)] = np.nan
        if kw.get("sar_mode") == "amplitude":
            a = np.abs(a)
    if "nodata" in kw:
        a[a.shape[0] // 3, :] = kw["nodata"]
    p, q = period(fr)
    whole = area_average(a, (fr, fc), **kw)
    pieces = []
    for start, stop in _strips(a.shape[0], p, ks):
        piece = area_average(a[start:stop], (fr, fc), threads=1, **kw)
        if stop - start == p * ks[len(pieces) % len(ks)]:
            assert piece.shape[0] == q * (stop - start) // p
        pieces.append(piece)
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


# --------------------------------------------------------------------------
# SAR modes
# --------------------------------------------------------------------------


def test_sar_modes_known_values() -> None:
    z = np.array([[1 + 1j, 1 - 1j], [3 + 0j, -1 + 2j]], dtype=np.complex64)
    np.testing.assert_allclose(area_average(z, 2, sar_mode="coherent"), [[1 + 0.5j]])
    # |z|**2 = 2, 2, 9, 5
    out = area_average(z, 2, sar_mode="intensity")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[4.5]])
    z128 = z.astype(np.complex128)
    assert area_average(z128, 2, sar_mode="intensity").dtype == np.float64
    assert area_average(z128, 2, sar_mode="coherent").dtype == np.complex128
    amp = np.array([[3, 4], [5, 0]], dtype=np.uint8)
    # sqrt((9 + 16 + 25 + 0) / 4) = 3.5355...
    np.testing.assert_array_equal(area_average(amp, 2, sar_mode="amplitude"), [[4]])
    np.testing.assert_allclose(area_average(amp.astype(np.float32), 2, sar_mode="amplitude"), [[math.sqrt(12.5)]])
    # Amplitude ties round half to even: sqrt((4 + 4 + 0 + 1) / 4) = 1.5 -> 2; 2.5 -> 2.
    np.testing.assert_array_equal(area_average(np.array([[2, 2], [0, 1]], np.uint16), 2, sar_mode="amplitude"), [[2]])
    np.testing.assert_array_equal(area_average(np.array([[5, 0, 0, 0]], np.uint16), (1, 4), sar_mode="amplitude"),
                                  [[2]])


def test_sar_mode_with_invalid_pixels() -> None:
    z = np.array([[2 + 0j, np.nan, 0 + 1j, 1 + 1j]], dtype=np.complex64)
    np.testing.assert_allclose(area_average(z, (1, 2), sar_mode="intensity"), [[4.0, 1.5]])
    np.testing.assert_allclose(area_average(z, (1, 2), sar_mode="coherent"), [[2 + 0j, 0.5 + 1j]])
    out = area_average(z, (1, 4), sar_mode="coherent", nodata=0.0)
    np.testing.assert_allclose(out, [[(2 + 1j + 1 + 1j) / 3]], rtol=1e-6)
    empty = area_average(np.array([[np.nan]], np.complex64), 1, sar_mode="intensity")
    assert np.isnan(empty).all()


def test_sar_large_threaded() -> None:
    rng = np.random.default_rng(11)
    z = (rng.normal(size=(600, 500)) + 1j * rng.normal(size=(600, 500))).astype(np.complex64)
    out = area_average(z, 2, sar_mode="intensity", threads=2)
    ref = (np.abs(z.astype(np.complex128)) ** 2).reshape(300, 2, 250, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out, ref, rtol=2 * np.finfo(np.float32).eps)


# --------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------

GOOD = np.zeros((4, 4), np.uint16)


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        ((GOOD, 0.5), {}, ">= 1"),
        ((GOOD, 0), {}, ">= 1"),
        ((GOOD, math.nan), {}, "finite"),
        ((GOOD, math.inf), {}, "finite"),
        ((GOOD, "2"), {}, "number"),
        ((GOOD, True), {}, "real number"),
        ((GOOD, None), {}, "real number"),
        ((GOOD, (2, 2, 2)), {}, "pair"),
        ((GOOD, (2, 0.9)), {}, ">= 1"),
        ((GOOD, Fraction(1, 2)), {}, ">= 1"),
        ((np.zeros(4), 2), {}, "dimensions"),
        ((np.zeros((1, 2, 2, 2)), 2), {}, "dimensions"),
        ((np.zeros((0, 4)), 2), {}, "empty"),
        ((np.array([["a"]]), 2), {}, "numeric"),
        ((np.zeros((2, 2), bool), 2), {}, "numeric"),
        ((np.zeros((2, 2), np.int64), 2), {}, "int64"),
        ((np.zeros((2, 2), np.complex64), 2), {}, "sar_mode"),
        ((np.zeros((2, 2), np.complex64), 2), {"sar_mode": "amplitude"}, "sar_mode"),
        ((GOOD, 2), {"sar_mode": "intensity"}, "complex"),
        ((GOOD, 2), {"sar_mode": "multilook"}, "sar_mode"),
        ((GOOD, 2), {"nodata": -1}, "range"),
        ((GOOD, 2), {"nodata": 0.5}, "integer"),
        ((GOOD, 2), {"nodata": math.nan}, "integer"),
        ((GOOD, 2), {"nodata": "0"}, "number"),
        ((GOOD, 2), {"mask": np.ones((3, 3), bool), "nodata": 0}, "mask shape"),
        ((GOOD, 2), {"mask": np.ones((4, 4), np.float32), "nodata": 0}, "mask"),
        ((GOOD, 2), {"threads": 0}, "threads"),
    ],
)
def test_bad_arguments(args: tuple[Any, ...], kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ResampleError, match=match) as info:
        area_average(*args, **kw)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_fraction_arguments() -> None:
    for bad in (0.99, -2, math.nan, "5/3", None):
        with pytest.raises(ResampleError):
            as_fraction(bad)  # type: ignore[arg-type]
    with pytest.raises(ResampleError):
        as_fraction(2.0, max_denominator=0)


def test_input_not_modified_and_views_accepted() -> None:
    rng = np.random.default_rng(2)
    base = rng.integers(0, 1000, (40, 60), dtype=np.uint16)
    keep = base.copy()
    view = base[3:, ::2]  # strided, odd offset
    out = area_average(view, 2)
    np.testing.assert_array_equal(out, area_average(np.ascontiguousarray(view), 2))
    np.testing.assert_array_equal(base, keep)
    swapped = base.astype(">u2")
    np.testing.assert_array_equal(area_average(swapped, Fraction(5, 3)), area_average(base, Fraction(5, 3)))
    fortran = np.asfortranarray(base)
    np.testing.assert_array_equal(area_average(fortran, 2), area_average(base, 2))
    z = (base + 1j * base[::-1]).astype(">c8")
    native = z.astype(np.complex64)
    for mode in ("coherent", "intensity"):
        out = area_average(z, Fraction(5, 3), sar_mode=mode)
        assert out.dtype.isnative
        np.testing.assert_array_equal(out, area_average(native, Fraction(5, 3), sar_mode=mode))


def _exact_block2(a: np.ndarray) -> np.ndarray:
    """Factor-2 reference for large integer arrays: exact int64 sums, half-even."""
    rows, cols = a.shape
    x = np.zeros((rows + rows % 2, cols + cols % 2), np.int64)
    n = np.zeros_like(x)
    x[:rows, :cols] = a
    n[:rows, :cols] = 1
    s = x.reshape(x.shape[0] // 2, 2, -1, 2).sum(axis=(1, 3))
    d = n.reshape(n.shape[0] // 2, 2, -1, 2).sum(axis=(1, 3))
    q, r = np.divmod(s, d)
    return q + ((2 * r > d) | ((2 * r == d) & (q % 2 == 1)))


@pytest.mark.parametrize("bits", [8, 12, 14, 15, 16])
def test_factor_two_data_ranges(bits: int) -> None:
    # 14-bit data take a cheaper packed path than wider data; a scene mixing
    # both, with odd sizes, must come out exact either way.
    rng = np.random.default_rng(bits)
    a = rng.integers(0, 1 << min(bits, 14), (301, 257), dtype=np.uint16)
    a[150:170] = rng.integers(0, 1 << bits, (20, 257), dtype=np.uint16)
    a[0, 0] = (1 << 14) - 1
    for threads in (1, 2):
        np.testing.assert_array_equal(area_average(a, 2, threads=threads), _exact_block2(a))
    np.testing.assert_array_equal(area_average(a[::-1].copy(), 2), _exact_block2(a[::-1]))
