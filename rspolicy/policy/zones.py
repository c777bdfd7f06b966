"""Zones: named areas of a policy, GeoJSON files beside it, held as prepared geometries.

A zone file lies in the policy's folder or below it, is a GeoJSON Polygon,
MultiPolygon, Feature or FeatureCollection of them, in longitude and latitude
(EPSG:4326), and is part of the policy's identity (its sha256).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rspolicy.safeio import read_regular

#: A zone file larger than this is refused (a detailed country outline is well under it).
MAX_ZONE_BYTES = 16 * 1024 * 1024

#: Reports a problem at a key path of the policy file; raises.
Fail = Callable[[Sequence[str | int], str], Any]


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, cut short."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:200] + "..."


@dataclass(frozen=True)
class Zone:
    """A named area of the policy, as a prepared shapely geometry in longitude and latitude."""

    name: str
    geometry: Any
    file: str
    description: str = ""
    example: bool = False

    @property
    def shown(self) -> str:
        """The zone's name, marked when it is an example."""
        return f"{self.name} (an example zone)" if self.example else self.name

    def __post_init__(self) -> None:
        import shapely  # noqa: PLC0415 - loaded only for policies with zones

        # Prepared: a product's footprint is tested against the zone in microseconds.
        shapely.prepare(self.geometry)

    def __reduce__(self) -> tuple[Any, ...]:
        # Through the constructor, so that a copy sent to a worker process is prepared again.
        return (Zone, (self.name, self.geometry, self.file, self.description, self.example))

    @property
    def wkt(self) -> str:
        """The zone as WKT (for masking and records)."""
        return str(self.geometry.wkt)



def load_zone(name: str, spec: Mapping[str, Any], policy_path: Path, fail: Fail) -> tuple[Zone, Path, str]:
    """A ``[zones.NAME]`` entry: its GeoJSON file (below the policy's folder), read once and checked.

    Returns the zone, its file and the file's sha256 (part of the policy's identity). ``fail(where,
    problem)`` raises the policy's error for a problem.
    """
    import shapely  # noqa: PLC0415 - shapely loads only for policies with zones
    from shapely.geometry import shape  # noqa: PLC0415

    where = ["zones", name, "file"]
    relative = Path(spec["file"])
    base = policy_path.resolve().parent
    file = (base / relative).resolve()
    if relative.is_absolute() or not file.is_relative_to(base):
        fail(where, f"{spec['file']}: a zone file must lie in the policy's folder or below it")
    if file.exists() and not file.is_file():
        fail(where, f"{file}: not a regular file")
    try:
        data = read_regular(file, MAX_ZONE_BYTES)
    except OSError as exc:
        fail(where, f"{file}: cannot read the zone file ({exc.strerror or exc})")
        raise
    if len(data) > MAX_ZONE_BYTES:
        fail(where, f"{file}: larger than {MAX_ZONE_BYTES} bytes")
    try:
        geojson = json.loads(data)
        items = (geojson["features"] if geojson.get("type") == "FeatureCollection"
                 else [geojson] if geojson.get("type") == "Feature" else [{"geometry": geojson}])
        parts = [shape(item["geometry"]) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError, shapely.errors.ShapelyError) as exc:
        fail(where, f"{file}: not a GeoJSON polygon file ({type(exc).__name__}: {one_line(exc)})")
        raise
    if not parts or any(p.geom_type not in ("Polygon", "MultiPolygon") for p in parts):
        fail(where, f"{file}: expected Polygon or MultiPolygon geometries")
    try:
        invalid = [shapely.is_valid_reason(p) for p in parts if not p.is_valid]
        if invalid:
            fail(where, f"{file}: the zone is not a valid polygon ({invalid[0]})")
        geometry = shapely.union_all(parts)
    except shapely.errors.ShapelyError as exc:
        fail(where, f"{file}: the zone is not a valid polygon ({one_line(exc)})")
        raise
    if geometry.is_empty or not geometry.is_valid:
        fail(where, f"{file}: the zone is empty or not a valid polygon ({shapely.is_valid_reason(geometry)})")
    minx, miny, maxx, maxy = geometry.bounds
    if not (minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90):
        fail(where, f"{file}: coordinates must be longitude and latitude in degrees (EPSG:4326)")
    zone = Zone(name, geometry, str(file), spec.get("description", ""), bool(spec.get("example", False)))
    return zone, file, hashlib.sha256(data).hexdigest()
