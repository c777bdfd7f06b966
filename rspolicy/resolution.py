"""Resolution: the finest ground resolution any evidence gives.

Every GSD (pixel spacing) and nominal-resolution value read from a product is
a candidate; the finest wins. Sources that disagree by more than the policy's
tolerance are reported, but never averaged away.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from rspolicy.model import Evidence, Fact, ProductEvidence, Resolution

_RESOLUTION_FACTS = (Fact.GSD, Fact.NOMINAL_RESOLUTION)
_AXIS_WORDS = re.compile(r"width|height|horizontal|vertical")


def resolve(product: ProductEvidence, disagreement: float = 0.10) -> Resolution:
    """The finest ground resolution of a product and the disagreements seen.

    Parameters
    ----------
    product
        The read-stage evidence.
    disagreement
        Relative difference beyond which two sources of the same kind
        (pixel spacing vs pixel spacing, nominal vs nominal) are reported.

    Returns
    -------
    Resolution
        ``gsd_m`` is None when no evidence gives a resolution.

    Examples
    --------
    >>> ev = (Evidence(Fact.GSD, 2.0, "a.xml", "ImageGSD"), Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"))
    >>> r = resolve(ProductEvidence("a.tif", None, (), ev))
    >>> r.gsd_m, r.finest.source, len(r.warnings)
    (0.3, 'a.tif', 1)
    """
    candidates = tuple(e for e in product.evidence if e.fact in _RESOLUTION_FACTS and is_length(e.value))
    if not candidates:
        return Resolution(None, None, ())
    finest = min(candidates, key=lambda e: float(e.value))  # type: ignore[arg-type]
    warnings: list[str] = []
    for fact in _RESOLUTION_FACTS:
        warnings.extend(_disagreements([e for e in candidates if e.fact is fact], disagreement))
    return Resolution(float(finest.value), finest, candidates, tuple(warnings))  # type: ignore[arg-type]


def is_length(value: object) -> bool:
    """Whether a resolution value is usable: a positive, finite number (not a bool, not text).

    >>> is_length(0.5), is_length(0.0), is_length(float("inf")), is_length(True), is_length("0.5")
    (True, False, False, False, False)
    """
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def unusable_resolutions(product: ProductEvidence) -> list[Evidence]:
    """Resolution evidence that is not a usable length: readers refuse it, so any left blocks the product."""
    return [e for e in product.evidence if e.fact in _RESOLUTION_FACTS and not is_length(e.value)]


def _method(evidence: Evidence) -> tuple[str, str]:
    """The source and method of a value, with the image axis taken out of the field name.

    A SAR sidecar's range and azimuth spacing, or a sidecar's width and
    height, are two axes of one measurement and legitimately differ.
    """
    return evidence.source, _AXIS_WORDS.sub("", evidence.field.lower())


def _disagreements(values: Sequence[Evidence], tolerance: float) -> list[str]:
    per_method: dict[tuple[str, str], Evidence] = {}
    for e in values:
        key = _method(e)
        if key not in per_method or float(e.value) < float(per_method[key].value):  # type: ignore[arg-type]
            per_method[key] = e
    if len(per_method) < 2:
        return []
    low = min(per_method.values(), key=lambda e: float(e.value))  # type: ignore[arg-type]
    high = max(per_method.values(), key=lambda e: float(e.value))  # type: ignore[arg-type]
    lo, hi = float(low.value), float(high.value)  # type: ignore[arg-type]
    if hi <= lo * (1.0 + tolerance):
        return []
    kind = "pixel spacing" if low.fact is Fact.GSD else "nominal resolution"
    return [f"{kind} evidence disagrees by {100 * (hi / lo - 1):.0f}%: {lo:.6g} m from {low.source} "
            f"{low.field} vs {hi:.6g} m from {high.source} {high.field}; the finest ({lo:.6g} m) is used"]
