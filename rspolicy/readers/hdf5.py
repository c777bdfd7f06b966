"""Evidence from Fengyun and Haiyang HDF5 products.

FY-3 (MERSI, VIRR, MWRI, MWHS, MWTS, HIRAS ...), FY-4A/4B (AGRI, GIIRS, LMI,
GHI) and HY-1C/1D / HY-2 deliver HDF5 files whose facts sit in three places:

* Root attributes. NSMC writes them with spaces in their names ("Satellite
  Name", "Sensor Name", "Observing Beginning Date"). netCDF-Java shows those
  spaces as underscores, and files re-written by tools built on it keep the
  underscores, so names are matched ignoring case, spaces, underscores and
  hyphens.
* The standard file name. Its resolution token (``_0250M_``, ``_4000M_``,
  ``_015KM_``) is the nominal nadir pixel spacing of the file's grid. The same
  name is kept in the "File Name" attribute, which survives a renaming of the
  file, so both are read: a file renamed to a coarser token still yields the
  finer value from its attribute, and the finest value wins downstream.
* The shapes of the datasets, read from the object headers.

Nothing but metadata is read: no dataset is ever read, so a multi-gigabyte
swath is screened as quickly as a small one.

A product is one file: an HDF5 file that refers to others (an external
link, a dataset stored in external files, a virtual dataset) or carries a
user block (bytes before the HDF5 data, which another program may read as
something else) is refused, naming the object. The walk is bounded in
objects and depth, never follows soft links and visits each group once,
so link cycles cannot hold it. Numbers read (resolution attributes,
resolution tokens of names, dataset shapes) must be sane, or the file is
refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductClass, Scalar, Strength
from rspolicy.readers.xmlutil import (
    MAX_LENGTH_M,
    MAX_PIXEL_COUNT,
    MIN_LENGTH_M,
    check_length_m,
    shown,
)

__all__ = [
    "SensorInfo",
    "canonical_sensor",
    "filename_resolution_m",
    "normalise_satellite",
    "read_hdf5",
    "sensor_info",
]

#: Walking more links or attributes than this is not metadata reading any
#: more; a real FY-3/FY-4 L1 file holds a few dozen datasets. A file beyond
#: it is refused: what was not walked was not checked.
MAX_OBJECTS = 10_000

#: A file with more root attributes than this is not a product file (real
#: ones have a few dozen).
MAX_ATTRIBUTES = 10_000

#: Groups nested deeper than this are refused (real files nest 2-3 deep).
MAX_DEPTH = 32

#: Errors h5py raises for files it cannot open or objects it cannot decode.
#: h5py maps HDF5 failures onto several builtins, not one; RecursionError is
#: a RuntimeError, OverflowError an ArithmeticError.
_H5_ERRORS = (OSError, RuntimeError, ValueError, LookupError, TypeError, ArithmeticError, AttributeError)


@dataclass(frozen=True)
class SensorInfo:
    """What a known FY/HY sensor tells about the product class.

    Attributes
    ----------
    name
        The sensor's canonical short name (``MERSI``, ``MWHS`` ...).
    product_class
        The class its products belong to.
    strength
        How decisive the sensor alone is.
    why
        The reason, shown to auditors.
    """

    name: str
    product_class: ProductClass
    strength: Strength
    why: str


def _info(name: str, cls: ProductClass, why: str, strength: Strength = Strength.STRONG) -> SensorInfo:
    return SensorInfo(name, cls, strength, why)


_MS = ProductClass.MULTISPECTRAL
_MW = ProductClass.SAR  # the project's class for every microwave product, passive or active
_HS = ProductClass.HYPERSPECTRAL

#: Known sensors by canonical name. Passive microwave radiometers and
#: sounders, scatterometers and altimeters are all microwave instruments and
#: share the project's microwave class (SAR). Infrared interferometric
#: sounders resolve thousands of channels, hence hyperspectral.
SENSORS: dict[str, SensorInfo] = {s.name: s for s in (
    _info("MERSI", _MS, "MERSI (FY-3 Medium Resolution Spectral Imager): multispectral imager"),
    _info("VIRR", _MS, "VIRR (FY-3 Visible and Infrared Radiometer): 10-channel multispectral imager"),
    _info("IRAS", _MS, "IRAS (FY-3 Infrared Atmospheric Sounder): 26-channel filter radiometer, multispectral"),
    _info("MWRI", _MW, "MWRI (FY-3 Microwave Radiation Imager): passive microwave, project class 'sar'"),
    _info("MWHS", _MW, "MWHS (FY-3 Microwave Humidity Sounder): passive microwave, project class 'sar'"),
    _info("MWTS", _MW, "MWTS (FY-3 Microwave Temperature Sounder): passive microwave, project class 'sar'"),
    _info("WINDRAD", _MW, "WindRAD (FY-3E wind radar): microwave scatterometer, project class 'sar'"),
    _info("HIRAS", _HS, "HIRAS (FY-3 Hyperspectral Infrared Atmospheric Sounder): interferometer, >2000 channels"),
    _info("AGRI", _MS, "AGRI (FY-4 Advanced Geosynchronous Radiation Imager): 14/15-channel multispectral imager"),
    _info("GHI", _MS, "GHI (FY-4B Geostationary High-speed Imager): 7-channel multispectral imager"),
    _info("GIIRS", _HS, "GIIRS (FY-4 Geostationary Interferometric Infrared Sounder): interferometer, "
                        "~1650 channels"),
    # LMI images one narrow band (777.4 nm oxygen line) on a staring CCD.
    # Not panchromatic: that class means a broad band and is the one export
    # policies let go finest (cnsa-2022: 0.5 m against 2 m), so granting it to
    # a narrow-band imager would loosen the rules without reason. Classed as
    # multispectral, the limit policies hold other non-panchromatic optical
    # imagery to; MEDIUM because it is a best fit, not an identity.
    _info("LMI", _MS,
          "LMI (FY-4 Lightning Mapping Imager): one narrow band at 777.4 nm, not broadband panchromatic; "
          "held to the multispectral class like other non-panchromatic optical imagery", Strength.MEDIUM),
    _info("CZI", _MS, "CZI (HY-1C/1D Coastal Zone Imager): 4-band multispectral imager"),
    _info("COCTS", _MS, "COCTS (HY-1 Chinese Ocean Colour and Temperature Scanner): 10-band multispectral"),
    _info("UVI", _MS, "UVI (HY-1C/1D Ultraviolet Imager): 2-band ultraviolet imager, multispectral"),
    _info("SCA", _MW, "SCA (HY-2 microwave scatterometer): active microwave, project class 'sar'"),
    _info("ALT", _MW, "ALT (HY-2 radar altimeter): active microwave, project class 'sar'"),
    _info("RM", _MW, "RM (HY-2 scanning microwave radiometer): passive microwave, project class 'sar'"),
    _info("CMR", _MW, "CMR (HY-2 calibration microwave radiometer): passive microwave, project class 'sar'"),
)}

#: Other spellings of the canonical names, after :func:`_squash`.
_ALIASES: dict[str, str] = {
    "OCT": "COCTS",  # NSOAS file names abbreviate COCTS to OCT
    "SCAT": "SCA", "HSCAT": "SCA", "HY2SCAT": "SCA",
    "RADALT": "ALT", "ALTIMETER": "ALT",
    "SMR": "RM", "RAD": "RM",
    "WRAD": "WINDRAD",
}

#: Every spelling, longest first so that a prefix match takes the most
#: specific name.
_NAMES: dict[str, str] = dict(sorted({**{n: n for n in SENSORS}, **_ALIASES}.items(), key=lambda kv: -len(kv[0])))

#: Names this long are also matched as a prefix, so that generations
#: (MERSI-II, MWHS-2, MWTS-III, HIRAS-II, MERSI-LL, HSCAT-B) are known too.
#: Short names (RM, ALT, CZI ...) are matched exactly.
_PREFIX_MIN = 4

_SAT_RE = re.compile(r"^(FY|HY)[\s_-]*(\d)([A-Z]?)$", re.ASCII)
_SAT_SHORT_RE = re.compile(r"^H(\d)([A-Z])$", re.ASCII)
_LEVEL_RE = re.compile(r"^L([0-4])([A-Z]?)$")
#: ASCII digits only: ``\d`` alone would read full-width digits too.
_RES_TOKEN_RE = re.compile(r"^(\d{1,5})(M|KM)$", re.ASCII)


def _squash(text: str) -> str:
    """Upper case, letters and digits only: ``"MWHS-II"`` -> ``"MWHSII"``."""
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def normalise_satellite(text: str) -> str:
    """The hyphenated spelling of a Fengyun or Haiyang satellite name.

    Other names are returned stripped but otherwise unchanged.

    >>> normalise_satellite("FY3D"), normalise_satellite("fy-4a"), normalise_satellite("H1C")
    ('FY-3D', 'FY-4A', 'HY-1C')
    >>> normalise_satellite(" GF2 ")
    'GF2'
    """
    stripped = text.strip()
    upper = stripped.upper()
    match = _SAT_RE.match(upper)
    if match:
        return f"{match[1]}-{match[2]}{match[3]}"
    short = _SAT_SHORT_RE.match(upper)
    if short:
        return f"HY-{short[1]}{short[2]}"
    return stripped


def canonical_sensor(text: str) -> str | None:
    """The canonical name of a known FY/HY sensor, or None.

    File names pad sensor codes to a fixed width with ``X`` (FY-3
    ``MWHSX``) or ``-`` (FY-4 ``AGRI--``); the padding is ignored.

    >>> canonical_sensor("MWHSX"), canonical_sensor("AGRI--"), canonical_sensor("MERSI-II")
    ('MWHS', 'AGRI', 'MERSI')
    >>> canonical_sensor("OCT"), canonical_sensor("16") is None
    ('COCTS', True)
    """
    squashed = _squash(text)
    for candidate in dict.fromkeys((squashed, squashed.rstrip("X"))):
        if not candidate:
            continue
        if candidate in _NAMES:
            return _NAMES[candidate]
        for name, canonical in _NAMES.items():
            if len(name) >= _PREFIX_MIN and candidate.startswith(name):
                return canonical
    return None


def sensor_info(text: str) -> SensorInfo | None:
    """What a sensor name says about the product class, or None if unknown."""
    name = canonical_sensor(text)
    return None if name is None else SENSORS[name]


def filename_resolution_m(name: str) -> float | None:
    """The resolution token of an NSMC/NSOAS file name, in metres.

    The token is an ``_``-separated field of digits followed by ``M`` or
    ``KM``; FY-4 pads fields with ``-``, which is ignored.

    >>> filename_resolution_m("FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF")
    250.0
    >>> filename_resolution_m("FY3C_MWHSX_GBAL_L1_20160731_1254_015KM_MS.HDF")
    15000.0
    >>> filename_resolution_m("H1C_OPER_CZI_L1B_20190101T010500_00103_10.h5") is None
    True

    Tokens outside [1 mm, 40,000 km] (``_0000M_``) are not resolutions and
    are left out here; :func:`read_hdf5` refuses a file named with one.
    """
    values = [v for v in _NameFacts.parse(name).resolutions if MIN_LENGTH_M <= v <= MAX_LENGTH_M]
    return min(values) if values else None


@dataclass(frozen=True)
class _Token:
    """A fact read from a name, with the text it was read from."""

    value: Scalar
    written: str


@dataclass(frozen=True)
class _NameFacts:
    """What a standard FY/HY file name says."""

    satellite: _Token | None
    sensor: _Token | None
    level: _Token | None
    time: _Token | None
    resolution_tokens: tuple[_Token, ...]

    @property
    def resolutions(self) -> list[float]:
        return [float(t.value) for t in self.resolution_tokens if isinstance(t.value, float)]

    @classmethod
    def parse(cls, name: str) -> _NameFacts:
        stem = Path(name.strip().replace("\\", "/")).name
        if "." in stem:
            stem = stem.rsplit(".", 1)[0]
        tokens = [t.strip("-").upper() for t in stem.split("_")]
        satellite = None
        if tokens and (_SAT_RE.match(tokens[0]) or _SAT_SHORT_RE.match(tokens[0])):
            satellite = _Token(normalise_satellite(tokens[0]), tokens[0])
        # FY and HY names put the sensor in the second or third field (HY
        # has a file class such as OPER before it); "File Alias Name" first.
        first = 1 if satellite else 0
        sensor = next((_Token(s, t) for t in tokens[first:first + 3] if (s := canonical_sensor(t))), None)
        level = next((_Token(t, t) for t in tokens if _LEVEL_RE.match(t)), None)
        resolutions: list[_Token] = []
        for token in tokens:
            match = _RES_TOKEN_RE.match(token)
            if match:
                metres = float(match[1]) * (1000.0 if match[2] == "KM" else 1.0)
                resolutions.append(_Token(metres, token))
        return cls(satellite, sensor, level, _name_time(tokens), tuple(resolutions))


def _name_time(tokens: list[str]) -> _Token | None:
    """Start time from FY-3 ``YYYYMMDD_HHMM``, FY-4 ``YYYYMMDDhhmmss`` or HY ``YYYYMMDDThhmmss``."""
    for i, token in enumerate(tokens):
        formats: list[tuple[str, str]] = []
        if re.fullmatch(r"\d{14}", token, re.ASCII):
            formats.append((token, "%Y%m%d%H%M%S"))
        elif re.fullmatch(r"\d{8}T\d{6}", token, re.ASCII):
            formats.append((token, "%Y%m%dT%H%M%S"))
        elif (re.fullmatch(r"\d{8}", token, re.ASCII) and i + 1 < len(tokens)
              and re.fullmatch(r"\d{4}", tokens[i + 1], re.ASCII)):
            formats.append((f"{token}_{tokens[i + 1]}", "%Y%m%d_%H%M"))
        for text, fmt in formats:
            try:
                return _Token(datetime.strptime(text, fmt).isoformat(), text)
            except ValueError:
                continue
    return None


def _norm_key(key: str) -> str:
    """Attribute name with case, spaces, underscores and hyphens folded.

    >>> _norm_key("Satellite_Name") == _norm_key("satellite name") == "satellite name"
    True
    """
    return re.sub(r"[\s_-]+", " ", key.strip().lower())


def _to_scalar(value: Any) -> Scalar:
    """An attribute value as a scalar; None for empty, non-finite or multi-valued.

    HDF5 string attributes arrive as ``bytes`` (fixed length), ``str``
    (variable length) or one-element arrays of either.
    """
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        return _to_scalar(value.reshape(-1)[0])
    if isinstance(value, bytes):
        text = value.split(b"\x00", 1)[0]
        try:
            return text.decode("utf-8").strip()
        except UnicodeDecodeError:
            # text that is not UTF-8 from a Chinese producer is most likely GB 18030 (GBK)
            return text.decode("gb18030", errors="replace").strip()
    if isinstance(value, str):
        return value.split("\x00", 1)[0].strip()
    if isinstance(value, np.generic):
        return _to_scalar(value.item())
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


@dataclass(frozen=True)
class _Attr:
    key: str
    value: Scalar


@dataclass(frozen=True)
class _Shape:
    path: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class _Contents:
    """Everything read from the open file; built before the file is closed."""

    attrs: dict[str, _Attr]
    unreadable: tuple[str, ...]
    largest: _Shape | None
    dataset_count: int


#: Normalised attribute names worth reading. Everything else stays unread.
_SATELLITE_KEYS = ("satellite name", "satellite", "satellite id", "platform name", "platform")
_SENSOR_KEYS = ("sensor name", "sensor", "instrument name", "instrument", "instrument shortname",
                "instrument shorname")  # sic: HY-2 SCA L2B files spell it "Instrument_ShorName"
_CODE_KEYS = ("sensor identification code",)  # FY-3 writes a number here for some sensors
_LEVEL_KEYS = ("data level", "product level", "processing level")
_NAME_KEYS = ("file name", "file alias name")
_TIME_KEYS = (("observing beginning date", "observing beginning time"),
              ("range beginning date", "range beginning time"))
_ANGLE_KEYS = ("dsamplingangle", "dsteppingangle")


def _wanted(norm: str) -> bool:
    return (norm in _SATELLITE_KEYS or norm in _SENSOR_KEYS or norm in _CODE_KEYS or norm in _LEVEL_KEYS
            or norm in _NAME_KEYS or norm in _ANGLE_KEYS or any(norm in pair for pair in _TIME_KEYS)
            or "resolution" in norm)


def _non_finite(raw: Any) -> bool:
    """Whether an attribute value is one number that is NaN or infinite."""
    array = np.asarray(raw)
    return array.size == 1 and array.dtype.kind in "fc" and not bool(np.all(np.isfinite(array)))


def _read_contents(h5: Any, path: Path) -> _Contents:
    if h5.userblock_size:
        raise ProductReadError(path, f"HDF5 user block of {h5.userblock_size} bytes before the HDF5 data: "
                                     "bytes another program may read as something else; not read")
    attrs: dict[str, _Attr] = {}
    unreadable: list[str] = []
    for index, key in enumerate(h5.attrs):
        if index >= MAX_ATTRIBUTES:
            raise ProductReadError(path, f"more than {MAX_ATTRIBUTES} root attributes: not a product file")
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        norm = _norm_key(name)
        if not _wanted(norm):
            continue
        try:
            raw = h5.attrs[key]
        except _H5_ERRORS:
            # one odd attribute type should not hide the rest of the file
            unreadable.append(name)
            continue
        if "resolution" in norm and _non_finite(raw):
            raise ProductReadError(path, f"attribute {name!r} is absurd: {shown(raw)} is not a finite number")
        attr = _Attr(name, _to_scalar(raw))
        earlier = attrs.setdefault(norm, attr)
        if earlier.value != attr.value:
            # "Satellite Name" and "Satellite_Name" are one field to every
            # reader: written twice with different values, the file is malformed.
            raise ProductReadError(path, f"attributes {earlier.key!r} and {name!r} name one field with different "
                                         f"values ({shown(earlier.value)}, {shown(attr.value)})")
    largest, dataset_count = _walk(h5, path)
    return _Contents(attrs, tuple(unreadable), largest, dataset_count)


def _walk(h5: Any, path: Path) -> tuple[_Shape | None, int]:
    """The largest 2-D dataset and the number of datasets, checking every link.

    Every link is looked at without being followed (``getlink``): external
    links, external storage and virtual datasets refuse the file, soft links
    are skipped (their targets are walked where they live), and a group met
    twice through hard links is walked once.

    Raises
    ------
    ProductReadError
        Naming the object that refers to another file, or when the file
        holds more than :data:`MAX_OBJECTS` links or nests groups deeper
        than :data:`MAX_DEPTH`.
    """
    import h5py  # noqa: PLC0415  (h5py costs a twentieth of a second to import; only HDF5 products need it)

    largest: _Shape | None = None
    datasets = links = 0
    seen: set[tuple[int, int]] = set()

    def walk(group: Any, prefix: str, depth: int) -> None:
        # Recursion is bounded by MAX_DEPTH, far below Python's limit; the
        # order (depth first, by name) is the one h5py's visititems uses.
        nonlocal largest, datasets, links
        info = h5py.h5o.get_info(group.id)
        if (info.fileno, info.addr) in seen:
            return
        seen.add((info.fileno, info.addr))
        if depth > MAX_DEPTH:
            raise ProductReadError(path, f"groups nested more than {MAX_DEPTH} deep at {prefix or '/'}: "
                                         "not a product file")
        for key in group:
            links += 1
            if links > MAX_OBJECTS:
                raise ProductReadError(path, f"more than {MAX_OBJECTS} objects: not a product file, "
                                             "and what is not walked is not checked")
            where = f"{prefix}/{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ProductReadError(path, f"{where} is an external link to {shown(link.filename)} "
                                             f"{shown(link.path)}: an HDF5 product that refers to other files "
                                             "is not read")
            if not isinstance(link, h5py.HardLink):
                continue
            obj = group.get(key)
            if isinstance(obj, h5py.Group):
                walk(obj, where, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                datasets += 1
                if obj.is_virtual:
                    raise ProductReadError(path, f"{where} is a virtual dataset (its data lives in other files): "
                                                 "not read")
                if obj.external:
                    raise ProductReadError(path, f"{where} is stored in external files "
                                                 f"({shown(obj.external[0][0])}...): not read")
                shape = tuple(int(n) for n in (obj.shape or ()))
                if len(shape) < 2 or min(shape[-2:]) < 1:
                    continue
                if max(shape[-2:]) > MAX_PIXEL_COUNT:
                    raise ProductReadError(path, f"{where} is absurd: shape {shape} has more than "
                                                 f"{MAX_PIXEL_COUNT} pixels along an axis")
                if largest is None or _area(shape) > _area(largest.shape):
                    largest = _Shape(where, shape)

    walk(h5, "", 0)
    return largest, datasets


def _area(shape: tuple[int, ...]) -> int:
    return shape[-1] * shape[-2]


def read_hdf5(path: Path, source: str) -> list[Evidence]:
    """Read the evidence of an FY-3, FY-4 or HY HDF5 product.

    Parameters
    ----------
    path
        The local HDF5 file.
    source
        The label to put on the evidence (the product's display path).

    Returns
    -------
    list of Evidence
        SATELLITE (hyphenated: ``FY-3D``), SENSOR (canonical: ``MERSI``),
        PRODUCT_LEVEL, ACQUISITION_TIME (ISO 8601, UTC as NSMC writes it),
        GSD in metres from the file-name resolution token (field
        ``filename``), from the "File Name" attribute and from resolution
        attributes that state a length unit, WIDTH/HEIGHT of the largest
        dataset, a CLASS_HINT for a known sensor, and INFO for values that
        look like resolutions but are not used as one. Other facts read
        with the same value from several places are reported once, from
        the first place (attributes before names).

    Raises
    ------
    ProductReadError
        When the file is missing or is not a readable HDF5 file; when it
        refers to other files (external link, external storage, virtual
        dataset) or has a user block, naming the object; when it holds more
        than :data:`MAX_OBJECTS` links or groups deeper than
        :data:`MAX_DEPTH`; when a resolution (attribute or name token) is
        outside [1 mm, 40,000 km] or a dataset is more than 10^7 pixels
        along an axis.
    """
    try:
        # Delivery media are often read-only or network mounts where HDF5's
        # file locking fails; a reader never needs the lock.
        import h5py  # noqa: PLC0415  (see _read_contents)

        with h5py.File(path, "r", locking=False) as h5:
            contents = _read_contents(h5, path)
    except ProductReadError:
        raise
    except _H5_ERRORS as exc:
        raise ProductReadError(path, f"not a readable HDF5 file: {_reason(exc)}") from exc
    return _dedupe(_evidence(path, source, contents))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _dedupe(evidence: Iterable[Evidence]) -> list[Evidence]:
    """Drop repeats of a fact already read with the same value.

    Resolution evidence is kept from every place, agreeing or not: the
    resolution stage weighs and reports all of it.
    """
    seen: set[tuple[Fact, Scalar]] = set()
    out: list[Evidence] = []
    for e in evidence:
        key = (e.fact, e.value)
        if e.fact not in (Fact.GSD, Fact.INFO) and key in seen:
            continue
        seen.add(key)
        out.append(e)
    return out


def _evidence(path: Path, source: str, contents: _Contents) -> Iterator[Evidence]:
    attrs = contents.attrs
    sensors: list[tuple[str, SensorInfo]] = []

    def text(norm: str) -> tuple[str, str] | None:
        attr = attrs.get(norm)
        if attr is None or attr.value in (None, "") or isinstance(attr.value, bool):
            return None
        return attr.key, str(attr.value)

    # Attributes first: they are what the producer wrote about this file.
    for norm in _SATELLITE_KEYS:
        found = text(norm)
        if found:
            yield _satellite(found[1], source, found[0])
            break
    for norm in (*_SENSOR_KEYS, *_CODE_KEYS):
        found = text(norm)
        if not found:
            continue
        info = sensor_info(found[1])
        if norm in _CODE_KEYS and info is None:
            continue  # a numeric instrument code, not a name
        yield _sensor(found[1], info, source, found[0])
        if info:
            sensors.append((found[0], info))
        break
    for norm in _LEVEL_KEYS:
        found = text(norm)
        if found:
            yield Evidence(Fact.PRODUCT_LEVEL, found[1].upper(), source, found[0])
            break
    for date_key, time_key in _TIME_KEYS:
        time_ev = _attr_time(attrs.get(date_key), attrs.get(time_key), source)
        if time_ev:
            yield time_ev
            break
    yield from _attr_resolutions(attrs, path, source)

    # Then names: the on-disk name is what the recipient sees; the "File
    # Name" attribute survives a renaming of the file.
    names = [("filename", path.name, "standard NSMC/NSOAS file name")]
    for norm in _NAME_KEYS:
        found = text(norm)
        if found:
            names.append((found[0], found[1], f"name recorded in the {found[0]!r} attribute"))
    for field, name, origin in names:
        facts = _NameFacts.parse(name)
        if facts.satellite:
            yield _satellite(facts.satellite.written, source, field, origin)
        if facts.sensor:
            info = sensor_info(facts.sensor.written)
            yield _sensor(facts.sensor.written, info, source, field, origin)
            if info:
                sensors.append((field, info))
        if facts.level:
            yield Evidence(Fact.PRODUCT_LEVEL, facts.level.value, source, field,
                           f"{origin}: level token {facts.level.written!r}")
        if facts.time:
            yield Evidence(Fact.ACQUISITION_TIME, facts.time.value, source, field,
                           f"{origin}: start-time token {facts.time.written!r} (UTC)")
        for token in facts.resolution_tokens:
            check_length_m(float(token.value or 0.0), path, f"{field} resolution token {token.written}")
            yield Evidence(Fact.GSD, token.value, source, field,
                           f"{origin}: resolution token {token.written!r} = {token.value:g} m, the nominal "
                           "nadir pixel spacing of the file's grid")

    if contents.largest is not None:
        shape = contents.largest
        where = f"largest of {contents.dataset_count} datasets, shape {shape.shape}; swath grid, not georeferenced"
        yield Evidence(Fact.WIDTH, shape.shape[-1], source, shape.path, where)
        yield Evidence(Fact.HEIGHT, shape.shape[-2], source, shape.path, where)

    hinted: set[ProductClass] = set()
    for field, info in sensors:
        if info.product_class not in hinted:
            hinted.add(info.product_class)
            yield Evidence(Fact.CLASS_HINT, info.product_class.value, source, field, info.why, info.strength)

    for norm in _ANGLE_KEYS:
        attr = attrs.get(norm)
        if attr is not None and attr.value is not None:
            yield Evidence(Fact.INFO, attr.value, source, attr.key,
                           "FY-4 sampling/stepping angle (microradians), not a ground distance: not used as GSD")
    for name in contents.unreadable:
        yield Evidence(Fact.INFO, None, source, name, "attribute of a type h5py cannot read; ignored")


def _satellite(written: str, source: str, field: str, origin: str = "") -> Evidence:
    value = normalise_satellite(written)
    detail = f"written {written!r}" if value != written.strip() else ""
    if origin:
        detail = f"{origin}; {detail}" if detail else origin
    return Evidence(Fact.SATELLITE, value, source, field, detail)


def _sensor(written: str, info: SensorInfo | None, source: str, field: str, origin: str = "") -> Evidence:
    if info is None:
        return Evidence(Fact.SENSOR, written.strip(), source, field,
                        "not a known FY/HY sensor: no class hint from it")
    parts = [origin] if origin else []
    if info.name != written.strip():
        parts.append(f"written {written.strip()!r}")
    return Evidence(Fact.SENSOR, info.name, source, field, "; ".join(parts))


def _attr_time(date: _Attr | None, time: _Attr | None, source: str) -> Evidence | None:
    if date is None or not isinstance(date.value, str) or not date.value:
        return None
    time_text = time.value if time is not None and isinstance(time.value, str) else ""
    field = date.key if not time_text or time is None else f"{date.key} + {time.key}"
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(f"{date.value} {time_text}".strip(), fmt)
        except ValueError:
            continue
        spec = "milliseconds" if moment.microsecond else "seconds"
        if not time_text:
            return Evidence(Fact.ACQUISITION_TIME, moment.date().isoformat(), source, field,
                            "observation date only; no time attribute")
        return Evidence(Fact.ACQUISITION_TIME, moment.isoformat(timespec=spec), source, field, "UTC")
    return Evidence(Fact.ACQUISITION_TIME, f"{date.value} {time_text}".strip(), source, field,
                    "not a recognised date/time format; kept as written")


_UNIT = r"(?:m|km|meters?|metres?|kilometers?|kilometres?)"
_LENGTH_RE = re.compile(rf"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*({_UNIT})\s*", re.IGNORECASE)
_UNIT_RE = re.compile(rf"\s*({_UNIT})\s*", re.IGNORECASE)
#: A unit stated in the attribute name: "resolution(m)", "resolution [km]", "resolution m".
_KEY_UNIT_RE = re.compile(rf"(?:[(\[]|\s)({_UNIT})[)\]]?$", re.IGNORECASE)


def _unit_factor(unit: str) -> float:
    return 1000.0 if unit.lower().startswith("k") else 1.0


def _attr_resolutions(attrs: dict[str, _Attr], path: Path, source: str) -> Iterator[Evidence]:
    """GSD from resolution attributes, only when a length unit is stated.

    A bare number could be metres, kilometres or degrees (gridded L3
    products write 0.25 for a quarter-degree grid); taking it as metres
    could invent a sub-metre resolution, so it is reported as INFO instead.
    A length outside [1 mm, 40,000 km] refuses the file.
    """
    for norm, attr in attrs.items():
        value = attr.value
        if "resolution" not in norm or "unit" in norm or value is None or isinstance(value, bool):
            continue
        metres: float | None = None
        how = ""
        if isinstance(value, str):
            match = _LENGTH_RE.fullmatch(value)
            if match:
                metres = float(match[1]) * _unit_factor(match[2])
                how = f"attribute value {value!r}"
        else:
            unit_attr = attrs.get(f"{norm} unit") or attrs.get(f"{norm} units")
            key_unit = _KEY_UNIT_RE.search(norm)
            unit_text = key_unit[1] if key_unit else str(unit_attr.value) if unit_attr is not None else ""
            unit = _UNIT_RE.fullmatch(unit_text)
            if unit:
                metres = float(value) * _unit_factor(unit[1])
                how = f"attribute value {value!r} in {unit[1]!r}"
        if metres is not None:
            check_length_m(metres, path, f"attribute {attr.key}", str(value))
            yield Evidence(Fact.GSD, metres, source, attr.key, f"{how} = {metres:g} m")
        else:
            yield Evidence(Fact.INFO, value, source, attr.key,
                           "resolution attribute without a length unit: not used as GSD")
