"""STAC Items for what leaves, and STAC ItemCollections as input.

``enforce --stac`` (``enforce_products(..., stac=True)``) writes one STAC
Item beside every released or degraded product (``NAME.stac.json``, next to
the image), describing the files that left:

* ``geometry``/``bbox``: the product's footprint in longitude and latitude
  (the union of every footprint the evidence gives), or none when unknown;
* ``datetime`` the acquisition time; a date without a time, or times that
  disagree, give ``start_datetime``/``end_datetime`` covering them all; an
  unknown time gives the honest interval from the first Earth satellite
  (1957-10-04) to the decision, with ``rspolicy:acquisition_time`` ``unknown``;
* ``gsd`` the sensor's, as rspolicy measured the source (finest evidence);
  ``raster:spatial_resolution`` on the image asset the output's pixel size;
* ``platform``/``instruments``, eo band names where the class says them
  (``pan``), the SAR fields where every one is known;
* the processing extension (``processing:lineage`` saying what rspolicy did,
  ``processing:software``, ``processing:datetime``), a ``derived_from`` link
  to the source with its checksum, and the decision id, action, class and the
  policy's identity as ``rspolicy:`` properties;
* one asset per file that left, with ``file:checksum`` (sha2-256 multihash)
  and ``file:size``.

Every Item is validated before it is written, offline: the core Item and
GeoJSON schemas are those bundled with pystac, and the extension schemas
(raster v2.0.0, eo v2.0.0, sar v1.0.0, processing v1.2.0, file v2.1.0) are
this project's own transcriptions of the extensions' field tables in
``rspolicy/stac/schemas/`` (the official files are not packaged on PyPI). No
schema is ever fetched: an extension without a local schema fails validation.
"""

from __future__ import annotations

import functools
import json
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from rspolicy.errors import StacError
from rspolicy.model import Action, Decision, Fact, ProductClass, ProductEvidence
from rspolicy.policy.facts import ProductFacts, footprint_geometry, normalise_name, product_facts
from rspolicy.readers.discover import display_name
from rspolicy.readers.filename import product_stem
from rspolicy.results import FileDigest

#: The suffix of the Item written beside a released product.
STAC_ITEM_SUFFIX = ".stac.json"

#: The extensions rspolicy writes, by short name, and the schema files that validate them offline.
EXTENSIONS: Mapping[str, str] = {
    "raster": "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
}
_SCHEMA_FILES = {uri: f"{name}-{uri.split('/')[-2]}.json" for name, uri in EXTENSIONS.items()}

#: No Earth-observation image is older than the first artificial satellite.
FIRST_SATELLITE = datetime(1957, 10, 4, tzinfo=UTC)

#: The radar band of the SAR satellites rspolicy knows (normalised names).
SAR_FREQUENCY_BANDS: Mapping[str, str] = {"GF3": "C", "GF3B": "C", "GF3C": "C", "HJ1C": "S", "LT1": "L",
                                          "LT1A": "L", "LT1B": "L", "HY3": "C"}

#: How the polarisation codes of Chinese SAR products name their channels.
_POLARISATION_CODES: Mapping[str, tuple[str, ...]] = {
    "DH": ("HH", "HV"), "DV": ("VV", "VH"), "SH": ("HH",), "SV": ("VV",),
    "QP": ("HH", "HV", "VH", "VV"), "AHV": ("HH", "HV", "VH", "VV"), "QUAD": ("HH", "HV", "VH", "VV"),
}

_CHANNEL_IN_NAME = re.compile(r"_(HH|HV|VH|VV)_")

#: Media types of what rspolicy releases, by suffix.
_MEDIA_TYPES = {".tif": "image/tiff; application=geotiff", ".tiff": "image/tiff; application=geotiff",
                ".h5": "application/x-hdf5", ".hdf5": "application/x-hdf5", ".hdf": "application/x-hdf",
                ".xml": "application/xml", ".rpb": "text/plain", ".txt": "text/plain"}
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"


@dataclass(frozen=True)
class ReleasedFile:
    """One file that leaves with a product: where it is staged, and its size and sha256.

    Attributes
    ----------
    path
        The file as written (its name and place relative to the Item are kept).
    digest
        Its size and sha256.
    """

    path: Path
    digest: FileDigest


def multihash_sha256(hex_digest: str) -> str:
    """A sha256 as the multihash ``file:checksum`` takes (code 0x12, length 0x20).

    >>> multihash_sha256("ab" * 32)[:6]
    '1220ab'
    """
    return "1220" + hex_digest


def item_path_for(image: Path) -> Path:
    """Where the Item of a product whose image is ``image`` is written: beside it.

    >>> item_path_for(Path("out/GF2_PMS1_E1_N2_20200510_L1A0001-PAN1.tiff")).name
    'GF2_PMS1_E1_N2_20200510_L1A0001-PAN1.stac.json'
    """
    return image.with_name(product_stem(image.name) + STAC_ITEM_SUFFIX)


def _values(decision: Decision, fact: Fact) -> list[str]:
    seen = dict.fromkeys(str(e.value).strip() for e in decision.evidence
                         if e.fact is fact and e.value is not None and str(e.value).strip())
    return list(seen)


def _one(decision: Decision, fact: Fact) -> str | None:
    """The value of a fact when the evidence gives exactly one, else None."""
    values = _values(decision, fact)
    return values[0] if len(values) == 1 else None


def polarisations(code: str) -> tuple[str, ...] | None:
    """The channels a polarisation code names, or None when it is not understood.

    >>> polarisations("HHHV"), polarisations("DH"), polarisations("VV"), polarisations("X")
    (('HH', 'HV'), ('HH', 'HV'), ('VV',), None)
    """
    text = "".join(code.upper().split()).replace("/", "").replace("+", "").replace(",", "")
    if text in _POLARISATION_CODES:
        return _POLARISATION_CODES[text]
    pairs = tuple(text[i:i + 2] for i in range(0, len(text), 2))
    if pairs and len(text) % 2 == 0 and all(p in ("HH", "HV", "VH", "VV") for p in pairs):
        return tuple(dict.fromkeys(pairs))
    return None


def _facts(decision: Decision) -> ProductFacts:
    """What the policy saw of the product: its acquisition times (a date is its whole day) and footprints."""
    return product_facts(ProductEvidence(decision.path, None, (), decision.evidence), decision.product_class, (),
                         decision.gsd_m)


def _acquisition(facts: ProductFacts, decided: datetime) -> tuple[datetime | None, dict[str, str]]:
    """The Item's ``datetime``, or the ``start_datetime``/``end_datetime`` covering every acquisition time read."""
    if not facts.acquired:
        return None, {"start_datetime": _iso(FIRST_SATELLITE), "end_datetime": _iso(decided),
                      "rspolicy:acquisition_time": "unknown"}
    first, last = min(facts.acquired), max(facts.acquired)
    if first == last:
        return first, {}
    return None, {"start_datetime": _iso(first), "end_datetime": _iso(last)}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _footprint(facts: ProductFacts) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The union of every usable footprint the evidence gives, as GeoJSON and its bbox."""
    import shapely  # noqa: PLC0415 - only STAC output needs geometry here

    shapes = [g for g in (footprint_geometry(w) for w in facts.footprints) if g is not None]
    if not shapes:
        return None, None
    union = shapely.union_all(shapes)
    if union.is_empty:
        return None, None
    return json.loads(shapely.to_geojson(union)), [round(v, 9) for v in union.bounds]


def _lineage(decision: Decision, output_gsd_m: float | None, masked_fraction: float | None) -> str:
    policy = f"policy {decision.policy.name} {decision.policy.version}"
    source = f"{decision.gsd_m:g} m" if decision.gsd_m is not None else "an unknown resolution"
    if decision.action is Action.ALLOW:
        text = f"Released by rspolicy as delivered ({source}) under {policy}: {decision.deciding_reason or ''}".rstrip(
            ": ")
    else:
        out = f"{output_gsd_m:g} m" if output_gsd_m is not None else "the target resolution"
        text = f"Degraded by rspolicy under {policy}"
        if decision.action is Action.RESAMPLE or (decision.target_gsd_m is not None):
            text += f": area-averaged from {source} to {out}"
        if decision.mask_zones:
            share = f" ({masked_fraction:.2%} of the pixels)" if masked_fraction is not None else ""
            text += f"; pixels in zone {', '.join(z.name for z in decision.mask_zones)} set to nodata{share}"
    return f"{text}. Decision {decision.decision_id}."


def _band_names(decision: Decision) -> list[dict[str, Any]] | None:
    if decision.product_class is ProductClass.PANCHROMATIC:
        return [{"name": "pan", "eo:common_name": "pan"}]
    return None


def _sar_fields(decision: Decision) -> dict[str, Any] | None:
    """The SAR extension's required fields, when the evidence gives every one of them once."""
    if decision.product_class is not ProductClass.SAR:
        return None
    mode = _one(decision, Fact.IMAGING_MODE)
    code = _one(decision, Fact.POLARISATION)
    product_type = _one(decision, Fact.PRODUCT_TYPE) or _one(decision, Fact.PRODUCT_LEVEL)
    satellite = _one(decision, Fact.SATELLITE)
    band = SAR_FREQUENCY_BANDS.get(normalise_name(satellite)) if satellite else None
    # A product's sidecar names every channel it was delivered with; an image of one channel says which in
    # its name (GF-3: ``_HH_``).
    name = decision.product.files[0].name if decision.product is not None and decision.product.files else ""
    channel = _CHANNEL_IN_NAME.search(name.upper())
    channels = (channel.group(1),) if channel else polarisations(code) if code else None
    if not (mode and channels and product_type and band):
        return None
    return {"sar:instrument_mode": mode, "sar:frequency_band": band, "sar:polarizations": list(channels),
            "sar:product_type": product_type}


def _media_type(path: Path, cog: bool) -> str:
    suffix = path.suffix.lower()
    if cog and suffix in (".tif", ".tiff"):
        return _COG
    return _MEDIA_TYPES.get(suffix, "application/octet-stream")


def _asset_key(name: str, taken: set[str]) -> str:
    key = name
    n = 2
    while key in taken:
        key = f"{name}-{n}"
        n += 1
    taken.add(key)
    return key


def stac_item(decision: Decision, files: Sequence[ReleasedFile], item_path: Path, *,
              output_gsd_m: float | None, source_href: str, source: FileDigest | None = None,
              masked_fraction: float | None = None, cog: bool = False,
              created: datetime | None = None) -> dict[str, Any]:
    """The STAC Item (as a validated JSON mapping) of one product that leaves.

    Parameters
    ----------
    decision
        The product's decision (allow, resample or mask).
    files
        Every file that leaves with it, the image first.
    item_path
        Where the Item will be written (asset hrefs are relative to it).
    output_gsd_m
        The output's pixel size, as its re-screen measured it.
    source_href, source
        The source product's main file, an absolute path (the ``derived_from`` link, as a ``file:`` URI),
        and its digest.
    masked_fraction
        For a masked product, the share of pixels set to nodata.
    cog
        Whether the image was written as a Cloud Optimized GeoTIFF.
    created
        When the Item is made (default: now).

    Raises
    ------
    StacError
        When the Item does not validate (a fault of rspolicy's: the product is not released).
    """
    import pystac  # noqa: PLC0415 - STAC output is optional and pystac costs start-up time
    import rasterio  # noqa: PLC0415

    import rspolicy  # noqa: PLC0415

    if decision.action not in (Action.ALLOW, Action.RESAMPLE, Action.MASK) or not files:
        raise StacError(f"{decision.path}: only a released product gets a STAC Item")
    now = (created or datetime.now(UTC)).astimezone(UTC)
    facts = _facts(decision)
    geometry, bbox = _footprint(facts)
    moment, interval = _acquisition(facts, now)
    properties: dict[str, Any] = {
        **interval,
        "created": _iso(now),
        "processing:lineage": _lineage(decision, output_gsd_m, masked_fraction),
        "processing:software": {"rspolicy": rspolicy.__version__, "GDAL": rasterio.__gdal_version__},
        "processing:datetime": _iso(now),
        "rspolicy:decision_id": decision.decision_id,
        "rspolicy:action": decision.action.value,
        "rspolicy:product_class": decision.product_class.value,
        "rspolicy:policy": decision.policy.to_dict(),
    }
    extensions = [EXTENSIONS["processing"], EXTENSIONS["file"]]
    if decision.gsd_m is not None:
        properties["gsd"] = decision.gsd_m
    if decision.target_gsd_m is not None:
        properties["rspolicy:target_gsd_m"] = decision.target_gsd_m
    if decision.mask_zones:
        properties["rspolicy:masked_zones"] = [z.name for z in decision.mask_zones]
        if masked_fraction is not None:
            properties["rspolicy:masked_fraction"] = masked_fraction
    if (satellite := _one(decision, Fact.SATELLITE)) is not None:
        properties["platform"] = satellite.lower()
    if sensors := _values(decision, Fact.SENSOR):
        properties["instruments"] = [s.lower() for s in sensors]
    if (level := _one(decision, Fact.PRODUCT_LEVEL)) is not None:
        properties["processing:level"] = level
    if (sar := _sar_fields(decision)) is not None:
        properties.update(sar)
        extensions.append(EXTENSIONS["sar"])
    item = pystac.Item(id=display_name(product_stem(files[0].path.name)), geometry=geometry, bbox=bbox,
                       datetime=moment,
                       properties=properties, stac_extensions=extensions)
    folder = item_path.parent
    taken: set[str] = set()
    for index, released in enumerate(files):
        extra: dict[str, Any] = {"file:checksum": multihash_sha256(released.digest.sha256),
                                 "file:size": released.digest.size}
        if index == 0:
            if output_gsd_m is not None:
                extra["raster:spatial_resolution"] = output_gsd_m
                if EXTENSIONS["raster"] not in item.stac_extensions:
                    item.stac_extensions.append(EXTENSIONS["raster"])
            if (bands := _band_names(decision)) is not None:
                extra["bands"] = bands
                item.stac_extensions.append(EXTENSIONS["eo"])
        # A relative URI reference: percent-encoded from the name's bytes, so spaces, '#' and names that are
        # not UTF-8 survive (rspolicy's STAC input decodes them back).
        href = "./" + urllib.parse.quote(os.fsencode(Path(os.path.relpath(released.path, folder)).as_posix()))
        roles = ["data"] if index == 0 else ["metadata"]
        key = _asset_key("data" if index == 0 else display_name(released.path.name), taken)
        item.add_asset(key, pystac.Asset(href=href, media_type=_media_type(released.path, cog and index == 0),
                                         roles=roles, extra_fields=extra))
    link_fields: dict[str, Any] = {}
    if source is not None:
        link_fields = {"file:checksum": multihash_sha256(source.sha256), "file:size": source.size}
    item.add_link(pystac.Link(rel="derived_from", target=Path(source_href).as_uri(), title=decision.path,
                              extra_fields=link_fields))
    document = item.to_dict(include_self_link=False, transform_hrefs=False)
    validate_item(document, item_path)
    return document


def write_stac_item(document: Mapping[str, Any], path: Path) -> None:
    """Write an Item as UTF-8 JSON (the stage it is written to is moved into place whole)."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@functools.cache
def _validator() -> Any:
    """Pystac's JSON-schema validator with every schema it may need already in its cache."""
    from pystac.validation.stac_validator import JsonSchemaSTACValidator  # noqa: PLC0415

    validator = JsonSchemaSTACValidator()
    folder = resources.files("rspolicy.stac").joinpath("schemas")
    for uri, name in _SCHEMA_FILES.items():
        validator.schema_cache[uri] = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
    return validator


def validate_item(document: Mapping[str, Any], where: Path | str = "") -> None:
    """Validate an Item against the core, GeoJSON and extension schemas, offline.

    Raises
    ------
    StacError
        Naming the Item and the first problem; also when an extension it
        declares has no local schema (nothing is ever fetched).

    Examples
    --------
    >>> validate_item({"type": "Feature", "stac_version": "1.1.0", "id": "x"})
    Traceback (most recent call last):
    ...
    rspolicy.errors.StacError: x: not a valid STAC Item: 'properties' is a required property (and 6 more)
    """
    import jsonschema  # noqa: PLC0415
    import pystac  # noqa: PLC0415
    from pystac.errors import STACValidationError  # noqa: PLC0415
    from pystac.validation import validate_dict  # noqa: PLC0415

    validator = _validator()
    name = str(where or document.get("id", "item"))
    core = validator.schema_uri_map.get_object_schema_uri(pystac.STACObjectType.ITEM,
                                                          str(document.get("stac_version", "")))
    for uri in (core, *document.get("stac_extensions", ())):
        if uri not in validator.schema_cache:
            raise StacError(f"{name}: no offline schema for {uri}; rspolicy fetches none")
    try:
        validate_dict(dict(document), pystac.STACObjectType.ITEM, validator=validator)
    except STACValidationError as exc:
        errors = list(getattr(exc, "source", None) or [])
        if not errors:
            raise StacError(f"{name}: not a valid STAC Item: {str(exc).splitlines()[-1]}") from exc
        first = errors[0]
        while first.context:  # anyOf/oneOf: the branch that came closest says what is wrong
            first = jsonschema.exceptions.best_match(first.context)
        where_in = "/".join(str(p) for p in first.absolute_path)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StacError(f"{name}: not a valid STAC Item: {where_in + ': ' if where_in else ''}{first.message}"
                        f"{more}") from exc
