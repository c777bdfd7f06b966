"""The decision path's contracts, as properties: what a mutation of its core must break.

Each property is the contract itself, computed independently of the code
under test: the strictest action and the coarsest target among the rules
that restrict a product; monotone evaluation; the strictest outcome over a
product's class and every class its weaker evidence suggests; a degrade
plan never finer than the target on either axis by any evidence; and the
kernel's rounding at the edge of its exactness proof.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from rspolicy.degrade import plan_degrade
from rspolicy.errors import PolicyError
from rspolicy.model import Action, Evidence, Fact, ProductClass, ProductEvidence, Strength
from rspolicy.policy import Policy, evaluate, load_policy
from rspolicy.resample import area_average
from rspolicy.screen import decide

SEVERITY = {Action.ALLOW: 0, Action.RESAMPLE: 1, Action.BLOCK: 2}
CLASSES = (ProductClass.PANCHROMATIC, ProductClass.MULTISPECTRAL, ProductClass.SAR)


@dataclass(frozen=True)
class RuleSpec:
    product_class: ProductClass
    comparator: str
    limit_m: float
    action: Action
    target_m: float | None

    def restricts(self, gsd_m: float) -> bool:
        return gsd_m < self.limit_m if self.comparator == "<" else gsd_m <= self.limit_m


def _toml(rules: list[RuleSpec], tolerance: float = 1e-6) -> str:
    out = ['schema = "rspolicy-policy/1"', "[policy]", 'name = "generated"', 'version = "1"',
           'title = "generated"', 'authority = "tests"', "[evaluation]", f"tolerance_relative = {tolerance!r}",
           "disagreement_relative = 0.1", 'unlisted_class = "block"']
    for i, rule in enumerate(rules):
        out += ["[[rule]]", f'id = "r{i}"', f'class = "{rule.product_class.value}"',
                f'comparator = "{rule.comparator}"', f"limit_m = {rule.limit_m!r}", f'action = "{rule.action.value}"']
        if rule.target_m is not None:
            out.append(f"target_m = {rule.target_m!r}")
    return "\n".join(out) + "\n"


def _policy(tmp: Path, rules: list[RuleSpec], tolerance: float = 1e-6) -> Policy:
    path = tmp / "generated.toml"
    path.write_text(_toml(rules, tolerance))
    return load_policy(path)


# Limits and targets on a grid of centimetres, so that no value falls within the tolerance of another.
_lengths = st.integers(min_value=10, max_value=2000).map(lambda cm: cm / 100)


@st.composite
def rule_specs(draw: st.DrawFn, product_class: ProductClass | None = None) -> RuleSpec:
    cls = product_class or draw(st.sampled_from(CLASSES))
    comparator = draw(st.sampled_from(["<", "<="]))
    limit = draw(_lengths)
    action = draw(st.sampled_from([Action.RESAMPLE, Action.RESAMPLE, Action.BLOCK]))
    target = None
    if action is Action.RESAMPLE:
        extra = draw(st.integers(min_value=0 if comparator == "<" else 1, max_value=1500)) / 100
        target = round(limit + extra, 2)
    return RuleSpec(cls, comparator, limit, action, target)


def expected(rules: list[RuleSpec], product_class: ProductClass, gsd_m: float) -> tuple[Action, float | None]:
    """The contract, from the rule list alone: strictest action; among resamples the coarsest target."""
    mine = [r for r in rules if r.product_class is product_class]
    if not mine:
        return Action.BLOCK, None  # the generated policies say unlisted_class = "block"
    restricting = [r for r in mine if r.restricts(gsd_m)]
    if not restricting:
        return Action.ALLOW, None
    if any(r.action is Action.BLOCK for r in restricting):
        return Action.BLOCK, None
    return Action.RESAMPLE, max(r.target_m for r in restricting if r.target_m is not None)


_policies = st.lists(rule_specs(), min_size=1, max_size=6)
_gsds = st.integers(min_value=1, max_value=3000).map(lambda mm: mm / 100 + 0.005)  # never on a centimetre grid


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=_policies, product_class=st.sampled_from(CLASSES), gsd=_gsds)
def test_the_strictest_action_and_the_coarsest_target_decide(tmp_path: Path, rules: list[RuleSpec],
                                                             product_class: ProductClass, gsd: float) -> None:
    policy = _policy(tmp_path, rules)
    outcome = evaluate(policy, product_class, gsd)
    assert (outcome.action, outcome.target_gsd_m) == expected(rules, product_class, gsd), outcome.reason


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=_policies, product_class=st.sampled_from(CLASSES), finer=_gsds, coarser=_gsds)
def test_a_coarser_product_is_never_treated_more_strictly(tmp_path: Path, rules: list[RuleSpec],
                                                         product_class: ProductClass, finer: float,
                                                         coarser: float) -> None:
    assume(finer < coarser)
    policy = _policy(tmp_path, rules)
    fine, coarse = evaluate(policy, product_class, finer), evaluate(policy, product_class, coarser)
    assert SEVERITY[coarse.action] <= SEVERITY[fine.action]
    if fine.action is coarse.action is Action.RESAMPLE:
        assert coarse.target_gsd_m is not None and fine.target_gsd_m is not None
        assert coarse.target_gsd_m <= fine.target_gsd_m
    # What a resample produces is allowed by the same policy: no loop, no leak.
    if fine.action is Action.RESAMPLE:
        assert fine.target_gsd_m is not None
        assert evaluate(policy, product_class, fine.target_gsd_m).action is Action.ALLOW


def _product(gsd: float, hints: list[tuple[ProductClass, Strength]]) -> ProductEvidence:
    evidence = [Evidence(Fact.GSD, gsd, "scene.xml", "ImageGSD", "")]
    evidence += [Evidence(Fact.CLASS_HINT, cls.value, f"hint{i}", "test", "", strength)
                 for i, (cls, strength) in enumerate(hints)]
    return ProductEvidence("scene.tif", None, (Path("scene.tif"),), tuple(evidence))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(rule_specs(), min_size=2, max_size=6), main=st.sampled_from(CLASSES),
       others=st.lists(st.sampled_from(CLASSES), min_size=1, max_size=2), gsd=_gsds)
def test_the_strictest_outcome_over_every_suggested_class_applies(tmp_path: Path, rules: list[RuleSpec],
                                                                 main: ProductClass, others: list[ProductClass],
                                                                 gsd: float) -> None:
    """One strong class hint decides the class; weaker hints for other classes can only make it stricter."""
    policy = _policy(tmp_path, rules)
    decision = decide(_product(gsd, [(main, Strength.STRONG), *((o, Strength.WEAK) for o in others)]), policy)
    assert decision.product_class is main
    candidates = [expected(rules, c, gsd) for c in {main, *others}]
    worst = max(SEVERITY[a] for a, _ in candidates)
    assert SEVERITY[decision.action] == worst, decision.reasons
    if decision.action is Action.RESAMPLE:
        assert decision.target_gsd_m == max(t for a, t in candidates if a is Action.RESAMPLE and t is not None)


def test_a_weak_hint_for_a_class_with_a_coarser_target_wins() -> None:
    """PAN 0.3 m would go to 0.5 m; a weaker multispectral hint asks 2.0 m, which is stricter."""
    decision = decide(_product(0.3, [(ProductClass.PANCHROMATIC, Strength.STRONG),
                                     (ProductClass.MULTISPECTRAL, Strength.WEAK)]), load_policy())
    assert (decision.action, decision.target_gsd_m) == (Action.RESAMPLE, 2.0)
    decision = decide(_product(0.3, [(ProductClass.MULTISPECTRAL, Strength.STRONG),
                                     (ProductClass.PANCHROMATIC, Strength.WEAK)]), load_policy())
    assert (decision.action, decision.target_gsd_m) == (Action.RESAMPLE, 2.0)


# --- the tolerance ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tolerance", [1.001e-3, 2e-3, 0.1, 0.5, 1.0])
def test_a_tolerance_that_would_call_visibly_finer_products_the_limit_is_refused(tmp_path: Path,
                                                                                 tolerance: float) -> None:
    rules = [RuleSpec(ProductClass.PANCHROMATIC, "<", 0.5, Action.RESAMPLE, 0.5)]
    with pytest.raises(PolicyError, match="tolerance_relative"):
        _policy(tmp_path, rules, tolerance)


def test_the_largest_tolerance_allowed_snaps_only_within_it(tmp_path: Path) -> None:
    policy = _policy(tmp_path, [RuleSpec(ProductClass.PANCHROMATIC, "<", 0.5, Action.RESAMPLE, 0.5)], 1e-3)
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.5 * (1 - 0.9e-3)).action is Action.ALLOW
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.5 * (1 - 1.1e-3)).action is Action.RESAMPLE
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.3).action is Action.RESAMPLE


# --- the degrade plan ---------------------------------------------------------------------------------------------


def _geotiff(path: Path, x_m: float, y_m: float, size: int = 40) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs="EPSG:32650", transform=from_origin(448_000.0, 4_417_000.0, x_m, y_m)) as dst:
        dst.write(np.zeros((1, size, size), dtype="uint8"))
    return path


_spacing = st.integers(min_value=5, max_value=400).map(lambda cm: cm / 100)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=_spacing, y=_spacing, scalars=st.lists(_spacing, max_size=3),
       target=st.sampled_from([0.5, 1.0, 2.0, 2.5, 5.0]), own=st.sampled_from(["geotransform", "RPC", "GCPs"]),
       x_claim=st.none() | _spacing, y_claim=st.none() | _spacing)
def test_the_plan_is_never_finer_than_the_target_by_any_evidence(tmp_path: Path, x: float, y: float,
                                                                 scalars: list[float], target: float,
                                                                 own: str, x_claim: float | None,
                                                                 y_claim: float | None) -> None:
    """Per axis, output spacing = the finest evidence for that axis x the factor >= the target."""
    tif = _geotiff(tmp_path / "scene.tif", x, y)
    # What the reader measured from the image's own grid is measured again per axis, never a cap on both;
    # it comes first, so that nothing after it can be skipped.
    evidence = [Evidence(Fact.GSD, min(x, y), str(tif), own, "")]
    evidence += [Evidence(Fact.GSD, s, "scene.xml", f"Claim{i}", "") for i, s in enumerate(scalars)]
    evidence.append(Evidence(Fact.CLASS_HINT, "panchromatic", "scene.xml", "test", "", Strength.STRONG))
    # Per-axis claims (GF-3 width/heightspace): each caps its own axis only.
    if x_claim is not None:
        evidence.append(Evidence(Fact.GSD, x_claim, "scene.meta.xml", "widthspace", ""))
    if y_claim is not None:
        evidence.append(Evidence(Fact.GSD, y_claim, "scene.meta.xml", "heightspace", ""))
    # Numbers that are not resolutions (a band count of 1, a width) must not cap the plan.
    evidence += [Evidence(Fact.BAND_COUNT, 1, "scene.tif", "RasterCount", ""),
                 Evidence(Fact.WIDTH, 40, "scene.tif", "RasterXSize", "")]
    product = ProductEvidence(str(tif), tif, (tif,), tuple(evidence))
    decision = decide(product, load_policy())
    decision = type(decision)(**{**decision.__dict__, "action": Action.RESAMPLE, "target_gsd_m": target})
    plan = plan_degrade(decision, load_policy())
    finest_x = min([x, *scalars, *([x_claim] if x_claim is not None else [])])
    finest_y = min([y, *scalars, *([y_claim] if y_claim is not None else [])])
    assert float(plan.col_factor) * finest_x >= target * (1 - 1e-12)
    assert float(plan.row_factor) * finest_y >= target * (1 - 1e-12)
    # ... and no coarser than it must be: an axis already at the target is left alone, and rounding the factor
    # up to a short period coarsens by less than 1/64 (the planner's denominator bound).
    for factor, finest in ((plan.col_factor, finest_x), (plan.row_factor, finest_y)):
        if finest >= target:
            assert factor == 1
        else:
            assert float(factor) * finest < target * (1 + 1 / 64)


# --- the kernel's exactness boundary ------------------------------------------------------------------------------


def _exact_round(values: np.ndarray) -> int:
    """The exact mean of integers, rounded half to even, in integer arithmetic (no float at all)."""
    mean = Fraction(int(values.astype(np.int64).sum()), values.size)
    return round(mean)  # Fraction rounds half to even


@pytest.mark.parametrize("width", [21845, 21846, 21847, 21848, 21849])
@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_the_kernel_rounds_the_exact_mean_at_the_edge_of_float32(width: int, delta: int) -> None:
    """3 x ~21847 pixels of 200 and 201, about half each: the mean sits a hair from .5, where float32 sums fail.

    With width 21847 and 32771 pixels of 201 the exact mean is 200.5000076, which must give 201; one pixel
    fewer gives 200.4999924, which must give 200.
    """
    total = 3 * width
    count = total // 2 + 1 + delta
    pixels = np.full(total, 200, dtype=np.uint8)
    pixels[:count] = 201
    image = pixels.reshape(3, width)
    got = area_average(image, (Fraction(3), Fraction(width)))
    assert got.shape == (1, 1)
    assert int(got[0, 0]) == _exact_round(image), (count, total)


def test_the_named_boundary_case() -> None:
    image = np.full(3 * 21847, 200, dtype=np.uint8)
    image[:32771] = 201
    assert math.isclose(float(image.astype(np.float64).mean()), 200.5000076, rel_tol=0, abs_tol=1e-7)
    assert int(area_average(image.reshape(3, 21847), (Fraction(3), Fraction(21847)))[0, 0]) == 201
    image[32770] = 200
    assert int(area_average(image.reshape(3, 21847), (Fraction(3), Fraction(21847)))[0, 0]) == 200


def test_an_alternative_class_with_the_same_outcome_does_not_take_over_the_decision(tmp_path: Path) -> None:
    """Equal targets: the product's own class and rule decide; the other class is a warning, not a reason."""
    rules = [RuleSpec(ProductClass.PANCHROMATIC, "<", 2.0, Action.RESAMPLE, 2.0),
             RuleSpec(ProductClass.MULTISPECTRAL, "<", 2.0, Action.RESAMPLE, 2.0)]
    policy = _policy(tmp_path, rules)
    decision = decide(_product(1.0, [(ProductClass.PANCHROMATIC, Strength.STRONG),
                                     (ProductClass.MULTISPECTRAL, Strength.WEAK)]), policy)
    assert (decision.action, decision.target_gsd_m, decision.rule) == (Action.RESAMPLE, 2.0, "r0")
    assert not any("stricter rule" in r for r in decision.reasons)
    assert any("would not change the decision" in w for w in decision.warnings)


# --- the kernel's exactness proof and its rational factors ---------------------------------------------------------


@pytest.mark.parametrize(("mantissa", "maxabs", "total", "exact"), [
    (24, 255.0, 65535, True), (24, 255.0, 65536, False),            # uint8: 2**16 weights is one too many
    (24, 4095.0, 4095, True), (24, 4095.0, 4096, False),            # 12-bit data in uint16
    (24, 1.0, 2**23 - 1, True), (24, 1.0, 2**23, False),            # below 2 the ulp is that of 1.0
    (24, 0.5, 2**23 - 1, True),
    (53, 65535.0, 2**37 - 1, True), (53, 65535.0, 2**37, False),    # uint16 in float64
    (53, 2.0**31, 2**21 - 1, True), (53, 2.0**31, 2**21, False),    # int32 extremes
])
def test_the_exactness_bound_at_its_edge(mantissa: int, maxabs: float, total: int, exact: bool) -> None:
    from rspolicy.resample import _exact_in

    assert _exact_in(mantissa, maxabs, total) is exact


def _smallest_at_or_above(value: Fraction, limit: int) -> Fraction:
    return min(Fraction(math.ceil(value * q), q) for q in range(1, limit + 1))


def _simplest_in(lo: Fraction, hi: Fraction) -> Fraction:
    q = 1
    while True:
        p = math.ceil(lo * q)
        if Fraction(p, q) <= hi:
            return Fraction(p, q)
        q += 1


_fractions = st.builds(Fraction, st.integers(1, 4000), st.integers(1, 300)).filter(lambda f: f >= 1)


@settings(max_examples=300, deadline=None)
@given(value=_fractions, limit=st.integers(1, 40))
def test_ceil_fraction_is_the_smallest_fraction_at_or_above(value: Fraction, limit: int) -> None:
    from rspolicy.resample import _ceil_fraction

    assert _ceil_fraction(value, limit) == _smallest_at_or_above(value, limit)


@settings(max_examples=300, deadline=None)
@given(a=_fractions, b=_fractions)
def test_simplest_between_is_the_least_denominator_then_the_least_value(a: Fraction, b: Fraction) -> None:
    from rspolicy.resample import _simplest_between

    lo, hi = min(a, b), max(a, b)
    assert _simplest_between(lo, hi) == _simplest_in(lo, hi)


def test_as_fraction_keeps_a_float_that_names_a_fraction_at_the_denominator_bound() -> None:
    from rspolicy.resample import as_fraction

    assert as_fraction(0.5 / 0.3, max_denominator=3) == Fraction(5, 3)
    assert as_fraction(0.5 / 0.3, max_denominator=2) == Fraction(2)
    assert as_fraction(1.0) == Fraction(1)


@pytest.mark.parametrize("bound", [2.5, 0, -3, True, "8"])
def test_as_fraction_refuses_a_bound_that_is_not_a_positive_integer(bound: object) -> None:
    from rspolicy.errors import ResampleError
    from rspolicy.resample import as_fraction

    with pytest.raises(ResampleError) as caught:
        as_fraction(2, max_denominator=bound)  # type: ignore[arg-type]
    assert str(caught.value) == f"max_denominator must be a positive integer, got {bound!r}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(rule_specs(ProductClass.PANCHROMATIC), min_size=2, max_size=6), gsd=_gsds)
def test_among_rules_of_one_class_the_strictest_and_coarsest_decide(tmp_path: Path, rules: list[RuleSpec],
                                                                   gsd: float) -> None:
    policy = _policy(tmp_path, rules)
    outcome = evaluate(policy, ProductClass.PANCHROMATIC, gsd)
    assert (outcome.action, outcome.target_gsd_m) == expected(rules, ProductClass.PANCHROMATIC, gsd)


def test_the_coarsest_target_wins_even_from_the_rule_with_the_lower_limit(tmp_path: Path) -> None:
    rules = [RuleSpec(ProductClass.PANCHROMATIC, "<", 1.0, Action.RESAMPLE, 5.0),
             RuleSpec(ProductClass.PANCHROMATIC, "<", 2.0, Action.RESAMPLE, 2.0)]
    outcome = evaluate(_policy(tmp_path, rules), ProductClass.PANCHROMATIC, 0.5)
    assert (outcome.action, outcome.target_gsd_m, outcome.rule) == (Action.RESAMPLE, 5.0, "r0")


def test_a_decision_without_a_target_cannot_be_planned(tmp_path: Path) -> None:
    from rspolicy.errors import ProductReadError

    tif = _geotiff(tmp_path / "scene.tif", 0.3, 0.3)
    evidence = (Evidence(Fact.CLASS_HINT, "panchromatic", "scene.xml", "test", "", Strength.STRONG),)
    decision = decide(ProductEvidence(str(tif), tif, (tif,), evidence), load_policy())
    with pytest.raises(ProductReadError, match="nothing to degrade"):
        plan_degrade(type(decision)(**{**decision.__dict__, "target_gsd_m": None}), load_policy())
    with pytest.raises(ProductReadError, match="nothing to degrade"):
        plan_degrade(type(decision)(**{**decision.__dict__, "target_gsd_m": 0.5, "product": None}), load_policy())


def test_an_axis_without_any_evidence_cannot_be_planned(tmp_path: Path) -> None:
    """An image with no grid of its own and a spacing claimed along one axis only: the other axis is unknown."""
    from rspolicy.errors import ProductReadError

    tif = tmp_path / "scene.tif"
    with rasterio.open(tif, "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((1, 40, 40), dtype="uint8"))
    evidence = (Evidence(Fact.CLASS_HINT, "sar", "scene.meta.xml", "test", "", Strength.STRONG),
                Evidence(Fact.GSD, 0.5, "scene.meta.xml", "widthspace", ""))
    decision = decide(ProductEvidence(str(tif), tif, (tif,), evidence), load_policy())
    decision = type(decision)(**{**decision.__dict__, "action": Action.RESAMPLE, "target_gsd_m": 1.0})
    with pytest.raises(ProductReadError, match="no per-axis resolution evidence"):
        plan_degrade(decision, load_policy())
