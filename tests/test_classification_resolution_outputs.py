"""What classification and resolution hand on, exactly: the class, its evidence, the alternatives, the reasons,
the candidates and the disagreement warnings that go into every decision and audit record."""

from __future__ import annotations

from pathlib import Path

import pytest

from rspolicy.classify import ClassOutcome, classify
from rspolicy.model import Classification, Evidence, Fact, ProductClass, ProductEvidence, Resolution, Strength
from rspolicy.resolution import resolve


def _product(*evidence: Evidence) -> ProductEvidence:
    return ProductEvidence("scene.tif", None, (Path("scene.tif"),), evidence)


def _hint(cls: ProductClass, strength: Strength, source: str = "s.xml", field: str = "f",
          detail: str = "d") -> Evidence:
    return Evidence(Fact.CLASS_HINT, cls.value, source, field, detail, strength)


PAN, MS, SAR = ProductClass.PANCHROMATIC, ProductClass.MULTISPECTRAL, ProductClass.SAR


def test_no_hint_is_unknown_with_its_reason() -> None:
    assert classify(_product(Evidence(Fact.GSD, 1.0, "a", "b"))) == ClassOutcome(Classification(
        ProductClass.UNKNOWN, (), ("no evidence of the product class: no sidecar, sensor, file-name token, data type "
                                   "or band layout identifies it",)), ())


def test_conflicting_strongest_hints_are_unknown_and_named() -> None:
    a = _hint(PAN, Strength.STRONG, "a.xml", "Sensor", "PAN camera")
    b = _hint(SAR, Strength.STRONG, "a.tif", "DataType", "complex")
    weak = _hint(MS, Strength.WEAK)
    outcome = classify(_product(a, weak, b))
    assert outcome == ClassOutcome(Classification(ProductClass.UNKNOWN, (a, b), (
        "conflicting class evidence: a.xml Sensor says panchromatic (PAN camera); a.tif DataType says sar "
        "(complex)",)), ())


def test_the_strongest_tier_decides_and_every_other_class_is_an_alternative() -> None:
    strong = _hint(PAN, Strength.STRONG, "a.xml")
    weak_same = _hint(PAN, Strength.WEAK, "name")
    medium_other = _hint(MS, Strength.MEDIUM, "b.xml")
    weak_other = _hint(SAR, Strength.WEAK, "c")
    outcome = classify(_product(weak_same, medium_other, strong, weak_other))
    assert outcome.classification == Classification(PAN, (weak_same, strong))
    assert outcome.alternatives == ((MS, medium_other), (SAR, weak_other))


def test_resolution_candidates_and_the_finest() -> None:
    gsd = Evidence(Fact.GSD, 0.8, "a.tif", "geotransform")
    nominal = Evidence(Fact.NOMINAL_RESOLUTION, 3.0, "a.xml", "NominalResolution")
    ignored = (Evidence(Fact.GSD, 0.0, "z", "zero"), Evidence(Fact.GSD, -1.0, "n", "negative"),
               Evidence(Fact.GSD, True, "b", "bool"), Evidence(Fact.GSD, "0.1", "s", "text"),
               Evidence(Fact.WIDTH, 0.1, "w", "width"))
    result = resolve(_product(*ignored, gsd, nominal))
    assert result == Resolution(0.8, gsd, (gsd, nominal), ())


def test_no_resolution_evidence() -> None:
    assert resolve(_product(Evidence(Fact.GSD, 0.0, "z", "zero"))) == Resolution(None, None, (), ())


@pytest.mark.parametrize(("high", "warned"), [(1.05, False), (1.1, False), (1.1000001, True), (2.5, True)])
def test_the_default_disagreement_threshold_is_ten_percent_inclusive(high: float, warned: bool) -> None:
    result = resolve(_product(Evidence(Fact.GSD, 1.0, "a.tif", "geotransform"),
                              Evidence(Fact.GSD, high, "a.xml", "ImageGSD")))
    assert bool(result.warnings) is warned


def test_disagreement_warnings_say_which_kind_by_how_much_and_which_wins() -> None:
    result = resolve(_product(
        Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"), Evidence(Fact.GSD, 2.0, "a.xml", "ImageGSD"),
        Evidence(Fact.NOMINAL_RESOLUTION, 1.0, "m.xml", "NominalResolution"),
        Evidence(Fact.NOMINAL_RESOLUTION, 1.5, "n.xml", "Resolution")))
    assert result.warnings == (
        "pixel spacing evidence disagrees by 567%: 0.3 m from a.tif geotransform vs 2 m from a.xml ImageGSD; "
        "the finest (0.3 m) is used",
        "nominal resolution evidence disagrees by 50%: 1 m from m.xml NominalResolution vs 1.5 m from n.xml "
        "Resolution; the finest (1 m) is used")


def test_pixel_spacing_and_nominal_resolution_are_not_compared_with_each_other() -> None:
    result = resolve(_product(Evidence(Fact.GSD, 1.0, "a.xml", "widthspace"),
                              Evidence(Fact.NOMINAL_RESOLUTION, 3.0, "a.xml", "NominalResolution")))
    assert result.warnings == ()


@pytest.mark.parametrize(("first", "second"), [("widthspace", "heightspace"), ("Horizontal", "Vertical"),
                                               ("spacing", "spacingwidth")])
def test_two_axes_of_one_measurement_may_differ(first: str, second: str) -> None:
    """A SAR sidecar's range and azimuth spacing are one measurement along two axes, not two sources."""
    result = resolve(_product(Evidence(Fact.GSD, 0.5, "a.meta.xml", first),
                              Evidence(Fact.GSD, 1.2, "a.meta.xml", second)))
    assert (result.gsd_m, result.warnings) == (0.5, ())


# --- what a decision carries -----------------------------------------------------------------------------------------


def _decide(*evidence: Evidence, policy_text: str | None = None, rebuild: str | None = None, tmp: Path | None = None):  # type: ignore[no-untyped-def]
    from rspolicy.policy import load_policy
    from rspolicy.screen import decide

    policy = load_policy()
    if policy_text is not None and tmp is not None:
        (tmp / "p.toml").write_text(policy_text)
        policy = load_policy(tmp / "p.toml")
    product = ProductEvidence("scene.tif", None, (Path("scene.tif"),), evidence, rebuild=rebuild)
    return decide(product, policy)


def test_a_decision_names_satellite_sensor_the_finest_source_and_the_rule() -> None:
    decision = _decide(Evidence(Fact.SATELLITE, "GF2", "a.xml", "SatelliteID"),
                       Evidence(Fact.SENSOR, "PMS1", "a.xml", "SensorID"),
                       Evidence(Fact.GSD, 0.81, "a.xml", "ImageGSD"), Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"),
                       _hint(PAN, Strength.STRONG, "a.xml", "SensorID", "PMS PAN"))
    assert (decision.path, decision.satellite, decision.sensor, decision.gsd_m) == ("scene.tif", "GF2", "PMS1", 0.3)
    assert decision.reasons == ("finest resolution 0.3 m from a.tif geotransform",
                                "panchromatic at 0.3 m is finer than the limit 0.5 m (cnsa-2022/panchromatic): "
                                "degrade to 0.5 m")
    assert decision.product is not None and len(decision.decision_id) == 36


def test_a_blocked_decision_does_not_claim_a_finest_resolution(tmp_path: Path) -> None:
    # No class, under a policy that blocks an unknown class.
    text = (Path(__file__).resolve().parents[1] / "rules" / "cnsa-2022.toml").read_text()
    decision = _decide(Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"), tmp=tmp_path,
                       policy_text=text.replace('unknown_class = "strictest"', 'unknown_class = "block"'))
    assert decision.action.value == "block"
    assert not any(r.startswith("finest resolution") for r in decision.reasons)
    assert _decide(_hint(PAN, Strength.STRONG)).reasons == (
        "no evidence of the ground resolution (fails closed)",)


def test_a_stricter_alternative_class_is_given_as_a_reason() -> None:
    decision = _decide(Evidence(Fact.GSD, 1.0, "a.tif", "geotransform"),
                       _hint(PAN, Strength.STRONG, "a.xml", "SensorID", "PAN camera"),
                       _hint(MS, Strength.WEAK, "a.tif", "RasterCount", "4 bands"))
    assert decision.reasons == (
        "a.tif RasterCount suggests multispectral (4 bands); the stricter rule for multispectral applies",
        "finest resolution 1 m from a.tif geotransform",
        "multispectral at 1 m is finer than the limit 2 m (cnsa-2022/multispectral): degrade to 2 m")


def test_only_an_allowed_product_says_it_is_rebuilt() -> None:
    allowed = _decide(Evidence(Fact.GSD, 0.8, "a.tif", "geotransform"), _hint(PAN, Strength.STRONG),
                      rebuild="bytes after the last strip")
    assert allowed.reasons[-1] == ("the image leaves rebuilt pixel-exact by rspolicy's writer, not byte for byte: "
                                   "bytes after the last strip")
    resampled = _decide(Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"), _hint(PAN, Strength.STRONG),
                        rebuild="bytes after the last strip")
    assert not any("rebuilt" in r for r in resampled.reasons)


def test_the_policy_disagreement_threshold_is_the_one_used(tmp_path: Path) -> None:
    text = (Path(__file__).resolve().parents[1] / "rules" / "cnsa-2022.toml").read_text()
    loose = text.replace("disagreement_relative = 0.10", "disagreement_relative = 0.5")
    evidence = (Evidence(Fact.GSD, 1.0, "a.tif", "geotransform"), Evidence(Fact.GSD, 1.3, "a.xml", "ImageGSD"),
                _hint(PAN, Strength.STRONG))
    assert _decide(*evidence).warnings  # 30% apart: over the default 10%
    assert not _decide(*evidence, policy_text=loose, tmp=tmp_path).warnings


def test_an_internal_error_blocks_and_keeps_the_product(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("rspolicy.screen.classify", broken)
    decision = _decide(Evidence(Fact.GSD, 0.3, "a.tif", "geotransform"))
    assert (decision.path, decision.action.value, decision.product_class) == ("scene.tif", "block",
                                                                              ProductClass.UNKNOWN)
    assert decision.reasons == ("scene.tif: internal error while deciding (RuntimeError: boom); blocked",)
    assert decision.product is not None and decision.product.path == "scene.tif"
    assert isinstance(decision.decision_id, str) and len(decision.decision_id) == 36
