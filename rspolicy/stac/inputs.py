"""STAC Items and ItemCollections named as input: the local files their assets point to.

A JSON file holding a STAC Item or ItemCollection, named to ``screen`` or
``enforce``, stands for the files its assets point to: each is discovered as
if it had been named itself (an image brings its sidecars, a sidecar its
image). What the catalogue says about a product is evidence like a
sidecar's: its ``gsd``, ``raster:spatial_resolution`` (and the older
``raster:bands[].spatial_resolution``), SAR pixel spacings and resolutions,
``platform`` and acquisition times are added to the product's evidence, so a
catalogue claiming a finer resolution than the file shows is believed (the
finest wins), and an unusable value blocks the product.

Nothing is fetched: an asset whose href is not a local path or ``file:`` URI
is a blocked entry saying so, as is an Item without assets or a document
that is not STAC.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from rspolicy.errors import StacError
from rspolicy.model import Evidence, Fact, ProductEvidence
from rspolicy.readers.discover import (
    FoundPackage,
    FoundProduct,
    Skipped,
    discover,
    display_name,
    unreadable,
)
from rspolicy.resolution import is_length
from rspolicy.safeio import open_regular, read_regular

#: The largest STAC document read (a catalogue of tens of thousands of Items fits).
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024

#: Resolution claims, by field name, wherever they appear (properties, assets, bands).
_GSD_FIELDS = {"gsd": Fact.GSD, "raster:spatial_resolution": Fact.GSD, "spatial_resolution": Fact.GSD,
               "sar:pixel_spacing_range": Fact.GSD, "sar:pixel_spacing_azimuth": Fact.GSD,
               "sar:resolution_range": Fact.NOMINAL_RESOLUTION, "sar:resolution_azimuth": Fact.NOMINAL_RESOLUTION}
#: Fields that give the pixel size itself (not the sensor's ground sample distance).
_PIXEL_SIZE_FIELDS = ("raster:spatial_resolution", "spatial_resolution", "sar:pixel_spacing_range",
                      "sar:pixel_spacing_azimuth")
_TIME_FIELDS = ("datetime", "start_datetime", "end_datetime")
_BAND_LISTS = ("bands", "raster:bands", "eo:bands")


def is_stac_document(path: Path) -> bool:
    """Whether a named file is to be read as a STAC document: a ``.json``/``.geojson`` file holding an object.

    >>> is_stac_document(Path("no-such.json"))
    False
    """
    if path.suffix.lower() not in (".json", ".geojson") or not path.is_file():
        return False
    try:
        with open_regular(path) as fh:
            head = fh.read(4096)
    except OSError:
        return False
    # Any JSON object: one that is not STAC is refused as such (blocked, with its reason), not passed over.
    return head.lstrip().startswith(b"{")


def _load(path: Path) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            raise StacError(f"{display_name(path)}: {size} bytes is more than a STAC document may hold here "
                            f"({MAX_DOCUMENT_BYTES})")
        raw = read_regular(path, MAX_DOCUMENT_BYTES)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise StacError(f"{display_name(path)}: more than {MAX_DOCUMENT_BYTES} bytes, more than a STAC "
                            "document may hold here")
        document = json.loads(raw)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise StacError(f"{display_name(path)}: not readable as JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("type") not in ("Feature", "FeatureCollection"):
        raise StacError(f"{display_name(path)}: not a STAC Item or ItemCollection")
    return document


def local_path(href: object, base: Path) -> Path | None:
    """The local file an asset href names, or None when it is not local.

    >>> local_path("./a.tif", Path("/data")), local_path("file:///x/b.tif", Path("/data"))
    (PosixPath('/data/a.tif'), PosixPath('/x/b.tif'))
    >>> local_path("https://example.org/a.tif", Path("/data")) is None
    True
    """
    if not isinstance(href, str) or not href.strip():
        return None
    parts = urllib.parse.urlsplit(href)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return None
        return Path(os.fsdecode(urllib.parse.unquote_to_bytes(parts.path)))
    if parts.scheme and len(parts.scheme) > 1:  # one letter would be a drive, not a scheme
        return None
    # A relative href is a URI reference (percent-encoded, as rspolicy writes them); many catalogues write
    # plain paths instead: the plain reading wins when it names a file.
    path = Path(href)
    candidates = [path]
    if "%" in href:
        candidates.append(Path(os.fsdecode(urllib.parse.unquote_to_bytes(href))))
    resolved = [c if c.is_absolute() else Path(os.path.normpath(base / c)) for c in candidates]
    return next((r for r in resolved if os.path.lexists(r)), resolved[-1])


def _scalar(value: object) -> str | int | float | bool | None:
    """A claimed value as evidence holds it: anything but a scalar kept as its JSON text (unusable, so it blocks)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value)[:200]


def _claims_in(holder: Mapping[str, Any], where: str, out: list[Evidence], *, legacy_band: bool = False) -> None:
    """Resolution claims in one object and its band lists."""
    for key, fact in _GSD_FIELDS.items():
        if key in holder and (key != "spatial_resolution" or legacy_band):
            out.append(Evidence(fact, _scalar(holder[key]), where, key, "as the STAC Item states it"))
    for band_key in _BAND_LISTS:
        bands = holder.get(band_key)
        if isinstance(bands, list):
            for n, band in enumerate(bands):
                if isinstance(band, Mapping):
                    _claims_in(band, f"{where}/{band_key}[{n}]", out, legacy_band=band_key == "raster:bands")


def item_claims(item: Mapping[str, Any], where: str) -> tuple[Evidence, ...]:
    """What a STAC Item says about its products, as evidence.

    Pixel sizes (``raster:spatial_resolution``, ``raster:bands[].spatial_resolution``, SAR pixel
    spacings) and resolutions are measured against the limits, the finest winning. ``gsd`` is
    too, unless the Item also gives a pixel size: then it is the sensor's (an Item of a degraded
    product says both), and only shown.

    Examples
    --------
    >>> claims = item_claims({"properties": {"gsd": 0.3, "platform": "gf-2"}, "assets": {"a": {}}}, "c.json#x")
    >>> [(c.fact.value, c.value) for c in claims]
    [('gsd_m', 0.3), ('satellite', 'gf-2')]
    >>> claims = item_claims({"properties": {"gsd": 0.3},
    ...                       "assets": {"a": {"raster:spatial_resolution": 0.5}}}, "c.json#x")
    >>> [(c.fact.value, c.value) for c in claims]
    [('info', 0.3), ('gsd_m', 0.5)]
    """
    out = _item_claims(item, where)
    if any(e.field in _PIXEL_SIZE_FIELDS and is_length(e.value) for e in out):
        # The Item gives its pixel size: its ``gsd`` is then the sensor's (as rspolicy writes Items of degraded
        # products), shown but not measured against the limit. An unusable gsd still blocks.
        out = [Evidence(Fact.INFO, e.value, e.source, e.field, "the sensor's ground sample distance, as the STAC "
                        "Item states it beside a pixel size") if e.field == "gsd" and is_length(e.value) else e
               for e in out]
    return tuple(out)


def _item_claims(item: Mapping[str, Any], where: str) -> list[Evidence]:
    out: list[Evidence] = []
    properties = item.get("properties")
    if isinstance(properties, Mapping):
        _claims_in(properties, f"{where} properties", out)
        platform = properties.get("platform")
        if isinstance(platform, str) and platform.strip():
            out.append(Evidence(Fact.SATELLITE, platform, f"{where} properties", "platform",
                                "as the STAC Item states it"))
        for key in _TIME_FIELDS:
            value = properties.get(key)
            if value is not None:
                out.append(Evidence(Fact.ACQUISITION_TIME, str(value), f"{where} properties", key,
                                    "as the STAC Item states it"))
    assets = item.get("assets")
    if isinstance(assets, Mapping):
        for key, asset in assets.items():
            if isinstance(asset, Mapping):
                _claims_in(asset, f"{where} asset {key}", out)
    return out


def stac_inputs(path: Path, display: str) -> Iterator[FoundProduct | FoundPackage | ProductEvidence | Skipped]:
    """The products a STAC Item or ItemCollection points to, with what it claims about them as evidence.

    Yields
    ------
    FoundProduct, FoundPackage, ProductEvidence or Skipped
        As :func:`rspolicy.readers.discover.discover` does for the asset
        files; a document, Item or asset that cannot be used comes out as an
        unreadable product (blocked when decided), naming it.
    """
    try:
        document = _load(path)
    except StacError as exc:
        yield unreadable(display, str(exc).split(": ", 1)[-1], path)
        return
    features = document.get("features") if document.get("type") == "FeatureCollection" else [document]
    if not isinstance(features, list) or not features:
        yield unreadable(display, "STAC ItemCollection holds no Items", path)
        return
    files: list[Path] = []
    claims: dict[Path, list[Evidence]] = {}
    for n, feature in enumerate(features):
        item_id = feature.get("id") if isinstance(feature, Mapping) else None
        where = f"{display}#{item_id if isinstance(item_id, str) and item_id else n}"
        assets = feature.get("assets") if isinstance(feature, Mapping) else None
        if not isinstance(assets, Mapping) or not assets:
            yield unreadable(where, "not a STAC Item with assets", path)
            continue
        said = item_claims(feature, where)
        for key, asset in assets.items():
            href = asset.get("href") if isinstance(asset, Mapping) else None
            local = local_path(href, path.parent)
            if local is None:
                yield unreadable(f"{where}/{key}", f"asset href {href!r} is not a local file: rspolicy reads "
                                                   "local files only and fetches nothing", path)
                continue
            resolved = Path(os.path.abspath(local))
            if resolved not in claims:
                files.append(local)
            claims.setdefault(resolved, []).extend(said)
    for found in discover(files):
        if isinstance(found, FoundProduct):
            evidence = _said_about((found.files.main, *found.files.sidecars), claims)
            if evidence:
                yield replace(found, files=replace(found.files, claims=(*found.files.claims, *evidence)))
                continue
        elif isinstance(found, FoundPackage):
            evidence = _said_about((found.path,), claims)
            if evidence:
                yield replace(found, claims=(*found.claims, *evidence))
                continue
        yield found


def _said_about(files: tuple[Path, ...], claims: Mapping[Path, list[Evidence]]) -> tuple[Evidence, ...]:
    """The claims of every Item naming one of the files, or a folder holding it."""
    said: dict[Evidence, None] = {}
    for f in files:
        path = Path(os.path.abspath(f))
        for named in (path, *path.parents):
            said.update(dict.fromkeys(claims.get(named, ())))
    return tuple(said)
