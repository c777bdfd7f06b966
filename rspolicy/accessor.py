"""``DataArray.rspolicy``: screen and degrade arrays in memory (or on Dask) as files are.

Importing this module registers the accessor (``import rspolicy.accessor``;
``rspolicy`` itself stays free of xarray). An array carries its grid the way
rioxarray writes it: a ``spatial_ref`` coordinate whose ``crs_wkt`` (or
``spatial_ref``) attribute is the CRS, and either its ``GeoTransform``
attribute or regular 1-D ``x``/``y`` coordinates at pixel centres.

>>> import numpy as np, xarray as xr
>>> import rspolicy.accessor
>>> from pyproj import CRS
>>> y = 4417000 - 0.3 * (np.arange(64) + 0.5)
>>> x = 448000 + 0.3 * (np.arange(64) + 0.5)
>>> da = xr.DataArray(np.ones((64, 64), "uint16"), dims=("y", "x"), coords={"y": y, "x": x},
...                   name="scene").assign_coords(spatial_ref=((), 0, {"crs_wkt": CRS(32650).to_wkt()}))
>>> decision = da.rspolicy.screen(product_class="panchromatic")
>>> decision.action.value, decision.target_gsd_m
('resample', 0.5)
>>> out = da.rspolicy.enforce(product_class="panchromatic")
>>> out.shape, float(out.x[1] - out.x[0]), out.attrs["rspolicy_action"]
((39, 39), 0.5, 'resample')
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from rspolicy.audit import open_audit_log
from rspolicy.errors import ProductReadError, RSPolicyError
from rspolicy.geometry import affine_footprint, affine_spacing
from rspolicy.model import Action, Decision, Evidence, Fact, ProductClass, ProductEvidence, Recipient, Strength
from rspolicy.policy import Policy, load_policy, request_from
from rspolicy.records import Requester, decision_record
from rspolicy.resample import area_average
from rspolicy.screen import decide

#: Attributes (of the array, then of the dataset it came from) that may name the product class.
CLASS_ATTRIBUTES = ("rspolicy_product_class", "product_class")


class ArrayBlockedError(RSPolicyError, PermissionError):
    """The policy does not let the array leave (blocked, or referred without approval), or it cannot be degraded."""

    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        super().__init__(f"{decision.path}: {decision.action.value}: {decision.why}")


@dataclass(frozen=True)
class _Grid:
    transform: Affine
    crs: CRS
    y_dim: Hashable
    x_dim: Hashable


def _grid(da: xr.DataArray) -> _Grid:
    name = da.name if da.name is not None else "array"
    if da.ndim not in (2, 3):
        raise ProductReadError(str(name), f"expected (y, x) or (band, y, x) dimensions, not {da.dims}")
    y_dim, x_dim = da.dims[-2], da.dims[-1]
    ref = da.coords.get("spatial_ref")
    wkt = None if ref is None else (ref.attrs.get("crs_wkt") or ref.attrs.get("spatial_ref"))
    if not wkt:
        raise ProductReadError(str(name), "no CRS: a spatial_ref coordinate with a crs_wkt attribute is needed")
    crs = CRS.from_wkt(str(wkt))
    geotransform = None if ref is None else ref.attrs.get("GeoTransform")
    if geotransform:
        c, a, b, f, d, e = (float(v) for v in str(geotransform).split())
        return _Grid(Affine(a, b, c, d, e, f), crs, y_dim, x_dim)
    if x_dim not in da.coords or y_dim not in da.coords:
        raise ProductReadError(str(name), "no grid: neither a GeoTransform nor x/y coordinates")
    xs, ys = np.asarray(da.coords[x_dim], dtype=float), np.asarray(da.coords[y_dim], dtype=float)
    if len(xs) < 2 or len(ys) < 2:
        raise ProductReadError(str(name), "x/y coordinates of fewer than two pixels give no pixel size")
    steps_x, steps_y = np.diff(xs), np.diff(ys)
    # Over the whole extent, and to 9 significant digits: coordinates computed in floating point carry noise
    # (1e-9 of a UTM easting) that would otherwise turn a 0.3 m grid into 0.29999999998 m. The policy's
    # tolerance (1e-6 relative) is far coarser than the rounding.
    dx = float(f"{(xs[-1] - xs[0]) / (len(xs) - 1):.9g}")
    dy = float(f"{(ys[-1] - ys[0]) / (len(ys) - 1):.9g}")
    if dx == 0 or dy == 0 or not (np.allclose(steps_x, dx, rtol=1e-6) and np.allclose(steps_y, dy, rtol=1e-6)):
        raise ProductReadError(str(name), "x/y coordinates are not a regular grid")
    return _Grid(Affine(dx, 0.0, xs[0] - dx / 2, 0.0, dy, ys[0] - dy / 2), crs, y_dim, x_dim)


def _class_from_attrs(da: xr.DataArray) -> str | None:
    for key in CLASS_ATTRIBUTES:
        if key in da.attrs:
            return str(da.attrs[key])
    return None


def array_product(da: xr.DataArray, product_class: ProductClass | str | None = None) -> ProductEvidence:
    """The evidence an array gives: its grid's spacing and footprint, size, type, and its class.

    The class comes from the caller and from the array's attributes, each a
    strong hint: when they disagree the class is unknown (held to the
    strictest class or blocked, as for files). Complex samples say SAR.
    """
    name = str(da.name) if da.name is not None else "array"
    label = f"<array {name}>"
    grid = _grid(da)
    height, width = int(da.shape[-2]), int(da.shape[-1])
    bands = int(da.shape[0]) if da.ndim == 3 else 1
    evidence = [Evidence(Fact.WIDTH, width, label, "shape"), Evidence(Fact.HEIGHT, height, label, "shape"),
                Evidence(Fact.BAND_COUNT, bands, label, "shape"), Evidence(Fact.DTYPE, str(da.dtype), label, "dtype"),
                Evidence(Fact.CRS, grid.crs.to_string(), label, "spatial_ref")]
    for spacing in affine_spacing(grid.transform, grid.crs, width, height):
        evidence.append(Evidence(Fact.GSD, spacing.finest_m, label, "grid",
                                 f"x {spacing.x_m:.6g} m, y {spacing.y_m:.6g} m; {spacing.detail}"))
    try:
        evidence.append(Evidence(Fact.FOOTPRINT, affine_footprint(grid.transform, grid.crs, width, height), label,
                                 "grid footprint"))
    except ValueError as exc:
        evidence.append(Evidence(Fact.INFO, "none", label, "grid footprint", f"no footprint: {exc}"))
    if np.issubdtype(da.dtype, np.complexfloating):
        evidence.append(Evidence(Fact.CLASS_HINT, ProductClass.SAR.value, label, "dtype",
                                 "complex samples (I/Q): single-look complex SAR", Strength.STRONG))
    for source, value in (("caller", product_class), ("attrs", _class_from_attrs(da))):
        if value is None:
            continue
        cls = ProductClass(str(value.value if isinstance(value, ProductClass) else value))
        evidence.append(Evidence(Fact.CLASS_HINT, cls.value, label, f"product_class ({source})",
                                 "the class the array's user states" if source == "caller" else
                                 "the class the array's attributes state", Strength.STRONG))
    nodata = da.attrs.get("_FillValue", da.attrs.get("nodata"))
    if nodata is not None:
        evidence.append(Evidence(Fact.NODATA, float(nodata), label, "attrs"))
    return ProductEvidence(label, None, (), tuple(evidence))


@xr.register_dataarray_accessor("rspolicy")  # type: ignore[no-untyped-call]
class RSPolicyAccessor:
    """``da.rspolicy.screen(...)`` and ``da.rspolicy.enforce(...)``."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def screen(self, policy: Policy | str | os.PathLike[str] | None = None, *,
               product_class: ProductClass | str | None = None, recipient: str | Recipient | None = None,
               purpose: str | None = None, approval: str | None = None, at: Any = None,
               log: str | os.PathLike[str] | None = None, operator: str | None = None) -> Decision:
        """The decision for this array under a policy (default ``cnsa-2022``).

        Parameters
        ----------
        policy
            A loaded policy, a name or a file.
        product_class
            The class, when the array's attributes do not say it (they may
            not loosen what it says either).
        recipient, purpose, approval, at
            The request.
        log
            Record the decision in this audit log: the same record as for a
            file, with the array's description in place of file hashes.
        operator
            Who decides, for the record.
        """
        loaded = policy if isinstance(policy, Policy) else load_policy(policy)
        request = request_from(recipient, purpose, approval, at)
        decision = decide(array_product(self._da, product_class), loaded, request)
        if log is not None:
            audit = open_audit_log(log, required=True)
            assert audit is not None
            with audit:
                requester = Requester.current(operator=operator, recipient=None if recipient is None
                                              else str(recipient), purpose=purpose)
                audit.append(decision_record(decision, requester, command="screen",
                                             inputs=[self._description(decision.path)]))
        return decision

    def _description(self, label: str) -> dict[str, Any]:
        da = self._da
        return {"path": label, "size": int(da.nbytes), "sha256": None,
                "array": {"shape": list(da.shape), "dtype": str(da.dtype), "dims": [str(d) for d in da.dims],
                          "chunked": da.chunks is not None}}

    def enforce(self, policy: Policy | str | os.PathLike[str] | None = None, *,
                product_class: ProductClass | str | None = None, recipient: str | Recipient | None = None,
                purpose: str | None = None, approval: str | None = None, at: Any = None,
                log: str | os.PathLike[str] | None = None, operator: str | None = None) -> xr.DataArray:
        """The array as it may leave: as it is, or degraded to the policy's target.

        A Dask-backed array stays lazy: it is rechunked so that no chunk
        splits a period of the factor, and each chunk is averaged on its own,
        which gives the eager result bit for bit. Nodata (``_FillValue`` or
        ``nodata`` attribute) is honoured. The result's attributes record
        the decision; its coordinates and ``spatial_ref`` describe the new grid.

        Raises
        ------
        ArrayBlockedError
            When the policy blocks the array (or refers it without approval),
            or asks for a mask, which arrays do not support.
        """
        decision = self.screen(policy, product_class=product_class, recipient=recipient, purpose=purpose,
                               approval=approval, at=at, log=log, operator=operator)
        if decision.action is Action.ALLOW:
            return self._da.copy(data=self._da.data).assign_attrs(_decision_attrs(decision, None))
        if decision.action is not Action.RESAMPLE or decision.target_gsd_m is None:
            raise ArrayBlockedError(decision)
        return self._degrade(decision)

    def _degrade(self, decision: Decision) -> xr.DataArray:
        da = self._da
        grid = _grid(da)
        height, width = int(da.shape[-2]), int(da.shape[-1])
        spacings = affine_spacing(grid.transform, grid.crs, width, height)
        target = float(decision.target_gsd_m or 0.0)
        # The finest spacing the grid gives along each axis, as for files (rspolicy.degrade.plan_degrade).
        fr = _factor(target, min(s.y_m for s in spacings))
        fc = _factor(target, min(s.x_m for s in spacings))
        if np.issubdtype(da.dtype, np.complexfloating):
            raise ArrayBlockedError(decision)  # SAR samples need their mode; arrays do not carry it
        nodata = da.attrs.get("_FillValue", da.attrs.get("nodata"))
        nodata_value = None if nodata is None else float(nodata)
        data = da.data
        out_rows = math.ceil(Fraction(height) / fr)
        out_cols = math.ceil(Fraction(width) / fc)
        if hasattr(data, "dask"):
            averaged = _lazy_average(data, fr, fc, nodata_value)
        else:
            averaged = area_average(np.asarray(data), (fr, fc), nodata=nodata_value)
        transform = grid.transform @ Affine.scale(float(fc), float(fr))
        x = transform.c + transform.a * (np.arange(out_cols) + 0.5)
        y = transform.f + transform.e * (np.arange(out_rows) + 0.5)
        coords: dict[Hashable, Any] = {grid.y_dim: y, grid.x_dim: x}
        if da.ndim == 3:
            coords[da.dims[0]] = da.coords[da.dims[0]] if da.dims[0] in da.coords else np.arange(da.shape[0])
        ref = da.coords["spatial_ref"]
        spatial_ref = xr.Variable((), ref.values, {**ref.attrs, "GeoTransform": " ".join(
            repr(v) for v in (transform.c, transform.a, transform.b, transform.f, transform.d, transform.e))})
        out = xr.DataArray(averaged, dims=da.dims, coords=coords, name=da.name,
                           attrs={**da.attrs, **_decision_attrs(decision, (fr, fc))})
        return out.assign_coords(spatial_ref=spatial_ref)


def _factor(target: float, spacing: float) -> Fraction:
    from rspolicy.degrade import _factor as degrade_factor  # noqa: PLC0415 - the files' exact rule

    return degrade_factor(target, spacing)


def _lazy_average(data: Any, fr: Fraction, fc: Fraction, nodata: float | None) -> Any:
    """Area-average a Dask array chunk by chunk, with chunks of whole periods of the factor on each axis."""
    import dask.array as dsa  # noqa: PLC0415 - only Dask-backed arrays need it

    p_row, p_col = fr.numerator, fc.numerator
    q_row, q_col = fr.denominator, fc.denominator

    def whole_periods(chunks: tuple[int, ...], period: int) -> tuple[int, ...]:
        size = max(period, (max(chunks) // period) * period)
        total = sum(chunks)
        sizes = [size] * (total // size)
        if total % size:
            sizes.append(total % size)
        return tuple(sizes)

    lead = data.chunks[:-2]
    rows = whole_periods(data.chunks[-2], p_row)
    cols = whole_periods(data.chunks[-1], p_col)
    aligned = data.rechunk((*lead, rows, cols))
    out_rows = tuple(math.ceil(Fraction(r * q_row, p_row)) for r in rows)
    out_cols = tuple(math.ceil(Fraction(c * q_col, p_col)) for c in cols)
    probe = area_average(np.zeros((1, 1), dtype=data.dtype), 1, nodata=nodata)

    def block(chunk: np.ndarray) -> np.ndarray:
        return np.asarray(area_average(chunk, (fr, fc), nodata=nodata, threads=1))

    # meta given: dask then never calls the kernel to guess the output type, so nothing runs before compute().
    return dsa.map_blocks(block, aligned, chunks=(*lead, out_rows, out_cols),  # type: ignore[no-untyped-call]
                          dtype=probe.dtype, meta=np.array((), dtype=probe.dtype))


def _decision_attrs(decision: Decision, factors: tuple[Fraction, Fraction] | None) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "rspolicy_decision_id": decision.decision_id, "rspolicy_action": decision.action.value,
        "rspolicy_policy": f"{decision.policy.name} {decision.policy.version}",
        "rspolicy_policy_sha256": decision.policy.sha256, "rspolicy_rule": decision.rule or "",
        "rspolicy_why": decision.why, "rspolicy_source_gsd_m": decision.gsd_m if decision.gsd_m is not None else "",
    }
    if decision.product_class is not ProductClass.UNKNOWN:
        # Read back as a strong class hint when the array is screened again: it cannot loosen anything.
        attrs["rspolicy_product_class"] = decision.product_class.value
    if factors is not None:
        attrs.update(rspolicy_target_gsd_m=decision.target_gsd_m or "",
                     rspolicy_factors=f"row {factors[0]}, col {factors[1]}")
    if decision.obligations.credit:
        attrs["rspolicy_credit"] = decision.obligations.credit
    if decision.obligations.conditions:
        attrs["rspolicy_conditions"] = "; ".join(decision.obligations.conditions)
    return attrs
