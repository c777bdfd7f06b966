"""Policy tests, like ``opa test``: cases of product facts and a request, with the expected outcome.

A policy ``rules/NAME.toml`` keeps its tests beside it in ``rules/NAME.tests.toml``
(schema ``rspolicy-policy-tests/1``, published as ``tests.schema.json``)::

    schema = "rspolicy-policy-tests/1"

    [[case]]
    name = "PAN at the limit leaves as it is"
    product = { class = "panchromatic", gsd_m = 0.5 }
    expect = { action = "allow" }

    [[case]]
    name = "referred without approval"
    product = { class = "sar", gsd_m = 1.0, sar_phase = true, acquired = "2026-12-01T00:00:00Z" }
    request = { recipient = "BR", at = "2026-12-03T00:00:00Z" }
    expect = { action = "block", rules = ["de-satdsiv/fresh-fine-data"] }

A product names its ``class`` (``unknown`` allowed) and ``gsd_m``, and may
give ``satellite``, ``sensor``, ``imaging_mode``, ``product_level``,
``bands``, ``sar_phase``, ``acquired`` and a ``footprint`` (a ring of
``[lon, lat]`` points) or ``bbox``; what it leaves out is unknown, as for a
real product. ``expect`` gives the ``action`` (``refer``: blocked because a rule referred it
and no approval was given), the ``target_m`` of a
resample or mask, the ``zones`` masked, ``rules`` that must have fired, and
``reason_contains``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rspolicy.errors import PolicyError
from rspolicy.model import Action, PolicyRef, ProductClass
from rspolicy.policy.core import (
    TESTS_SUFFIX,
    Outcome,
    Policy,
    find_policy_file,
    load_policy,
    policy_names,
    read_toml,
    request_from,
    schema_problems,
)
from rspolicy.policy.facts import ProductFacts, normalise_name, parse_time


@dataclass(frozen=True)
class CaseResult:
    """One test case: whether it passed, and what was expected and found."""

    name: str
    passed: bool
    failures: tuple[str, ...]
    outcome: Outcome

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"name": self.name, "passed": self.passed, "failures": list(self.failures),
                "action": self.outcome.action.value, "target_m": self.outcome.target_gsd_m,
                "rule": self.outcome.rule, "reason": self.outcome.reason,
                "fired": [f.id for f in self.outcome.fired]}


@dataclass(frozen=True)
class PolicyTestReport:
    """The results of one policy's tests."""

    policy: PolicyRef
    tests_file: Path
    results: tuple[CaseResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every case passed (and there was at least one)."""
        return bool(self.results) and all(r.passed for r in self.results)


def tests_file_for(policy_file: Path) -> Path:
    """Where a policy file's tests live: ``NAME.tests.toml`` beside it."""
    return policy_file.with_name(policy_file.name.removesuffix(".toml") + TESTS_SUFFIX)


def shipped_policies() -> list[str]:
    """The names of every policy found in the rules folders."""
    return [name for name, _ in policy_names()]


def run_policy_tests(spec: str | os.PathLike[str]) -> PolicyTestReport:
    """Run the tests of a policy (by name or path) or of a tests file.

    Raises
    ------
    PolicyError
        When the policy does not load, it has no tests file, or the tests
        file does not validate (one line with the file, the line and the key).
    """
    text = os.fspath(spec)
    if text.endswith(TESTS_SUFFIX):
        tests_path = Path(text)
        policy_file = tests_path.with_name(tests_path.name.removesuffix(TESTS_SUFFIX) + ".toml")
    else:
        policy_file = find_policy_file(text)
        tests_path = tests_file_for(policy_file)
    if not tests_path.is_file():
        raise PolicyError(f"{policy_file}: no tests (expected {tests_path}); every policy needs tests")
    _, source, doc = read_toml(tests_path, "policy tests")
    problems = schema_problems(doc, source, tests_path, "tests.schema.json")
    if problems:
        raise PolicyError(problems[0])
    policy = load_policy(doc.get("policy", policy_file))
    results = []
    for index, case in enumerate(doc["case"]):
        try:
            results.append(run_case(policy, case))
        except PolicyError as exc:
            raise PolicyError(f"{tests_path}: case {index + 1} ({case['name']}): {exc}") from None
    return PolicyTestReport(policy.ref, tests_path, tuple(results))


def check_tests(path: str | os.PathLike[str]) -> list[str]:
    """Every schema problem of a policy tests file, one line each (``rules check NAME.tests.toml``)."""
    tests_path = Path(path)
    try:
        _, source, doc = read_toml(tests_path, "policy tests")
    except PolicyError as exc:
        return [str(exc)]
    return schema_problems(doc, source, tests_path, "tests.schema.json")


def case_facts(product: Mapping[str, Any]) -> ProductFacts:
    """The facts a test case's ``product`` table describes (what it leaves out is unknown)."""
    product_class = ProductClass(product.get("class", "unknown"))
    classes = frozenset(ProductClass(c) for c in product.get("classes", ()))
    if product_class is not ProductClass.UNKNOWN:
        classes |= {product_class}

    def names(key: str) -> frozenset[str]:
        value = product.get(key, ())
        return frozenset(normalise_name(v) for v in ([value] if isinstance(value, str) else value))

    acquired: tuple[datetime, ...] = ()
    if "acquired" in product:
        moment = parse_time(product["acquired"])
        if moment is None:
            raise PolicyError(f"product.acquired: {product['acquired']!r} is not an ISO 8601 time")
        acquired = (moment,)
        if len(product["acquired"].strip()) == 10:  # a date: the whole day, as for a product's evidence
            acquired = (moment, moment + timedelta(days=1, microseconds=-1))
    footprint: tuple[str, ...] = ()
    if "footprint" in product:
        ring = [*product["footprint"], product["footprint"][0]]
        footprint = ("POLYGON((" + ", ".join(f"{x!r} {y!r}" for x, y in ring) + "))",)
    elif "bbox" in product:
        w, s, e, n = product["bbox"]
        footprint = (f"POLYGON(({w!r} {s!r}, {e!r} {s!r}, {e!r} {n!r}, {w!r} {n!r}, {w!r} {s!r}))",)
    return ProductFacts(
        classes=classes, gsd_m=float(product["gsd_m"]), satellites=names("satellite"), sensors=names("sensor"),
        imaging_modes=names("imaging_mode"), product_levels=names("product_level"),
        band_counts=frozenset({product["bands"]}) if "bands" in product else frozenset(),
        sar_phase=frozenset({product["sar_phase"]}) if "sar_phase" in product else frozenset(),
        acquired=acquired, acquired_unknown=not acquired, footprints=footprint)


def _shown_action(outcome: Outcome) -> Action:
    """REFER for a product blocked because it was referred and not approved, else the outcome's action."""
    referred = outcome.action is Action.BLOCK and outcome.fired and not any(
        f.action is Action.BLOCK for f in outcome.fired) and any(f.action is Action.REFER for f in outcome.fired)
    return Action.REFER if referred else outcome.action


def run_case(policy: Policy, case: Mapping[str, Any]) -> CaseResult:
    """Evaluate one case and compare with what it expects."""
    from rspolicy.policy.core import evaluate  # noqa: PLC0415 - core imports nothing from here

    request_spec = case.get("request", {})
    request = request_from(request_spec.get("recipient"), request_spec.get("purpose"),
                           request_spec.get("approval"), request_spec.get("at"))
    outcome = evaluate(policy, case_facts(case["product"]), request=request)
    expect = case["expect"]
    failures: list[str] = []
    wanted = Action(expect["action"])
    got = _shown_action(outcome)
    # A referral without approval is blocked: "block" names what happens, "refer" also why.
    if got is not wanted and not (got is Action.REFER and wanted is Action.BLOCK):
        failures.append(f"expected {wanted.value}, got {got.value}")
    if "target_m" in expect and outcome.target_gsd_m != float(expect["target_m"]):
        failures.append(f"expected target {expect['target_m']:g} m, got "
                        f"{'none' if outcome.target_gsd_m is None else f'{outcome.target_gsd_m:g} m'}")
    elif "target_m" not in expect and wanted is Action.RESAMPLE:
        failures.append("a resample case must give expect.target_m")
    if "zones" in expect and list(outcome.mask_zones) != list(expect["zones"]):
        failures.append(f"expected zones {expect['zones']}, got {list(outcome.mask_zones)}")
    elif "zones" not in expect and wanted is Action.MASK:
        failures.append("a mask case must give expect.zones")
    fired = [f.id for f in outcome.fired]
    missing = [r for r in expect.get("rules", ()) if r not in fired]
    if missing:
        failures.append(f"expected rule(s) {', '.join(missing)} to fire; fired: {', '.join(fired) or 'none'}")
    if "reason_contains" in expect and expect["reason_contains"] not in outcome.reason:
        failures.append(f"expected the reason to contain {expect['reason_contains']!r}")
    return CaseResult(case["name"], not failures, tuple(failures), outcome)
