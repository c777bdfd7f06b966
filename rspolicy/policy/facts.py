"""What a policy sees of a product: its facts, each possibly several-valued or unknown.

Evidence may disagree (a file name says one satellite, a sidecar another) or
be missing (a plain GeoTIFF names no satellite). A :class:`ProductFacts`
keeps every value the evidence gave; an empty set means "unknown". The
condition language reads them fail-closed: a restricting rule fires when its
condition holds for *some* reading of the evidence, an allowing rule only
when it holds for *every* reading.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from rspolicy.model import Fact, ProductClass, ProductEvidence

#: Every class a product may truly be (what an unknown class may hide).
KNOWN_CLASSES = frozenset(c for c in ProductClass if c is not ProductClass.UNKNOWN)

_NOT_ALNUM = re.compile(r"[^0-9A-Z*?]")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def normalise_name(text: str) -> str:
    """A satellite, sensor or mode name compared without case, spaces or punctuation.

    >>> normalise_name("GF-2"), normalise_name("gf2"), normalise_name(" ZY-3 01 ")
    ('GF2', 'GF2', 'ZY301')
    """
    return _NOT_ALNUM.sub("", text.upper())


def parse_time(text: str) -> datetime | None:
    """An acquisition time as written by the readers (ISO 8601, date only, naive means UTC), or None.

    >>> parse_time("2014-08-22 03:04:05.123")
    datetime.datetime(2014, 8, 22, 3, 4, 5, 123000, tzinfo=datetime.timezone.utc)
    >>> parse_time("2020-01-02"), parse_time("yesterday")
    (datetime.datetime(2020, 1, 2, 0, 0, tzinfo=datetime.timezone.utc), None)
    """
    text = text.strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        moment = datetime(day.year, day.month, day.day)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class ProductFacts:
    """The facts of one product that rules may test.

    Attributes
    ----------
    classes
        The classes the product may be (its class, and any class some
        evidence suggested); empty when the class is unknown.
    gsd_m
        The finest ground resolution (the finest evidence wins), or None.
    satellites, sensors, imaging_modes, product_levels
        Names as read, normalised (:func:`normalise_name`); empty = unknown.
    band_counts
        Numbers of bands read; empty = unknown.
    sar_phase
        Whether complex (phase-bearing) samples are present; empty = unknown.
    acquired
        Acquisition times read; ``acquired_unknown`` is True when none could
        be read or one could not be understood.
    footprints
        Footprint polygons (WKT, longitude and latitude); ``footprint_unknown``
        when there is none.
    """

    classes: frozenset[ProductClass]
    gsd_m: float | None
    satellites: frozenset[str] = frozenset()
    sensors: frozenset[str] = frozenset()
    imaging_modes: frozenset[str] = frozenset()
    product_levels: frozenset[str] = frozenset()
    band_counts: frozenset[int] = frozenset()
    sar_phase: frozenset[bool] = frozenset()
    acquired: tuple[datetime, ...] = ()
    acquired_unknown: bool = True
    footprints: tuple[str, ...] = field(default=())

    @property
    def class_known(self) -> bool:
        """Whether the evidence established a class."""
        return bool(self.classes)

    @property
    def footprint_unknown(self) -> bool:
        """Whether no footprint is known (zones may then intersect it or not)."""
        return not self.footprints

    @classmethod
    def of(cls, product_class: ProductClass, gsd_m: float | None, **facts: object) -> ProductFacts:
        """Facts for one class and resolution (tests, ``rules test``, the library).

        >>> ProductFacts.of(ProductClass.PANCHROMATIC, 0.3).classes
        frozenset({<ProductClass.PANCHROMATIC: 'panchromatic'>})
        """
        classes = frozenset() if product_class is ProductClass.UNKNOWN else frozenset({product_class})
        return cls(classes, gsd_m, **facts)  # type: ignore[arg-type]


def product_facts(product: ProductEvidence, product_class: ProductClass,
                  alternatives: Iterable[ProductClass], gsd_m: float | None) -> ProductFacts:
    """The facts of a read product, its decided class and the classes other evidence suggested."""
    classes = frozenset() if product_class is ProductClass.UNKNOWN else frozenset({product_class, *alternatives})
    texts: dict[Fact, set[str]] = {Fact.SATELLITE: set(), Fact.SENSOR: set(), Fact.IMAGING_MODE: set(),
                                   Fact.PRODUCT_LEVEL: set()}
    bands: set[int] = set()
    phase: set[bool] = set()
    times: list[datetime] = []
    unreadable_time = False
    footprints: list[str] = []
    for e in product.evidence:
        value = e.value
        if value is None or value == "":
            continue
        if e.fact in texts:
            texts[e.fact].add(normalise_name(str(value)))
        elif e.fact is Fact.BAND_COUNT and isinstance(value, int) and not isinstance(value, bool):
            bands.add(value)
        elif e.fact is Fact.DTYPE:
            phase.add("complex" in str(value).lower())
        elif e.fact is Fact.ACQUISITION_TIME:
            moment = parse_time(str(value))
            if moment is None:
                unreadable_time = True
            else:
                times.append(moment)
                if _DATE_ONLY.fullmatch(str(value).strip()):
                    # A date is a whole day: its last moment is the youngest the data may be.
                    times.append(moment + timedelta(days=1, microseconds=-1))
        elif e.fact is Fact.FOOTPRINT and isinstance(value, str):
            footprints.append(value)
    return ProductFacts(
        classes=classes, gsd_m=gsd_m,
        satellites=frozenset(texts[Fact.SATELLITE] - {""}), sensors=frozenset(texts[Fact.SENSOR] - {""}),
        imaging_modes=frozenset(texts[Fact.IMAGING_MODE] - {""}),
        product_levels=frozenset(texts[Fact.PRODUCT_LEVEL] - {""}),
        band_counts=frozenset(bands), sar_phase=frozenset(phase), acquired=tuple(times),
        acquired_unknown=unreadable_time or not times, footprints=tuple(dict.fromkeys(footprints)))


@functools.lru_cache(maxsize=4096)
def footprint_geometry(wkt: str) -> Any:
    """A footprint's shapely geometry (cached: many products share a sidecar's), or None when unusable."""
    import shapely  # noqa: PLC0415 - shapely loads only when a policy tests areas

    try:
        geometry = shapely.from_wkt(wkt)
    except (shapely.errors.ShapelyError, ValueError):
        return None
    if geometry is None or geometry.is_empty or not geometry.is_valid:
        return None
    return geometry
