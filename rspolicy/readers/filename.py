"""Evidence from the standard file names of CRESDA and NSMC deliveries.

File names are weak evidence on their own (anyone can rename a file), but
they are what distinguishes a GF PAN image from its MSS twin when the sidecar
is missing, and they disagree loudly when a product has been mislabelled.

Patterns, from real deliveries:

- ``GF2_PMS1_W91.0_N17.6_20200510_L1A0004793969-PAN1.tiff`` (PAN1/PAN2, MSS1/MSS2)
- ``GF1_WFV3_E89.0_N23.9_20200523_L1A0004819525.tiff`` (WFV: no suffix)
- ``GF4_PMS_E119.9_N10.2_..._L1A0000773662.tiff`` / ``GF4_IRS_...`` (GF-4 cameras)
- ``GF7_DLC_E116.3_N39.9_..._L1A...-BWDPAN.tif`` (-BWDPAN/-FWDPAN/-BWDMUX)
- ``ZY3_NAD_...`` / ``-NAD``, ``-FWD``, ``-BWD`` (ZY-3 stereo panchromatic), ``-MUX``
- ``SV1-01_20180101_L1B0000123456_1234567890-PAN.tif`` (SuperView PAN/MUX)
- ``GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_HH_L20006303810.tiff`` (GF-3 SAR)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from rspolicy.model import Evidence, Fact, ProductClass, Strength


@dataclass(frozen=True)
class _Token:
    pattern: re.Pattern[str]
    product_class: ProductClass
    meaning: str


_SUFFIX_TOKENS = (
    _Token(re.compile(r"[-_](?:BWD|FWD)PAN\d?$", re.I), ProductClass.PANCHROMATIC, "GF-7 stereo panchromatic camera"),
    _Token(re.compile(r"[-_](?:BWD|FWD)MUX\d?$", re.I), ProductClass.MULTISPECTRAL, "GF-7 multispectral camera"),
    _Token(re.compile(r"[-_]PAN\d?$", re.I), ProductClass.PANCHROMATIC, "panchromatic image suffix"),
    _Token(re.compile(r"[-_](?:MSS|MUX|MS)\d?$", re.I), ProductClass.MULTISPECTRAL, "multispectral image suffix"),
    _Token(re.compile(r"[-_](?:NAD|FWD|BWD)$", re.I), ProductClass.PANCHROMATIC, "ZY-3 stereo panchromatic camera"),
)

_SENSOR_TOKENS = (
    _Token(re.compile(r"^GF3[A-Z]?_[A-Z0-9]{2,4}_[A-Z0-9]+_\d+_", re.I), ProductClass.SAR, "GF-3 SAR product name"),
    _Token(re.compile(r"^GF4_IRS_", re.I), ProductClass.THERMAL, "GF-4 infrared (IRS) camera"),
    _Token(re.compile(r"^GF4_PM[SI]_", re.I), ProductClass.MULTISPECTRAL, "GF-4 visible/near-infrared camera"),
    _Token(re.compile(r"^GF[16][BCD]?_WFV\d?_", re.I), ProductClass.MULTISPECTRAL, "wide-field multispectral camera"),
    _Token(re.compile(r"^ZY3[A-Z0-9-]*_NAD_", re.I), ProductClass.PANCHROMATIC, "ZY-3 nadir panchromatic camera"),
    _Token(re.compile(r"^ZY3[A-Z0-9-]*_MUX_", re.I), ProductClass.MULTISPECTRAL, "ZY-3 multispectral camera"),
)

_MISSION = re.compile(
    r"^(?P<sat>GF\d{1,2}[A-D]?|ZY\d{1,2}[A-Z0-9]*|ZY1-02[DE]|SVN?\d-\d\d|CB04A?|HY\d[A-D]?|FY\d[A-Z]?)"
    r"[-_]+(?P<sensor>[A-Z]{2,5}\d?)[-_]",
    re.I,
)

_STRIP_SUFFIXES = (".meta.xml", ".tar.gz", ".tiff", ".tif", ".xml", ".rpb", ".h5", ".hdf5", ".hdf", ".tgz")


def product_stem(name: str) -> str:
    """A file name without its product extensions.

    >>> product_stem("GF2_PMS1_W91.0_N17.6_20200510_L1A0004793969-PAN1.tiff")
    'GF2_PMS1_W91.0_N17.6_20200510_L1A0004793969-PAN1'
    >>> product_stem("GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810.meta.xml")
    'GF3_MYN_UFS_029108_W43.3_S22.7_20220219_L2_DH_L20006303810'
    """
    lowered = name.lower()
    for suffix in _STRIP_SUFFIXES:
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


def filename_evidence(name: str, source: str) -> list[Evidence]:
    """Evidence from a product file name.

    Parameters
    ----------
    name
        The file's base name.
    source
        The label to put on the evidence.

    Returns
    -------
    list of Evidence
        Class hints (medium strength) and, when the mission prefix is
        recognised, the satellite and sensor the name claims (callers list
        sidecar evidence first, which says it with more authority).

    Examples
    --------
    >>> [e.value for e in filename_evidence("GF2_PMS1_W91.0_N17.6_20200510_L1A0004793969-PAN1.tiff", "x")
    ...  if e.fact is Fact.CLASS_HINT]
    ['panchromatic']
    >>> [e.value for e in filename_evidence("GF1_WFV3_E89.0_N23.9_20200523_L1A0004819525.tiff", "x")
    ...  if e.fact is Fact.CLASS_HINT]
    ['multispectral']
    """
    stem = product_stem(name)
    out: list[Evidence] = []
    for token in _SUFFIX_TOKENS:
        match = token.pattern.search(stem)
        if match:
            out.append(Evidence(Fact.CLASS_HINT, token.product_class.value, source, "filename",
                                f"'{match.group(0).lstrip('-_')}': {token.meaning}", Strength.MEDIUM))
            break
    for token in _SENSOR_TOKENS:
        match = token.pattern.search(stem)
        if match:
            out.append(Evidence(Fact.CLASS_HINT, token.product_class.value, source, "filename",
                                f"'{match.group(0).strip('_')}': {token.meaning}", Strength.MEDIUM))
            break
    mission = _MISSION.match(stem)
    if mission:
        satellite = mission.group("sat").upper()
        if re.fullmatch(r"(?:FY|HY)\d[A-Z]?", satellite):
            satellite = f"{satellite[:2]}-{satellite[2:]}"  # FY3D -> FY-3D, as the HDF5 attributes write it
        out.append(Evidence(Fact.SATELLITE, satellite, source, "filename", "satellite named by the file name"))
    if mission and not satellite.startswith("GF3"):  # GF-3 names put the receiving station there
        out.append(Evidence(Fact.SENSOR, mission.group("sensor").upper(), source, "filename",
                            "sensor or camera named by the file name"))
    day = _acquisition_day(stem) if mission or stem.upper().startswith("GF3") else None
    if day is not None:
        # A whole day: policies on the age of the data consider both its first and its last moment.
        out.append(Evidence(Fact.ACQUISITION_TIME, day.isoformat(), source, "filename",
                            "acquisition date named by the file name (a whole day)"))
    return out


_DAY = re.compile(r"(?:^|[-_])((?:19|20)\d{6})(?:T\d{4,6})?(?=[-_.]|$)")


def _acquisition_day(stem: str) -> date | None:
    """The first ``_YYYYMMDD_`` of a product name that is a real date.

    >>> _acquisition_day("GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1")
    datetime.date(2020, 5, 10)
    >>> _acquisition_day("GF2_PMS1_E116.5_N39.9_20201345_L1A0004793969") is None
    True
    """
    for match in _DAY.finditer(stem):
        text = match.group(1)
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            continue
    return None
