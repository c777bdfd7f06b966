"""Synthetic CRESDA optical products: ``<ProductMetaData>`` sidecar, ``.rpb`` and image.

The sidecar is written field for field, in the real order, as the GF-1/GF-2
L1A sidecars of CRESDA deliveries are (2020 field set, or the 2023 "extended"
set with ReceiveStationID, StripID, DDSFlag, RegionName, DataSize and the
centre coordinates). The RPB is written in the real text layout that GDAL
reads beside a ``.tiff``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

from rspolicy.georef import rpb_text

#: WGS84 semi-major axis (m) and first eccentricity squared.
_WGS84_A = 6_378_137.0
_WGS84_E2 = 6.694_379_990_14e-3


def metres_per_degree(lat: float) -> tuple[float, float]:
    """WGS84 ground metres per degree of longitude and of latitude at latitude ``lat``.

    The ellipsoid's radii of curvature, so that a synthetic product's stated
    spacing is its true spacing at the scene centre (the equator's 110.57 km
    per degree of latitude is 0.4 % short at 40 degrees north).

    >>> [round(v, 1) for v in metres_per_degree(0.0)], [round(v, 1) for v in metres_per_degree(40.0)]
    ([111319.5, 110574.3], [85393.9, 111034.6])
    """
    phi = math.radians(lat)
    w = math.sqrt(1.0 - _WGS84_E2 * math.sin(phi) ** 2)
    prime_vertical = _WGS84_A / w
    meridian = _WGS84_A * (1.0 - _WGS84_E2) / w**3
    return math.radians(1.0) * prime_vertical * math.cos(phi), math.radians(1.0) * meridian


@dataclass(frozen=True)
class OpticalScene:
    """What a synthetic CRESDA optical sidecar says."""

    satellite: str = "GF2"
    sensor: str = "PMS1"
    bands: str = "5"
    image_gsd: str = "0.81"
    width: int = 512
    height: int = 512
    product_id: str = "4793969"
    scene_id: str = "7714925"
    orbit_id: str = "30951"
    receive_time: str = "2020-05-10 17:03:20"
    produce_time: str = "2020-05-11 06:35:25"
    start_time: str = "2020-05-11 01:03:18"
    end_time: str = "2020-05-11 01:03:21"
    center_time: str = "2020-05-11 01:03:20"
    center_lon: float = -90.99
    center_lat: float = 17.60
    gain_mode: str = "G2"
    integration_level: str = "S4"
    extended: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    def corners(self, gsd_m: float) -> list[tuple[float, float]]:
        """(lon, lat) of the TopLeft, TopRight, BottomRight, BottomLeft corners of a north-up scene."""
        per_lon, per_lat = metres_per_degree(self.center_lat)
        half_w = self.width * gsd_m / 2 / per_lon
        half_h = self.height * gsd_m / 2 / per_lat
        lon, lat = self.center_lon, self.center_lat
        return [(lon - half_w, lat + half_h), (lon + half_w, lat + half_h),
                (lon + half_w, lat - half_h), (lon - half_w, lat - half_h)]


def sidecar_xml(scene: OpticalScene) -> str:
    """The sidecar text for a scene, in the real field order."""
    gsd = float(scene.image_gsd)
    (tl, tr, br, bl) = scene.corners(gsd)
    ext = scene.extended
    fields: list[tuple[str, str | None]] = [
        ("SatelliteID", scene.satellite),
        *([("ReceiveStationID", "KRN")] if ext else []),
        ("SensorID", scene.sensor),
        ("ReceiveTime", scene.receive_time),
        ("OrbitID", scene.orbit_id),
        *([("OrbitType", "GPS"), ("AttType", "DMA"), ("StripID", "464621")] if ext else []),
        ("ProduceType", "STANDARD"),
        ("SceneID", scene.scene_id),
        *([("DDSFlag", "TRUE")] if ext else []),
        ("ProductID", scene.product_id),
        *([("ProductQuality", ""), ("ProductQualityReport", ""), ("ProductLevel", "LEVEL1A")] if ext else
          [("ProductLevel", "LEVEL1A"), ("ProductQuality", None), ("ProductQualityReport", None)]),
        ("ProductFormat", "GEOTIFF"),
        ("ProduceTime", scene.produce_time),
        ("Bands", scene.bands),
        ("ScenePath", "571"), ("SceneRow", "201"), ("SatPath", "571"), ("SatRow", "201"),
        ("SceneCount", "1"), ("SceneShift", "1"),
        ("StartTime", scene.start_time), ("EndTime", scene.end_time), ("CenterTime", scene.center_time),
        *([("StartLine", ""), ("EndLine", "")] if ext else []),
        ("ImageGSD", scene.image_gsd),
        ("WidthInPixels", str(scene.width)), ("HeightInPixels", str(scene.height)),
        ("WidthInMeters", None), ("HeightInMeters", None),
        *([("RegionName", "CH")] if ext else []),
        ("CloudPercent", "2"),
        *([("DataSize", "384")] if ext else [("QualityInfo", ""), ("PixelBits", ""), ("ValidPixelBits", "")]),
        ("RollViewingAngle", "0"), ("PitchViewingAngle", "0"),
        ("RollSatelliteAngle", "15.0121"), ("PitchSatelliteAngle", "0.533298"), ("YawSatelliteAngle", "3.58622"),
        ("SolarAzimuth", "86.6947"), ("SolarZenith", "13.5714"),
        ("SatelliteAzimuth", "279.945"), ("SatelliteZenith", "74.8459"),
        ("GainMode", scene.gain_mode), ("IntegrationTime", "0.0001203"), ("IntegrationLevel", scene.integration_level),
        ("MapProjection", None), ("EarthEllipsoid", "WGS84"), ("ZoneNo", None),
        ("ResamplingKernel", None), ("HeightMode", None),
        *([("EphemerisData", "GPS"), ("AttitudeData", "DMA"), ("RadiometricMethod", "LAB")] if ext else []),
        ("MtfCorrection", "LAB"),
        *([("Denoise", "MOMENT"), ("RayleighCorrection", "N"), ("UsedGCPNo", "0"),
           ("CenterLatitude", f"{scene.center_lat:.15f}"), ("CenterLongitude", f"{scene.center_lon:.15f}")]
          if ext else [("RelativeCorrectionData", "")]),
        ("TopLeftLatitude", f"{tl[1]:.6g}"), ("TopLeftLongitude", f"{tl[0]:.7g}"),
        ("TopRightLatitude", f"{tr[1]:.6g}"), ("TopRightLongitude", f"{tr[0]:.7g}"),
        ("BottomRightLatitude", f"{br[1]:.6g}"), ("BottomRightLongitude", f"{br[0]:.7g}"),
        ("BottomLeftLatitude", f"{bl[1]:.6g}"), ("BottomLeftLongitude", f"{bl[0]:.7g}"),
        *[(f"{c}Map{a}", None) for c in ("TopLeft", "TopRight", "BottomRight", "BottomLeft") for a in ("X", "Y")],
        *([("DataArchiveFile", ""), ("BrowseFileLocation", ""), ("ThumbFileLocation", "")] if ext else []),
        *scene.extra.items(),
    ]
    lines = ['<?xml version="1.0" encoding="UTF-8" ?>', "<ProductMetaData>"]
    for name, value in fields:
        lines.append(f"    <{name} />" if value is None else f"    <{name}>{value}</{name}>")
    lines.append("</ProductMetaData>")
    return "\n".join(lines) + "\n"


def write_sidecar(path: Path, scene: OpticalScene) -> Path:
    """Write a ``<ProductMetaData>`` sidecar and return its path."""
    path.write_text(sidecar_xml(scene), encoding="utf-8")
    return path


def linear_rpc(center_lon: float, center_lat: float, gsd_m: float, width: int, height: int,
               height_off: float = 0.0) -> RPC:
    """A north-up RPC whose pixels are ``gsd_m`` apart on the ground at the scene centre.

    Only the linear terms are set, as if the camera looked straight down;
    good enough to exercise every RPC path with a known answer.
    """
    per_lon, per_lat = metres_per_degree(center_lat)
    lat_scale = (height / 2) * gsd_m / per_lat
    lon_scale = (width / 2) * gsd_m / per_lon
    zeros = [0.0] * 20
    line_num = list(zeros)
    line_num[2] = -1.0  # line grows southward with latitude
    samp_num = list(zeros)
    samp_num[1] = 1.0
    den = [1.0] + [0.0] * 19
    return RPC(height_off=height_off, height_scale=500.0, lat_off=center_lat, lat_scale=lat_scale,
               line_den_coeff=den, line_num_coeff=line_num, line_off=height / 2, line_scale=height / 2,
               long_off=center_lon, long_scale=lon_scale, samp_den_coeff=den, samp_num_coeff=samp_num,
               samp_off=width / 2, samp_scale=width / 2)


def write_rpb(path: Path, rpc: RPC) -> Path:
    """Write an ``.rpb`` file and return its path."""
    path.write_text(rpb_text(rpc), encoding="ascii")
    return path


def synthetic_pixels(bands: int, height: int, width: int, dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    """Deterministic, image-like pixels: smooth fields plus noise, in a 10-bit range."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((bands, height, width), dtype=dtype)
    for b in range(bands):
        field_ = 400 + 200 * np.sin(xx / (17 + 3 * b)) * np.cos(yy / (23 + 5 * b))
        field_ += rng.normal(0, 30, size=(height, width)).astype(np.float32)
        if np.issubdtype(np.dtype(dtype), np.integer):
            info = np.iinfo(np.dtype(dtype))
            out[b] = np.clip(np.rint(field_), info.min, info.max)
        else:
            out[b] = field_
    return out


def write_image(path: Path, pixels: np.ndarray, *, crs: CRS | None = None, transform: Affine | None = None,
                rpcs: RPC | None = None, gcps: Sequence[GroundControlPoint] | None = None,
                gcp_crs: CRS | None = None, nodata: float | None = None, tags: dict[str, str] | None = None,
                **creation: Any) -> Path:
    """Write a GeoTIFF with the given georeferencing (none for L1A) and return its path."""
    bands, height, width = pixels.shape
    driver = creation.pop("driver", "GTiff")
    profile: dict[str, Any] = {"driver": driver, "width": width, "height": height, "count": bands,
                               "dtype": pixels.dtype.name, "nodata": nodata, **creation}
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    # GDAL creating over an existing image first deletes that dataset's whole file list
    # (.rpb, .xml, .aux.xml beside it): sidecars just written would go with it.
    path.unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write(path, pixels, profile, rpcs, gcps, gcp_crs, tags)
    return path


def _write(path: Path, pixels: np.ndarray, profile: dict[str, Any], rpcs: RPC | None,
           gcps: Sequence[GroundControlPoint] | None, gcp_crs: CRS | None, tags: dict[str, str] | None) -> None:
    with rasterio.Env(GDAL_PAM_ENABLED="NO"), rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)
        if rpcs is not None:
            dst.rpcs = rpcs
        if gcps:
            dst.gcps = (list(gcps), gcp_crs)
        if tags:
            dst.update_tags(**tags)


def order_xml(satellite: str = "GF2", sensor: str = "PMS2", product_id: str = "12889847001") -> str:
    """A processing-order file (``<InterfaceFile>``) as CRESDA packages carry beside the products.

    It names a satellite, a sensor and bands like a sidecar does, which is
    exactly why a screener must not mistake it for one.
    """
    body = [
        ("MTFC", "LAB"), ("MapProjection", "UTM"), ("BitNumber", "10"), ("RayleighCorrection", "N"),
        ("GcpSource", "02B-HR"), ("AutoProcessing", "N"), ("StripID", "464621"), ("FlowRate", "0.0"),
        ("OperatorName", "sys"), ("STRIPsceneCount", "1"), ("Priority", "0"), ("DemSource", "30"),
        ("ReceiveStationID", "KRN"), ("AttType", "DMA"), ("CCDBalance", "N"), ("InstrumentMode", "NONE"),
        ("HeightMode", "DEM"), ("ProduceType", "STANDARD"), ("ProductCount", "1"), ("OrbitType", "GPS"),
        ("UserType", "sys"), ("TimeStandard", "BJTime"), ("RadioMetric", "LAB"), ("TaskRunID", "488379"),
        ("ProductLevel", "LEVEL1A"), ("SceneCount", "1"), ("SatelliteID", satellite),
        ("ProductQualityAssessment", "Y"), ("SceneID", product_id[:-3]), ("TaskRunType", "N"),
        ("Denoise", "MOMENT"), ("SensorID", sensor), ("UserName", "sys"), ("ResamplingKernel", "CC"),
        ("ActivityID", f"{satellite}_488379"), ("EarthEllipsoid", "GDZ80"), ("StartModule", "0"),
        ("ProductID", product_id), ("BandRegister", "PYRAMID"), ("OrbitID", "45882"), ("Bands", "1,2,3,4,5"),
    ]
    header = [("Originator", "PP"), ("CreationTime", "2023-02-14 00:40:13"), ("Recipient", "PGS"),
              ("Landing", "LANDING"), ("SatelliteID", satellite), ("MessageType", "ProcessProduct"),
              ("MessageID", "204132975920")]
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<InterfaceFile>", "    <FileBody>"]
    lines += [f"        <{k}>{v}</{k}>" for k, v in body]
    lines += ["    </FileBody>", "    <FileHeader>"]
    lines += [f"        <{k}>{v}</{k}>" for k, v in header]
    lines += ["    </FileHeader>", "</InterfaceFile>"]
    return "\n".join(lines) + "\n"
