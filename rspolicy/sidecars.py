"""Rewriting a product's sidecars for its degraded image.

Sidecars are rewritten, not copied stale: the fields that describe the pixel
grid (size, ground sampling distance, pixel spacing, resolution) get the
degraded grid's values and every other field, and the file's formatting, is
kept as it was. Substitution is done on the text, element by element, so a
sidecar comes out byte-identical apart from those values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from rspolicy.errors import OutputError
from rspolicy.readers.cbers import is_cbers_root
from rspolicy.readers.gf3_sar import is_gf3_root
from rspolicy.readers.gf_optical import is_gf_optical_root
from rspolicy.readers.hy import is_hy_root
from rspolicy.readers.xmlutil import parse_xml


@dataclass(frozen=True)
class GridChange:
    """The degraded grid a sidecar must describe."""

    row_factor: Fraction
    col_factor: Fraction
    width: int
    height: int
    target_gsd_m: float

    @property
    def min_factor(self) -> Fraction:
        """What a scalar resolution (one value for both axes) is multiplied by."""
        return min(self.row_factor, self.col_factor)


def _fmt(value: float) -> str:
    """A number as sidecars write it: no float noise, no exponent."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _replace(text: str, tag: str, new: Callable[[str], str], *, within: str | None = None,
             required: bool = False, path: Path | None = None) -> str:
    """Replace the text of ``<tag>...</tag>`` (inside ``<within>`` when given)."""
    span = (0, len(text))
    if within is not None:
        outer = re.search(rf"<{within}\b[^>]*>.*?</{within}>", text, re.S)
        if outer is None:
            if required:
                raise OutputError(f"{path}: no <{within}> to rewrite")
            return text
        span = outer.span()
    segment = text[span[0]:span[1]]
    pattern = re.compile(rf"(<{tag}>)([^<]*)(</{tag}>)")
    match = pattern.search(segment)
    if match is None:
        if required:
            raise OutputError(f"{path}: no <{tag}> to rewrite")
        return text
    old = match.group(2).strip()
    if not old or old.upper() == "NULL":
        return text
    try:
        replacement = new(old)
    except ValueError as exc:
        raise OutputError(f"{path}: <{tag}> {old!r} cannot be rewritten ({exc})") from exc
    segment = segment[:match.start(2)] + replacement + segment[match.end(2):]
    return text[:span[0]] + segment + text[span[1]:]


def _times(factor: Fraction) -> Callable[[str], str]:
    return lambda old: _fmt(float(old) * float(factor))


def _at_least(floor: float, factor: Fraction) -> Callable[[str], str]:
    return lambda old: _fmt(max(float(old) * float(factor), floor))


def _const(value: int) -> Callable[[str], str]:
    return lambda _old: str(value)


def rewrite_sidecar(src: Path, dst: Path, change: GridChange) -> bool:
    """Write ``src`` to ``dst`` with its grid fields describing the degraded image.

    Returns
    -------
    bool
        True when the sidecar was recognised and rewritten; False when it is
        not a sidecar rspolicy understands (the caller must not deliver it
        with a degraded product: it could describe the original grid).

    Raises
    ------
    OutputError
        When a recognised sidecar cannot be rewritten.
    """
    root = parse_xml(src)
    text = src.read_text(encoding="utf-8")
    if is_gf3_root(root):
        text = _rewrite_gf3(text, change, src)
    elif is_hy_root(root) or is_gf_optical_root(root):
        text = _rewrite_product_metadata(text, change, src)
    elif is_cbers_root(root):
        text = _rewrite_cbers(text, change, src)
    else:
        return False
    dst.write_text(text, encoding="utf-8")
    return True


def _rewrite_product_metadata(text: str, change: GridChange, path: Path) -> str:
    # One value for both axes: the smaller factor keeps it a lower bound of both.
    scalar = _at_least(change.target_gsd_m, change.min_factor)
    for tag in ("ImageGSD", "Resolution"):
        text = _replace(text, tag, scalar, path=path)
    text = _replace(text, "WidthInPixels", _const(change.width), path=path)
    return _replace(text, "HeightInPixels", _const(change.height), path=path)


def _rewrite_gf3(text: str, change: GridChange, path: Path) -> str:
    text = _replace(text, "width", _const(change.width), within="imageinfo", required=True, path=path)
    text = _replace(text, "height", _const(change.height), within="imageinfo", required=True, path=path)
    text = _replace(text, "widthspace", _times(change.col_factor), within="imageinfo", path=path)
    text = _replace(text, "heightspace", _times(change.row_factor), within="imageinfo", path=path)
    # The degraded product resolves nothing finer than the target.
    return _replace(text, "NominalResolution", _at_least(change.target_gsd_m, Fraction(1)), within="productinfo",
                    path=path)


def _rewrite_cbers(text: str, change: GridChange, path: Path) -> str:
    text = _replace(text, "columns", _const(change.width), within="image", path=path)
    text = _replace(text, "lines", _const(change.height), within="image", path=path)
    text = _replace(text, "horizontalPixelSize", _times(change.col_factor), within="image", path=path)
    return _replace(text, "verticalPixelSize", _times(change.row_factor), within="image", path=path)
