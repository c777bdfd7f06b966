"""Classification and resolution from evidence, and the decision they lead to."""

from __future__ import annotations

from rspolicy.classify import classify
from rspolicy.model import Action, Evidence, Fact, ProductClass, ProductEvidence, Strength
from rspolicy.policy import load_policy
from rspolicy.resolution import resolve
from rspolicy.screen import decide


def _product(*evidence: Evidence, problems: tuple[str, ...] = ()) -> ProductEvidence:
    return ProductEvidence("p.tif", None, (), tuple(evidence), problems)


def hint(cls: ProductClass, strength: Strength = Strength.MEDIUM, src: str = "p.xml") -> Evidence:
    return Evidence(Fact.CLASS_HINT, cls.value, src, "f", "", strength)


def gsd(value: float, src: str = "p.tif", fact: Fact = Fact.GSD) -> Evidence:
    return Evidence(fact, value, src, "geotransform")


def test_finest_wins_and_disagreement_is_warned() -> None:
    product = _product(gsd(2.0, "p.xml"), gsd(0.3))
    r = resolve(product)
    assert r.gsd_m == 0.3 and r.finest is not None and r.finest.source == "p.tif"
    assert len(r.warnings) == 1 and "0.3 m" in r.warnings[0]


def test_small_disagreement_is_not_warned() -> None:
    assert resolve(_product(gsd(0.81), gsd(0.84))).warnings == ()


def test_sar_nominal_and_spacing_both_count_without_warning() -> None:
    r = resolve(_product(gsd(0.5), gsd(1.0, fact=Fact.NOMINAL_RESOLUTION)))
    assert r.gsd_m == 0.5 and r.warnings == ()


def test_strong_evidence_overrides_medium() -> None:
    outcome = classify(_product(hint(ProductClass.SAR, Strength.STRONG), hint(ProductClass.PANCHROMATIC)))
    assert outcome.classification.product_class is ProductClass.SAR
    assert [c for c, _ in outcome.alternatives] == [ProductClass.PANCHROMATIC]


def test_conflict_at_the_top_is_unknown() -> None:
    outcome = classify(_product(hint(ProductClass.MULTISPECTRAL), hint(ProductClass.PANCHROMATIC, src="q")))
    assert outcome.classification.product_class is ProductClass.UNKNOWN
    assert "conflicting" in outcome.classification.reasons[0]


def test_no_hint_is_unknown_and_held_to_the_strictest_class() -> None:
    coarse = decide(_product(gsd(10.0)), load_policy())
    assert coarse.product_class is ProductClass.UNKNOWN and coarse.action is Action.ALLOW
    assert any("no evidence of the product class" in r for r in coarse.reasons)
    fine = decide(_product(gsd(0.8)), load_policy())
    assert (fine.product_class, fine.action, fine.target_gsd_m) == (ProductClass.UNKNOWN, Action.RESAMPLE, 2.0)
    assert "no evidence of the product class" in fine.why


def test_weaker_alternative_class_applies_when_stricter() -> None:
    # A 4-band raster (weak: multispectral) whose name says PAN (medium): at 1 m
    # PAN would pass, multispectral must be degraded: the stricter applies.
    product = _product(hint(ProductClass.MULTISPECTRAL, Strength.WEAK, "p.tif"), hint(ProductClass.PANCHROMATIC),
                       gsd(1.0))
    decision = decide(product, load_policy())
    assert decision.product_class is ProductClass.PANCHROMATIC
    assert decision.action is Action.RESAMPLE and decision.target_gsd_m == 2.0


def test_no_resolution_is_blocked() -> None:
    decision = decide(_product(hint(ProductClass.PANCHROMATIC)), load_policy())
    assert decision.action is Action.BLOCK and decision.gsd_m is None


def test_read_problem_blocks_even_a_coarse_product() -> None:
    decision = decide(_product(hint(ProductClass.MULTISPECTRAL), gsd(30.0), problems=("p.xml: broken",)),
                      load_policy())
    assert decision.action is Action.BLOCK and decision.reasons[0] == "p.xml: broken"


def test_decision_json_keys() -> None:
    d = decide(_product(hint(ProductClass.PANCHROMATIC), gsd(0.3)), load_policy()).to_dict()
    assert {"path", "satellite", "sensor", "product_class", "gsd_m", "action", "target_gsd_m", "reasons",
            "warnings", "evidence", "policy"} <= set(d)
    assert d["action"] == "resample" and d["target_gsd_m"] == 0.5 and d["policy"]["name"] == "cnsa-2022"
    assert all({"source", "field", "value"} <= set(e) for e in d["evidence"])
