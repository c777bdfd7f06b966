"""Georeferencing of a degraded grid: geotransform, RPCs and GCPs rescaled exactly.

Conventions (GDAL's): a geotransform and GCP pixel/line coordinates count
from the top-left *corner* of the first pixel; RPC line/sample offsets count
from the *centre* of the first pixel (GDAL adds half a pixel when it applies
them). An output pixel that is ``f`` input pixels wide, with the top-left
corner kept, therefore maps input corner coordinate ``u`` to ``u / f`` and
input centre coordinate ``c`` to ``(c + 0.5) / f - 0.5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC


def scale_transform(transform: Affine, row_factor: Fraction, col_factor: Fraction) -> Affine:
    """The geotransform of the degraded grid: pixel edge vectors scaled, origin kept.

    >>> scale_transform(Affine(0.3, 0, 500000, 0, -0.3, 4e6), Fraction(5, 3), Fraction(5, 3))[:6]
    (0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    """
    return transform @ Affine.scale(float(col_factor), float(row_factor))


def scale_rpc(rpc: RPC, row_factor: Fraction, col_factor: Fraction) -> RPC:
    """RPCs for the degraded grid (line/sample offsets and scales; ground terms unchanged).

    >>> from rspolicy.samples.gf_optical import linear_rpc
    >>> r = scale_rpc(linear_rpc(116.5, 39.9, 0.3, 1000, 1000), Fraction(5, 3), Fraction(5, 3))
    >>> round(r.line_off, 6), round(r.line_scale, 6)
    (299.8, 300.0)
    """
    def offset(value: float, factor: Fraction) -> float:
        return float((Fraction(value) + Fraction(1, 2)) / factor - Fraction(1, 2))

    return RPC(
        height_off=rpc.height_off, height_scale=rpc.height_scale,
        lat_off=rpc.lat_off, lat_scale=rpc.lat_scale,
        long_off=rpc.long_off, long_scale=rpc.long_scale,
        line_off=offset(rpc.line_off, row_factor), line_scale=float(Fraction(rpc.line_scale) / row_factor),
        samp_off=offset(rpc.samp_off, col_factor), samp_scale=float(Fraction(rpc.samp_scale) / col_factor),
        line_num_coeff=list(rpc.line_num_coeff), line_den_coeff=list(rpc.line_den_coeff),
        samp_num_coeff=list(rpc.samp_num_coeff), samp_den_coeff=list(rpc.samp_den_coeff),
        err_bias=rpc.err_bias, err_rand=rpc.err_rand,
    )


def scale_gcps(gcps: Sequence[GroundControlPoint], row_factor: Fraction,
               col_factor: Fraction) -> list[GroundControlPoint]:
    """GCPs for the degraded grid: pixel/line divided by the factors, ground kept."""
    return [GroundControlPoint(row=g.row / float(row_factor), col=g.col / float(col_factor), x=g.x, y=g.y,
                               z=g.z, id=g.id, info=g.info) for g in gcps]


def rpb_text(rpc: RPC) -> str:
    """An RPC in the ``.rpb`` text layout CRESDA ships and GDAL reads beside a ``.tiff``."""
    def coefs(values: Sequence[float]) -> str:
        body = ",\n".join(f"\t\t\t{v:+.15E}" for v in values)
        return f"(\n{body});"

    return "\n".join([
        'satId = "XXX";', 'bandId = "XXX";', 'SpecId = "XXX";', "BEGIN_GROUP = IMAGE",
        f"\terrBias =   {float(rpc.err_bias if rpc.err_bias is not None else 1.0)!r};",
        f"\terrRand =    {float(rpc.err_rand if rpc.err_rand is not None else 0.0)!r};",
        f"\tlineOffset = {rpc.line_off:.15f};", f"\tsampOffset = {rpc.samp_off:.15f};",
        f"\tlatOffset =   {rpc.lat_off:.15f};", f"\tlongOffset =  {rpc.long_off:.15f};",
        f"\theightOffset = {rpc.height_off:.15f};",
        f"\tlineScale = {rpc.line_scale:.15f};", f"\tsampScale = {rpc.samp_scale:.15f};",
        f"\tlatScale =    {rpc.lat_scale:.15f};", f"\tlongScale =    {rpc.long_scale:.15f};",
        f"\theightScale = {rpc.height_scale:.15f};",
        f"\tlineNumCoef = {coefs(rpc.line_num_coeff)}", f"\tlineDenCoef = {coefs(rpc.line_den_coeff)}",
        f"\tsampNumCoef = {coefs(rpc.samp_num_coeff)}", f"\tsampDenCoef = {coefs(rpc.samp_den_coeff)}",
        "END_GROUP = IMAGE", "END;", "",
    ])
