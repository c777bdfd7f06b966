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
