"""Reader of INPE's CBERS-4 / CBERS-4A ``<prdf>`` sidecars.

INPE (Brazil) distributes CBERS scenes one band per GeoTIFF, each with its own
``<prdf xmlns="http://www.gisplan.com.br/xmlsat">`` sidecar. This is INPE's
format, not CRESDA's, and it has three traps:

* ``<availableBands>`` lists every band of the *scene*, not the band of the
  file: the CBERS-4A WPM band-0 (panchromatic) sidecar lists bands 0 to 4.
  The file's own band is the ``<image><bandN>`` element (holding the TIFF
  path) and the ``_BANDN`` suffix of the file name;
* ``<instrument channel="1">`` is 1 in every real file (PAN5M band 1,
  PAN10M band 2, MUX band 5, WPM band 0), so the channel names no band;
* CBERS-4A WFI scenes nest everything in ``<leftCamera>`` and
  ``<rightCamera>`` blocks instead of the top level.

Band numbers are INPE's: CBERS-4 PAN 1 (5 m pan) and 2-4 (10 m), MUX 5-8,
IRS 9-12 (12 thermal), AWFI/WFI 13-16; CBERS-4A WPM 0 (pan) and 1-4.
"""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree.ElementTree import Element

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Strength
from rspolicy.readers.gf3_sar import corners_to_wkt
from rspolicy.readers.xmlutil import (
    find_text,
    find_text_anywhere,
    local_name,
    parse_float,
    parse_length_m,
    parse_pixel_count,
    parse_xml,
)

#: INPE's schema namespace for ``<prdf>``.
PRDF_NAMESPACE = "http://www.gisplan.com.br/xmlsat"

#: The blocks a dual-camera (WFI) sidecar splits into.
_CAMERAS = ("leftCamera", "rightCamera")

#: Footprint corners in ring order; ``imageData`` is the data's own outline,
#: ``boundingBox`` the map-aligned box around it (fill included).
_CORNER_RING = ("UL", "UR", "LR", "LL")
_CORNER_BLOCKS = ("image/imageData", "image/boundingBox")

#: Instruments whose every band is of one class, with the reason shown to an auditor.
_INSTRUMENT_CLASS = {
    "PAN5M": (ProductClass.PANCHROMATIC, "CBERS PAN camera 5 m band (band 1) is panchromatic"),
    "PAN10M": (ProductClass.MULTISPECTRAL, "CBERS PAN camera 10 m bands (2, 3, 4: green, red, NIR) are multispectral"),
    "MUX": (ProductClass.MULTISPECTRAL, "CBERS MUX camera (bands 5-8: blue, green, red, NIR) is multispectral"),
    "WFI": (ProductClass.MULTISPECTRAL, "CBERS wide-field imager (bands 13-16) is multispectral"),
    "AWFI": (ProductClass.MULTISPECTRAL, "CBERS wide-field imager (bands 13-16) is multispectral"),
}

#: The IRS thermal band; IRS bands 9-11 are near and short-wave infrared.
IRS_THERMAL_BAND = 12
#: The WPM panchromatic band; WPM bands 1-4 are blue, green, red, NIR.
WPM_PAN_BAND = 0

_FILE_BAND = re.compile(r"_BAND(\d{1,3})(?:\.[^.]*)?$", re.IGNORECASE | re.ASCII)
_IMAGE_BAND = re.compile(r"band(\d{1,3})$", re.ASCII)


def is_cbers_root(root: Element) -> bool:
    """Whether a parsed XML root is an INPE ``<prdf>`` sidecar of a CBERS satellite.

    Parameters
    ----------
    root
        The root element of a parsed sidecar.

    Returns
    -------
    bool
        True when the root is ``prdf`` (in INPE's namespace or none) and the
        satellite name, at top level or in a camera block, is CBERS.

    Examples
    --------
    >>> import xml.etree.ElementTree as ET
    >>> ns = PRDF_NAMESPACE
    >>> is_cbers_root(ET.fromstring(f'<prdf xmlns="{ns}"><satellite><name>CBERS</name></satellite></prdf>'))
    True
    >>> is_cbers_root(ET.fromstring(f'<prdf xmlns="{ns}"><satellite><name>AMAZONIA</name></satellite></prdf>'))
    False
    """
    tag = root.tag
    namespace = tag[1:].split("}", 1)[0] if tag.startswith("{") else ""
    if local_name(tag) != "prdf" or namespace not in ("", PRDF_NAMESPACE):
        return False
    return any((find_text(block, "satellite/name") or "").upper() == "CBERS" for block, _ in _blocks(root))


def read_cbers_sidecar(path: Path, source: str) -> list[Evidence]:
    """Read the evidence an INPE CBERS ``<prdf>`` sidecar gives.

    Parameters
    ----------
    path
        The local sidecar file.
    source
        The label to put on the evidence (the sidecar's display path).

    Returns
    -------
    list of Evidence
        Satellite (``CBERS-4``, ``CBERS-4A``), instrument, level, the band
        the file holds (``BAND_NUMBERS``; the scene's bands as INFO), width
        and height, the two pixel sizes as GSD, acquisition time, footprint
        and a class hint decided by instrument and band. A dual-camera
        sidecar gives this for each camera, fields prefixed by the camera.

    Raises
    ------
    ProductReadError
        When the file is unreadable or unsafe XML, is not a CBERS ``<prdf>``
        sidecar, holds a malformed number in a field that is read, or its
        band element contradicts the band in its file name.
    """
    root = parse_xml(path)
    if not is_cbers_root(root):
        raise ProductReadError(path, f"not an INPE CBERS <prdf> sidecar (root <{local_name(root.tag)}>)")
    out: list[Evidence] = []
    for block, prefix in _blocks(root):
        out.extend(_read_block(block, prefix, path, source))
    return out


def _blocks(root: Element) -> list[tuple[Element, str]]:
    """The element(s) holding satellite and image, with their field prefix."""
    cameras = [(child, f"{local_name(child.tag)}/") for child in root if local_name(child.tag) in _CAMERAS]
    if cameras and not any(local_name(child.tag) == "image" for child in root):
        return cameras
    return [(root, "")]


def _read_block(block: Element, prefix: str, path: Path, source: str) -> list[Evidence]:
    """Evidence from one camera's satellite/bands/image elements."""
    out: list[Evidence] = []

    def text(field: str) -> str | None:
        return find_text(block, field, file=path)

    name, number = text("satellite/name"), text("satellite/number")
    if name is not None:
        satellite = f"{name}-{number}" if number is not None else name
        out.append(Evidence(Fact.SATELLITE, satellite, source, f"{prefix}satellite/name+number"))
    instrument = text("satellite/instrument")
    if instrument is not None:
        out.append(Evidence(Fact.SENSOR, instrument, source, f"{prefix}satellite/instrument"))
    level = text("image/level")
    if level is not None:
        out.append(Evidence(Fact.PRODUCT_LEVEL, level, source, f"{prefix}image/level"))

    band, band_field, tiff = _file_band(block, path)
    scene_bands = _scene_bands(block)
    if band is not None:
        out.append(Evidence(Fact.BAND_NUMBERS, str(band), source, f"{prefix}{band_field}",
                            "the band this file holds"))
    elif scene_bands:
        out.append(Evidence(Fact.BAND_NUMBERS, ",".join(scene_bands), source, f"{prefix}availableBands",
                            "bands of the scene: the sidecar does not say which one this file holds"))
    if scene_bands and band is not None:
        out.append(Evidence(Fact.INFO, ",".join(scene_bands), source, f"{prefix}availableBands",
                            "bands of the whole scene, one file each; not the bands of this file"))
    if tiff is not None:
        out.append(Evidence(Fact.PRODUCT_ID, tiff, source, f"{prefix}{band_field}",
                            "name of the band's image file as INPE wrote it"))

    for fact, field in ((Fact.WIDTH, "image/columns"), (Fact.HEIGHT, "image/lines")):
        size = parse_pixel_count(text(field), path, f"{prefix}{field}")
        if size is not None:
            out.append(Evidence(fact, size, source, f"{prefix}{field}"))
    for field, axis in (("image/horizontalPixelSize", "across columns"), ("image/verticalPixelSize", "along lines")):
        # A pixel size slipped in anywhere in the camera's block counts as well.
        where = f"{prefix}{field}"
        size_m = parse_length_m(find_text_anywhere(block, field.rsplit("/", 1)[-1], file=path, field=where),
                                path, where)
        if size_m is not None:
            out.append(Evidence(Fact.GSD, size_m, source, where, f"pixel size {axis}, metres"))

    for field in ("viewing/center", "image/timeStamp/center"):
        when = text(field)
        if when is not None:
            out.append(Evidence(Fact.ACQUISITION_TIME, when, source, f"{prefix}{field}"))
            break

    out.extend(_footprint(block, prefix, path, source))
    out.extend(_class_hint(instrument, band, f"{prefix}satellite/instrument", source))
    return out


def _file_band(block: Element, path: Path) -> tuple[int | None, str, str | None]:
    """The band the file holds, the field that said so, and its TIFF's stem.

    The ``<image><bandN>`` element is the sidecar's own statement; the
    ``_BANDN`` file-name suffix backs it up or stands in for it. When both
    are present and disagree, the sidecar belongs to another file.
    """
    # Every <image> counts: a second one must not carry a band the first hides.
    images = [child for child in block if local_name(child.tag) == "image"]
    held: list[tuple[int, str | None]] = []
    for image in images:
        for child in image:
            match = _IMAGE_BAND.fullmatch(local_name(child.tag))
            if match:
                base = (child.text or "").strip().replace("\\", "/").rsplit("/", 1)[-1]
                held.append((int(match.group(1)), base.rsplit(".", 1)[0] or None))
    named = _FILE_BAND.search(path.name)
    file_band = int(named.group(1)) if named else None
    held = list(dict.fromkeys(held))
    if len(held) == 1:
        band, stem = held[0]
        if file_band is not None and file_band != band:
            raise ProductReadError(path, f"<image><band{band}> contradicts the file name's BAND{file_band}")
        return band, f"image/band{band}", stem
    if file_band is not None and (not held or file_band in {b for b, _ in held}):
        return file_band, "filename", None
    return None, "", None


def _scene_bands(block: Element) -> list[str]:
    """The ``availableBands`` list, in the order written."""
    listed = [b.text.strip() for bands in block if local_name(bands.tag) == "availableBands"
              for b in bands if local_name(b.tag) == "band" and b.text and b.text.strip()]
    return list(dict.fromkeys(listed))


def _class_hint(instrument: str | None, band: int | None, field: str, source: str) -> list[Evidence]:
    """The class hint an instrument (and, where it matters, the band) gives."""
    if instrument is None:
        return []
    key = instrument.upper()
    if key in _INSTRUMENT_CLASS:
        product_class, why = _INSTRUMENT_CLASS[key]
        return [Evidence(Fact.CLASS_HINT, product_class.value, source, field, why, Strength.STRONG)]
    if key == "WPM":
        if band is None:
            # The WPM sidecar lists all five bands whichever it describes, so
            # without the file's band no class can be claimed.
            return [Evidence(Fact.INFO, instrument, source, field,
                             "CBERS-4A WPM file whose band is not identified: no class hint")]
        if band == WPM_PAN_BAND:
            return [Evidence(Fact.CLASS_HINT, ProductClass.PANCHROMATIC.value, source, field,
                             "CBERS-4A WPM band 0 is the panchromatic band", Strength.STRONG)]
        return [Evidence(Fact.CLASS_HINT, ProductClass.MULTISPECTRAL.value, source, field,
                         f"CBERS-4A WPM band {band} is one of the multispectral bands 1-4", Strength.STRONG)]
    if key in ("IRS", "IRSCAM"):
        if band == IRS_THERMAL_BAND:
            return [Evidence(Fact.CLASS_HINT, ProductClass.THERMAL.value, source, field,
                             "CBERS IRS band 12 is the thermal infrared band", Strength.STRONG)]
        if band is not None:
            return [Evidence(Fact.CLASS_HINT, ProductClass.MULTISPECTRAL.value, source, field,
                             f"CBERS IRS band {band} is a near/short-wave infrared band", Strength.STRONG)]
        return [Evidence(Fact.CLASS_HINT, ProductClass.MULTISPECTRAL.value, source, field,
                         "CBERS IRS infrared camera, band not identified", Strength.MEDIUM)]
    return [Evidence(Fact.INFO, instrument, source, field, "CBERS instrument not known to rspolicy: no class hint")]


def _footprint(block: Element, prefix: str, path: Path, source: str) -> list[Evidence]:
    """The footprint from ``imageData`` corners, else ``boundingBox`` corners."""
    for base in _CORNER_BLOCKS:
        points: list[tuple[float, float]] = []
        for corner in _CORNER_RING:
            field = f"{prefix}{base}/{corner}"
            lat = parse_float(find_text(block, f"{base}/{corner}/latitude", file=path), path, f"{field}/latitude",
                              lowest=-90.0, highest=90.0, what="latitude")
            lon = parse_float(find_text(block, f"{base}/{corner}/longitude", file=path), path,
                              f"{field}/longitude", lowest=-180.0, highest=180.0, what="longitude")
            if lat is None or lon is None:
                break
            points.append((lon, lat))
        else:
            wkt, detail = corners_to_wkt(points, path, f"{prefix}{base}")
            return [Evidence(Fact.FOOTPRINT if wkt is not None else Fact.INFO, wkt, source,
                             f"{prefix}{base}", detail)]
    return []
