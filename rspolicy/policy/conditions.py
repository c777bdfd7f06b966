"""The condition language of rules: compiled once, tested per product in three values.

A condition is written in a rule's ``when`` table::

    when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }
    when = { any = [ { zone_intersects = "negative" }, { not = { recipient_in = "positive" } } ] }

Several keys in one table must all hold; ``all``, ``any`` and ``not``
combine tables. Leaves:

``class``, ``satellite``, ``sensor``, ``imaging_mode``, ``product_level``
    a name or a list of names (names compare without case or punctuation;
    ``*`` and ``?`` match as in file names);
``gsd_m``, ``bands``, ``age_days``
    a comparison table, e.g. ``{ "<=" = 2.5 }``, ``{ ">" = 49 }``; several
    comparators in one table must all hold;
``sar_phase``, ``approval``
    true or false;
``recipient_in``
    a named list of the policy (or a list of names);
``purpose``
    a purpose or a list of purposes;
``zone_intersects``, ``zone_within``
    a named zone of the policy (or a list of names).

Every test returns two booleans: whether the condition *may hold* and
whether it *may fail*, over every reading of the evidence (a fact read with
two values, or not read at all, may go either way). A rule that restricts
fires when its condition may hold; a rule that allows fires only when it
cannot fail. So missing or contradictory evidence never loosens a decision.
"""

from __future__ import annotations

import fnmatch
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rspolicy.model import ProductClass, Recipient, Request
from rspolicy.policy.facts import KNOWN_CLASSES, ProductFacts, footprint_geometry, normalise_name
from rspolicy.policy.zones import Zone

#: (may hold, may fail)
Tri = tuple[bool, bool]

TRUE: Tri = (True, False)
FALSE: Tri = (False, True)
EITHER: Tri = (True, True)

COMPARATORS: Mapping[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_WORDS = {"<": "finer than", "<=": "at or finer than", ">": "coarser than", ">=": "at or coarser than"}
_PLAIN = {"<": "less than", "<=": "at most", ">": "more than", ">=": "at least"}

TEXT_FACTS = ("satellite", "sensor", "imaging_mode", "product_level")
NUMBER_FACTS = ("gsd_m", "bands", "age_days")
FLAG_FACTS = ("sar_phase", "approval")
LIST_FACTS = ("recipient_in",)
ZONE_FACTS = ("zone_intersects", "zone_within")
LEAVES = ("class", *TEXT_FACTS, *NUMBER_FACTS, *FLAG_FACTS, *LIST_FACTS, "purpose", *ZONE_FACTS)
COMBINATORS = ("all", "any", "not")


class Condition(Protocol):
    """One compiled condition."""

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        """Whether the condition may hold and may fail for this product and request."""

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        """What made it hold (for a fired rule), one phrase per leaf."""

    def render(self) -> str:
        """The condition in words, for ``rules show``."""


def _over(values: Iterable[Any], unknown: bool, holds: Callable[[Any], bool]) -> Tri:
    """Three-valued test of a predicate over every value a fact may take."""
    results = [holds(v) for v in values]
    if unknown or not results:
        return EITHER
    return any(results), not all(results)


@dataclass(frozen=True)
class ClassIs:
    """The product's class is one of ``classes``."""

    classes: frozenset[ProductClass]

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        return _over(facts.classes or KNOWN_CLASSES, False, lambda c: c in self.classes)

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        matching = sorted(c.value for c in (facts.classes or KNOWN_CLASSES) if c in self.classes)
        if len(facts.classes) == 1:
            return []  # the subject of every reason already names it
        if not facts.classes:
            return [f"the class is unknown and may be {' or '.join(matching)}"]
        return [f"evidence suggests {' or '.join(matching)}"]

    def render(self) -> str:
        return f"class is {' or '.join(sorted(c.value for c in self.classes))}"


@dataclass(frozen=True)
class TextIs:
    """A named fact (satellite, sensor, mode, level) matches one of the patterns."""

    fact: str
    patterns: tuple[str, ...]

    def _values(self, facts: ProductFacts) -> frozenset[str]:
        return {"satellite": facts.satellites, "sensor": facts.sensors, "imaging_mode": facts.imaging_modes,
                "product_level": facts.product_levels}[self.fact]

    def _matches(self, value: str) -> bool:
        return any(fnmatch.fnmatchcase(value, p) for p in self.patterns)

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        values = self._values(facts)
        return _over(values, not values, self._matches)

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        values = self._values(facts)
        if not values:
            return [f"{self.fact} not stated (may be {' or '.join(self.patterns)})"]
        return [f"{self.fact} {' or '.join(sorted(values))}"]

    def render(self) -> str:
        return f"{self.fact} is {' or '.join(self.patterns)}"


@dataclass(frozen=True)
class Compare:
    """A number (ground resolution, band count, age in days) compared with limits."""

    fact: str
    comparisons: tuple[tuple[str, float], ...]
    tolerance: float = 0.0

    def _values(self, facts: ProductFacts, request: Request) -> tuple[list[float], bool]:
        if self.fact == "gsd_m":
            return ([] if facts.gsd_m is None else [facts.gsd_m]), facts.gsd_m is None
        if self.fact == "bands":
            return [float(b) for b in facts.band_counts], not facts.band_counts
        ages = [(request.at - t).total_seconds() / 86400.0 for t in facts.acquired]
        return ages, facts.acquired_unknown

    def _holds(self, value: float) -> bool:
        for op, limit in self.comparisons:
            snapped = limit if self.tolerance and math.isclose(value, limit, rel_tol=self.tolerance) else value
            if not COMPARATORS[op](snapped, limit):
                return False
        return True

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        values, unknown = self._values(facts, request)
        return _over(values, unknown, self._holds)

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        values, unknown = self._values(facts, request)
        if self.fact == "gsd_m" and values:
            return [" and ".join(f"is {_WORDS[op]} the limit {limit:g} m" for op, limit in self.comparisons)]
        shown = {"bands": "bands", "age_days": "age"}[self.fact]
        if unknown:
            what = "acquisition time unknown" if self.fact == "age_days" else f"{shown} unknown"
            return [f"{what} (may be {self._limits()}{' days' if self.fact == 'age_days' else ''})"]
        if self.fact == "age_days":
            return [f"data {min(values):.3g} days old ({self._limits()} days)"]
        return [f"{', '.join(f'{v:g}' for v in sorted(set(values)))} bands ({self._limits()})"]

    def _limits(self) -> str:
        return " and ".join(f"{_PLAIN[op]} {limit:g}" for op, limit in self.comparisons)

    def render(self) -> str:
        if self.fact == "gsd_m":
            return "ground resolution " + " and ".join(f"{_WORDS[op]} {limit:g} m" for op, limit in self.comparisons)
        unit = " days" if self.fact == "age_days" else ""
        name = {"bands": "number of bands", "age_days": "age of the data"}[self.fact]
        return f"{name} " + " and ".join(f"{_PLAIN[op]} {limit:g}{unit}" for op, limit in self.comparisons)


@dataclass(frozen=True)
class Flag:
    """SAR phase present, or an approval reference given."""

    fact: str
    expected: bool

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        if self.fact == "approval":
            return TRUE if (request.approval is not None) is self.expected else FALSE
        return _over(facts.sar_phase, not facts.sar_phase, lambda v: v is self.expected)

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        if self.fact == "approval":
            return [f"approval reference {request.approval} given" if request.approval is not None
                    else "no approval reference was given"]
        if not facts.sar_phase:
            return ["whether SAR phase is present is unknown"]
        if facts.sar_phase == {True, False}:
            return ["evidence disagrees on whether SAR phase is present"]
        return ["SAR phase (complex samples) present" if True in facts.sar_phase else "no SAR phase"]

    def render(self) -> str:
        if self.fact == "approval":
            return "an approval reference is given" if self.expected else "no approval reference is given"
        return "SAR phase is present" if self.expected else "SAR phase is absent"


@dataclass(frozen=True)
class RecipientList:
    """A named list of recipients: countries (``DE``) and organisations (``DE:DLR``)."""

    name: str
    countries: frozenset[str]
    organisations: frozenset[tuple[str, str]]
    description: str = ""
    example: bool = False

    @property
    def shown(self) -> str:
        """The list's name, marked when it is an example."""
        return f"{self.name} (an example list)" if self.example else self.name

    def contains(self, recipient: Recipient) -> bool | None:
        """Whether the recipient's country or organisation is on the list (None: cannot tell, no country)."""
        if recipient.country is None:
            return None
        if recipient.country in self.countries:
            return True
        org = normalise_name(recipient.organisation) if recipient.organisation else None
        return org is not None and (recipient.country, org) in self.organisations


@dataclass(frozen=True)
class RecipientIn:
    """The recipient is on one of the named lists."""

    lists: tuple[RecipientList, ...]

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        if request.recipient is None:
            return EITHER
        found = [lst.contains(request.recipient) for lst in self.lists]
        if any(found):
            return TRUE
        return EITHER if None in found else FALSE

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        names = " or ".join(lst.shown for lst in self.lists)
        if request.recipient is None:
            return [f"no recipient given (may be on {names})"]
        if request.recipient.country is None:
            return [f"recipient {request.recipient} has no country code (may be on {names})"]
        on = any(lst.contains(request.recipient) for lst in self.lists)
        return [f"recipient {request.recipient} is {'on' if on else 'not on'} {names}"]

    def render(self) -> str:
        return f"recipient is on list {' or '.join(lst.name for lst in self.lists)}"


@dataclass(frozen=True)
class PurposeIs:
    """The stated purpose is one of ``purposes``."""

    purposes: frozenset[str]

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        if request.purpose is None:
            return EITHER
        return TRUE if request.purpose.casefold() in self.purposes else FALSE

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        if request.purpose is None:
            return [f"no purpose given (may be {' or '.join(sorted(self.purposes))})"]
        return [f"purpose {request.purpose}"]

    def render(self) -> str:
        return f"purpose is {' or '.join(sorted(self.purposes))}"


@dataclass(frozen=True)
class InZone:
    """The footprint intersects, or lies within, one of the named zones."""

    relation: str  # "intersects" | "within"
    zones: tuple[Zone, ...]

    def _holds(self, footprint: Any) -> bool:
        if self.relation == "intersects":
            return any(z.geometry.intersects(footprint) for z in self.zones)
        return any(z.geometry.contains(footprint) for z in self.zones)

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        geometries = [footprint_geometry(w) for w in facts.footprints]
        unknown = not geometries or any(g is None for g in geometries)
        return _over([g for g in geometries if g is not None], unknown, self._holds)

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        names = " or ".join(z.shown for z in self.zones)
        verb = "intersect" if self.relation == "intersects" else "lie within"
        if facts.footprint_unknown or any(footprint_geometry(w) is None for w in facts.footprints):
            return [f"footprint unknown (may {verb} zone {names})"]
        holds, fails = self.test(facts, request)
        if holds and fails:
            return [f"the footprints read disagree on whether they {verb} zone {names}"]
        return [f"footprint {verb + 's' if self.relation == 'intersects' else 'lies within'} zone {names}" if holds
                else f"footprint does not {verb} zone {names}"]

    def render(self) -> str:
        verb = "intersects" if self.relation == "intersects" else "lies within"
        return f"footprint {verb} zone {' or '.join(z.name for z in self.zones)}"


@dataclass(frozen=True)
class All:
    """Every part holds."""

    parts: tuple[Condition, ...]

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        may_hold, may_fail = True, False
        for part in self.parts:
            holds, fails = part.test(facts, request)
            may_hold = may_hold and holds
            may_fail = may_fail or fails
            if not may_hold:
                return FALSE
        return may_hold, may_fail

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        return [text for part in self.parts for text in part.explain(facts, request)]

    def render(self) -> str:
        if not self.parts:
            return "always"
        if len(self.parts) == 1:
            return self.parts[0].render()
        return " and ".join(f"({p.render()})" if isinstance(p, AnyOf) else p.render() for p in self.parts)


@dataclass(frozen=True)
class AnyOf:
    """At least one part holds."""

    parts: tuple[Condition, ...]

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        may_hold, may_fail = False, True
        for part in self.parts:
            holds, fails = part.test(facts, request)
            may_hold = may_hold or holds
            may_fail = may_fail and fails
        return may_hold, may_fail

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        for part in self.parts:
            if part.test(facts, request)[0]:
                return part.explain(facts, request)
        return []

    def render(self) -> str:
        return " or ".join(f"({p.render()})" for p in self.parts)


@dataclass(frozen=True)
class Not:
    """The part does not hold."""

    part: Condition

    def test(self, facts: ProductFacts, request: Request) -> Tri:
        holds, fails = self.part.test(facts, request)
        return fails, holds

    def explain(self, facts: ProductFacts, request: Request) -> list[str]:
        if isinstance(self.part, All | AnyOf | Not):
            return [f"not ({self.part.render()})"]
        # A leaf explains the facts as they are, which says why its negation holds.
        return self.part.explain(facts, request) or [f"not ({self.part.render()})"]

    def render(self) -> str:
        return f"not ({self.part.render()})"


def _names(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


#: The range a ground-resolution limit may take, metres: finer than a millimetre or coarser than the
#: Earth's circumference is not a resolution.
GSD_RANGE = (1e-3, 4.0e7)


def _number(fact: str, value: Any, where: Sequence[str | int],
            fail: Callable[[Sequence[str | int], str], Any]) -> float:
    try:
        number = float(value)
    except OverflowError:
        fail(where, "must be a finite positive number (this integer does not fit a float)")
        raise
    if not math.isfinite(number) or (fact != "age_days" and number < 0):
        fail(where, "must be a finite positive number")
    if fact == "gsd_m" and not GSD_RANGE[0] <= number <= GSD_RANGE[1]:
        fail(where, f"{number:g} m is not a ground resolution in [{GSD_RANGE[0]:g} m, {GSD_RANGE[1]:g} m]")
    return number


def compile_condition(raw: Mapping[str, Any], *, tolerance: float, lists: Mapping[str, RecipientList],
                      zones: Mapping[str, Zone], where: Sequence[str | int],
                      fail: Callable[[Sequence[str | int], str], Any]) -> Condition:
    """Compile a validated ``when`` table into a :class:`Condition`.

    ``fail(where, problem)`` reports a problem the schema cannot see (a list
    or zone the policy does not define) and must raise.
    """
    parts: list[Condition] = []
    for key, value in raw.items():
        at = [*where, key]
        if key == "all":
            parts.append(All(tuple(compile_condition(v, tolerance=tolerance, lists=lists, zones=zones,
                                                     where=[*at, i], fail=fail) for i, v in enumerate(value))))
        elif key == "any":
            parts.append(AnyOf(tuple(compile_condition(v, tolerance=tolerance, lists=lists, zones=zones,
                                                       where=[*at, i], fail=fail) for i, v in enumerate(value))))
        elif key == "not":
            parts.append(Not(compile_condition(value, tolerance=tolerance, lists=lists, zones=zones, where=at,
                                               fail=fail)))
        elif key == "class":
            parts.append(ClassIs(frozenset(ProductClass(v) for v in _names(value))))
        elif key in TEXT_FACTS:
            parts.append(TextIs(key, tuple(normalise_name(v) for v in _names(value))))
        elif key in NUMBER_FACTS:
            comparisons = []
            for op, limit in value.items():
                comparisons.append((op, _number(key, limit, [*at, op], fail)))
            parts.append(Compare(key, tuple(comparisons), tolerance if key == "gsd_m" else 0.0))
        elif key in FLAG_FACTS:
            parts.append(Flag(key, bool(value)))
        elif key == "recipient_in":
            missing = [n for n in _names(value) if n not in lists]
            if missing:
                fail(at, f"no list named {missing[0]!r} in [lists] (defined: {', '.join(sorted(lists)) or 'none'})")
            parts.append(RecipientIn(tuple(lists[n] for n in _names(value))))
        elif key == "purpose":
            parts.append(PurposeIs(frozenset(v.casefold() for v in _names(value))))
        elif key in ZONE_FACTS:
            missing = [n for n in _names(value) if n not in zones]
            if missing:
                fail(at, f"no zone named {missing[0]!r} in [zones] (defined: {', '.join(sorted(zones)) or 'none'})")
            parts.append(InZone("intersects" if key == "zone_intersects" else "within",
                                tuple(zones[n] for n in _names(value))))
        else:  # the schema lets no other key through
            fail(at, f"unknown condition (allowed: {', '.join((*LEAVES, *COMBINATORS))})")
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def gsd_upper_bounds(condition: Condition) -> list[tuple[str, float]]:
    """The ``gsd_m`` ``<``/``<=`` comparisons every product the condition holds for must meet.

    Only comparisons at the top (directly, or inside ``all``) bind every
    such product; those under ``any`` or ``not`` may not.
    """
    if isinstance(condition, Compare) and condition.fact == "gsd_m":
        return [(op, limit) for op, limit in condition.comparisons if op in ("<", "<=")]
    if isinstance(condition, All):
        return [b for part in condition.parts for b in gsd_upper_bounds(part)]
    return []


def classes_named(condition: Condition) -> set[ProductClass]:
    """Every class the condition names."""
    if isinstance(condition, ClassIs):
        return set(condition.classes)
    if isinstance(condition, All | AnyOf):
        return {c for part in condition.parts for c in classes_named(part)}
    if isinstance(condition, Not):
        return classes_named(condition.part)
    return set()


def facts_tested(condition: Condition) -> set[str]:
    """The names of every leaf the condition tests (``gsd_m``, ``age_days``, ``zone_intersects`` ...)."""
    if isinstance(condition, All | AnyOf):
        return {name for part in condition.parts for name in facts_tested(part)}
    if isinstance(condition, Not):
        return facts_tested(condition.part)
    if isinstance(condition, ClassIs):
        return {"class"}
    if isinstance(condition, TextIs | Compare | Flag):
        return {condition.fact}
    if isinstance(condition, RecipientIn):
        return {"recipient_in"}
    if isinstance(condition, PurposeIs):
        return {"purpose"}
    if isinstance(condition, InZone):
        return {f"zone_{condition.relation}"}
    return set()
