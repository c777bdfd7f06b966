"""The policy engine (schema ``rspolicy-policy/2``): conditions, three-valued facts, deny-overrides, errors.

Every policy here is written as TOML text into ``tmp_path`` (with its GeoJSON
zones beside it), loaded with :func:`rspolicy.policy.load_policy` and
evaluated with :func:`rspolicy.policy.evaluate`. The semantics under test are
the ones the module docstrings of :mod:`rspolicy.policy.core`,
:mod:`rspolicy.policy.conditions` and :mod:`rspolicy.policy.facts` define.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import itertools
import json
import math
import multiprocessing
import pickle
import tomllib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rspolicy.errors import PolicyError
from rspolicy.model import Action, Evidence, Fact, ProductClass, ProductEvidence, Request
from rspolicy.policy import (
    Outcome,
    Policy,
    ProductFacts,
    check_policy,
    evaluate,
    load_policy,
    product_facts,
    request_from,
)
from rspolicy.policy import v1 as policy_v1
from rspolicy.policy.facts import normalise_name
from rspolicy.policy.testing import run_policy_tests

PAN, MS, SAR, TIR, HSI, UNKNOWN = (ProductClass.PANCHROMATIC, ProductClass.MULTISPECTRAL, ProductClass.SAR,
                                   ProductClass.THERMAL, ProductClass.HYPERSPECTRAL, ProductClass.UNKNOWN)
KNOWN = (PAN, MS, SAR, TIR, HSI)

#: The release time of every request here, so that ages are exact.
AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


# --- building policies, zones, facts and requests ------------------------------------------------------


def box_wkt(west: float, south: float, east: float, north: float) -> str:
    return f"POLYGON(({west} {south}, {east} {south}, {east} {north}, {west} {north}, {west} {south}))"


def box_geojson(west: float, south: float, east: float, north: float) -> dict[str, Any]:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "zone"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}


#: Zone ``a`` is the square 10..11 E, 50..51 N; zone ``b`` the square 20..21 E, 50..51 N.
ZONE_A = (10.0, 50.0, 11.0, 51.0)
ZONE_B = (20.0, 50.0, 21.0, 51.0)
#: Footprints against zone ``a``.
INSIDE_A = box_wkt(10.2, 50.2, 10.4, 50.4)
OVERLAPS_A = box_wkt(10.8, 50.8, 11.2, 51.2)
OUTSIDE = box_wkt(30.0, 0.0, 31.0, 1.0)
INSIDE_B = box_wkt(20.2, 50.2, 20.4, 50.4)
BOWTIE_WKT = "POLYGON((0 0, 1 1, 1 0, 0 1, 0 0))"
NOT_WKT = "POLYGON((nonsense"

LISTS_AND_ZONES = '''
[lists.friends]
recipients = ["DE", "FR:CNES", "US:Planet Labs"]

[lists.others]
recipients = ["JP"]

[zones.a]
file = "zones/a.geojson"
description = "zone a"

[zones.b]
file = "zones/b.geojson"
'''


def write_zones(folder: Path) -> None:
    (folder / "zones").mkdir(parents=True, exist_ok=True)
    (folder / "zones" / "a.geojson").write_text(json.dumps(box_geojson(*ZONE_A)))
    (folder / "zones" / "b.geojson").write_text(json.dumps(box_geojson(*ZONE_B)))


def policy_text(rules: str, *, name: str = "t", default: str = "allow", unknown_class: str = "strictest",
                extra: str = LISTS_AND_ZONES) -> str:
    return (f'schema = "rspolicy-policy/2"\n\n[policy]\nname = "{name}"\nversion = "1"\n\n'
            f'[evaluation]\ndefault = "{default}"\nunknown_class = "{unknown_class}"\n{extra}\n{rules}')


def write_policy(folder: Path, text: str, name: str | None = None) -> Path:
    """Write a policy (and zones a and b) into ``folder``, under a name of its content unless one is given."""
    write_zones(folder)
    path = folder / f"{name or 'p-' + hashlib.sha256(text.encode()).hexdigest()[:12]}.toml"
    path.write_text(text)
    return path


def make_policy(folder: Path, rules: str, **options: Any) -> Policy:
    return load_policy(write_policy(folder, policy_text(rules, **options)))


def rule(rule_id: str, action: str, when: str | None = None, *, target: float | None = None,
         zones: Sequence[str] = ()) -> str:
    lines = ["[[rule]]", f'id = "{rule_id}"']
    if when is not None:
        lines.append(f"when = {when}")
    lines.append(f'action = "{action}"')
    if target is not None:
        lines.append(f"target_m = {target}")
    if zones:
        lines.append(f"zones = {json.dumps(list(zones))}")
    return "\n".join(lines) + "\n\n"


def facts(cls: ProductClass = PAN, gsd: float | None = 1.0, *, sat: Iterable[str] = (), sensor: Iterable[str] = (),
          mode: Iterable[str] = (), level: Iterable[str] = (), bands: Iterable[int] = (),
          phase: Iterable[bool] = (), acquired: Iterable[datetime] = (), footprints: Iterable[str] = (),
          classes: Iterable[ProductClass] = ()) -> ProductFacts:
    """Facts as the evidence would give them (names normalised; an empty collection is unknown)."""
    times = tuple(acquired)
    base = ProductFacts.of(cls, gsd)
    return ProductFacts(
        classes=base.classes | frozenset(classes), gsd_m=gsd,
        satellites=frozenset(normalise_name(s) for s in sat), sensors=frozenset(normalise_name(s) for s in sensor),
        imaging_modes=frozenset(normalise_name(s) for s in mode),
        product_levels=frozenset(normalise_name(s) for s in level),
        band_counts=frozenset(bands), sar_phase=frozenset(phase), acquired=times, acquired_unknown=not times,
        footprints=tuple(footprints))


def req(recipient: str | None = None, purpose: str | None = None, approval: str | None = None) -> Request:
    return request_from(recipient, purpose, approval, AT)


def days_ago(days: float) -> datetime:
    return AT - timedelta(days=days)


def truth(folder: Path, when: str, product: ProductFacts, request: Request | None = None) -> str:
    """``"true"``, ``"false"`` or ``"unknown"``: how the engine reads a condition for a product.

    The condition is put in a blocking rule of a policy that otherwise allows,
    and in an allowing rule of a policy that otherwise blocks: a restricting
    rule fires when the condition may hold, an allowing one only when it
    cannot fail.
    """
    request = request or req()
    restricting = make_policy(folder, rule("t/r", "block", when), default="allow")
    allowing = make_policy(folder, rule("t/r", "allow", when), default="block")
    blocked = evaluate(restricting, product, request=request).action is Action.BLOCK
    allowed = evaluate(allowing, product, request=request).action is Action.ALLOW
    assert blocked or not allowed, "an allowing rule fired where the same condition could not hold"
    return "true" if allowed else "unknown" if blocked else "false"


def fired_ids(outcome: Outcome) -> list[str]:
    return [f.id for f in outcome.fired]


# --- condition leaves ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "product", "expected"), [
    ('{ class = "panchromatic" }', facts(PAN), "true"),
    ('{ class = "panchromatic" }', facts(MS), "false"),
    ('{ class = ["sar", "multispectral"] }', facts(MS), "true"),
    ('{ class = ["sar", "multispectral"] }', facts(PAN), "false"),
    # Evidence suggesting a second class: either may be true.
    ('{ class = "multispectral" }', facts(PAN, classes=[MS]), "unknown"),
    ('{ class = ["panchromatic", "multispectral"] }', facts(PAN, classes=[MS]), "true"),
    # An unknown class (under unknown_class = "strictest") may be any class.
    ('{ class = "sar" }', facts(UNKNOWN), "unknown"),
    ('{ class = ["panchromatic", "multispectral", "sar", "thermal", "hyperspectral"] }', facts(UNKNOWN), "true"),
])
def test_class(tmp_path: Path, when: str, product: ProductFacts, expected: str) -> None:
    assert truth(tmp_path, when, product) == expected


#: The keyword of :func:`facts` for each named fact of the condition language.
NAME_KEYWORDS: dict[str, str] = {"satellite": "sat", "sensor": "sensor", "imaging_mode": "mode",
                                 "product_level": "level"}


def named(key: str, values: list[str]) -> ProductFacts:
    """Facts with only the named fact ``key`` stated."""
    given_: dict[str, Any] = {NAME_KEYWORDS[key]: values}
    return facts(**given_)


@pytest.mark.parametrize("key", ["satellite", "sensor", "imaging_mode", "product_level"])
@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ('"GF-2"', "gf2", "true"),
    ('"gf2"', "GF-2", "true"),
    ('"GF 2"', "G.F-2", "true"),
    ('"GF-2"', "GF-3", "false"),
    ('["GF-3", "ZY-3"]', "zy3", "true"),
    ('"GF*"', "GF-7", "true"),
    ('"gf*"', "GF12", "true"),
    ('"GF?"', "GF-2", "true"),
    ('"GF?"', "GF-12", "false"),
    ('"ZY-3*"', "ZY-3 01", "true"),
    ('"ZY-3*"', "ZY-2", "false"),
])
def test_names_normalise_and_glob(tmp_path: Path, key: str, pattern: str, value: str, expected: str) -> None:
    assert truth(tmp_path, f"{{ {key} = {pattern} }}", named(key, [value])) == expected


@pytest.mark.parametrize("key", ["satellite", "sensor", "imaging_mode", "product_level"])
def test_names_unknown_or_several(tmp_path: Path, key: str) -> None:
    when = f'{{ {key} = "GF-2" }}'
    assert truth(tmp_path, when, facts()) == "unknown"
    assert truth(tmp_path, when, named(key, ["GF-2", "ZY-3"])) == "unknown"
    assert truth(tmp_path, when, named(key, ["GF-2", "gf 2"])) == "true"  # one name, two spellings
    assert truth(tmp_path, f'{{ {key} = ["GF-2", "ZY-3"] }}', named(key, ["GF-2", "ZY-3"])) == "true"
    assert truth(tmp_path, when, named(key, ["CB-04", "ZY-3"])) == "false"


LIMIT_CASES = [
    # "<" 0.5: the limit itself and values within the tolerance of it are not finer.
    ('{ "<" = 0.5 }', 0.5, "false"),
    ('{ "<" = 0.5 }', 0.5 * (1 - 5e-7), "false"),
    ('{ "<" = 0.5 }', 0.5 * (1 + 5e-7), "false"),
    ('{ "<" = 0.5 }', 0.499, "true"),
    ('{ "<" = 0.5 }', 0.5 * (1 - 2e-6), "true"),
    ('{ "<" = 0.5 }', 0.6, "false"),
    ('{ "<=" = 0.5 }', 0.5, "true"),
    ('{ "<=" = 0.5 }', 0.5 * (1 + 5e-7), "true"),
    ('{ "<=" = 0.5 }', 0.5 * (1 - 5e-7), "true"),
    ('{ "<=" = 0.5 }', 0.5 * (1 + 2e-6), "false"),
    ('{ "<=" = 0.5 }', 0.3, "true"),
    ('{ ">" = 2.0 }', 2.0, "false"),
    ('{ ">" = 2.0 }', 2.0 * (1 + 5e-7), "false"),
    ('{ ">" = 2.0 }', 2.0 * (1 + 2e-6), "true"),
    ('{ ">" = 2.0 }', 10.0, "true"),
    ('{ ">" = 2.0 }', 1.0, "false"),
    ('{ ">=" = 2.0 }', 2.0, "true"),
    ('{ ">=" = 2.0 }', 2.0 * (1 - 5e-7), "true"),
    ('{ ">=" = 2.0 }', 2.0 * (1 - 2e-6), "false"),
    ('{ ">=" = 2.0 }', 3.0, "true"),
    # Several comparators in one table must all hold.
    ('{ ">=" = 1.0, "<" = 2.0 }', 1.0, "true"),
    ('{ ">=" = 1.0, "<" = 2.0 }', 1.5, "true"),
    ('{ ">=" = 1.0, "<" = 2.0 }', 2.0, "false"),
    ('{ ">=" = 1.0, "<" = 2.0 }', 0.5, "false"),
]


@pytest.mark.parametrize(("comparison", "gsd", "expected"), LIMIT_CASES)
def test_gsd_m(tmp_path: Path, comparison: str, gsd: float, expected: str) -> None:
    assert truth(tmp_path, f"{{ gsd_m = {comparison} }}", facts(gsd=gsd)) == expected


def test_gsd_tolerance_is_the_policys(tmp_path: Path) -> None:
    text = policy_text(rule("t/r", "block", '{ gsd_m = { "<" = 0.5 } }')).replace(
        'unknown_class = "strictest"', 'unknown_class = "strictest"\ntolerance_relative = 1e-3')
    policy = load_policy(write_policy(tmp_path, text))
    assert policy.tolerance == 1e-3
    assert evaluate(policy, facts(gsd=0.4996), request=req()).action is Action.ALLOW  # within 1e-3
    assert evaluate(policy, facts(gsd=0.499), request=req()).action is Action.BLOCK


def test_unknown_gsd_blocks_whatever_the_rules(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, rule("t/ok", "allow"), default="allow")
    outcome = evaluate(policy, facts(gsd=None), request=req())
    assert outcome.action is Action.BLOCK and "ground resolution" in outcome.reason


@pytest.mark.parametrize(("comparison", "bands", "expected"), [
    ('{ ">" = 49 }', [50], "true"),
    ('{ ">" = 49 }', [49], "false"),
    ('{ ">=" = 49 }', [49], "true"),
    ('{ "<=" = 4, ">=" = 3 }', [4], "true"),
    ('{ "<=" = 4, ">=" = 3 }', [8], "false"),
    ('{ ">" = 49 }', [], "unknown"),
    ('{ ">" = 49 }', [4, 150], "unknown"),
    ('{ ">" = 49 }', [100, 150], "true"),
])
def test_bands(tmp_path: Path, comparison: str, bands: list[int], expected: str) -> None:
    assert truth(tmp_path, f"{{ bands = {comparison} }}", facts(bands=bands)) == expected


@pytest.mark.parametrize(("comparison", "ages", "expected"), [
    ('{ "<" = 30 }', [10], "true"),
    ('{ "<" = 30 }', [29.99], "true"),
    ('{ "<" = 30 }', [30], "false"),
    ('{ "<" = 30 }', [40], "false"),
    ('{ "<" = 30 }', [-2], "true"),  # acquired after the release time: zero days old at most
    ('{ ">=" = 365 }', [365], "true"),
    ('{ ">=" = 365 }', [364.5], "false"),
    ('{ "<" = 30 }', [], "unknown"),
    ('{ "<" = 30 }', [10, 40], "unknown"),
    ('{ "<" = 30 }', [10, 20], "true"),
])
def test_age_days(tmp_path: Path, comparison: str, ages: list[float], expected: str) -> None:
    product = facts(acquired=[days_ago(d) for d in ages])
    assert truth(tmp_path, f"{{ age_days = {comparison} }}", product) == expected


def test_age_counts_to_the_requests_time(tmp_path: Path) -> None:
    product = facts(acquired=[datetime(2026, 11, 1, tzinfo=UTC)])
    when = '{ age_days = { "<" = 30 } }'
    assert truth(tmp_path, when, product, request_from(None, None, None, "2026-11-20T00:00:00Z")) == "true"
    assert truth(tmp_path, when, product, request_from(None, None, None, "2026-12-20T00:00:00Z")) == "false"
    assert truth(tmp_path, when, product, request_from(None, None, None, "2026-11-30T08:00:00+08:00")) == "true"


def test_an_unreadable_acquisition_time_makes_the_age_unknown(tmp_path: Path) -> None:
    evidence = (Evidence(Fact.ACQUISITION_TIME, "2026-11-30T00:00:00Z", "a.xml", "time"),
                Evidence(Fact.ACQUISITION_TIME, "yesterday", "b.xml", "time"))
    product = product_facts(ProductEvidence("p", None, (), evidence), PAN, (), 1.0)
    assert product.acquired_unknown
    assert truth(tmp_path, '{ age_days = { "<" = 30 } }', product) == "unknown"
    assert truth(tmp_path, '{ age_days = { ">" = 30 } }', product) == "unknown"


@pytest.mark.parametrize(("when", "phase", "expected"), [
    ("{ sar_phase = true }", [True], "true"),
    ("{ sar_phase = true }", [False], "false"),
    ("{ sar_phase = true }", [], "unknown"),
    ("{ sar_phase = true }", [True, False], "unknown"),
    ("{ sar_phase = false }", [False], "true"),
    ("{ sar_phase = false }", [True], "false"),
    ("{ sar_phase = false }", [], "unknown"),
])
def test_sar_phase(tmp_path: Path, when: str, phase: list[bool], expected: str) -> None:
    assert truth(tmp_path, when, facts(SAR, phase=phase)) == expected


@pytest.mark.parametrize(("when", "approval", "expected"), [
    ("{ approval = true }", "CASE-1", "true"),
    ("{ approval = true }", None, "false"),  # the request is known: no approval was given
    ("{ approval = false }", None, "true"),
    ("{ approval = false }", "CASE-1", "false"),
])
def test_approval(tmp_path: Path, when: str, approval: str | None, expected: str) -> None:
    assert truth(tmp_path, when, facts(), req(approval=approval)) == expected


@pytest.mark.parametrize(("recipient", "expected"), [
    ("DE", "true"),
    ("de", "true"),
    ("DE:DLR", "true"),  # a country on the list covers every organisation in it
    ("FR:CNES", "true"),
    ("FR:cnes", "true"),
    ("fr:C.N.E.S.", "true"),
    ("FR: c n e s ", "true"),
    ("US:planet-labs", "true"),
    ("US:PLANETLABS", "true"),
    ("FR", "false"),  # only an organisation of FR is listed
    ("FR:IGN", "false"),
    ("BE:CNES", "false"),  # the organisation entry is for its country
    ("US", "false"),
    ("BR", "false"),
    (None, "unknown"),
])
def test_recipient_in(tmp_path: Path, recipient: str | None, expected: str) -> None:
    assert truth(tmp_path, '{ recipient_in = "friends" }', facts(), req(recipient=recipient)) == expected


def test_recipient_in_several_lists(tmp_path: Path) -> None:
    when = '{ recipient_in = ["friends", "others"] }'
    assert truth(tmp_path, when, facts(), req(recipient="JP")) == "true"
    assert truth(tmp_path, when, facts(), req(recipient="DE")) == "true"
    assert truth(tmp_path, when, facts(), req(recipient="CN")) == "false"


@pytest.mark.parametrize(("purpose", "expected"), [
    ("research", "true"),
    ("Research", "true"),
    ("  RESEARCH ", "true"),
    ("disaster response", "true"),
    ("military", "false"),
    (None, "unknown"),
])
def test_purpose(tmp_path: Path, purpose: str | None, expected: str) -> None:
    when = '{ purpose = ["research", "Disaster Response"] }'
    assert truth(tmp_path, when, facts(), req(purpose=purpose)) == expected


@pytest.mark.parametrize(("key", "footprints", "expected"), [
    ("zone_intersects", [INSIDE_A], "true"),
    ("zone_intersects", [OVERLAPS_A], "true"),
    ("zone_intersects", [OUTSIDE], "false"),
    ("zone_intersects", [INSIDE_B], "false"),
    ("zone_intersects", [], "unknown"),
    ("zone_intersects", [BOWTIE_WKT], "unknown"),
    ("zone_intersects", [NOT_WKT], "unknown"),
    ("zone_intersects", [INSIDE_A, NOT_WKT], "unknown"),
    ("zone_intersects", [OUTSIDE, NOT_WKT], "unknown"),
    ("zone_intersects", [INSIDE_A, OUTSIDE], "unknown"),  # two readings of the footprint disagree
    ("zone_intersects", [INSIDE_A, OVERLAPS_A], "true"),
    ("zone_within", [INSIDE_A], "true"),
    ("zone_within", [OVERLAPS_A], "false"),
    ("zone_within", [OUTSIDE], "false"),
    ("zone_within", [], "unknown"),
    ("zone_within", [BOWTIE_WKT], "unknown"),
    ("zone_within", [INSIDE_A, OVERLAPS_A], "unknown"),
])
def test_zones(tmp_path: Path, key: str, footprints: list[str], expected: str) -> None:
    assert truth(tmp_path, f'{{ {key} = "a" }}', facts(footprints=footprints)) == expected


def test_zone_lists(tmp_path: Path) -> None:
    assert truth(tmp_path, '{ zone_intersects = ["a", "b"] }', facts(footprints=[INSIDE_B])) == "true"
    assert truth(tmp_path, '{ zone_within = ["a", "b"] }', facts(footprints=[INSIDE_B])) == "true"
    assert truth(tmp_path, '{ zone_within = ["a", "b"] }', facts(footprints=[OUTSIDE])) == "false"
    # A footprint across both zones lies within neither.
    assert truth(tmp_path, '{ zone_within = ["a", "b"] }', facts(footprints=[box_wkt(10.5, 50.5, 20.5, 50.6)])) \
        == "false"


def test_zones_are_prepared_geometries(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, rule("t/m", "mask", zones=["a"]))
    assert set(policy.zones) == {"a", "b"}
    for zone in policy.zones.values():
        assert shapely.is_prepared(zone.geometry)
        assert zone.geometry.geom_type in ("Polygon", "MultiPolygon")
    assert shapely.equals(policy.zones["a"].geometry, shapely.box(*ZONE_A))
    assert policy.zones["a"].description == "zone a"
    assert shapely.from_wkt(policy.zones["b"].wkt).equals(shapely.box(*ZONE_B))


def test_product_facts_normalise_what_the_readers_give() -> None:
    evidence = (Evidence(Fact.SATELLITE, "GF-2", "a.xml", "SatelliteID"),
                Evidence(Fact.SATELLITE, "gf2", "name", "filename"),
                Evidence(Fact.SENSOR, "PMS 1", "a.xml", "SensorID"),
                Evidence(Fact.BAND_COUNT, 4, "a.tiff", "tiff"),
                Evidence(Fact.DTYPE, "complex64", "a.tiff", "tiff"),
                Evidence(Fact.ACQUISITION_TIME, "2026-11-30 01:02:03", "a.xml", "time"),
                Evidence(Fact.FOOTPRINT, INSIDE_A, "a.xml", "corners"))
    product = product_facts(ProductEvidence("p", None, (), evidence), PAN, (MS,), 0.8)
    assert product.satellites == {"GF2"} and product.sensors == {"PMS1"}
    assert product.classes == {PAN, MS} and product.band_counts == {4} and product.sar_phase == {True}
    assert product.acquired == (datetime(2026, 11, 30, 1, 2, 3, tzinfo=UTC),) and not product.acquired_unknown
    assert product.footprints == (INSIDE_A,)
    unknown = product_facts(ProductEvidence("p", None, (), evidence), UNKNOWN, (MS,), 0.8)
    assert unknown.classes == frozenset()  # an unknown class is not narrowed by hints


# --- three-valued combinations -------------------------------------------------------------------------


@pytest.mark.parametrize(("when", "product", "request_", "expected"), [
    # not flips true and false, and leaves unknown unknown.
    ('{ not = { satellite = "GF-2" } }', facts(sat=["GF-2"]), None, "false"),
    ('{ not = { satellite = "GF-2" } }', facts(sat=["ZY-3"]), None, "true"),
    ('{ not = { satellite = "GF-2" } }', facts(), None, "unknown"),
    ('{ not = { satellite = "GF-2" } }', facts(sat=["GF-2", "ZY-3"]), None, "unknown"),
    ('{ not = { not = { satellite = "GF-2" } } }', facts(sat=["GF-2"]), None, "true"),
    ('{ not = { recipient_in = "friends" } }', facts(), req(recipient="DE"), "false"),
    ('{ not = { recipient_in = "friends" } }', facts(), req(recipient="CN"), "true"),
    ('{ not = { recipient_in = "friends" } }', facts(), req(), "unknown"),
    # Several keys in one table, and all: false wins over unknown, unknown over true.
    ('{ satellite = "GF-2", gsd_m = { "<" = 0.5 } }', facts(gsd=0.3), None, "unknown"),
    ('{ satellite = "GF-2", gsd_m = { "<" = 0.5 } }', facts(gsd=0.8), None, "false"),
    ('{ satellite = "GF-2", gsd_m = { "<" = 0.5 } }', facts(gsd=0.3, sat=["GF-2"]), None, "true"),
    ('{ all = [{ satellite = "GF-2" }, { sensor = "PMS" }] }', facts(sat=["GF-2"], sensor=["PMS"]), None, "true"),
    ('{ all = [{ satellite = "GF-2" }, { sensor = "PMS" }] }', facts(sat=["GF-2"]), None, "unknown"),
    ('{ all = [{ satellite = "GF-2" }, { sensor = "PMS" }] }', facts(sensor=["WFV"]), None, "false"),
    # any: true wins over unknown, unknown over false.
    ('{ any = [{ satellite = "GF-2" }, { class = "sar" }] }', facts(SAR), None, "true"),
    ('{ any = [{ satellite = "GF-2" }, { class = "sar" }] }', facts(PAN), None, "unknown"),
    ('{ any = [{ satellite = "GF-2" }, { class = "sar" }] }', facts(PAN, sat=["ZY-3"]), None, "false"),
    ('{ any = [{ zone_intersects = "a" }, { not = { recipient_in = "friends" } }] }',
     facts(footprints=[OUTSIDE]), req(recipient="DE"), "false"),
    ('{ any = [{ zone_intersects = "a" }, { not = { recipient_in = "friends" } }] }',
     facts(footprints=[OUTSIDE]), req(), "unknown"),
    ('{ any = [{ zone_intersects = "a" }, { not = { recipient_in = "friends" } }] }',
     facts(), req(recipient="BR"), "true"),
    # Nested: not over any over all.
    ('{ not = { any = [{ all = [{ class = "sar" }, { sar_phase = true }] }, { bands = { ">" = 49 } }] } }',
     facts(SAR, phase=[True], bands=[1]), None, "false"),
    ('{ not = { any = [{ all = [{ class = "sar" }, { sar_phase = true }] }, { bands = { ">" = 49 } }] } }',
     facts(SAR, phase=[False], bands=[1]), None, "true"),
    ('{ not = { any = [{ all = [{ class = "sar" }, { sar_phase = true }] }, { bands = { ">" = 49 } }] } }',
     facts(SAR, bands=[1]), None, "unknown"),
])
def test_combinations(tmp_path: Path, when: str, product: ProductFacts, request_: Request | None,
                      expected: str) -> None:
    assert truth(tmp_path, when, product, request_) == expected


def test_a_rule_without_condition_always_fires(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, rule("t/always", "allow"), default="block", unknown_class="strictest")
    assert evaluate(policy, facts(UNKNOWN, gsd=0.1), request=req()).action is Action.ALLOW
    policy = make_policy(tmp_path, rule("t/never", "block"), default="allow")
    assert evaluate(policy, facts(PAN, sat=["GF-2"]), request=req()).rule == "t/never"


@pytest.mark.parametrize(("product", "request_", "action"), [
    (facts(sat=["GF-2"]), req(), Action.ALLOW),
    (facts(), req(), Action.BLOCK),  # satellite not stated: the allowing rule cannot be relied on
    (facts(sat=["GF-2", "ZY-3"]), req(), Action.BLOCK),  # the evidence disagrees
    (facts(sat=["GF-2"], acquired=[days_ago(400)]), req(), Action.ALLOW),
    (facts(sat=["GF-2"], acquired=[days_ago(3)]), req(), Action.BLOCK),
    (facts(sat=["GF-2"]), req(recipient="BR"), Action.BLOCK),
    (facts(sat=["GF-2"]), req(recipient="DE"), Action.ALLOW),
    (facts(sat=["GF-2"], footprints=[INSIDE_A]), req(), Action.BLOCK),
    (facts(sat=["GF-2"], footprints=[NOT_WKT]), req(), Action.BLOCK),
])
def test_unknown_facts_fail_closed(tmp_path: Path, product: ProductFacts, request_: Request,
                                   action: Action) -> None:
    """A restricting rule fires on unknown or disagreeing facts, an allowing one does not."""
    rules = (rule("t/gf2", "allow", '{ satellite = "GF-2" }')
             + rule("t/fresh", "block", '{ age_days = { "<" = 30 } }')
             + rule("t/foreign", "block", '{ not = { recipient_in = "friends" } }')
             + rule("t/area", "block", '{ zone_intersects = "a" }'))
    policy = make_policy(tmp_path, rules, default="block")
    # An unknown age, recipient or footprint alone blocks: state them where the case does not.
    if product.acquired_unknown:
        product = dataclasses.replace(product, acquired=(days_ago(400),), acquired_unknown=False)
    if request_.recipient is None:
        request_ = req(recipient="DE")
    if not product.footprints:
        product = dataclasses.replace(product, footprints=(OUTSIDE,))
    assert evaluate(policy, product, request=request_).action is action


def test_each_unknown_fact_alone_blocks(tmp_path: Path) -> None:
    rules = (rule("t/fresh", "block", '{ age_days = { "<" = 30 } }')
             + rule("t/foreign", "block", '{ not = { recipient_in = "friends" } }')
             + rule("t/area", "block", '{ zone_intersects = "a" }'))
    policy = make_policy(tmp_path, rules, default="allow")
    known = facts(acquired=[days_ago(400)], footprints=[OUTSIDE])
    assert evaluate(policy, known, request=req(recipient="DE")).action is Action.ALLOW
    cases = {"t/fresh": (facts(footprints=[OUTSIDE]), req(recipient="DE")),
             "t/foreign": (known, req()),
             "t/area": (facts(acquired=[days_ago(400)]), req(recipient="DE"))}
    for rule_id, (product, request_) in cases.items():
        outcome = evaluate(policy, product, request=request_)
        assert (outcome.action, outcome.rule, fired_ids(outcome)) == (Action.BLOCK, rule_id, [rule_id])


def test_two_satellites_are_judged_as_either(tmp_path: Path) -> None:
    rules = (rule("t/gf2-fine", "resample", '{ satellite = "GF-2", gsd_m = { "<" = 1.0 } }', target=1.0)
             + rule("t/zy3-fine", "resample", '{ satellite = "ZY-3", gsd_m = { "<" = 2.5 } }', target=2.5)
             + rule("t/ok", "allow", '{ satellite = ["GF-2", "ZY-3"] }'))
    policy = make_policy(tmp_path, rules, default="block")
    gf2 = evaluate(policy, facts(gsd=0.8, sat=["GF-2"]), request=req())
    zy3 = evaluate(policy, facts(gsd=0.8, sat=["ZY-3"]), request=req())
    both = evaluate(policy, facts(gsd=0.8, sat=["GF-2", "ZY-3"]), request=req())
    assert (gf2.action, gf2.target_gsd_m) == (Action.RESAMPLE, 1.0)
    assert (zy3.action, zy3.target_gsd_m) == (Action.RESAMPLE, 2.5)
    assert (both.action, both.target_gsd_m, both.rule) == (Action.RESAMPLE, 2.5, "t/zy3-fine")
    assert fired_ids(both) == ["t/gf2-fine", "t/zy3-fine", "t/ok"]  # both satellites are allowed ones


# --- deny-overrides ------------------------------------------------------------------------------------

#: Each rule keyed to one fact, so that a product can make any set of them fire. In the file the
#: allowing rule comes first and the blocking one last: the order of rules does not decide.
ORDER_RULES = (
    rule("o/allow", "allow", '{ class = "panchromatic" }')
    + rule("o/resample", "resample", '{ product_level = "L1", gsd_m = { "<" = 2.0 } }', target=2.0)
    + rule("o/resample-coarse", "resample", '{ imaging_mode = "X", gsd_m = { "<" = 8.0 } }', target=8.0)
    + rule("o/mask-b", "mask", '{ sensor = "M" }', zones=["b"])
    + rule("o/mask-a", "mask", '{ sensor = ["M", "N"] }', zones=["a"])
    + rule("o/mask-ab", "mask", '{ sensor = "N" }', zones=["b", "a"])
    + rule("o/refer", "refer", '{ satellite = "R" }')
    + rule("o/refer-2", "refer", '{ satellite = ["R", "Q"] }')
    + rule("o/block", "block", '{ bands = { ">=" = 100 } }')
)


def order_facts(cls: ProductClass = PAN, *, level: str = "L0", mode: str = "Y", sensor: str = "S",
                sat: str = "S", bands: int = 4) -> ProductFacts:
    return facts(cls, 1.0, level=[level], mode=[mode], sensor=[sensor], sat=[sat], bands=[bands])


@pytest.fixture
def order_policy(tmp_path: Path) -> Policy:
    return make_policy(tmp_path, ORDER_RULES, default="block")


def test_allow_beats_the_default(order_policy: Policy) -> None:
    outcome = evaluate(order_policy, order_facts(PAN), request=req())
    assert (outcome.action, outcome.rule, fired_ids(outcome)) == (Action.ALLOW, "o/allow", ["o/allow"])
    outcome = evaluate(order_policy, order_facts(MS), request=req())
    assert (outcome.action, outcome.rule, outcome.fired) == (Action.BLOCK, None, ())
    assert "no rule of t covers multispectral at 1 m" in outcome.reason and "default is to block" in outcome.reason


def test_resample_beats_allow_and_the_coarsest_target_wins(order_policy: Policy) -> None:
    outcome = evaluate(order_policy, order_facts(level="L1"), request=req())
    assert (outcome.action, outcome.target_gsd_m, outcome.rule) == (Action.RESAMPLE, 2.0, "o/resample")
    outcome = evaluate(order_policy, order_facts(level="L1", mode="X"), request=req())
    assert (outcome.action, outcome.target_gsd_m, outcome.rule) == (Action.RESAMPLE, 8.0, "o/resample-coarse")
    assert fired_ids(outcome) == ["o/allow", "o/resample", "o/resample-coarse"]
    assert outcome.reason.endswith("degrade to 8 m") and outcome.mask_zones == ()


def test_masks_add_up_in_policy_order(order_policy: Policy) -> None:
    outcome = evaluate(order_policy, order_facts(sensor="M"), request=req())
    assert (outcome.action, outcome.target_gsd_m, outcome.mask_zones) == (Action.MASK, None, ("b", "a"))
    assert outcome.rule == "o/mask-b" and "mask zone b, a" in outcome.reason
    outcome = evaluate(order_policy, order_facts(sensor="N"), request=req())
    assert outcome.mask_zones == ("a", "b")  # o/mask-a's a first, then o/mask-ab adds only b
    # Unknown sensor: every mask rule may apply.
    outcome = evaluate(order_policy, facts(PAN, 1.0, level=["L0"], mode=["Y"], sat=["S"], bands=[4]),
                       request=req())
    assert (outcome.action, outcome.mask_zones) == (Action.MASK, ("b", "a"))
    assert fired_ids(outcome) == ["o/allow", "o/mask-b", "o/mask-a", "o/mask-ab"]


def test_mask_and_resample_together(order_policy: Policy) -> None:
    outcome = evaluate(order_policy, order_facts(sensor="M", level="L1", mode="X"), request=req())
    assert (outcome.action, outcome.target_gsd_m, outcome.mask_zones) == (Action.MASK, 8.0, ("b", "a"))
    assert "mask zone b, a" in outcome.reason and "degrade to 8 m" in outcome.reason


def test_refer_without_approval_blocks(order_policy: Policy) -> None:
    outcome = evaluate(order_policy, order_facts(sat="R", sensor="M", level="L1"), request=req())
    assert (outcome.action, outcome.rule, outcome.approval) == (Action.BLOCK, "o/refer", None)
    assert "referred for a person's approval" in outcome.reason and "--approval" in outcome.reason
    assert fired_ids(outcome) == ["o/allow", "o/resample", "o/mask-b", "o/mask-a", "o/refer", "o/refer-2"]


def test_refer_with_approval_gives_the_other_rules_result(order_policy: Policy) -> None:
    approved = req(approval="CASE-7")
    outcome = evaluate(order_policy, order_facts(sat="R", sensor="M", level="L1"), request=approved)
    assert (outcome.action, outcome.target_gsd_m, outcome.mask_zones) == (Action.MASK, 2.0, ("b", "a"))
    assert outcome.approval == "CASE-7" and "approved under CASE-7" in outcome.reason
    outcome = evaluate(order_policy, order_facts(sat="Q", level="L1"), request=approved)
    assert (outcome.action, outcome.target_gsd_m, outcome.approval) == (Action.RESAMPLE, 2.0, "CASE-7")
    outcome = evaluate(order_policy, order_facts(sat="R"), request=approved)
    assert (outcome.action, outcome.rule, outcome.approval) == (Action.ALLOW, "o/refer", "CASE-7")
    assert "approved under CASE-7" in outcome.reason
    # An approval where nothing is referred is not recorded.
    outcome = evaluate(order_policy, order_facts(level="L1"), request=approved)
    assert (outcome.action, outcome.approval) == (Action.RESAMPLE, None)
    outcome = evaluate(order_policy, order_facts(), request=approved)
    assert (outcome.action, outcome.approval) == (Action.ALLOW, None)


def test_block_beats_everything(order_policy: Policy) -> None:
    product = order_facts(sat="R", sensor="M", level="L1", mode="X", bands=200)
    for request_ in (req(), req(approval="CASE-7")):
        outcome = evaluate(order_policy, product, request=request_)
        assert (outcome.action, outcome.rule, outcome.target_gsd_m, outcome.mask_zones, outcome.approval) == (
            Action.BLOCK, "o/block", None, (), None)
        assert outcome.reason.endswith(": block") and "(o/block)" in outcome.reason
        assert len(outcome.fired) == 8


def test_every_subset_of_rules_combines_deny_overrides(order_policy: Policy) -> None:
    """All 32 combinations of the five kinds: the strictest kind always decides."""
    for block, refer, mask, resample, approval in itertools.product((False, True), repeat=5):
        product = order_facts(PAN, bands=200 if block else 4, sat="R" if refer else "S",
                              sensor="M" if mask else "S", level="L1" if resample else "L0")
        outcome = evaluate(order_policy, product, request=req(approval="A-1" if approval else None))
        if block or (refer and not approval):
            expected = Action.BLOCK
        elif mask:
            expected = Action.MASK
        elif resample:
            expected = Action.RESAMPLE
        else:
            expected = Action.ALLOW
        assert outcome.action is expected, (block, refer, mask, resample, approval, outcome)
        assert (outcome.approval == "A-1") is (refer and approval and not block)


@pytest.mark.parametrize(("default", "approval", "action", "recorded"), [
    ("allow", None, Action.ALLOW, None),
    ("allow", "A-1", Action.ALLOW, None),
    ("block", None, Action.BLOCK, None),
    ("block", "A-1", Action.BLOCK, None),
    ("refer", None, Action.BLOCK, None),
    ("refer", "A-1", Action.ALLOW, "A-1"),
])
def test_default(tmp_path: Path, default: str, approval: str | None, action: Action, recorded: str | None) -> None:
    policy = make_policy(tmp_path, rule("t/sar", "block", '{ class = "sar" }'), default=default)
    assert policy.default is Action(default)
    outcome = evaluate(policy, facts(PAN), request=req(approval=approval))
    assert (outcome.action, outcome.rule, outcome.approval, outcome.fired) == (action, None, recorded, ())
    assert "no rule of t covers panchromatic at 1 m" in outcome.reason
    if default == "refer":
        assert ("approved under A-1" in outcome.reason) is (approval is not None)
    assert evaluate(policy, facts(SAR), request=req(approval=approval)).action is Action.BLOCK


def test_default_default_is_block(tmp_path: Path) -> None:
    text = policy_text(rule("t/sar", "block", '{ class = "sar" }')).replace('default = "allow"\n', "")
    policy = load_policy(write_policy(tmp_path, text))
    assert policy.default is Action.BLOCK
    assert evaluate(policy, facts(PAN), request=req()).action is Action.BLOCK


# --- unknown class -------------------------------------------------------------------------------------

CNSA_LIKE = (
    rule("c/panchromatic", "resample", '{ class = "panchromatic", gsd_m = { "<" = 0.5 } }', target=0.5)
    + rule("c/multispectral", "resample", '{ class = "multispectral", gsd_m = { "<" = 2.0 } }', target=2.0)
    + rule("c/sar", "resample", '{ class = "sar", gsd_m = { "<" = 1.0 } }', target=1.0)
    + rule("c/thermal", "resample", '{ class = "thermal", gsd_m = { "<" = 2.0 } }', target=2.0)
    + rule("c/hyperspectral", "resample", '{ class = "hyperspectral", gsd_m = { "<" = 2.0 } }', target=2.0)
    + rule("c/within-limits", "allow",
           '{ class = ["panchromatic", "multispectral", "sar", "thermal", "hyperspectral"] }')
)


@pytest.mark.parametrize(("gsd", "action", "target", "fired"), [
    (3.0, Action.ALLOW, None, ["c/within-limits"]),
    (2.0, Action.ALLOW, None, ["c/within-limits"]),
    (0.8, Action.RESAMPLE, 2.0, ["c/multispectral", "c/sar", "c/thermal", "c/hyperspectral", "c/within-limits"]),
    (0.3, Action.RESAMPLE, 2.0, ["c/panchromatic", "c/multispectral", "c/sar", "c/thermal", "c/hyperspectral",
                                 "c/within-limits"]),
])
def test_unknown_class_strictest(tmp_path: Path, gsd: float, action: Action, target: float | None,
                                 fired: list[str]) -> None:
    policy = make_policy(tmp_path, CNSA_LIKE, default="block", unknown_class="strictest")
    assert policy.unknown_class == "strictest"
    outcome = evaluate(policy, UNKNOWN, gsd)
    assert (outcome.action, outcome.target_gsd_m, fired_ids(outcome)) == (action, target, fired)
    if action is Action.RESAMPLE:
        assert "the class is unknown and may be" in outcome.reason and "unknown class at" in outcome.reason


@pytest.mark.parametrize("gsd", [0.3, 0.8, 3.0, 100.0])
def test_unknown_class_block(tmp_path: Path, gsd: float) -> None:
    policy = make_policy(tmp_path, CNSA_LIKE, default="allow", unknown_class="block")
    outcome = evaluate(policy, UNKNOWN, gsd)
    assert (outcome.action, outcome.rule, outcome.fired) == (Action.BLOCK, None, ())
    assert "class could not be established" in outcome.reason
    assert evaluate(policy, PAN, gsd).action is not Action.BLOCK


def test_unknown_class_defaults_to_block(tmp_path: Path) -> None:
    text = policy_text(CNSA_LIKE).replace('unknown_class = "strictest"\n', "")
    policy = load_policy(write_policy(tmp_path, text))
    assert policy.unknown_class == "block"
    assert evaluate(policy, UNKNOWN, 3.0).action is Action.BLOCK


def test_a_rule_against_other_classes_blocks_an_unknown_product(tmp_path: Path) -> None:
    rules = rule("t/other", "block", '{ not = { class = ["panchromatic", "multispectral"] } }') + CNSA_LIKE
    policy = make_policy(tmp_path, rules, default="block", unknown_class="strictest")
    outcome = evaluate(policy, UNKNOWN, 3.0)
    assert (outcome.action, outcome.rule) == (Action.BLOCK, "t/other")
    assert evaluate(policy, PAN, 3.0).action is Action.ALLOW
    assert evaluate(policy, MS, 1.0).target_gsd_m == 2.0
    assert evaluate(policy, facts(PAN, 3.0, classes=[SAR]), request=req()).action is Action.BLOCK


# --- reasons and the fired list ------------------------------------------------------------------------


def test_reasons_name_the_rule_and_why(tmp_path: Path) -> None:
    rules = (CNSA_LIKE
             + rule("t/fresh", "refer", '{ age_days = { "<" = 30 } }')
             + rule("t/foreign", "mask", '{ not = { recipient_in = "friends" }, zone_intersects = "a" }',
                    zones=["a"])
             + rule("t/many-bands", "block", '{ bands = { ">" = 100 } }'))
    policy = make_policy(tmp_path, rules, default="block")

    outcome = evaluate(policy, facts(PAN, 0.3, acquired=[days_ago(400)], footprints=[OUTSIDE], bands=[4]),
                       request=req(recipient="DE"))
    assert outcome.reason == ("panchromatic at 0.3 m is finer than the limit 0.5 m (c/panchromatic): "
                              "degrade to 0.5 m")
    assert fired_ids(outcome) == ["c/panchromatic", "c/within-limits"]
    first = outcome.fired[0]
    assert (first.action, first.target_gsd_m, first.zones) == (Action.RESAMPLE, 0.5, ())
    assert first.why == "panchromatic at 0.3 m is finer than the limit 0.5 m (c/panchromatic)"
    assert first.to_dict() == {"id": "c/panchromatic", "action": "resample", "why": first.why,
                               "target_gsd_m": 0.5}

    outcome = evaluate(policy, facts(PAN, 1.0, footprints=[OUTSIDE], bands=[4]), request=req(recipient="DE"))
    assert outcome.action is Action.BLOCK and outcome.rule == "t/fresh"
    assert "acquisition time unknown" in outcome.reason and "30" in outcome.reason and "(t/fresh)" in outcome.reason

    outcome = evaluate(policy, facts(PAN, 1.0, acquired=[days_ago(3)], footprints=[OUTSIDE], bands=[4]),
                       request=req(recipient="DE"))
    assert "3 days old" in outcome.reason and "30" in outcome.reason

    outcome = evaluate(policy, facts(PAN, 1.0, acquired=[days_ago(400)], footprints=[INSIDE_A], bands=[4]),
                       request=req(recipient="BR"))
    assert (outcome.action, outcome.rule, outcome.mask_zones) == (Action.MASK, "t/foreign", ("a",))
    assert "BR" in outcome.reason and "friends" in outcome.reason and "(t/foreign)" in outcome.reason
    assert "footprint intersects zone a" in outcome.reason and outcome.reason.endswith("mask zone a")
    assert outcome.fired[-1].zones == ("a",) and outcome.fired[-1].to_dict()["zones"] == ["a"]

    outcome = evaluate(policy, facts(PAN, 1.0, acquired=[days_ago(400)], bands=[4]), request=req())
    assert "footprint unknown" in outcome.reason and "zone a" in outcome.reason

    outcome = evaluate(policy, facts(HSI, 1.0, bands=[150], acquired=[days_ago(400)]), request=req(recipient="DE"))
    assert outcome.rule == "t/many-bands" and "150 bands" in outcome.reason and "100" in outcome.reason


def test_reasons_explain_unknown_and_disagreeing_facts(tmp_path: Path) -> None:
    rules = (rule("t/gf2", "resample", '{ satellite = "GF-2", gsd_m = { "<" = 1.0 } }', target=1.0)
             + rule("t/phase", "block", '{ sar_phase = true, recipient_in = "friends" }'))
    policy = make_policy(tmp_path, rules, default="allow")
    outcome = evaluate(policy, facts(PAN, 0.5), request=req(recipient="JP"))
    assert "satellite not stated" in outcome.reason and "GF2" in outcome.reason and "(t/gf2)" in outcome.reason
    outcome = evaluate(policy, facts(PAN, 0.5, sat=["GF-2", "ZY-3"]), request=req(recipient="JP"))
    assert "satellite GF2" in outcome.reason
    outcome = evaluate(policy, facts(SAR, 5.0), request=req())
    assert outcome.rule == "t/phase"
    assert "SAR phase" in outcome.reason and "unknown" in outcome.reason
    assert "no recipient given" in outcome.reason and "friends" in outcome.reason
    outcome = evaluate(policy, facts(SAR, 5.0, phase=[True]), request=req(recipient="de:dlr"))
    assert "SAR phase" in outcome.reason and "DE:dlr" in outcome.reason and "friends" in outcome.reason
    outcome = evaluate(policy, facts(PAN, 0.5, classes=[MS]), request=req(recipient="JP"))
    assert outcome.reason.startswith("multispectral or panchromatic at 0.5 m")


def test_rules_render_in_words(tmp_path: Path) -> None:
    rules = (rule("t/r", "resample", '{ class = "sar", gsd_m = { "<" = 1.0 }, satellite = "GF-3" }', target=1.0)
             + rule("t/m", "mask", '{ any = [{ zone_within = "a" }, { not = { purpose = "research" } }] }',
                    zones=["a", "b"])
             + rule("t/x", "refer", '{ approval = false, age_days = { "<" = 7 }, bands = { ">=" = 3 } }'))
    policy = make_policy(tmp_path, rules)
    texts = [r.render() for r in policy.rules]
    for text, fragments in zip(texts, (("t/r: when ", "sar", "1 m", "GF3", ": degrade to 1 m"),
                                       ("t/m: when ", "zone a", "research", " or ", ": mask zone a, b"),
                                       ("t/x: when ", "approval", "7 days", "3", ": refer for a person's approval")),
                               strict=True):
        assert all(f in text for f in fragments), text
    assert [r.line for r in policy.rules] == [
        i for i, line in enumerate(policy_text(rules).splitlines(), 1) if line == "[[rule]]"]


# --- schema errors -------------------------------------------------------------------------------------

VALID = '''schema = "rspolicy-policy/2"

[policy]
name = "s"
version = "1"

[evaluation]
default = "block"
unknown_class = "strictest"

[lists.friends]
recipients = ["DE", "FR:CNES"]

[zones.a]
file = "zones/a.geojson"

[[rule]]
id = "s/pan"
when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }
action = "resample"
target_m = 0.5

[[rule]]
id = "s/mask"
when = { not = { recipient_in = "friends" } }
action = "mask"
zones = ["a"]

[[rule]]
id = "s/ok"
when = { class = ["panchromatic", "multispectral"] }
action = "allow"
'''


def edited(*edits: tuple[str, str]) -> str:
    text = VALID
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def expect_problem(folder: Path, text: str, key: str, *expected: str, name: str = "s") -> str:
    """The first problem is at the line marked ``#HERE`` and names the file, the key and what was expected."""
    path = write_policy(folder, text, name)
    marked = [i for i, line in enumerate(text.splitlines(), 1) if "#HERE" in line]
    assert len(marked) == 1
    problems = check_policy(str(path))
    assert problems, "the policy was accepted"
    first = problems[0]
    assert first.startswith(f"{path}:{marked[0]}: "), first
    assert f": {key}: " in first, first
    for phrase in expected:
        assert phrase in first, first
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == first
    return first


SCHEMA_CASES = [
    pytest.param(edited(('version = "1"\n', 'version = "1"\ncolour = "red" #HERE\n')),
                 "policy.colour", ("unknown key 'colour'", "expected one of: authority, description, name"),
                 id="unknown-policy-key"),
    pytest.param(edited(('schema = "rspolicy-policy/2"\n', 'schema = "rspolicy-policy/2"\ncolour = "red" #HERE\n')),
                 "colour", ("unknown key 'colour'", "expected one of: evaluation, lists, obligations, policy"),
                 id="unknown-top-key"),
    pytest.param(edited(('zones = ["a"]\n', 'zones = ["a"]\ncolour = "red" #HERE\n')),
                 "rule[2].colour", ("unknown key 'colour'", "action, description, id, target_m, when, zones"),
                 id="unknown-rule-key"),
    pytest.param(edited(('when = { class = ["panchromatic", "multispectral"] }',
                         'when = { class = ["panchromatic", "multispectral"], colour = "red" } #HERE')),
                 "rule[3].when.colour", ("unknown key 'colour'", "age_days, all, any, approval, bands, class"),
                 id="unknown-condition"),
    pytest.param(edited(('file = "zones/a.geojson"\n', 'file = "zones/a.geojson"\ncolour = 1 #HERE\n')),
                 "zones.a.colour", ("unknown key 'colour'", "expected one of: description, example, file"),
                 id="unknown-zone-key"),
    pytest.param(edited(('default = "block"\n', 'default = "block"\nstrict = true #HERE\n')),
                 "evaluation.strict", ("unknown key 'strict'", "default, disagreement_relative"),
                 id="unknown-evaluation-key"),
    pytest.param(edited(('version = "1"', 'version = 1 #HERE')),
                 "policy.version", ("expected a string, not a number",), id="wrong-type-version"),
    pytest.param(edited(('gsd_m = { "<" = 0.5 } }', 'gsd_m = { "<" = "0.5" } } #HERE')),
                 "rule[1].when.gsd_m.<", ("expected a number, not a string ('0.5')",), id="wrong-type-limit"),
    pytest.param(edited(('recipients = ["DE", "FR:CNES"]', 'recipients = "DE" #HERE')),
                 "lists.friends.recipients", ("expected a list, not a string ('DE')",), id="wrong-type-list"),
    pytest.param(edited(('when = { class = ["panchromatic", "multispectral"] }',
                         'when = { class = ["panchromatic", "multispectral"], sar_phase = "yes" } #HERE')),
                 "rule[3].when.sar_phase", ("expected true or false",), id="wrong-type-flag"),
    pytest.param(edited(('target_m = 0.5', 'target_m = "0.5" #HERE')),
                 "rule[1].target_m", ("expected a number",), id="wrong-type-target"),
    pytest.param(edited(('[zones.a]\nfile = "zones/a.geojson"\n', '[zones.a] #HERE\n')),
                 "zones.a", ("missing key 'file'",), id="zone-without-file"),
    pytest.param(edited(('action = "allow"', 'action = "permit" #HERE')),
                 "rule[3].action", ("'permit' is not allowed",
                                    "expected one of: allow, resample, mask, refer, block"), id="bad-enum-action"),
    pytest.param(edited(('default = "block"', 'default = "maybe" #HERE')),
                 "evaluation.default", ("'maybe' is not allowed", "expected one of: allow, refer, block"),
                 id="bad-enum-default"),
    pytest.param(edited(('unknown_class = "strictest"', 'unknown_class = "lenient" #HERE')),
                 "evaluation.unknown_class", ("'lenient' is not allowed", "expected one of: block, strictest"),
                 id="bad-enum-unknown-class"),
    pytest.param(edited(('default = "block"\n', 'default = "block"\ntolerance_relative = 0.1 #HERE\n')),
                 "evaluation.tolerance_relative", ("0.1 is out of range (expected at most 0.001)",),
                 id="tolerance-too-large"),
    pytest.param(edited(('name = "s"', 'name = "Bad Name" #HERE')),
                 "policy.name", ("'Bad Name' does not have the expected form",
                                 "lower-case letters, digits, '.', '_' and '-'"), id="bad-policy-name"),
    pytest.param(edited(('id = "s/ok"', 'id = "S/OK" #HERE')),
                 "rule[3].id", ("'S/OK' does not have the expected form", "'/'"), id="bad-rule-id"),
    pytest.param(edited(('[[rule]]\nid = "s/pan"', '[[rule]] #HERE\nid = "s/pan"'), ('target_m = 0.5\n', '')),
                 "rule[1]", ("missing key 'target_m'",), id="resample-without-target"),
    pytest.param(edited(('[[rule]]\nid = "s/mask"', '[[rule]] #HERE\nid = "s/mask"'), ('zones = ["a"]\n', '')),
                 "rule[2]", ("missing key 'zones'",), id="mask-without-zones"),
    pytest.param(edited(('action = "allow"\n', 'action = "block"\ntarget_m = 2.0 #HERE\n')),
                 "rule[3].target_m", ("resample",), id="target-on-block-rule"),
    pytest.param(edited(('action = "allow"\n', 'action = "allow"\nzones = ["a"] #HERE\n')),
                 "rule[3].zones", ("mask",), id="zones-on-allow-rule"),
    pytest.param(edited(('recipient_in = "friends" } }', 'recipient_in = "enemies" } } #HERE')),
                 "rule[2].when.not.recipient_in", ("no list named 'enemies' in [lists]", "defined: friends"),
                 id="undefined-list"),
    pytest.param(edited(('when = { not = { recipient_in = "friends" } }', 'when = { zone_within = "nowhere" } #HERE')),
                 "rule[2].when.zone_within", ("no zone named 'nowhere' in [zones]", "defined: a"),
                 id="undefined-zone-in-condition"),
    pytest.param(edited(('zones = ["a"]', 'zones = ["a", "nowhere"] #HERE')),
                 "rule[2].zones", ("no zone named 'nowhere' in [zones]", "defined: a"), id="undefined-zone-to-mask"),
    pytest.param(edited(('target_m = 0.5', 'target_m = 0.3 #HERE')),
                 "rule[1].target_m", ("0.3 m is itself restricted by gsd_m < 0.5 m", "must be >= the limit"),
                 id="target-restricted-by-its-rule"),
    pytest.param(edited(('"<" = 0.5 } }', '"<=" = 0.5 } }'), ('target_m = 0.5', 'target_m = 0.5 #HERE')),
                 "rule[1].target_m", ("0.5 m is itself restricted by gsd_m <= 0.5 m", "coarser than the limit"),
                 id="target-at-an-inclusive-limit"),
    pytest.param(edited(('gsd_m = { "<" = 0.5 }', 'gsd_m = { ">=" = 0.1, "<" = 0.5 }'),
                        ('target_m = 0.5', 'target_m = 0.4 #HERE')),
                 "rule[1].target_m", ("0.4 m is itself restricted by gsd_m < 0.5 m",), id="target-in-a-range"),
    pytest.param(edited(('when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }',
                         'when = { all = [{ class = "panchromatic" }, { gsd_m = { "<" = 0.5 } }] }'),
                        ('target_m = 0.5', 'target_m = 0.3 #HERE')),
                 "rule[1].target_m", ("0.3 m is itself restricted by gsd_m < 0.5 m",), id="target-under-all"),
    pytest.param(edited(('when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }',
                         'when = { class = "panchromatic" }'), ('target_m = 0.5', 'target_m = 0.5 #HERE')),
                 "rule[1].target_m", ("needs a gsd_m '<' or '<=' limit",), id="target-without-limit"),
    pytest.param(edited(('target_m = 0.5', 'target_m = 1e9 #HERE'), ('"<" = 0.5', '"<" = 4e7')),
                 "rule[1].target_m", ("not a ground resolution",), id="target-out-of-range"),
    pytest.param(edited(('id = "s/ok"', 'id = "s/pan" #HERE')),
                 "rule[3].id", ("rule id 's/pan' is used twice",), id="duplicate-id"),
    pytest.param(edited(('recipients = ["DE", "FR:CNES"]', 'recipients = ["DE", "XX:Somebody"] #HERE')),
                 "lists.friends.recipients[2]", ("'XX' is not an ISO 3166-1 alpha-2 country code", "DE:DLR"),
                 id="bad-country-code"),
    pytest.param(edited(('recipients = ["DE", "FR:CNES"]', 'recipients = ["DEU"] #HERE')),
                 "lists.friends.recipients[1]", ("'DEU' does not have the expected form", "ISO 3166"),
                 id="country-code-form"),
]


@pytest.mark.parametrize(("text", "key", "expected"), SCHEMA_CASES)
def test_schema_errors(tmp_path: Path, text: str, key: str, expected: tuple[str, ...]) -> None:
    expect_problem(tmp_path, text, key, *expected)


def test_the_valid_policy_is_valid(tmp_path: Path) -> None:
    path = write_policy(tmp_path, VALID, "s")
    assert check_policy(str(path)) == []
    policy = load_policy(path)
    assert [r.id for r in policy.rules] == ["s/pan", "s/mask", "s/ok"]
    assert [r.line for r in policy.rules] == [17, 23, 29]


def test_a_bad_class_says_which_classes_there_are(tmp_path: Path) -> None:
    text = edited(('when = { class = ["panchromatic", "multispectral"] }', 'when = { class = "radar" } #HERE'))
    expect_problem(tmp_path, text, "rule[3].when.class", "'radar'", "panchromatic, multispectral")


def test_a_bad_class_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edited(('when = { class = ["panchromatic", "multispectral"] }', 'when = { class = "radar" } #HERE'))
    expect_problem(tmp_path, text, "rule[3].when.class")


def test_check_policy_returns_every_schema_problem_in_line_order(tmp_path: Path) -> None:
    text = edited(('version = "1"', 'version = 1'), ('default = "block"', 'default = "maybe"'),
                  ('action = "allow"', 'action = "permit"'), ('id = "s/mask"', 'id = "S MASK"'))
    path = write_policy(tmp_path, text, "s")
    problems = check_policy(str(path))
    lines = text.splitlines()
    expected_lines = [lines.index(x) + 1 for x in ('version = 1', 'default = "maybe"', 'id = "S MASK"',
                                                   'action = "permit"')]
    assert [p.split(":")[1] for p in problems] == [str(n) for n in expected_lines]
    assert [p.split(": ")[1] for p in problems] == ["policy.version", "evaluation.default", "rule[2].id",
                                                    "rule[3].action"]
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == problems[0]


def test_check_policy_returns_every_problem_beyond_the_schema(tmp_path: Path) -> None:
    text = edited(('recipient_in = "friends"', 'recipient_in = "enemies"'), ('id = "s/ok"', 'id = "s/pan"'),
                  ('target_m = 0.5', 'target_m = 0.3'))
    problems = check_policy(str(write_policy(tmp_path, text, "s")))
    assert len(problems) == 3, problems


def test_a_problem_in_a_when_subtable_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edited(('when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }\naction = "resample"\n'
                   'target_m = 0.5\n',
                   'action = "resample"\ntarget_m = 0.5\n[rule.when]\nclass = "panchromatic"\n'
                   'gsd_m = { "<" = "x" } #HERE\n'))
    expect_problem(tmp_path, text, "rule[1].when.gsd_m.<", "expected a number")


def test_a_problem_in_a_dotted_key_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edited(('when = { class = ["panchromatic", "multispectral"] }', 'when.class = "radar" #HERE'))
    expect_problem(tmp_path, text, "rule[3].when.class")


def test_a_problem_in_an_item_of_a_multiline_list_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edited(('recipients = ["DE", "FR:CNES"]', 'recipients = [\n    "DE",\n    "FR:CNES",\n    "XX", #HERE\n]'))
    expect_problem(tmp_path, text, "lists.friends.recipients[3]", "'XX' is not an ISO 3166-1 alpha-2 country code")


def test_a_problem_in_a_multiline_any_is_reported_at_its_line(tmp_path: Path) -> None:
    text = edited(('when = { class = ["panchromatic", "multispectral"] }',
                   'when = { any = [\n    { gsd_m = { "<" = 1.0 } },\n    { gsd_m = { "<" = "x" } }, #HERE\n] }'))
    expect_problem(tmp_path, text, "rule[3].when.any[2].gsd_m.<", "expected a number")


def test_a_target_within_the_tolerance_of_an_inclusive_limit_is_refused(tmp_path: Path) -> None:
    text = edited(('"<" = 0.5 } }', '"<=" = 0.5 } }'), ('target_m = 0.5', 'target_m = 0.5000002 #HERE'))
    path = write_policy(tmp_path, text, "s")
    policy = load_policy(path) if not check_policy(str(path)) else None
    if policy is not None:  # what the check should have caught: the output is restricted again
        again = evaluate(policy, facts(PAN, 0.5000002, footprints=[OUTSIDE]), request=req(recipient="DE"))
        assert (again.action, again.rule) == (Action.RESAMPLE, "s/pan")
    expect_problem(tmp_path, text, "rule[1].target_m", "itself restricted by gsd_m <= 0.5 m")


def test_a_when_subtable_is_a_valid_way_to_write_a_condition(tmp_path: Path) -> None:
    text = edited(('when = { class = "panchromatic", gsd_m = { "<" = 0.5 } }\naction = "resample"\n'
                   'target_m = 0.5\n',
                   'action = "resample"\ntarget_m = 0.5\n[rule.when]\nclass = "panchromatic"\n'
                   'gsd_m = { "<" = 0.5 }\n'))
    policy = load_policy(write_policy(tmp_path, text, "s"))
    assert evaluate(policy, PAN, 0.3).target_gsd_m == 0.5


def test_a_policy_that_is_not_toml_or_not_schema_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('schema = "rspolicy-policy/2"\n[policy\n')
    (problem,) = check_policy(str(path))
    assert problem.startswith(f"{path}: not a valid TOML policy")
    path.write_text(VALID.replace('schema = "rspolicy-policy/2"', 'schema = "rspolicy-policy/3"'))
    (problem,) = check_policy(str(path))
    assert problem.startswith(f"{path}:1: schema: must be 'rspolicy-policy/2'")
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "missing.toml")


# --- zone files ----------------------------------------------------------------------------------------

ZONE_POLICY = VALID.replace('file = "zones/a.geojson"', 'file = "{file}" #HERE')


def polygon_feature(ring: Sequence[Sequence[float]]) -> dict[str, Any]:
    return {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


BOWTIE = [[10, 50], [11, 51], [11, 50], [10, 51], [10, 50]]


@pytest.mark.parametrize(("file", "content", "expected"), [
    pytest.param("zones/none.geojson", None, "cannot read the zone file", id="missing"),
    pytest.param("../outside.geojson", json.dumps(box_geojson(*ZONE_A)),
                 "a zone file must lie in the policy's folder or below it", id="outside-the-folder"),
    pytest.param("zones/../../outside.geojson", json.dumps(box_geojson(*ZONE_A)),
                 "a zone file must lie in the policy's folder or below it", id="dot-dot-inside-the-path"),
    pytest.param("zones/point.geojson", json.dumps({"type": "Point", "coordinates": [10, 50]}),
                 "expected Polygon or MultiPolygon", id="a-point"),
    pytest.param("zones/line.geojson", json.dumps({"type": "FeatureCollection", "features": [
        polygon_feature([[10, 50], [11, 50], [11, 51], [10, 50]]),
        {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}]}),
                 "expected Polygon or MultiPolygon", id="a-line-among-polygons"),
    pytest.param("zones/empty.geojson", json.dumps({"type": "FeatureCollection", "features": []}),
                 "expected Polygon or MultiPolygon", id="no-features"),
    pytest.param("zones/utm.geojson", json.dumps(box_geojson(500000, 5500000, 510000, 5510000)),
                 "coordinates must be longitude and latitude", id="projected-metres"),
    pytest.param("zones/lat-lon.geojson", json.dumps(box_geojson(50, 100, 51, 101)),
                 "coordinates must be longitude and latitude", id="latitude-beyond-90"),
    pytest.param("zones/bowtie.geojson", json.dumps({"type": "FeatureCollection", "features": [
        polygon_feature(BOWTIE)]}), "not a valid polygon", id="self-intersecting"),
    pytest.param("zones/text.geojson", "this is not json", "not a GeoJSON polygon file", id="not-json"),
    pytest.param("zones/list.geojson", "[1, 2, 3]", "not a GeoJSON polygon file", id="json-not-geojson"),
    pytest.param("zones/null.geojson", json.dumps({"type": "Feature", "properties": {}, "geometry": None}),
                 "not a GeoJSON polygon file", id="null-geometry"),
])
def test_zone_file_errors(tmp_path: Path, file: str, content: str | None, expected: str) -> None:
    folder = tmp_path / "policy"
    folder.mkdir()
    if content is not None:
        target = (folder / file).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    expect_problem(folder, ZONE_POLICY.replace("{file}", file), "zones.a.file", expected)


def test_an_absolute_zone_path_is_refused_even_inside_the_folder(tmp_path: Path) -> None:
    write_zones(tmp_path)
    absolute = (tmp_path / "zones" / "a.geojson").resolve().as_posix()
    expect_problem(tmp_path, ZONE_POLICY.replace("{file}", absolute), "zones.a.file", "must lie in the policy's folder")


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    (folder / "zones").mkdir(parents=True)
    (tmp_path / "secret.geojson").write_text(json.dumps(box_geojson(*ZONE_A)))
    (folder / "zones" / "link.geojson").symlink_to(tmp_path / "secret.geojson")
    expect_problem(folder, ZONE_POLICY.replace("{file}", "zones/link.geojson"), "zones.a.file",
                   "must lie in the policy's folder")


def test_an_invalid_polygon_among_several_is_a_policy_error(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    (folder / "zones").mkdir(parents=True)
    (folder / "zones" / "two.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        polygon_feature(BOWTIE), polygon_feature([[10.2, 50.2], [12, 50.2], [12, 52], [10.2, 52], [10.2, 50.2]])]}))
    expect_problem(folder, ZONE_POLICY.replace("{file}", "zones/two.geojson"), "zones.a.file", "not a valid polygon")


def test_zones_of_several_features_and_multipolygons_are_united(tmp_path: Path) -> None:
    folder = tmp_path / "policy"
    (folder / "zones").mkdir(parents=True)
    west = [[10, 50], [11, 50], [11, 51], [10, 51], [10, 50]]
    east = [[20, 50], [21, 50], [21, 51], [20, 51], [20, 50]]
    (folder / "zones" / "two.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        polygon_feature(west), {"type": "Feature", "properties": {},
                                "geometry": {"type": "MultiPolygon", "coordinates": [[east]]}}]}))
    text = ZONE_POLICY.replace("{file}", "zones/two.geojson").replace(" #HERE", "")
    policy = load_policy(write_policy(folder, text, "s"))
    for footprint, zones in ((INSIDE_A, ("a",)), (INSIDE_B, ("a",))):
        outcome = evaluate(policy, facts(PAN, 1.0, footprints=[footprint]), request=req(recipient="BR"))
        assert (outcome.action, outcome.mask_zones) == (Action.MASK, zones)
    assert shapely.equals(policy.zones["a"].geometry, shapely.union(shapely.box(*ZONE_A), shapely.box(*ZONE_B)))


# --- identity, schema 1, pickling ----------------------------------------------------------------------


def test_identity_without_zones_is_the_files_sha256(tmp_path: Path) -> None:
    path = write_policy(tmp_path, policy_text(CNSA_LIKE, extra=""), "plain")
    policy = load_policy(path)
    assert policy.ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (policy.ref.name, policy.ref.version, policy.ref.path) == ("t", "1", str(path))
    assert policy.files == (path,)


def test_identity_with_zones_covers_the_zone_files(tmp_path: Path) -> None:
    path = write_policy(tmp_path, VALID, "s")
    first = load_policy(path)
    assert first.ref.sha256 != hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.files == (path, (tmp_path / "zones" / "a.geojson").resolve())
    assert load_policy(path).ref.sha256 == first.ref.sha256  # stable
    zone = tmp_path / "zones" / "a.geojson"
    zone.write_text(json.dumps(box_geojson(10.0, 50.0, 11.0, 51.5)))
    moved = load_policy(path).ref.sha256
    assert moved != first.ref.sha256
    zone.write_text(json.dumps(box_geojson(*ZONE_A)))
    assert load_policy(path).ref.sha256 == first.ref.sha256
    # The same zone under another name is another policy.
    (tmp_path / "zones" / "c.geojson").write_text(zone.read_text())
    path.write_text(VALID.replace("zones/a.geojson", "zones/c.geojson"))
    renamed = load_policy(path).ref.sha256
    assert renamed not in (first.ref.sha256, moved)
    # Whitespace in the policy file changes it too.
    path.write_text(VALID.replace("zones/a.geojson", "zones/c.geojson") + "\n")
    assert load_policy(path).ref.sha256 != renamed


V1_TEXT = '''schema = "rspolicy-policy/1"

[policy]
name = "old"
version = "2022.1"
title = "an old policy"
authority = "someone"

[evaluation]
tolerance_relative = 1e-6
disagreement_relative = 0.10
unlisted_class = "{unlisted}"

[resampling]
method = "area-average"
sar_complex = "coherent"
sar_detected = "intensity"

[[rule]]
id = "old/panchromatic"
class = "panchromatic"
comparator = "<"
limit_m = 0.5
action = "resample"

[[rule]]
id = "old/multispectral"
class = "multispectral"
comparator = "<"
limit_m = 2.0
action = "resample"
target_m = 2.5

[[rule]]
id = "old/sar"
class = "sar"
comparator = "<="
limit_m = 1.0
action = "resample"
target_m = 1.5

[[rule]]
id = "old/sar-very-fine"
class = "sar"
comparator = "<"
limit_m = 0.25
action = "block"

[[rule]]
id = "old/thermal"
class = "thermal"
comparator = "<"
limit_m = 10.0
action = "resample"
target_m = 10.0

[[rule]]
id = "old/thermal-coarse"
class = "thermal"
comparator = "<"
limit_m = 30.0
action = "resample"
target_m = 30.0
'''


def v1_reference(policy: policy_v1.Policy, cls: ProductClass, gsd: float | None) -> tuple[Action, float | None,
                                                                                         str | None]:
    """How schema-1 policies decided before the rule engine (the evaluate() of rspolicy 1)."""
    if cls is UNKNOWN or gsd is None:
        return Action.BLOCK, None, None
    rules = [r for r in policy.rules if r.product_class is cls]
    if not rules:
        return policy.unlisted_class, None, None

    def restricts(r: policy_v1.Rule) -> bool:
        value = r.limit_m if math.isclose(gsd, r.limit_m, rel_tol=policy.tolerance, abs_tol=0.0) else gsd
        return value < r.limit_m if r.comparator == "<" else value <= r.limit_m

    restricting = [r for r in rules if restricts(r)]
    if not restricting:
        return Action.ALLOW, None, rules[0].id
    if any(r.action is Action.BLOCK for r in restricting):
        return Action.BLOCK, None, next(r.id for r in restricting if r.action is Action.BLOCK)
    deciding = max(restricting, key=lambda r: r.target_m or r.limit_m)
    return Action.RESAMPLE, deciding.target_m, deciding.id


@pytest.mark.parametrize("unlisted", ["block", "allow"])
def test_schema_1_files_load(tmp_path: Path, unlisted: str) -> None:
    path = tmp_path / "old.toml"
    path.write_text(V1_TEXT.replace("{unlisted}", unlisted))
    assert check_policy(str(path)) == []
    policy = load_policy(path)
    assert policy.schema == policy_v1.SCHEMA
    assert policy.ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (policy.ref.name, policy.ref.version, policy.title, policy.authority) == (
        "old", "2022.1", "an old policy", "someone")
    assert (policy.resampling.sar_complex, policy.resampling.sar_detected) == ("coherent", "intensity")
    assert policy.default is Action(unlisted) and policy.unknown_class == "block"
    # Classes without a rule get the unlisted_class action.
    assert evaluate(policy, HSI, 0.1).action is Action(unlisted)
    assert evaluate(policy, UNKNOWN, 50.0).action is Action.BLOCK
    outcome = evaluate(policy, PAN, 0.3)
    assert outcome.reason == ("panchromatic at 0.3 m is finer than the limit 0.5 m (old/panchromatic): "
                              "degrade to 0.5 m")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cls=st.sampled_from([*KNOWN, UNKNOWN]),
       gsd=st.one_of(st.sampled_from([0.25, 0.5, 0.5 * (1 - 5e-7), 1.0, 1.0 * (1 + 5e-7), 2.0, 10.0, 30.0]),
                     st.floats(0.01, 100.0)),
       unlisted=st.sampled_from(["block", "allow"]))
def test_schema_1_files_decide_as_before(tmp_path: Path, cls: ProductClass, gsd: float, unlisted: str) -> None:
    path = tmp_path / f"old-{unlisted}.toml"
    text = V1_TEXT.replace("{unlisted}", unlisted)
    if not path.exists():
        path.write_text(text)
    old = policy_v1.validate_v1(tomllib.loads(text), path, "x")
    outcome = evaluate(load_policy(path), cls, gsd)
    action, target, deciding = v1_reference(old, cls, gsd)
    assert (outcome.action, outcome.target_gsd_m) == (action, target)
    if action is not Action.ALLOW:
        assert outcome.rule == deciding


def test_schema_1_bad_files_still_fail(tmp_path: Path) -> None:
    path = tmp_path / "old.toml"
    path.write_text(V1_TEXT.replace("{unlisted}", "block").replace('limit_m = 10.0\naction = "resample"\n'
                                                                   'target_m = 10.0', 'limit_m = 10.0\n'
                                                                   'action = "resample"\ntarget_m = 5.0'))
    (problem,) = check_policy(str(path))
    assert problem.startswith(f"{path}: [rule 5] target_m: 5 m is itself restricted")


PICKLE_FACTS = [
    facts(PAN, 0.3, footprints=[INSIDE_A]),
    facts(PAN, 1.0, footprints=[OUTSIDE]),
    facts(PAN, 1.0),
    facts(UNKNOWN, 0.8, footprints=[OVERLAPS_A]),
    facts(MS, 1.0, footprints=[INSIDE_B], sat=["GF-2"]),
]


def zone_policy(folder: Path) -> Policy:
    rules = (CNSA_LIKE + rule("t/a", "mask", '{ zone_intersects = "a", not = { recipient_in = "friends" } }',
                              zones=["a"])
             + rule("t/b", "block", '{ zone_within = "b", satellite = "GF-2" }'))
    return make_policy(folder, rules, default="block")


def test_a_policy_with_zones_survives_pickle(tmp_path: Path) -> None:
    policy = zone_policy(tmp_path)
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.ref == policy.ref and [r.id for r in copy.rules] == [r.id for r in policy.rules]
    for zone in copy.zones.values():
        assert shapely.is_prepared(zone.geometry)
    # The zones the rules test are the prepared ones too.
    tested = [z for r in copy.rules for z in getattr(r.condition, "zones", ())] + [
        z for r in copy.rules for part in getattr(r.condition, "parts", ()) for z in getattr(part, "zones", ())]
    assert tested and all(shapely.is_prepared(z.geometry) for z in tested)
    for product in PICKLE_FACTS:
        for request_ in (req(), req(recipient="BR"), req(recipient="DE")):
            assert evaluate(copy, product, request=request_) == evaluate(policy, product, request=request_)


def test_a_policy_with_zones_evaluates_the_same_in_a_worker_process(tmp_path: Path) -> None:
    policy = zone_policy(tmp_path)
    requests = [req(), req(recipient="BR")]
    cases = [(product, request_) for product in PICKLE_FACTS for request_ in requests]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        remote = list(pool.map(evaluate, [policy] * len(cases), [c[0] for c in cases], [None] * len(cases),
                               [c[1] for c in cases]))
    assert remote == [evaluate(policy, product, request=request_) for product, request_ in cases]
    assert {o.action for o in remote} >= {Action.ALLOW, Action.MASK, Action.BLOCK}
    assert any(o.target_gsd_m for o in remote)


# --- the policy's own tests ----------------------------------------------------------------------------

TESTS_TEXT = '''schema = "rspolicy-policy-tests/1"

[[case]]
name = "pan at the limit passes"
product = { class = "panchromatic", gsd_m = 0.5 }
request = { recipient = "DE" }
expect = { action = "allow", rules = ["c/within-limits"] }

[[case]]
name = "pan finer is degraded"
product = { class = "panchromatic", gsd_m = 0.3, satellite = "GF-2" }
request = { recipient = "DE" }
[case.expect]
action = "resample"
target_m = 0.5
rules = ["c/panchromatic"]
reason_contains = "finer than the limit 0.5 m"

[[case]]
name = "fresh data to a foreigner over zone a is masked"
product = { class = "multispectral", gsd_m = 4.0, acquired = "2026-12-01T00:00:00Z", bbox = [10.1, 50.1, 10.3, 50.3] }
request = { recipient = "BR", at = "2026-12-03T00:00:00Z" }
expect = { action = "mask", zones = ["a"], rules = ["t/a"] }

[[case]]
name = "a friend gets it whole"
product = { class = "multispectral", gsd_m = 4.0, footprint = [[10.1, 50.1], [10.3, 50.1], [10.3, 50.3]] }
request = { recipient = "DE:DLR" }
expect = { action = "allow" }

[[case]]
name = "WRONG: expects allow where the rules degrade"
product = { class = "panchromatic", gsd_m = 0.3 }
request = { recipient = "DE" }
expect = { action = "allow" }

[[case]]
name = "WRONG: expects another target"
product = { class = "multispectral", gsd_m = 1.0 }
request = { recipient = "DE" }
expect = { action = "resample", target_m = 4.0 }

[[case]]
name = "WRONG: resample without a target, and a rule that does not fire"
product = { class = "sar", gsd_m = 0.5 }
request = { recipient = "DE" }
expect = { action = "resample", rules = ["c/panchromatic"] }

[[case]]
name = "WRONG: other zones and another reason"
product = { class = "multispectral", gsd_m = 4.0, bbox = [10.1, 50.1, 10.3, 50.3] }
request = { recipient = "BR" }
expect = { action = "mask", zones = ["b"], reason_contains = "purple" }

[[case]]
name = "WRONG: a mask case without zones"
product = { class = "multispectral", gsd_m = 4.0 }
request = { recipient = "BR" }
expect = { action = "mask" }
'''


def test_run_policy_tests(tmp_path: Path) -> None:
    rules = CNSA_LIKE + rule("t/a", "mask", '{ zone_intersects = "a", not = { recipient_in = "friends" } }',
                             zones=["a"])
    path = write_policy(tmp_path, policy_text(rules, default="block"), "mine")
    tests = tmp_path / "mine.tests.toml"
    tests.write_text(TESTS_TEXT)
    for spec in (str(path), str(tests)):
        report = run_policy_tests(spec)
        assert report.tests_file == tests and report.policy.name == "t"
        assert not report.passed
        results = {r.name: r for r in report.results}
        assert len(results) == 9
        for name, result in results.items():
            assert result.passed is not name.startswith("WRONG"), (name, result.failures)
        assert results["WRONG: expects allow where the rules degrade"].failures == ("expected allow, got resample",)
        assert results["WRONG: expects another target"].failures == ("expected target 4 m, got 2 m",)
        assert results["WRONG: resample without a target, and a rule that does not fire"].failures == (
            "a resample case must give expect.target_m",
            "expected rule(s) c/panchromatic to fire; fired: c/sar, c/within-limits")
        assert results["WRONG: other zones and another reason"].failures == (
            "expected zones ['b'], got ['a']", "expected the reason to contain 'purple'")
        assert results["WRONG: a mask case without zones"].failures == ("a mask case must give expect.zones",)
        masked = results["fresh data to a foreigner over zone a is masked"]
        assert masked.to_dict()["fired"] == ["c/within-limits", "t/a"] and masked.to_dict()["action"] == "mask"
    passing = TESTS_TEXT.split("\n[[case]]\nname = \"WRONG", maxsplit=1)[0]
    tests.write_text(passing)
    report = run_policy_tests(str(path))
    assert report.passed and len(report.results) == 4


def test_policy_tests_errors(tmp_path: Path) -> None:
    path = write_policy(tmp_path, policy_text(CNSA_LIKE), "mine")
    with pytest.raises(PolicyError, match="no tests"):
        run_policy_tests(str(path))
    tests = tmp_path / "mine.tests.toml"
    tests.write_text(TESTS_TEXT.replace('expect = { action = "allow" }\n', 'expect = { action = "maybe" }\n', 1))
    line = TESTS_TEXT.splitlines().index('expect = { action = "allow" }') + 1
    with pytest.raises(PolicyError) as raised:
        run_policy_tests(str(path))
    assert str(raised.value).startswith(f"{tests}:{line}: case[4].expect.action: 'maybe' is not allowed")
    tests.write_text(TESTS_TEXT.replace('acquired = "2026-12-01T00:00:00Z"', 'acquired = "last week"'))
    with pytest.raises(PolicyError, match=r"case 3 \(fresh data.*'last week' is not an ISO 8601 time"):
        run_policy_tests(str(path))


# --- property: more evidence never loosens ------------------------------------------------------------

#: The class limits of CNSA_LIKE without its catch-all allow: what no rule covers gets the default.
PROPERTY_RULES = (
    CNSA_LIKE.split("[[rule]]\nid = \"c/within-limits\"")[0]
    + rule("p/known", "allow", '{ satellite = ["GF-2", "ZY-3"], class = ["panchromatic", "multispectral", "sar"] }')
    + rule("p/gf2-fine", "resample", '{ satellite = "GF-2", gsd_m = { "<" = 1.0 } }', target=1.0)
    + rule("p/zy3", "allow", '{ satellite = "ZY-3", class = "panchromatic" }')
    + rule("p/fresh", "refer", '{ age_days = { "<" = 30 }, not = { recipient_in = "friends" } }')
    + rule("p/phase", "block", '{ sar_phase = true, not = { purpose = "research" } }')
    + rule("p/bands", "resample", '{ bands = { ">" = 49 }, gsd_m = { "<" = 30.0 } }', target=30.0)
    + rule("p/area", "mask", '{ any = [{ zone_intersects = "a" }, { sensor = "WFV*" }] }', zones=["a"])
    + rule("p/within-b", "mask", '{ zone_within = "b", not = { satellite = "GF-2" } }', zones=["b"])
    + rule("p/level", "block", '{ product_level = "L0", not = { class = ["panchromatic", "multispectral"] } }')
)

SATELLITES = ("GF-2", "ZY-3", "CB-04")
SENSORS = ("PMS", "WFV1")
LEVELS = ("L0", "L1")
BANDS = (4, 150)
AGES = (3.0, 400.0)
FOOTPRINTS = (INSIDE_A, OVERLAPS_A, OUTSIDE, INSIDE_B, NOT_WKT)
RECIPIENTS = ("DE", "BR", "FR:CNES")
PURPOSES = ("research", "military")


def subsets(values: Sequence[Any]) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), max_size=2, unique=True)


@st.composite
def evidence(draw: st.DrawFn) -> tuple[ProductFacts, Request, ProductFacts, Request]:
    """Facts and a request, and one reading of them: every several-valued or unknown fact resolved to one value."""
    cls = draw(st.sampled_from([*KNOWN, UNKNOWN]))
    extra = draw(subsets(KNOWN)) if cls is not UNKNOWN else []
    gsd = draw(st.sampled_from([0.3, 0.5, 0.8, 1.0, 2.0, 3.0, 50.0]))
    sats, sensors, levels = draw(subsets(SATELLITES)), draw(subsets(SENSORS)), draw(subsets(LEVELS))
    bands, phase, ages = draw(subsets(BANDS)), draw(subsets((True, False))), draw(subsets(AGES))
    footprints = draw(subsets(FOOTPRINTS))
    recipient = draw(st.none() | st.sampled_from(RECIPIENTS))
    purpose = draw(st.none() | st.sampled_from(PURPOSES))
    approval = draw(st.none() | st.just("A-1"))
    product = facts(cls, gsd, classes=extra, sat=sats, sensor=sensors, level=levels, bands=bands, phase=phase,
                    acquired=[days_ago(a) for a in ages], footprints=footprints)

    def one(values: Sequence[Any], domain: Sequence[Any]) -> list[Any]:
        usable = [v for v in values if v != NOT_WKT]
        unknown = not usable or len(usable) < len(values)
        return [draw(st.sampled_from(list(domain) if unknown else usable))]

    reading_class = draw(st.sampled_from(sorted({cls, *extra} - {UNKNOWN}) or list(KNOWN)))
    reading = facts(reading_class, gsd, sat=one(sats, (*SATELLITES, "OTHER")), sensor=one(sensors, (*SENSORS, "X")),
                    level=one(levels, (*LEVELS, "L9")), bands=one(bands, (*BANDS, 1)),
                    phase=one(phase, (True, False)), acquired=[days_ago(a) for a in one(ages, (*AGES, 10000.0))],
                    footprints=one(footprints, FOOTPRINTS[:-1]))
    request_ = req(recipient, purpose, approval)
    reading_request = req(recipient or draw(st.sampled_from(RECIPIENTS)), purpose or draw(st.sampled_from(PURPOSES)),
                          approval)
    return product, request_, reading, reading_request


def at_least_as_strict(outcome: Outcome, than: Outcome) -> bool:
    """Whether ``outcome`` lets no more through than ``than``."""
    if outcome.action is Action.BLOCK:
        return True
    if than.action is Action.BLOCK:
        return False
    if than.action is Action.ALLOW:
        return True
    if outcome.action is Action.ALLOW:
        return False
    coarse_enough = than.target_gsd_m is None or (outcome.target_gsd_m or 0.0) >= than.target_gsd_m
    return coarse_enough and set(than.mask_zones) <= set(outcome.mask_zones)


@pytest.fixture(scope="module")
def property_policies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Policy]:
    folder = tmp_path_factory.mktemp("property")
    return {default: make_policy(folder, PROPERTY_RULES, default=default)
            for default in ("allow", "block", "refer")}


#: Satellite not stated; the reading names one that no rule covers (what a plain GeoTIFF may turn out to be).
_HARMLESS: dict[str, Any] = {"sensor": ["PMS"], "level": ["L1"], "bands": [4], "phase": [False],
                             "acquired": [days_ago(400)], "footprints": [OUTSIDE]}
UNKNOWN_SATELLITE = (facts(PAN, 0.8, **_HARMLESS), req("DE", "research"),
                     facts(PAN, 0.8, sat=["CB-04"], **_HARMLESS), req("DE", "research"))


@pytest.mark.parametrize("default", [
    "allow",
    "block",
    "refer",
])
@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@example(case=UNKNOWN_SATELLITE)
@given(case=evidence())
def test_uncertain_evidence_is_never_looser_than_one_reading(
        property_policies: dict[str, Policy], default: str,
        case: tuple[ProductFacts, Request, ProductFacts, Request]) -> None:
    policy = property_policies[default]
    product, request_, reading, reading_request = case
    whole = evaluate(policy, product, request=request_)
    one = evaluate(policy, reading, request=reading_request)
    assert at_least_as_strict(whole, one), (whole, one)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sats=st.lists(st.sampled_from(SATELLITES), min_size=2, max_size=3, unique=True),
       gsd=st.sampled_from([0.3, 0.8, 1.5, 3.0]), cls=st.sampled_from(KNOWN))
def test_two_satellites_are_never_looser_than_each_alone(property_policies: dict[str, Policy], sats: list[str],
                                                         gsd: float, cls: ProductClass) -> None:
    policy = property_policies["allow"]
    request_ = req("BR", "military")
    whole = evaluate(policy, facts(cls, gsd, sat=sats), request=request_)
    for sat in sats:
        assert at_least_as_strict(whole, evaluate(policy, facts(cls, gsd, sat=[sat]), request=request_))


def test_uncertain_evidence_does_not_escape_a_blocking_default(tmp_path: Path) -> None:
    policy = make_policy(tmp_path, rule("d/zy3", "resample", '{ satellite = "ZY-3", gsd_m = { "<" = 2.0 } }',
                                        target=2.0), default="block")
    assert evaluate(policy, facts(PAN, 1.0, sat=["GF-2"]), request=req()).action is Action.BLOCK
    assert evaluate(policy, facts(PAN, 1.0, sat=["ZY-3"]), request=req()).action is Action.RESAMPLE
    assert evaluate(policy, facts(PAN, 1.0, sat=["GF-2", "ZY-3"]), request=req()).action is Action.BLOCK
    assert evaluate(policy, facts(PAN, 1.0), request=req()).action is Action.BLOCK


def test_an_unknown_class_is_not_looser_than_any_class(tmp_path: Path) -> None:
    rules = (rule("u/ms", "resample", '{ class = "multispectral", gsd_m = { "<" = 2.0 } }', target=2.0)
             + rule("u/pan", "allow", '{ class = "panchromatic" }'))
    policy = make_policy(tmp_path, rules, default="block", unknown_class="strictest")
    assert evaluate(policy, SAR, 1.0).action is Action.BLOCK
    assert evaluate(policy, UNKNOWN, 1.0).action is Action.BLOCK
