"""Classification: what kind of imagery a product holds, from its evidence.

Class hints come with a strength. The strongest tier decides; when hints of
that tier disagree, the product is UNKNOWN and fails closed. Hints of weaker
tiers that disagree with the outcome are kept as *alternatives*: the decision
stage applies the strictest rule among the class and its alternatives, so a
mislabelled product cannot slip through under the more lenient class.
"""

from __future__ import annotations

from dataclasses import dataclass

from rspolicy.model import Classification, Evidence, Fact, ProductClass, ProductEvidence


@dataclass(frozen=True)
class ClassOutcome:
    """A classification plus the other classes some evidence suggested."""

    classification: Classification
    alternatives: tuple[tuple[ProductClass, Evidence], ...]


def classify(product: ProductEvidence) -> ClassOutcome:
    """Classify a product from its class hints.

    Parameters
    ----------
    product
        The read-stage evidence.

    Returns
    -------
    ClassOutcome
        The class (UNKNOWN when there is no hint or the strongest hints
        disagree), the evidence behind it, and the alternative classes that
        weaker evidence suggested.
    """
    hints = [e for e in product.evidence if e.fact is Fact.CLASS_HINT]
    if not hints:
        return ClassOutcome(Classification(ProductClass.UNKNOWN, (), (
            "no evidence of the product class: no sidecar, sensor, file-name token, data type or band layout "
            "identifies it",)), ())
    top = max(h.strength for h in hints)
    top_hints = [h for h in hints if h.strength == top]
    classes = {ProductClass(str(h.value)) for h in top_hints}
    if len(classes) > 1:
        listing = "; ".join(f"{h.source} {h.field} says {h.value} ({h.detail})" for h in top_hints)
        return ClassOutcome(Classification(ProductClass.UNKNOWN, tuple(top_hints),
                                           (f"conflicting class evidence: {listing}",)), ())
    chosen = classes.pop()
    alternatives = tuple((ProductClass(str(h.value)), h) for h in hints if ProductClass(str(h.value)) is not chosen)
    support = tuple(h for h in hints if ProductClass(str(h.value)) is chosen)
    return ClassOutcome(Classification(chosen, support), alternatives)
