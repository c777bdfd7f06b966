"""The screening pipeline: evidence -> class and resolution -> rules -> decision.

``screen`` is the library call behind ``rspolicy screen``; ``decide`` is the
pure step from one product's evidence to its decision. Any failure while
deciding blocks the product with the reason: a gatekeeper that crashes stalls
a delivery, and one that skips leaks it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator

from rspolicy.audit import new_decision_id
from rspolicy.classify import classify
from rspolicy.model import Action, Decision, Fact, MaskZone, ProductClass, ProductEvidence, Request
from rspolicy.policy import Policy, evaluate, load_policy, product_facts, stricter_outcome
from rspolicy.readers.discover import Skipped, iter_products
from rspolicy.resolution import resolve, unusable_resolutions


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def decide(product: ProductEvidence, policy: Policy, request: Request | None = None) -> Decision:
    """Decide what happens to one product under a policy.

    Parameters
    ----------
    product
        The read-stage evidence.
    policy
        The loaded policy.
    request
        Recipient, purpose, approval and release time (default: none
        stated, released now; rules about them then fail closed).

    Returns
    -------
    Decision
        Blocked whenever the product had read problems, an unknown class or
        no resolution evidence; otherwise the strictest outcome among the
        class and every alternative class that some evidence suggested.
    """
    request = request if request is not None else Request()
    try:
        return _decide(product, policy, request)
    except Exception as exc:  # noqa: BLE001 - fail closed: any bug here blocks the product
        return Decision(
            path=product.path, satellite=None, sensor=None, product_class=ProductClass.UNKNOWN, gsd_m=None,
            action=Action.BLOCK, target_gsd_m=None, rule=None,
            reasons=(f"{product.path}: internal error while deciding ({type(exc).__name__}: {exc}); blocked",),
            warnings=(), evidence=product.evidence, policy=policy.ref, decision_id=new_decision_id(),
            product=product, deciding_reason=f"internal error while deciding ({type(exc).__name__}: {exc})",
            request=request)


def _decide(product: ProductEvidence, policy: Policy, request: Request) -> Decision:
    outcome_class = classify(product)
    classification = outcome_class.classification
    resolution = resolve(product, policy.disagreement)
    warnings = list(resolution.warnings) + _consistency_warnings(product)
    reasons: list[str] = []
    product_class = classification.product_class
    if product_class is ProductClass.UNKNOWN:
        reasons.extend(classification.reasons)
    alone = product_facts(product, product_class, (), resolution.gsd_m)
    outcome = evaluate(policy, alone, request=request)
    deciding = outcome.reason
    if product_class is ProductClass.UNKNOWN and classification.reasons:
        deciding = f"{outcome.reason}: {classification.reasons[0]}"
    for alternative, hint in outcome_class.alternatives:
        # The product is one class or the other: each reading is held to its own rules, the strictest wins.
        other = evaluate(policy, dataclasses.replace(alone, classes=frozenset({alternative})), request=request)
        stricter = stricter_outcome(outcome, other)
        if stricter is not outcome:
            reasons.append(f"{hint.source} {hint.field} suggests {alternative.value} ({hint.detail}); "
                           f"the stricter rule for {alternative.value} applies")
            outcome = stricter
            deciding = f"{reasons[-1]}: {stricter.reason}"
        else:
            warnings.append(f"{hint.source} {hint.field} suggests {alternative.value} ({hint.detail}), "
                            f"not {product_class.value}; it would not change the decision")
    if resolution.finest is not None and outcome.action is not Action.BLOCK:
        reasons.append(f"finest resolution {resolution.gsd_m:.6g} m from {resolution.finest.source} "
                       f"{resolution.finest.field}")
    reasons.append(outcome.reason)
    action, target = outcome.action, outcome.target_gsd_m
    masks = tuple(MaskZone(name, policy.zones[name].wkt) for name in outcome.mask_zones)
    # Readers refuse such values; one that got through anyway is unusable evidence, which blocks.
    unusable = [f"{e.source} {e.field}: {e.value!r} is not a usable ground resolution"
                for e in unusable_resolutions(product)]
    if product.problems or unusable:
        reasons = [*product.problems, *unusable, *reasons]
        action, target, masks = Action.BLOCK, None, ()
        deciding = reasons[0]
    if action is Action.ALLOW and product.rebuild:
        reasons.append(f"the image leaves rebuilt pixel-exact by rspolicy's writer, not byte for byte: "
                       f"{product.rebuild}")
    warnings.extend(f"withheld {w.label}: {w.reason}" for w in product.withheld)
    return Decision(
        path=product.path,
        satellite=_text(product.first(Fact.SATELLITE)),
        sensor=_text(product.first(Fact.SENSOR)),
        product_class=product_class,
        gsd_m=resolution.gsd_m,
        action=action,
        target_gsd_m=target,
        rule=outcome.rule,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        evidence=product.evidence,
        policy=policy.ref,
        decision_id=new_decision_id(),
        product=product,
        deciding_reason=deciding,
        fired=outcome.fired,
        mask_zones=masks,
        request=request,
        obligations=policy.obligations,
    )


def _consistency_warnings(product: ProductEvidence) -> list[str]:
    """Disagreements between a sidecar and the image it describes."""
    warnings: list[str] = []
    for fact in (Fact.WIDTH, Fact.HEIGHT):
        values = {(e.source, e.field): e.value for e in product.facts(fact)}
        if len(set(values.values())) > 1:
            listing = ", ".join(f"{v} ({s} {f})" for (s, f), v in values.items())
            warnings.append(f"{fact.value} disagrees between sources: {listing}")
    listed = [e for e in product.facts(Fact.BAND_NUMBERS) if isinstance(e.value, str)]
    counts = [e for e in product.facts(Fact.BAND_COUNT)]
    if listed and counts:
        n_listed = len([b for b in str(listed[0].value).split(",") if b])
        if n_listed != counts[0].value:
            warnings.append(f"{listed[0].source} lists {n_listed} band(s) ({listed[0].value}) but the image has "
                            f"{counts[0].value}")
    return warnings


def iter_screen(paths: Iterable[str | os.PathLike[str]], policy: Policy, *,
                jobs: int = 1, request: Request | None = None) -> Iterator[Decision | Skipped]:
    """Decisions (and skipped non-product files) for every product behind ``paths``.

    Package members exist on disk while their decision is being consumed,
    so an action stage can act on ``decision.product.files`` before asking
    for the next decision. ``jobs`` products are read at once (see
    :func:`~rspolicy.readers.discover.iter_products`); decisions come in the
    same order whatever it is.
    """
    request = request if request is not None else Request()
    for item in iter_products(paths, jobs=jobs):
        yield item if isinstance(item, Skipped) else decide(item, policy, request)


def screen(paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
           policy: Policy | str | os.PathLike[str] | None = None, *, jobs: int = 1,
           request: Request | None = None) -> list[Decision]:
    """Screen products and return one decision per product.

    Parameters
    ----------
    paths
        One path or several: image files, sidecars, directories, packages.
    policy
        A loaded :class:`~rspolicy.policy.Policy`, a policy name or file,
        or None for the default (``cnsa-2022``).
    jobs
        Products read at once, each in an isolated worker process of its own.
    request
        Recipient, purpose, approval and release time
        (:func:`rspolicy.policy.request_from` builds one from text).

    Returns
    -------
    list of Decision
        Non-product files (order files, browse images) are not decisions and
        are left out; use :func:`iter_screen` to see them.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    loaded = policy if isinstance(policy, Policy) else load_policy(policy)
    return [d for d in iter_screen(paths, loaded, jobs=jobs, request=request) if isinstance(d, Decision)]

