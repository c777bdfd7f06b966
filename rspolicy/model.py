"""The typed objects passed between rspolicy's stages.

The stages flow one way::

    read product -> ProductEvidence -> Classification + Resolution
                 -> rule evaluation -> Decision -> action -> output + audit

Every object here is a frozen dataclass or an enum, so a stage can hand its
result on without the next stage being able to alter what was seen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: A JSON-representable scalar: what an evidence value may be.
Scalar = str | int | float | bool | None


class ProductClass(enum.StrEnum):
    """What kind of imagery a product holds."""

    PANCHROMATIC = "panchromatic"
    MULTISPECTRAL = "multispectral"
    HYPERSPECTRAL = "hyperspectral"
    THERMAL = "thermal"
    SAR = "sar"
    UNKNOWN = "unknown"


class Action(enum.StrEnum):
    """What happens to a product: ordered from most to least permissive.

    ``MASK`` leaves the product with the pixels inside named zones set to
    nodata (and resampled as well when ``target_gsd_m`` is set). ``REFER`` is
    a rule's action only: a referred product is blocked unless an approval
    reference was given, and then decided by the other rules, so no decision
    carries it.
    """

    ALLOW = "allow"
    RESAMPLE = "resample"
    MASK = "mask"
    REFER = "refer"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        """Rank used to pick the strictest of several actions."""
        return _ACTION_SEVERITY[self]


_ACTION_SEVERITY = {Action.ALLOW: 0, Action.RESAMPLE: 1, Action.MASK: 2, Action.REFER: 3, Action.BLOCK: 4}


class Fact(enum.StrEnum):
    """What a piece of evidence says something about."""

    SATELLITE = "satellite"
    SENSOR = "sensor"
    PRODUCT_ID = "product_id"
    PRODUCT_LEVEL = "product_level"
    PRODUCT_TYPE = "product_type"
    ACQUISITION_TIME = "acquisition_time"
    #: Ground sampling distance (pixel spacing on the ground), metres.
    GSD = "gsd_m"
    #: A sensor's nominal (impulse-response) resolution, metres.
    NOMINAL_RESOLUTION = "nominal_resolution_m"
    #: A hint at the product class; the value is a :class:`ProductClass` value.
    CLASS_HINT = "class_hint"
    BAND_COUNT = "band_count"
    BAND_NUMBERS = "band_numbers"
    DTYPE = "dtype"
    WIDTH = "width"
    HEIGHT = "height"
    CRS = "crs"
    NODATA = "nodata"
    IMAGING_MODE = "imaging_mode"
    POLARISATION = "polarisation"
    INCIDENCE_ANGLE = "incidence_angle_deg"
    FOOTPRINT = "footprint_wkt"
    #: Anything else worth showing an auditor.
    INFO = "info"


class Strength(enum.IntEnum):
    """How much a class hint is worth: stronger hints override weaker ones."""

    WEAK = 1
    MEDIUM = 2
    STRONG = 3


@dataclass(frozen=True)
class Evidence:
    """One fact read from one place of a product.

    Attributes
    ----------
    fact
        What the evidence is about.
    value
        The value, in the unit the fact names (metres for GSD).
    source
        The file it came from (``package.tar.gz!member`` inside packages).
    field
        Where in that file: an XML element, a TIFF tag, ``geotransform``,
        ``RPC``, ``filename`` ...
    detail
        A human explanation of how the value was derived.
    strength
        For class hints, how decisive the hint is.
    """

    fact: Fact
    value: Scalar
    source: str
    field: str
    detail: str = ""
    strength: Strength = Strength.MEDIUM

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of this evidence."""
        out: dict[str, Any] = {
            "fact": self.fact.value,
            "source": self.source,
            "field": self.field,
            "value": self.value,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.fact is Fact.CLASS_HINT:
            out["strength"] = self.strength.name.lower()
        return out


@dataclass(frozen=True)
class Withheld:
    """A file found with a product that does not leave with it, and why.

    Attributes
    ----------
    path
        The local file.
    label
        Its display name.
    reason
        One line: what kind of file it is and why it stays.
    """

    path: Path
    label: str
    reason: str


@dataclass(frozen=True)
class ProductEvidence:
    """Everything the read stage learnt about one product.

    Attributes
    ----------
    path
        The product's name for humans and logs (``pkg.tar.gz!member.tiff``
        for a package member).
    raster
        The local file holding the pixels, when there is one.
    files
        Every local file that belongs to the product (raster and sidecars).
    evidence
        The facts read, each with its source.
    problems
        Reasons the product could not be read fully; any problem blocks it.
    labels
        Display names of ``files``, in the same order.
    withheld
        Files found with the product that were read as evidence or not
        understood, and never leave with it (world files, ``.aux.xml``,
        browse images, unknown companions).
    rebuild
        Why the image cannot leave byte for byte (bytes its structure does not
        account for, tags rspolicy does not know, extra images): an allowed
        product is then rebuilt pixel-exact by rspolicy's writer. None when
        the file may be copied as it is.
    """

    path: str
    raster: Path | None
    files: tuple[Path, ...]
    evidence: tuple[Evidence, ...]
    problems: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    withheld: tuple[Withheld, ...] = ()
    rebuild: str | None = None

    def label(self, index: int) -> str:
        """The display name of ``files[index]`` (``package!member`` for a package member)."""
        return self.labels[index] if index < len(self.labels) else str(self.files[index])

    def facts(self, fact: Fact) -> tuple[Evidence, ...]:
        """The evidence about one fact, in reading order."""
        return tuple(e for e in self.evidence if e.fact is fact)

    def first(self, fact: Fact) -> Scalar:
        """The first value read for ``fact``, or None."""
        for e in self.evidence:
            if e.fact is fact and e.value not in (None, ""):
                return e.value
        return None


@dataclass(frozen=True)
class Classification:
    """The class of a product and the evidence behind it."""

    product_class: ProductClass
    evidence: tuple[Evidence, ...]
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    """The ground resolution used for a decision.

    Attributes
    ----------
    gsd_m
        The finest value among all resolution evidence, or None when there is
        none.
    finest
        The evidence that gave ``gsd_m``.
    evidence
        All resolution evidence considered.
    warnings
        Disagreements between sources.
    """

    gsd_m: float | None
    finest: Evidence | None
    evidence: tuple[Evidence, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyRef:
    """The identity of the policy a decision was taken under."""

    name: str
    version: str
    sha256: str
    path: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready mapping (without the local path)."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Recipient:
    """Who receives a release: an ISO 3166-1 alpha-2 country code and, optionally, an organisation.

    Written ``CC`` or ``CC:ORGANISATION`` (``DE:DLR``) on the command line;
    a bare name (``ESA``) is an organisation whose country is not known.
    """

    country: str | None
    organisation: str | None = None

    def __str__(self) -> str:
        if self.country is None:
            return self.organisation or ""
        return self.country if self.organisation is None else f"{self.country}:{self.organisation}"


@dataclass(frozen=True)
class Request:
    """What a release is for: who receives it, why, under which approval, and when.

    Attributes
    ----------
    recipient
        The receiving organisation, or None when not stated (rules about
        recipients then hold either way, which fails closed).
    purpose
        The stated purpose, lower case, or None.
    approval
        A person's approval reference for referred products, or None.
    at
        The release time (timezone-aware); the age of the data is counted to it.
    """

    recipient: Recipient | None = None
    purpose: str | None = None
    approval: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"recipient": None if self.recipient is None else str(self.recipient), "purpose": self.purpose,
                "approval": self.approval, "at": self.at.isoformat(timespec="seconds")}


@dataclass(frozen=True)
class FiredRule:
    """A policy rule whose condition held (or could hold) for a product, and what it asked for."""

    id: str
    action: Action
    why: str
    target_gsd_m: float | None = None
    zones: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        out: dict[str, Any] = {"id": self.id, "action": self.action.value, "why": self.why}
        if self.target_gsd_m is not None:
            out["target_gsd_m"] = self.target_gsd_m
        if self.zones:
            out["zones"] = list(self.zones)
        return out


@dataclass(frozen=True)
class MaskZone:
    """A named area whose pixels a release must not show: WKT in longitude and latitude (EPSG:4326)."""

    name: str
    wkt: str


@dataclass(frozen=True)
class Obligations:
    """What a policy attaches to every release: a credit line and conditions of use."""

    credit: str | None = None
    conditions: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.credit or self.conditions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"credit": self.credit, "conditions": list(self.conditions)}

    def tags(self) -> dict[str, str]:
        """The GeoTIFF metadata items that carry them in a released image."""
        out: dict[str, str] = {}
        if self.credit:
            out["RSPOLICY_CREDIT"] = self.credit
        if self.conditions:
            out["RSPOLICY_CONDITIONS"] = "; ".join(self.conditions)
        return out


@dataclass(frozen=True)
class Decision:
    """What happens to one product, and why.

    Attributes
    ----------
    path
        The product's display path.
    satellite, sensor
        As read from the product, or None.
    product_class
        The classification.
    gsd_m
        The finest ground resolution used, metres, or None.
    action
        Allow, resample or block.
    target_gsd_m
        The resolution a resample goes to, else None.
    rule
        The id of the policy rule that decided, or None.
    reasons, warnings
        Human sentences.
    evidence
        Every piece of evidence read.
    policy
        The identity of the policy.
    decision_id
        Unique and sortable by time (UUIDv7).
    product
        The read-stage result, kept for the action stage (not serialised).
    deciding_reason
        The one reason that decided the action (among ``reasons``); see :attr:`why`.
    fired
        Every policy rule whose condition held, with what it asked for.
    mask_zones
        For a MASK decision, the zones whose pixels become nodata.
    request
        The request the decision was taken for.
    obligations
        The policy's credit line and conditions of use, stamped into what leaves.
    """

    path: str
    satellite: str | None
    sensor: str | None
    product_class: ProductClass
    gsd_m: float | None
    action: Action
    target_gsd_m: float | None
    rule: str | None
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    policy: PolicyRef
    decision_id: str = ""
    product: ProductEvidence | None = field(default=None, compare=False, repr=False)
    deciding_reason: str = ""
    fired: tuple[FiredRule, ...] = ()
    mask_zones: tuple[MaskZone, ...] = ()
    request: Request | None = None
    obligations: Obligations = Obligations()

    @property
    def why(self) -> str:
        """The reason that decided: the first read problem that blocked, the rule that applied, or the last reason."""
        return self.deciding_reason or (self.reasons[-1] if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping with the keys ``screen --json`` prints."""
        return {
            "decision_id": self.decision_id,
            "path": self.path,
            "satellite": self.satellite,
            "sensor": self.sensor,
            "product_class": self.product_class.value,
            "gsd_m": self.gsd_m,
            "action": self.action.value,
            "target_gsd_m": self.target_gsd_m,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "why": self.why,
            "warnings": list(self.warnings),
            "evidence": [e.to_dict() for e in self.evidence],
            "policy": self.policy.to_dict(),
            "rules_fired": [f.to_dict() for f in self.fired],
            "mask_zones": [z.name for z in self.mask_zones],
            "request": None if self.request is None else self.request.to_dict(),
            "obligations": self.obligations.to_dict() if self.obligations else None,
        }


def strictest(actions: Iterable[Action]) -> Action:
    """The most restrictive of several actions (ALLOW when there are none).

    >>> strictest([Action.ALLOW, Action.RESAMPLE])
    <Action.RESAMPLE: 'resample'>
    """
    return max(actions, key=lambda a: a.severity, default=Action.ALLOW)


def exit_status(actions: Iterable[Action]) -> int:
    """The command exit status for a set of decisions: 0, 3 or 4.

    >>> exit_status([Action.ALLOW, Action.BLOCK, Action.RESAMPLE])
    4
    """
    return _EXIT_STATUS[strictest(actions)]


_EXIT_STATUS: Mapping[Action, int] = {Action.ALLOW: 0, Action.RESAMPLE: 3, Action.MASK: 3, Action.REFER: 4,
                                      Action.BLOCK: 4}
