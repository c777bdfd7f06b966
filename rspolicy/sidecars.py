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
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np

from rspolicy.errors import OutputError
from rspolicy.model import Obligations
from rspolicy.readers.cbers import is_cbers_root
from rspolicy.readers.gf3_sar import is_gf3_root
from rspolicy.readers.gf_optical import is_gf_optical_root
from rspolicy.readers.hy import is_hy_root
from rspolicy.readers.xmlutil import parse_xml

if TYPE_CHECKING:
    from rspolicy.degrade import DegradePlan, RasterOutput

#: GF-3 product types whose samples are complex, and the detected type the
#: distributor writes for the same geometry once the samples are power/amplitude.
GF3_COMPLEX_TYPES: dict[str, str] = {"SLC": "SLP"}


@dataclass(frozen=True)
class GridChange:
    """The degraded grid a sidecar must describe.

    Attributes
    ----------
    row_factor, col_factor
        Output pixel size over input pixel size.
    width, height
        Size of the output image in pixels.
    target_gsd_m
        The policy's target.
    output_x_m, output_y_m
        Ground spacing of the output grid along columns and rows
        (``DegradePlan.output_x_m``/``output_y_m``). When not given, a spacing
        is the old value times the factor, floored at the target.
    sar_mode
        How SAR samples were averaged (``DegradePlan.sar_mode``):
        ``"intensity"`` turns complex samples into real power.
    output_dtype
        The output image's sample type (``RasterOutput.dtype``).
    """

    row_factor: Fraction
    col_factor: Fraction
    width: int
    height: int
    target_gsd_m: float
    output_x_m: float | None = None
    output_y_m: float | None = None
    sar_mode: str | None = None
    output_dtype: str | None = None

    @classmethod
    def of(cls, plan: DegradePlan, written: RasterOutput) -> GridChange:
        """The change a degrading made.

        Parameters
        ----------
        plan
            The plan the image was degraded with.
        written
            What :func:`rspolicy.degrade.degrade_raster` wrote.

        Returns
        -------
        GridChange
            Factors, output size, true output spacing, SAR mode and sample type.
        """
        return cls(plan.row_factor, plan.col_factor, written.width, written.height, plan.target_gsd_m,
                   output_x_m=plan.output_x_m, output_y_m=plan.output_y_m, sar_mode=plan.sar_mode,
                   output_dtype=written.dtype)

    @property
    def min_factor(self) -> Fraction:
        """What a scalar resolution (one value for both axes) is multiplied by when no spacing is given."""
        return min(self.row_factor, self.col_factor)

    def x_spacing(self, old: float) -> float:
        """The output spacing along columns (an old value's fallback when the plan's is not given)."""
        return self.output_x_m if self.output_x_m is not None else old * float(self.col_factor)

    def y_spacing(self, old: float) -> float:
        """The output spacing along rows (an old value's fallback when the plan's is not given)."""
        return self.output_y_m if self.output_y_m is not None else old * float(self.row_factor)

    def scalar_spacing(self, old: float) -> float:
        """One value for both axes: the finer output spacing, which is >= the target by construction."""
        if self.output_x_m is not None and self.output_y_m is not None:
            return min(self.output_x_m, self.output_y_m)
        return max(old * float(self.min_factor), self.target_gsd_m)


def _fmt(value: float) -> str:
    """A number as sidecars write it: no float noise, no exponent."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _replace(text: str, tag: str, new: Callable[[str], str], *, within: str | None = None,
             required: bool = False, path: Path | None = None) -> str:
    """Replace the text of every ``<tag>...</tag>`` (inside every ``<within>`` when given).

    Every copy: a field given twice with the same value is read as one
    value, and a stale copy left beside a rewritten one would be a conflict.
    """
    if within is not None:
        outer = re.compile(rf"<{within}\b[^>]*>.*?</{within}>", re.S)
        if outer.search(text) is None:
            if required:
                raise OutputError(f"{path}: no <{within}> to rewrite")
            return text
        return outer.sub(lambda m: _replace(m.group(0), tag, new, required=required, path=path), text)
    pattern = re.compile(rf"(<{tag}>)([^<]*)(</{tag}>)")
    if pattern.search(text) is None:
        if required:
            raise OutputError(f"{path}: no <{tag}> to rewrite")
        return text

    def rewrite(match: re.Match[str]) -> str:
        old = match.group(2).strip()
        if not old or old.upper() == "NULL":
            return match.group(0)
        try:
            return match.group(1) + new(old) + match.group(3)
        except ValueError as exc:
            raise OutputError(f"{path}: <{tag}> {old!r} cannot be rewritten ({exc})") from exc

    return pattern.sub(rewrite, text)


def _times(factor: Fraction) -> Callable[[str], str]:
    return lambda old: _fmt(float(old) * float(factor))


def _spacing(new: Callable[[float], float]) -> Callable[[str], str]:
    return lambda old: _fmt(new(float(old)))


def _at_least(floor: float) -> Callable[[str], str]:
    return lambda old: _fmt(max(float(old), floor))


def _const(value: int | str) -> Callable[[str], str]:
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


#: The element stamped into a released product's XML sidecar.
OBLIGATIONS_ELEMENT = "RSPolicyObligations"


def stamp_obligations(src: Path, dst: Path, obligations: Obligations) -> bool:
    """Write ``src`` to ``dst`` with the policy's obligations as the root's last element.

    The element is ``<RSPolicyObligations>`` holding a ``<Credit>`` and one
    ``<Condition>`` per condition of use; the rest of the file is kept byte
    for byte. ``src`` and ``dst`` may be the same file.

    Returns
    -------
    bool
        True when stamped; False when the file is not a product sidecar
        rspolicy reads (the caller copies it as it is).

    Raises
    ------
    OutputError
        When the sidecar has no closing root tag to stamp before.
    """
    root = parse_xml(src)
    if not (is_gf3_root(root) or is_hy_root(root) or is_gf_optical_root(root) or is_cbers_root(root)):
        return False
    text = src.read_text(encoding="utf-8")
    name = root.tag.rsplit("}", 1)[-1]
    closing = text.rfind(f"</{name}")
    if closing < 0:
        closing = text.rfind("</")
    if closing < 0:
        raise OutputError(f"{src}: no closing root element to stamp the policy's obligations before")
    parts = [f"<{OBLIGATIONS_ELEMENT}>"]
    if obligations.credit:
        parts.append(f"<Credit>{escape(obligations.credit)}</Credit>")
    parts.extend(f"<Condition>{escape(c)}</Condition>" for c in obligations.conditions)
    parts.append(f"</{OBLIGATIONS_ELEMENT}>\n")
    dst.write_text(text[:closing] + "".join(parts) + text[closing:], encoding="utf-8")
    return True


def _rewrite_product_metadata(text: str, change: GridChange, path: Path) -> str:
    # One value for both axes: the finer output spacing is the one both axes reach.
    scalar = _spacing(change.scalar_spacing)
    for tag in ("ImageGSD", "Resolution"):
        text = _replace(text, tag, scalar, path=path)
    text = _replace(text, "WidthInPixels", _const(change.width), path=path)
    return _replace(text, "HeightInPixels", _const(change.height), path=path)


def _gf3_product_type(text: str) -> str:
    match = re.search(r"<productinfo\b[^>]*>.*?<productType>([^<]*)</productType>", text, re.S)
    return match.group(1).strip().upper() if match else ""


def _rewrite_gf3(text: str, change: GridChange, path: Path) -> str:
    text = _replace(text, "width", _const(change.width), within="imageinfo", required=True, path=path)
    text = _replace(text, "height", _const(change.height), within="imageinfo", required=True, path=path)
    product_type = _gf3_product_type(text)
    detected = GF3_COMPLEX_TYPES.get(product_type) if change.sar_mode == "intensity" else None
    if product_type in GF3_COMPLEX_TYPES and detected is None:
        # Still complex, still in slant range: widthspace stays a slant-range spacing, which the
        # readers turn into ground range through the incidence angle.
        text = _replace(text, "widthspace", _times(change.col_factor), within="imageinfo", path=path)
    else:
        text = _replace(text, "widthspace", _spacing(change.x_spacing), within="imageinfo", path=path)
    text = _replace(text, "heightspace", _spacing(change.y_spacing), within="imageinfo", path=path)
    if detected is not None:
        # Averaged to intensity: real power samples on a grid measured in ground range (the plan's spacing),
        # as in the detected products the distributor delivers.
        text = _replace(text, "productType", _const(detected), within="productinfo", path=path)
    if change.output_dtype is not None:
        sample = np.dtype(change.output_dtype)
        # A complex sample is two numbers; the field gives the width of one, as for CInt16 ("16bit").
        bits = sample.itemsize * 8 // (2 if sample.kind == "c" else 1)
        text = _replace(text, "imagebit", _const(f"{bits}bit"), within="imageinfo", path=path)
    # The degraded product resolves nothing finer than its grid.
    floor = min(change.output_x_m, change.output_y_m) if change.output_x_m and change.output_y_m \
        else change.target_gsd_m
    return _replace(text, "NominalResolution", _at_least(max(floor, change.target_gsd_m)), within="productinfo",
                    path=path)


def _rewrite_cbers(text: str, change: GridChange, path: Path) -> str:
    text = _replace(text, "columns", _const(change.width), within="image", path=path)
    text = _replace(text, "lines", _const(change.height), within="image", path=path)
    text = _replace(text, "horizontalPixelSize", _spacing(change.x_spacing), within="image", path=path)
    return _replace(text, "verticalPixelSize", _spacing(change.y_spacing), within="image", path=path)
