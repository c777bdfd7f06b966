"""rspolicy's own parsers for the files GDAL would consult beside an image.

Inputs are opened with ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``, so GDAL
never sees an ``.rpb``, ``_rpc.txt``, world file or ``.aux.xml`` beside an
image. Each of them is parsed here instead, strictly and within a size bound,
so that it is evidence rspolicy judged rather than something GDAL silently
applied. Whatever these parsers accept, GDAL reads to the same values (the
tests compare both); whatever is ambiguous (a key given twice with different
values, a missing field, a stray token, text that is not ASCII) is refused
with a :class:`~rspolicy.errors.ProductReadError` naming the file and field.
No other exception leaves this module, whatever the bytes.
"""

from __future__ import annotations

import enum
import math
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

from affine import Affine
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC

from rspolicy.errors import ProductReadError
from rspolicy.readers.xmlutil import local_name, parse_xml

#: No real ``.rpb``, ``_rpc.txt`` or world file comes near this (a GF-2 ``.rpb`` is 4 KB).
MAX_RPC_BYTES = 1024 * 1024
MAX_WORLD_FILE_BYTES = 1024 * 1024
#: A PAM file may carry band statistics and histograms, still far below this.
MAX_PAM_BYTES = 16 * 1024 * 1024

#: RPC00B fields as GDAL names them (metadata domain ``RPC``, ``_rpc.txt`` keys).
_RPC_SCALARS = (
    "ERR_BIAS", "ERR_RAND", "LINE_OFF", "SAMP_OFF", "LAT_OFF", "LONG_OFF", "HEIGHT_OFF",
    "LINE_SCALE", "SAMP_SCALE", "LAT_SCALE", "LONG_SCALE", "HEIGHT_SCALE",
)
_RPC_POLYNOMIALS = ("LINE_NUM_COEFF", "LINE_DEN_COEFF", "SAMP_NUM_COEFF", "SAMP_DEN_COEFF")
#: GDAL reads an RPC without its error estimates; every other field is required.
_RPC_OPTIONAL = frozenset({"ERR_BIAS", "ERR_RAND"})
_RPC_SCALES = ("LINE_SCALE", "SAMP_SCALE", "LAT_SCALE", "LONG_SCALE", "HEIGHT_SCALE")
_COEFFICIENT_COUNT = 20

#: The unit words GeoEye-style ``_rpc.txt`` files put after a value (GDAL reads the
#: leading number and ignores them); any other trailing word is garbage.
_RPC_UNITS: dict[str, frozenset[str]] = {
    **dict.fromkeys(("LINE_OFF", "SAMP_OFF", "LINE_SCALE", "SAMP_SCALE"), frozenset({"pixel", "pixels"})),
    **dict.fromkeys(("LAT_OFF", "LONG_OFF", "LAT_SCALE", "LONG_SCALE"), frozenset({"degree", "degrees"})),
    **dict.fromkeys(("HEIGHT_OFF", "HEIGHT_SCALE", "ERR_BIAS", "ERR_RAND"),
                    frozenset({"meter", "meters", "metre", "metres", "m"})),
}

#: ``.rpb`` keys of the IMAGE group, by the GDAL field each one fills.
_RPB_KEYS: dict[str, str] = {
    "ERR_BIAS": "errBias", "ERR_RAND": "errRand",
    "LINE_OFF": "lineOffset", "SAMP_OFF": "sampOffset", "LAT_OFF": "latOffset",
    "LONG_OFF": "longOffset", "HEIGHT_OFF": "heightOffset",
    "LINE_SCALE": "lineScale", "SAMP_SCALE": "sampScale", "LAT_SCALE": "latScale",
    "LONG_SCALE": "longScale", "HEIGHT_SCALE": "heightScale",
    "LINE_NUM_COEFF": "lineNumCoef", "LINE_DEN_COEFF": "lineDenCoef",
    "SAMP_NUM_COEFF": "sampNumCoef", "SAMP_DEN_COEFF": "sampDenCoef",
}
#: GDAL looks keys up case-insensitively, so this parser does too.
_RPB_FIELDS: dict[str, str] = {key.lower(): field for field, key in _RPB_KEYS.items()}
#: Descriptive ``.rpb`` keys outside the IMAGE group (quoted strings, not evidence).
_RPB_LABELS = frozenset({"satid", "bandid", "specid"})

#: A decimal number as distributors write it. Python's ``float()`` alone would also take
#: ``1_000``, ``inf``, ``nan`` and surrounding blanks, none of which is a number here.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

#: The blanks GDAL splits values on; Unicode spaces are not among them, so they stay
#: inside a word and make it no number.
_ASCII_BLANKS = re.compile(r"[ \t\r\n]+")

#: Control characters other than tab and line ends: GDAL reads C strings, so a NUL
#: would end its reading where this parser goes on; the others have no place in text.
_CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

_RPB_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>"[^"\n]*")
      | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w.+-]))
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>[=;(),])""",
    re.VERBOSE | re.ASCII,
)

_RPC_TXT_LINE = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)[:=][ \t]*(?P<value>.*?)[ \t]*")


class CompanionKind(enum.Enum):
    """What a file beside an image is, as far as GDAL would be concerned."""

    RPB = "rpb"
    RPC_TXT = "rpc_txt"
    WORLD = "world"
    PAM = "pam"
    OVERVIEW = "overview"
    MASK = "mask"
    BROWSE = "browse"
    XML_SIDECAR = "xml_sidecar"
    OTHER = "other"


@dataclass(frozen=True)
class PamInfo:
    """What a GDAL ``.aux.xml`` (``<PAMDataset>``) says about its image.

    Attributes
    ----------
    geotransform
        ``<GeoTransform>`` as a corner-based affine, or None.
    srs_wkt
        ``<SRS>`` text, or None.
    gcps
        ``<GCPList>/<GCP>`` points (``Pixel`` is the column, ``Line`` the row).
    gcp_srs_wkt
        The ``Projection`` attribute of ``<GCPList>``, or None.
    rpc
        The ``<Metadata domain="RPC">`` items, or None.
    other
        Names of the elements and metadata domains the file carries that are
        not used as evidence (``Metadata``, ``Metadata domain="IMAGE_STRUCTURE"``,
        ``PAMRasterBand band="1"``...), in file order.
    """

    geotransform: Affine | None
    srs_wkt: str | None
    gcps: tuple[GroundControlPoint, ...]
    gcp_srs_wkt: str | None
    rpc: RPC | None
    other: tuple[str, ...]


# ---------------------------------------------------------------------------
# Bounded, strict reading
# ---------------------------------------------------------------------------

def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never reading more than that."""
    try:
        # O_NONBLOCK: a FIFO planted under a companion's name must not hang the open.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except (OSError, ValueError) as exc:
        raise ProductReadError(path, f"cannot open: {_os_reason(exc)}") from None
    # ProductReadError is itself an OSError: decide on the file only after the OS calls.
    try:
        info = os.fstat(fd)
        regular = stat.S_ISREG(info.st_mode)
        chunks: list[bytes] = []
        total = 0
        while regular and info.st_size <= limit and total <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as exc:
        raise ProductReadError(path, f"cannot read: {_os_reason(exc)}") from None
    finally:
        os.close(fd)
    if not regular:
        raise ProductReadError(path, "is not a regular file")
    if info.st_size > limit:
        raise ProductReadError(path, f"is {info.st_size} bytes, more than the {limit} a real one can be")
    if total > limit:
        raise ProductReadError(path, f"grew beyond {limit} bytes while being read")
    return b"".join(chunks)


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def _decode_text(path: Path, data: bytes, *, ascii_only: bool = True) -> str:
    """Text without NULs or other control characters: ASCII, or UTF-8 where ``ascii_only`` is False.

    The plain-text companions (``.rpb``, ``_rpc.txt``, world files) are ASCII
    by definition; anything else in them (a byte-order mark GDAL would take
    for part of the first value, a Unicode line separator GDAL does not split
    on) would make this parser and GDAL read different values.
    """
    if ascii_only:
        if data.startswith(b"\xef\xbb\xbf"):
            raise ProductReadError(path, "starts with a byte-order mark, which GDAL reads as part of the first value")
        if not data.isascii():
            bad = next(offset for offset, byte in enumerate(data) if byte > 0x7F)
            raise ProductReadError(path, f"is not ASCII text (byte {bad} is 0x{data[bad]:02x})")
        text = data.decode("ascii")
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProductReadError(path, f"is not UTF-8 text (byte {exc.start})") from None
        text = text.removeprefix("\ufeff")
    control = _CONTROL_CHARACTER.search(text)
    if control is not None:
        raise ProductReadError(path, f"holds control character {control.group()!r} at character {control.start()}")
    return text


def _number(path: Path, field: str, text: str) -> float:
    """A finite float written as a plain decimal number."""
    if not _NUMBER.fullmatch(text):
        raise ProductReadError(path, f"{field} is not a number: {_quote(text)}")
    value = float(text)
    if not math.isfinite(value):
        raise ProductReadError(path, f"{field} is not finite: {_quote(text)}")
    return value


def _words(text: str) -> list[str]:
    r"""``text`` split on ASCII blanks only.

    >>> _words(" 1.0\t2.0 ")
    ['1.0', '2.0']
    >>> _words("1.0\u00a02.0")
    ['1.0\xa02.0']
    """
    return [word for word in _ASCII_BLANKS.split(text) if word]


def _quote(text: str, limit: int = 40) -> str:
    """A short printable rendering of untrusted text for a one-line message."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)


# ---------------------------------------------------------------------------
# RPCs
# ---------------------------------------------------------------------------

def _build_rpc(path: Path, scalars: Mapping[str, float], polynomials: Mapping[str, list[float]],
               names: Mapping[str, str]) -> RPC:
    """An RPC from parsed fields, refusing missing fields and impossible values.

    ``names`` maps GDAL's field names to the names the file itself uses, so
    that messages speak the file's language.
    """
    for field in _RPC_SCALARS:
        if field not in scalars and field not in _RPC_OPTIONAL:
            raise ProductReadError(path, f"{names[field]} is missing")
    for field in _RPC_POLYNOMIALS:
        if field not in polynomials:
            raise ProductReadError(path, f"{names[field]} is missing")
        if len(polynomials[field]) != _COEFFICIENT_COUNT:
            raise ProductReadError(path, f"{names[field]} has {len(polynomials[field])} coefficients, not 20")
    for field in _RPC_SCALES:
        if scalars[field] == 0.0:
            raise ProductReadError(path, f"{names[field]} is zero")
    for field in ("LINE_DEN_COEFF", "SAMP_DEN_COEFF"):
        if not any(polynomials[field]):
            raise ProductReadError(path, f"{names[field]} is all zeros (division by zero)")
    if abs(scalars["LAT_OFF"]) > 90.0:
        raise ProductReadError(path, f"{names['LAT_OFF']} {scalars['LAT_OFF']!r} is not a latitude")
    return RPC(
        err_bias=scalars.get("ERR_BIAS"), err_rand=scalars.get("ERR_RAND"),
        height_off=scalars["HEIGHT_OFF"], height_scale=scalars["HEIGHT_SCALE"],
        lat_off=scalars["LAT_OFF"], lat_scale=scalars["LAT_SCALE"],
        long_off=scalars["LONG_OFF"], long_scale=scalars["LONG_SCALE"],
        line_off=scalars["LINE_OFF"], line_scale=scalars["LINE_SCALE"],
        samp_off=scalars["SAMP_OFF"], samp_scale=scalars["SAMP_SCALE"],
        line_num_coeff=list(polynomials["LINE_NUM_COEFF"]), line_den_coeff=list(polynomials["LINE_DEN_COEFF"]),
        samp_num_coeff=list(polynomials["SAMP_NUM_COEFF"]), samp_den_coeff=list(polynomials["SAMP_DEN_COEFF"]),
    )


def _rpc_scalar_value(path: Path, field: str, label: str, text: str) -> float:
    """A scalar RPC value, optionally followed by the unit word GeoEye writes after it."""
    words = _words(text)
    if len(words) == 2 and words[1].lower() in _RPC_UNITS[field]:
        words = words[:1]
    if len(words) != 1:
        raise ProductReadError(path, f"{label} is not one number: {_quote(text)}")
    return _number(path, label, words[0])


def _put_once(path: Path, seen: dict[str, str], key: str, label: str, raw: str) -> bool:
    """Remember ``raw`` under ``key``; False when it repeats the same value, error when it differs."""
    previous = seen.get(key)
    if previous is None:
        seen[key] = raw
        return True
    if _words(previous) == _words(raw):
        return False
    raise ProductReadError(path, f"{label} is given twice with different values "
                                 f"({_quote(previous, 20)}, {_quote(raw, 20)})")


def parse_rpc_txt(path: Path) -> RPC:
    """Parse an RPC00B ``_rpc.txt`` file (``LINE_OFF: ...``, ``LINE_NUM_COEFF_1: ...``).

    Parameters
    ----------
    path
        The ``_rpc.txt`` file.

    Returns
    -------
    rasterio.rpc.RPC
        The same values GDAL applies from this file.

    Raises
    ------
    ProductReadError
        When the file is too large, not ASCII text, has a line that is not
        ``KEY: value``, an unknown key, a key given twice with different
        values, a missing field, a value that is not a finite number (a unit
        word of the field's kind may follow), a zero scale or an all-zero
        denominator.
    """
    text = _decode_text(path, _read_bounded(path, MAX_RPC_BYTES))
    coefficient_keys = {f"{name}_{index}": (name, index)
                        for name in _RPC_POLYNOMIALS for index in range(1, _COEFFICIENT_COUNT + 1)}
    seen: dict[str, str] = {}
    scalars: dict[str, float] = {}
    coefficients: dict[str, dict[int, float]] = {name: {} for name in _RPC_POLYNOMIALS}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _RPC_TXT_LINE.fullmatch(line)
        if match is None:
            raise ProductReadError(path, f"line {number} is not 'KEY: value': {_quote(line)}")
        key = match["key"].upper()
        raw = match["value"]
        if key in _RPC_UNITS:
            if _put_once(path, seen, key, key, raw):
                scalars[key] = _rpc_scalar_value(path, key, key, raw)
        elif key in coefficient_keys:
            if _put_once(path, seen, key, key, raw):
                name, index = coefficient_keys[key]
                coefficients[name][index] = _number(path, key, raw)
        else:
            raise ProductReadError(path, f"line {number} has unknown key {_quote(match['key'])}")
    polynomials: dict[str, list[float]] = {}
    for name, values in coefficients.items():
        missing = [index for index in range(1, _COEFFICIENT_COUNT + 1) if index not in values]
        if len(missing) == _COEFFICIENT_COUNT:
            continue
        if missing:
            raise ProductReadError(path, f"{name}_{missing[0]} is missing")
        polynomials[name] = [values[index] for index in range(1, _COEFFICIENT_COUNT + 1)]
    return _build_rpc(path, scalars, polynomials, {**{f: f for f in _RPC_SCALARS}, **{
        f: f"{f}_1..20" for f in _RPC_POLYNOMIALS}})


def _rpb_tokens(path: Path, text: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, line) tokens of ``.rpb`` text; anything unrecognised is refused."""
    position = 0
    line = 1
    while position < len(text):
        match = _RPB_TOKEN.match(text, position)
        if match is None:
            raise ProductReadError(path, f"line {line}: unexpected text {_quote(text[position:position + 20])}")
        kind = match.lastgroup or ""
        token = match.group()
        if kind != "space":
            yield kind, token, line
        line += token.count("\n")
        position = match.end()


def parse_rpb(path: Path) -> RPC:
    """Parse a GDAL/DigitalGlobe ``.rpb`` file (``BEGIN_GROUP = IMAGE ... END;``).

    Parameters
    ----------
    path
        The ``.rpb`` file.

    Returns
    -------
    rasterio.rpc.RPC
        The same values GDAL applies from this file.

    Raises
    ------
    ProductReadError
        When the file is too large, not ASCII text, does not follow the
        layout (``key = value;`` statements, one ``IMAGE`` group, a closing
        ``END;`` and nothing after it), has an unknown key, a key given twice
        with different values, a missing field, a value that is not a finite
        number, a polynomial without exactly 20 coefficients, a zero scale or
        an all-zero denominator.
    """
    text = _decode_text(path, _read_bounded(path, MAX_RPC_BYTES))
    tokens = list(_rpb_tokens(path, text))
    seen: dict[str, str] = {}
    scalars: dict[str, float] = {}
    polynomials: dict[str, list[float]] = {}
    names = {field: f"IMAGE.{key}" for field, key in _RPB_KEYS.items()}
    group: str | None = None
    groups_seen = 0
    index = 0
    ended = False

    def expect(wanted: str, what: str) -> tuple[str, str, int]:
        """The next token, which must be a name (``wanted == "name"``) or the punctuation ``wanted``."""
        nonlocal index
        if index >= len(tokens):
            raise ProductReadError(path, f"ends before {what}")
        token = tokens[index]
        matches = token[0] == "name" if wanted == "name" else (token[0] == "punct" and token[1] == wanted)
        if not matches:
            raise ProductReadError(path, f"line {token[2]}: expected {what}, found {_quote(token[1])}")
        index += 1
        return token

    while index < len(tokens):
        _, word, line = expect("name", "a key")
        lowered = word.lower()
        if lowered == "end":
            expect(";", "';' after END")
            ended = True
            break
        expect("=", f"'=' after {word}")
        if lowered in ("begin_group", "end_group"):
            _, group_name, _ = expect("name", "a group name")
            if index < len(tokens) and tokens[index][1] == ";":
                index += 1
            if lowered == "begin_group":
                if group is not None:
                    raise ProductReadError(path, f"line {line}: group {group_name} opened inside group {group}")
                if group_name.upper() != "IMAGE" or groups_seen:
                    raise ProductReadError(path, f"line {line}: unexpected group {_quote(group_name)}")
                group = group_name.upper()
                groups_seen += 1
            else:
                if group is None or group_name.upper() != group:
                    raise ProductReadError(path, f"line {line}: END_GROUP = {group_name} closes no open group")
                group = None
            continue
        value_kind, value_text, value_line, numbers = _rpb_value(path, tokens, index, word)
        index = value_line
        expect(";", f"';' after the value of {word}")
        if group is None:
            if lowered not in _RPB_LABELS:
                raise ProductReadError(path, f"line {line}: unknown key {_quote(word)}")
            if value_kind != "string":
                raise ProductReadError(path, f"line {line}: {word} is not a quoted string")
            _put_once(path, seen, lowered, word, value_text)
            continue
        field = _RPB_FIELDS.get(lowered)
        if field is None:
            raise ProductReadError(path, f"line {line}: unknown key {_quote('IMAGE.' + word)}")
        if not _put_once(path, seen, lowered, f"IMAGE.{word}", value_text):
            continue
        if field in _RPC_POLYNOMIALS:
            if value_kind != "list":
                raise ProductReadError(path, f"IMAGE.{word} is not a parenthesised list of coefficients")
            polynomials[field] = [_number(path, f"IMAGE.{word}", n) for n in numbers]
        else:
            if value_kind != "number":
                raise ProductReadError(path, f"IMAGE.{word} is not a number: {_quote(value_text)}")
            scalars[field] = _number(path, f"IMAGE.{word}", numbers[0])
    if not ended:
        raise ProductReadError(path, "has no closing END;")
    if group is not None:
        raise ProductReadError(path, f"group {group} is never closed (END_GROUP)")
    if index < len(tokens):
        raise ProductReadError(path, f"line {tokens[index][2]}: trailing text after END;")
    if not groups_seen:
        raise ProductReadError(path, "has no BEGIN_GROUP = IMAGE")
    return _build_rpc(path, scalars, polynomials, names)


def _rpb_value(path: Path, tokens: list[tuple[str, str, int]], start: int,
               key: str) -> tuple[str, str, int, list[str]]:
    """The value of ``key`` starting at ``tokens[start]``: (kind, canonical text, next index, numbers)."""
    if start >= len(tokens):
        raise ProductReadError(path, f"ends before the value of {key}")
    kind, word, line = tokens[start]
    if kind == "string":
        return "string", word, start + 1, []
    if kind == "number":
        return "number", word, start + 1, [word]
    if word != "(":
        raise ProductReadError(path, f"line {line}: {key} is not a number, string or list: {_quote(word)}")
    numbers: list[str] = []
    index = start + 1
    while True:
        if index >= len(tokens):
            raise ProductReadError(path, f"line {line}: the list of {key} is never closed")
        kind, word, item_line = tokens[index]
        if kind != "number":
            raise ProductReadError(path, f"line {item_line}: {key} holds {_quote(word)}, not a number")
        numbers.append(word)
        index += 1
        if index >= len(tokens):
            raise ProductReadError(path, f"line {line}: the list of {key} is never closed")
        separator = tokens[index][1]
        index += 1
        if separator == ")":
            return "list", " ".join(numbers), index, numbers
        if separator != ",":
            raise ProductReadError(path, f"line {tokens[index - 1][2]}: {key} has {_quote(separator)} "
                                         "where ',' or ')' belongs")


# ---------------------------------------------------------------------------
# World files
# ---------------------------------------------------------------------------

def parse_world_file(path: Path) -> Affine:
    """Parse an ESRI world file (``.tfw``, ``.tifw``, ``.tiffw``, ``.wld``).

    A world file holds six numbers, one a line: A (pixel size along x), D and
    B (rotation terms), E (pixel size along y, negative for north-up), then C
    and F, the map coordinates of the *centre* of the upper-left pixel. GDAL's
    geotransform is anchored at the pixel's outer corner, half a pixel away.

    Parameters
    ----------
    path
        The world file.

    Returns
    -------
    affine.Affine
        The corner-based transform GDAL applies from this file.

    Raises
    ------
    ProductReadError
        When the file is too large, not ASCII text, holds other than six
        numbers one a line (blank lines only at the end), a value that is not
        a finite number, or a degenerate grid (zero determinant).
    """
    text = _decode_text(path, _read_bounded(path, MAX_WORLD_FILE_BYTES))
    words = text.split()
    if len(words) != 6:
        raise ProductReadError(path, f"holds {len(words)} values, a world file has exactly six numbers")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    # GDAL reads line by line, so six numbers on fewer lines (or after a blank line) mean other values to it.
    if len(lines) != 6:
        raise ProductReadError(path, "does not hold its six numbers one a line")
    names = ("line 1 (A, pixel size x)", "line 2 (D, rotation)", "line 3 (B, rotation)",
             "line 4 (E, pixel size y)", "line 5 (C, x of the upper-left pixel centre)",
             "line 6 (F, y of the upper-left pixel centre)")
    a, d, b, e, c, f = (_number(path, name, line.strip()) for name, line in zip(names, lines, strict=True))
    if a * e - b * d == 0.0:
        raise ProductReadError(path, "pixel size and rotation terms (lines 1-4) describe a degenerate grid")
    corner_x = c - 0.5 * a - 0.5 * b
    corner_y = f - 0.5 * d - 0.5 * e
    if not (math.isfinite(corner_x) and math.isfinite(corner_y)):
        raise ProductReadError(path, "upper-left corner (lines 5-6 less half a pixel) is not finite")
    return Affine(a, b, corner_x, d, e, corner_y)


# ---------------------------------------------------------------------------
# GDAL PAM (.aux.xml)
# ---------------------------------------------------------------------------

_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def parse_pam(path: Path) -> PamInfo:
    """Parse a GDAL PAM file (``.aux.xml``, root ``<PAMDataset>``).

    Element names are matched without regard to case, as GDAL does.

    Parameters
    ----------
    path
        The ``.aux.xml`` file.

    Returns
    -------
    PamInfo
        The georeferencing GDAL applies from this file, and the names of what
        else it carries.

    Raises
    ------
    ProductReadError
        When the file is too large, not UTF-8, not well-formed or unsafe XML,
        not a ``<PAMDataset>``, gives ``<SRS>``, ``<GeoTransform>``,
        ``<GCPList>`` or the RPC metadata domain twice, holds a CRS that
        cannot be read or an axis order other than x = east, a geotransform
        without six finite numbers or with a degenerate grid, a GCP without
        finite ``Pixel``/``Line``/``X``/``Y``, or RPC items that are unknown,
        missing, repeated with different values, or not finite numbers.
    """
    data = _read_bounded(path, MAX_PAM_BYTES)
    _decode_text(path, data, ascii_only=False)
    declared = _XML_ENCODING.match(data.removeprefix(b"\xef\xbb\xbf"))
    if declared is not None and declared.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        raise ProductReadError(path, f"declares encoding {declared.group(1).decode('ascii')!r}, not UTF-8")
    try:
        root = parse_xml(path)
    except (ValueError, LookupError, RecursionError) as exc:
        raise ProductReadError(path, f"not well-formed XML ({type(exc).__name__})") from None
    if local_name(root.tag).lower() != "pamdataset":
        raise ProductReadError(path, f"root element is <{_quote(local_name(root.tag))[1:-1]}>, not <PAMDataset>")

    srs_wkt: str | None = None
    geotransform: Affine | None = None
    gcps: tuple[GroundControlPoint, ...] = ()
    gcp_srs_wkt: str | None = None
    rpc: RPC | None = None
    other: list[str] = []
    _refuse_repeated_evidence(path, root)
    for child in root:
        name = local_name(child.tag) if isinstance(child.tag, str) else ""
        lowered = name.lower()
        if lowered == "srs":
            srs_wkt = _pam_srs(path, child)
        elif lowered == "geotransform":
            geotransform = _pam_geotransform(path, child)
        elif lowered == "gcplist":
            gcps, gcp_srs_wkt = _pam_gcps(path, child)
        elif lowered == "metadata" and _domain(child) == "RPC":
            rpc = _pam_rpc(path, child)
        elif lowered == "metadata":
            domain = _domain(child)
            other.append(f'Metadata domain="{_printable(domain)}"' if domain else "Metadata")
        elif lowered == "pamrasterband":
            other.append(f'PAMRasterBand band="{_printable(child.get("band", ""))}"')
        elif name:
            other.append(name)
    return PamInfo(geotransform=geotransform, srs_wkt=srs_wkt, gcps=gcps, gcp_srs_wkt=gcp_srs_wkt, rpc=rpc,
                   other=tuple(other))


#: The PAM elements that are evidence, by their lower-case name, as GDAL writes them.
_PAM_EVIDENCE = {"srs": "SRS", "geotransform": "GeoTransform", "gcplist": "GCPList"}


def _refuse_repeated_evidence(path: Path, root: Element) -> None:
    """Refuse a PAM file giving an element used as evidence twice: which one GDAL took is unknowable here."""
    seen: set[str] = set()
    for child in root:
        lowered = local_name(child.tag).lower() if isinstance(child.tag, str) else ""
        if lowered == "metadata" and _domain(child) == "RPC":
            label = 'Metadata domain="RPC"'
        elif lowered in _PAM_EVIDENCE:
            label = _PAM_EVIDENCE[lowered]
        else:
            continue
        if label in seen:
            raise ProductReadError(path, f"<{label}> is given twice")
        seen.add(label)


def _domain(element: Element) -> str:
    """A ``<Metadata>`` element's domain; GDAL's RPC domain under any spelling of its case."""
    domain = element.get("domain", "")
    return "RPC" if domain.upper() == "RPC" else domain


def _printable(text: str) -> str:
    """Attribute text fit for one line of a message (an attribute may hold ``&#10;``)."""
    return text if text.isprintable() and len(text) <= 64 else _quote(text)


def _pam_srs(path: Path, element: Element) -> str:
    wkt = (element.text or "").strip()
    if not wkt:
        raise ProductReadError(path, "<SRS> is empty")
    _check_crs(path, "<SRS>", wkt, element.get("dataAxisToSRSAxisMapping"))
    return wkt


def _check_crs(path: Path, label: str, wkt: str, axis_mapping: str | None) -> None:
    """Refuse a CRS pyproj cannot read, or an axis mapping that makes x anything but east."""
    try:
        crs = CRS.from_user_input(wkt)  # GDAL reads <SRS> as user input too: WKT, EPSG:n, PROJ strings
    except CRSError:
        raise ProductReadError(path, f"{label} is not a coordinate reference system that can be read") from None
    if axis_mapping is None:
        return
    try:
        mapping = [int(part) for part in axis_mapping.split(",")]
    except ValueError:
        raise ProductReadError(path, f"{label} dataAxisToSRSAxisMapping is not a list of axes: "
                                     f"{_quote(axis_mapping)}") from None
    # GDAL's traditional GIS order (the one rasterio and rspolicy read in): x is east,
    # so a CRS whose first axis is north/south has its first two axes swapped.
    axes = [axis.direction.lower() for axis in crs.axis_info]
    expected = list(range(1, len(axes) + 1))
    if len(axes) >= 2 and axes[0] in ("north", "south") and axes[1] in ("east", "west"):
        expected[0], expected[1] = 2, 1
    if mapping != expected:
        raise ProductReadError(path, f"{label} dataAxisToSRSAxisMapping {_quote(axis_mapping)} is not the "
                                     f"x = east order ({','.join(map(str, expected))})")


def _pam_geotransform(path: Path, element: Element) -> Affine:
    parts = (element.text or "").split(",")
    if len(parts) != 6:
        raise ProductReadError(path, f"<GeoTransform> holds {len(parts)} values, not six")
    c, a, b, f, d, e = (_number(path, "<GeoTransform>", part.strip(" \t\r\n")) for part in parts)
    if a * e - b * d == 0.0:
        raise ProductReadError(path, "<GeoTransform> describes a degenerate grid")
    return Affine(a, b, c, d, e, f)


_GCP_ATTRIBUTES = frozenset({"id", "info", "pixel", "line", "x", "y", "z"})


def _pam_gcps(path: Path, element: Element) -> tuple[tuple[GroundControlPoint, ...], str | None]:
    projection = element.get("Projection")
    wkt = projection.strip() if projection is not None else None
    if wkt:
        _check_crs(path, "<GCPList Projection>", wkt, element.get("dataAxisToSRSAxisMapping"))
    points: list[GroundControlPoint] = []
    for number, child in enumerate(element, start=1):
        name = local_name(child.tag) if isinstance(child.tag, str) else ""
        if name.lower() != "gcp":
            raise ProductReadError(path, f"<GCPList> holds <{_quote(name)[1:-1]}>, not only <GCP>")
        attributes = {key.lower(): value for key, value in child.attrib.items()}
        unknown = sorted(set(attributes) - _GCP_ATTRIBUTES)
        if unknown:
            raise ProductReadError(path, f"<GCP> {number} has unknown attribute {_quote(unknown[0])}")
        coordinates: dict[str, float] = {}
        for key, label in (("pixel", "Pixel"), ("line", "Line"), ("x", "X"), ("y", "Y"), ("z", "Z")):
            raw = attributes.get(key)
            if raw is None:
                if key == "z":
                    coordinates[key] = 0.0
                    continue
                raise ProductReadError(path, f"<GCP> {number} has no {label}")
            coordinates[key] = _number(path, f"<GCP> {number} {label}", raw.strip(" \t\r\n"))
        points.append(GroundControlPoint(
            row=coordinates["line"], col=coordinates["pixel"], x=coordinates["x"], y=coordinates["y"],
            z=coordinates["z"], id=attributes.get("id", str(number - 1)), info=attributes.get("info", "")))
    return tuple(points), wkt or None


def _pam_rpc(path: Path, element: Element) -> RPC:
    seen: dict[str, str] = {}
    scalars: dict[str, float] = {}
    polynomials: dict[str, list[float]] = {}
    for child in element:
        name = local_name(child.tag) if isinstance(child.tag, str) else ""
        if name.lower() != "mdi":
            raise ProductReadError(path, f'<Metadata domain="RPC"> holds <{_quote(name)[1:-1]}>, not only <MDI>')
        key = child.get("key")
        if key is None:
            raise ProductReadError(path, '<Metadata domain="RPC"> has an <MDI> without a key')
        field = key.upper()
        raw = (child.text or "").strip(" \t\r\n")
        label = f"RPC item {field}"
        if field in _RPC_UNITS:
            if _put_once(path, seen, field, label, raw):
                scalars[field] = _rpc_scalar_value(path, field, label, raw)
        elif field in _RPC_POLYNOMIALS:
            if _put_once(path, seen, field, label, raw):
                polynomials[field] = [_number(path, label, word) for word in _words(raw)]
        else:
            raise ProductReadError(path, f"RPC item {_quote(key)} is not an RPC field")
    names = {field: f"RPC item {field}" for field in (*_RPC_SCALARS, *_RPC_POLYNOMIALS)}
    return _build_rpc(path, scalars, polynomials, names)


# ---------------------------------------------------------------------------
# Which companion a file is
# ---------------------------------------------------------------------------

_BROWSE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def companion_kind(name: str, image_name: str) -> CompanionKind | None:
    """Which kind of companion of ``image_name`` the file ``name`` is.

    Names are compared without regard to case (GDAL's look-ups are
    case-insensitive on case-insensitive file systems). A name that shares the
    image's stem but is of no known kind is ``OTHER``; a name that is not the
    image's at all (or is the image itself) is None.

    >>> [companion_kind(n, "X.tiff").name for n in ("X.rpb", "X_rpc.txt", "X.RPB")]
    ['RPB', 'RPC_TXT', 'RPB']
    >>> [companion_kind(n, "X.tiff").name for n in ("X.tfw", "X.tifw", "X.tiffw", "X.wld")]
    ['WORLD', 'WORLD', 'WORLD', 'WORLD']
    >>> [companion_kind(n, "X.tiff").name for n in ("X.tiff.aux.xml", "X.aux.xml", "x.TIFF.AUX.XML")]
    ['PAM', 'PAM', 'PAM']
    >>> [companion_kind(n, "X.tiff").name for n in ("X.tiff.ovr", "X.ovr", "X.tiff.msk", "X.msk")]
    ['OVERVIEW', 'OVERVIEW', 'MASK', 'MASK']
    >>> [companion_kind(n, "X.tiff").name for n in ("X.jpg", "X_thumb.JPEG", "X.xml", "X.meta.xml", "X.aux")]
    ['BROWSE', 'BROWSE', 'XML_SIDECAR', 'XML_SIDECAR', 'OTHER']
    >>> companion_kind("X.tiff", "X.tiff") is None, companion_kind("Y.rpb", "X.tiff") is None
    (True, True)
    """
    lowered = name.lower()
    image = image_name.lower()
    if lowered == image:
        return None
    stem, dot, extension = image.rpartition(".")
    if not dot:
        stem, extension = image, ""
    prefixes = {image, stem}
    exact: dict[str, CompanionKind] = {}
    for prefix in prefixes:
        exact[f"{prefix}.aux.xml"] = CompanionKind.PAM
        exact[f"{prefix}.ovr"] = CompanionKind.OVERVIEW
        exact[f"{prefix}.msk"] = CompanionKind.MASK
        exact[f"{prefix}.rpb"] = CompanionKind.RPB
        exact[f"{prefix}_rpc.txt"] = CompanionKind.RPC_TXT
    world_extensions = {"tfw", "tifw", "tiffw", "wld"}
    if extension:
        world_extensions |= {f"{extension[0]}{extension[-1]}w", f"{extension}w"}
    for world in world_extensions:
        exact[f"{stem}.{world}"] = CompanionKind.WORLD
    kind = exact.get(lowered)
    if kind is not None:
        return kind
    if not any(lowered.startswith(prefix + separator) for prefix in prefixes for separator in "._-"):
        return None
    if lowered.endswith(_BROWSE_EXTENSIONS):
        return CompanionKind.BROWSE
    if lowered.endswith(".xml") and not lowered.endswith(".aux.xml"):
        return CompanionKind.XML_SIDECAR
    return CompanionKind.OTHER
