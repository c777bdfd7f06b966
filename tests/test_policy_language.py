"""The condition language in depth: nesting keeps every setting, rendering and explanations are exact."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rspolicy.errors import PolicyError
from rspolicy.model import Action, ProductClass, Recipient, Request
from rspolicy.policy import ProductFacts, check_policy, evaluate, load_policy
from rspolicy.policy.conditions import classes_named, facts_tested
from rspolicy.policy.core import Policy

AT = datetime(2026, 12, 3, tzinfo=UTC)
SQUARE = [[10.0, 50.0], [10.1, 50.0], [10.1, 50.1], [10.0, 50.1], [10.0, 50.0]]
INSIDE = "POLYGON((10.02 50.02, 10.03 50.02, 10.03 50.03, 10.02 50.03, 10.02 50.02))"
OUTSIDE = "POLYGON((20 50, 20.1 50, 20.1 50.1, 20 50.1, 20 50))"

HEAD = """\
schema = "rspolicy-policy/2"
[policy]
name = "lang"
version = "1"
[evaluation]
default = "allow"
[lists.friends]
recipients = ["DE", "FR:CNES"]
[zones.site]
file = "site.geojson"
"""


def _policy(tmp_path: Path, rules: str) -> Policy:
    (tmp_path / "site.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [SQUARE]}))
    path = tmp_path / "lang.toml"
    path.write_text(HEAD + rules)
    return load_policy(path)


def _rule(when: str, action: str = "block", extra: str = "") -> str:
    return f'[[rule]]\nid = "lang/r"\nwhen = {when}\naction = "{action}"\n{extra}'


def _facts(gsd: float = 1.0, **kw: object) -> ProductFacts:
    return ProductFacts.of(ProductClass.PANCHROMATIC, gsd, **kw)


@pytest.mark.parametrize("when", [
    '{ any = [{ gsd_m = { "<" = 0.5 } }] }',
    '{ all = [{ gsd_m = { "<" = 0.5 } }] }',
    '{ not = { not = { gsd_m = { "<" = 0.5 } } } }',
])
def test_the_tolerance_holds_inside_every_combinator(tmp_path: Path, when: str) -> None:
    policy = _policy(tmp_path, _rule(when))
    assert evaluate(policy, _facts(0.4999999999)).action is Action.ALLOW  # snaps onto the limit
    assert evaluate(policy, _facts(0.499)).action is Action.BLOCK


@pytest.mark.parametrize("when", [
    '{ all = [{ zone_intersects = "site" }] }',
    '{ any = [{ zone_intersects = "site" }] }',
    '{ not = { not = { zone_intersects = "site" } } }',
    '{ all = [{ recipient_in = "friends" }] }',
])
def test_zones_and_lists_resolve_inside_every_combinator(tmp_path: Path, when: str) -> None:
    policy = _policy(tmp_path, _rule(when))
    friend = Request(Recipient("DE"), at=AT)
    stranger = Request(Recipient("BR"), at=AT)
    if "zone" in when:
        assert evaluate(policy, _facts(footprints=(INSIDE,)), request=friend).action is Action.BLOCK
        assert evaluate(policy, _facts(footprints=(OUTSIDE,)), request=friend).action is Action.ALLOW
    else:
        assert evaluate(policy, _facts(), request=friend).action is Action.BLOCK
        assert evaluate(policy, _facts(), request=stranger).action is Action.ALLOW


@pytest.mark.parametrize(("when", "name"), [
    ('{ any = [{ recipient_in = "enemies" }] }', "no list named 'enemies' in [lists] (defined: friends)"),
    ('{ all = [{ zone_within = "moon" }] }', "no zone named 'moon' in [zones] (defined: site)"),
    ('{ not = { zone_intersects = "moon" } }', "no zone named 'moon' in [zones] (defined: site)"),
])
def test_an_undefined_name_inside_a_combinator_is_a_line_error(tmp_path: Path, when: str, name: str) -> None:
    (tmp_path / "site.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [SQUARE]}))
    path = tmp_path / "lang.toml"
    path.write_text(HEAD + _rule(when))
    (problem,) = check_policy(path)
    assert problem.startswith(f"{path}:13: rule[1].when.") and problem.endswith(name)


def test_undefined_names_with_nothing_defined_say_none(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text('schema = "rspolicy-policy/2"\n[policy]\nname = "bare"\nversion = "1"\n'
                    + _rule('{ recipient_in = "x", zone_intersects = "y" }'))
    (problem,) = check_policy(path)
    assert problem.endswith("no list named 'x' in [lists] (defined: none)")


@pytest.mark.parametrize(("comparison", "problem"), [
    ('{ bands = { ">" = -1 } }', ": must be a finite positive number"),
    ('{ gsd_m = { "<" = -1 } }', ": must be a finite positive number"),
    ('{ gsd_m = { "<" = 0.0005 } }', "0.0005 m is not a ground resolution in [0.001 m, 4e+07 m]"),
    ('{ age_days = { "<" = inf } }', ": must be a finite positive number"),
    ('{ bands = { ">" = ' + "9" * 400 + " } }",
     ": must be a finite positive number (this integer does not fit a float)"),
])
def test_numbers_in_comparisons_are_checked(tmp_path: Path, comparison: str, problem: str) -> None:
    path = tmp_path / "n.toml"
    path.write_text(HEAD.replace('file = "site.geojson"', 'file = "none.geojson"').split("[zones.site]")[0]
                    + _rule(comparison))
    (message,) = check_policy(path)
    assert message.startswith(f"{path}:11: rule[1].when.") and message.endswith(problem), message


@pytest.mark.parametrize("comparison", ['{ gsd_m = { "<" = 0.001 } }', '{ gsd_m = { "<=" = 4e7 } }',
                                        '{ age_days = { ">" = -2 } }', '{ bands = { ">=" = 0 } }'])
def test_the_bounds_of_a_comparison_are_allowed(tmp_path: Path, comparison: str) -> None:
    path = tmp_path / "n.toml"
    path.write_text(HEAD.split("[zones.site]", maxsplit=1)[0] + _rule(comparison))
    assert check_policy(path) == []


def test_every_leaf_renders_in_words(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule(
        '{ class = ["sar", "panchromatic"], satellite = "GF-3", sensor = ["SAR"], imaging_mode = "SL", '
        'product_level = "L1A", gsd_m = { "<=" = 2.5, ">" = 0.1 }, bands = { ">=" = 1 }, '
        'age_days = { "<" = 5 }, sar_phase = true, approval = false, recipient_in = "friends", '
        'purpose = ["Research", "disaster"], zone_intersects = "site", not = { zone_within = "site" }, '
        'any = [{ sar_phase = false }, { approval = true }] }'))
    assert policy.rules[0].condition.render() == (
        "class is panchromatic or sar and satellite is GF3 and sensor is SAR and imaging_mode is SL and "
        "product_level is L1A and ground resolution at or finer than 2.5 m and coarser than 0.1 m and "
        "number of bands at least 1 and age of the data less than 5 days and SAR phase is present and "
        "no approval reference is given and recipient is on list friends and purpose is disaster or research "
        "and footprint intersects zone site and not (footprint lies within zone site) and "
        "((SAR phase is absent) or (an approval reference is given))")
    assert policy.rules[0].asks() == "block"


def test_explanations_describe_the_facts_as_they_are(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule(
        '{ sar_phase = true, approval = false, purpose = "research", not = { zone_within = "site" }, '
        'any = [{ bands = { ">" = 3 } }] }'))
    condition = policy.rules[0].condition
    request = Request(Recipient("DE"), "research", None, AT)
    facts = _facts(sar_phase=frozenset({True}), band_counts=frozenset({4}), footprints=(OUTSIDE,))
    assert condition.explain(facts, request) == [
        "SAR phase (complex samples) present", "no approval reference was given", "purpose research",
        "footprint does not lie within zone site", "4 bands (more than 3)"]
    unknown = _facts()
    assert condition.explain(unknown, Request(at=AT)) == [
        "whether SAR phase is present is unknown", "no approval reference was given",
        "no purpose given (may be research)", "footprint unknown (may lie within zone site)",
        "bands unknown (may be more than 3)"]
    both = _facts(sar_phase=frozenset({True, False}), footprints=(INSIDE, OUTSIDE))
    assert condition.explain(both, Request(approval="A-1", at=AT))[:2] == [
        "evidence disagrees on whether SAR phase is present", "approval reference A-1 given"]


def test_a_time_rule_anywhere_makes_a_policy_depend_on_the_release_time(tmp_path: Path) -> None:
    assert not _policy(tmp_path, _rule('{ gsd_m = { "<" = 1 } }')).uses_time
    for when in ('{ not = { age_days = { "<" = 5 } } }', '{ any = [{ age_days = { "<" = 5 } }] }'):
        (tmp_path / "lang.toml").unlink()
        assert _policy(tmp_path, _rule(when)).uses_time, when


def test_the_leaves_a_condition_tests_and_the_classes_it_names(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule(
        '{ class = "sar", not = { class = "thermal" }, any = [{ class = "panchromatic" }, { satellite = "GF2" }], '
        'all = [{ recipient_in = "friends" }, { purpose = "x" }, { zone_within = "site" }, { approval = true }] }'))
    condition = policy.rules[0].condition
    assert facts_tested(condition) == {"class", "satellite", "recipient_in", "purpose", "zone_within", "approval"}
    assert classes_named(condition) == {ProductClass.SAR, ProductClass.THERMAL, ProductClass.PANCHROMATIC}


def test_zone_within_needs_the_whole_footprint_inside(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule('{ zone_within = "site" }'))
    straddling = "POLYGON((10.05 50.05, 10.2 50.05, 10.2 50.2, 10.05 50.2, 10.05 50.05))"
    assert evaluate(policy, _facts(footprints=(INSIDE,))).action is Action.BLOCK
    assert evaluate(policy, _facts(footprints=(straddling,))).action is Action.ALLOW


def test_a_policy_needs_at_least_one_rule(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('schema = "rspolicy-policy/2"\nrule = []\n[policy]\nname = "empty"\nversion = "1"\n')
    with pytest.raises(PolicyError, match=r"empty.toml:2: rule: must not be empty"):
        load_policy(path)


def test_a_recipient_without_a_country_may_be_on_any_list(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule('{ recipient_in = "friends" }'))
    assert evaluate(policy, _facts(), request=Request(Recipient(None, "ESA"), at=AT)).action is Action.BLOCK
    assert evaluate(policy, _facts(), request=Request(Recipient("BR", "INPE"), at=AT)).action is Action.ALLOW
    assert evaluate(policy, _facts(), request=Request(Recipient("FR", "C.N.E.S."), at=AT)).action is Action.BLOCK


def test_the_resolution_tolerance_does_not_round_ages_or_band_counts(tmp_path: Path) -> None:
    policy = _policy(tmp_path, _rule('{ age_days = { "<" = 5 } }'))
    # 5 days less 0.2 s before AT: within 1e-6 of 5 days, which the resolution tolerance would snap onto 5.
    acquired = datetime(2026, 11, 28, 0, 0, 0, 200_000, tzinfo=UTC)
    facts = _facts(acquired=(acquired,), acquired_unknown=False)
    assert evaluate(policy, facts, request=Request(at=AT)).action is Action.BLOCK


def test_why_a_rule_fired_reads_as_the_facts_are(tmp_path: Path) -> None:
    rules = "".join(
        f'[[rule]]\nid = "lang/{n}"\nwhen = {w}\naction = "block"\n' for n, w in [
            ("gsd", '{ gsd_m = { "<=" = 2, ">" = 0.1 } }'),
            ("sat", '{ satellite = "GF*" }'),
            ("class", '{ class = ["multispectral", "sar"] }'),
            ("who", '{ recipient_in = "friends" }'),
            ("where", '{ zone_intersects = "site" }'),
            ("age", '{ age_days = { ">=" = 1 } }'),
        ])
    policy = _policy(tmp_path, rules)
    facts = ProductFacts(frozenset({ProductClass.PANCHROMATIC, ProductClass.MULTISPECTRAL}), 1.0,
                         satellites=frozenset({"GF2", "ZY3"}), footprints=(INSIDE, OUTSIDE),
                         acquired=(datetime(2026, 11, 30, tzinfo=UTC),), acquired_unknown=False)
    outcome = evaluate(policy, facts, request=Request(Recipient(None, "ESA"), at=AT))
    assert [f.why for f in outcome.fired] == [
        "multispectral or panchromatic at 1 m is at or finer than the limit 2 m and is coarser than the limit "
        "0.1 m (lang/gsd)",
        "multispectral or panchromatic at 1 m: satellite GF2 or ZY3 (lang/sat)",
        "multispectral or panchromatic at 1 m: evidence suggests multispectral (lang/class)",
        "multispectral or panchromatic at 1 m: recipient ESA has no country code (may be on friends) (lang/who)",
        "multispectral or panchromatic at 1 m: the footprints read disagree on whether they intersect zone site "
        "(lang/where)",
        "multispectral or panchromatic at 1 m: data 3 days old (at least 1 days) (lang/age)",
    ]
    unknown = evaluate(policy, ProductFacts(frozenset(), 1.0), request=Request(Recipient("FR", "CNES"), at=AT))
    assert unknown.action is Action.BLOCK  # unknown_class = "block" (the default)
    known = evaluate(policy, _facts(footprints=(INSIDE,)), request=Request(Recipient("FR", "CNES"), at=AT))
    assert [f.why.split(": ", 1)[-1] for f in known.fired] == [
        "panchromatic at 1 m is at or finer than the limit 2 m and is coarser than the limit 0.1 m (lang/gsd)",
        "satellite not stated (may be GF*) (lang/sat)",
        "recipient FR:CNES is on friends (lang/who)",
        "footprint intersects zone site (lang/where)",
        "acquisition time unknown (may be at least 1 days) (lang/age)",
    ]


def test_what_a_policy_says_is_what_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "site.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [SQUARE]}))
    path = tmp_path / "full.toml"
    path.write_text('''schema = "rspolicy-policy/2"
[policy]
name = "full"
version = "7"
title = "A full policy"
authority = "An authority"
source = "A source"
description = "  Words.  "
[evaluation]
tolerance_relative = 1e-4
disagreement_relative = 0.25
default = "refer"
unknown_class = "strictest"
[resampling]
method = "area-average"
sar_complex = "coherent"
sar_detected = "intensity"
[obligations]
credit = "Credit line"
conditions = ["one", "two"]
[lists.friends]
recipients = ["DE", "FR:CNES"]
description = "friends"
example = true
[zones.site]
file = "site.geojson"
description = "a site"
[[rule]]
id = "full/r"
description = "  the rule  "
when = { gsd_m = { "<" = 1 } }
action = "resample"
target_m = 1.5
''')
    policy = load_policy(path)
    assert (policy.ref.name, policy.ref.version, policy.title, policy.authority, policy.source, policy.description) \
        == ("full", "7", "A full policy", "An authority", "A source", "Words.")
    assert (policy.tolerance, policy.disagreement, policy.default, policy.unknown_class) == (
        1e-4, 0.25, Action.REFER, "strictest")
    assert (policy.resampling.method, policy.resampling.sar_complex, policy.resampling.sar_detected) == (
        "area-average", "coherent", "intensity")
    assert (policy.obligations.credit, policy.obligations.conditions) == ("Credit line", ("one", "two"))
    friends = policy.lists["friends"]
    assert (friends.countries, friends.organisations, friends.description, friends.example) == (
        frozenset({"DE"}), frozenset({("FR", "CNES")}), "friends", True)
    zone = policy.zones["site"]
    assert (zone.name, zone.description, zone.example, Path(zone.file).name) == ("site", "a site", False,
                                                                                 "site.geojson")
    (rule,) = policy.rules
    assert (rule.id, rule.action, rule.target_m, rule.zones, rule.description, rule.line) == (
        "full/r", Action.RESAMPLE, 1.5, (), "the rule", 28)
    assert policy.files == (path, (tmp_path / "site.geojson").resolve())
    assert policy.schema == "rspolicy-policy/2"


def test_what_a_policy_leaves_out_gets_its_default(tmp_path: Path) -> None:
    path = tmp_path / "bare.toml"
    path.write_text('schema = "rspolicy-policy/2"\n[policy]\nname = "bare"\nversion = "1"\n'
                    + _rule('{ gsd_m = { "<" = 1 } }'))
    policy = load_policy(path)
    assert (policy.title, policy.authority, policy.source, policy.description) == ("bare", "unspecified", "", "")
    assert (policy.tolerance, policy.disagreement, policy.default, policy.unknown_class) == (
        1e-6, 0.10, Action.BLOCK, "block")
    assert (policy.resampling.method, policy.resampling.sar_complex, policy.resampling.sar_detected) == (
        "area-average", "intensity", "amplitude")
    assert not policy.obligations and policy.lists == {} and policy.zones == {}
    assert policy.rules[0].description == "" and policy.files == (path,)
