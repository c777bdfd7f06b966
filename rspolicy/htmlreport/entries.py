"""The rows of the HTML report: one per decision, read defensively from audit records and a batch's results.

Everything here comes from a file someone else may have written (a log can be
edited, file names and metadata are chosen by whoever delivered the products),
so every value is checked for its type and turned into display text or a
finite number; what does not fit is shown as missing, never trusted. The
outcome of a row is one of :data:`OUTCOMES` whatever a record says: the HTML
uses it in class names and attributes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rspolicy.records import FAILED_EVENT, RECONCILE_EVENT, RELEASE_AFTER_RECORD, RELEASED_EVENT, display_text
from rspolicy.results import ProductResult, is_package_member

__all__ = [
    "OUTCOMES",
    "Entry",
    "EvidenceRow",
    "FileRef",
    "PolicyId",
    "entries_from_records",
    "entries_from_results",
    "finest_gsd_m",
]

#: Every outcome a row can have, in the order the report lists them (what needs a look first).
OUTCOMES = ("failed", "blocked", "degraded", "released", "skipped", "screened", "other")

#: The outcome of an ``enforce`` decision record, by its action.
_ENFORCE_OUTCOME = {"allow": "released", "resample": "degraded", "mask": "degraded", "block": "blocked"}

#: Evidence facts that are a ground distance of the pixels (or finer: a nominal resolution), in metres.
_GSD_FACTS = frozenset({"gsd_m", "nominal_resolution_m"})

#: Longest text kept from one value (a record can hold anything; the report stays readable and small).
_MAX_TEXT = 4000


@dataclass(frozen=True)
class FileRef:
    """One file a record names: its path (``package!member`` inside a package), size and sha256."""

    path: str
    size: int | None
    sha256: str | None


@dataclass(frozen=True)
class EvidenceRow:
    """One piece of evidence as recorded: the fact, its value, the file and field it came from."""

    fact: str
    value: str
    source: str
    field: str


@dataclass(frozen=True)
class PolicyId:
    """The identity of a policy as a record gives it."""

    name: str
    version: str
    sha256: str

    @property
    def shown(self) -> str:
        """``name version``."""
        return f"{self.name} {self.version}".strip()


@dataclass(frozen=True)
class Entry:
    """One row of the report: a decision (or a failure) and everything shown about it.

    Attributes
    ----------
    index
        Position in the report's own order (0-based).
    outcome
        One of :data:`OUTCOMES`.
    path
        The product's display path.
    reason
        The reason that decided (for a failure, what failed).
    decision_id, seq, timestamp, command, action
        From the record, when there is one.
    product_class, satellite, sensor
        As decided.
    gsd_m, target_gsd_m, output_gsd_m
        The decided resolution, the policy's target and what was written (metres).
    reasons, warnings, rules
        The decision's reasons, warnings and the rule that decided.
    fired
        Every rule that fired (its id).
    evidence
        Every piece of evidence recorded.
    footprints
        Footprint polygons recorded as evidence (WKT, longitude and latitude).
    zones
        Names of zones the decision masked or a rule tested.
    masked
        Whether the decision masked zones of the product.
    policy
        The policy the decision was taken under.
    inputs, outputs
        Files read and written.
    bytes_in, bytes_out
        Their sizes (a package's members counted once, as the package).
    notes
        What the report adds (a release never confirmed, a record not found).
    """

    index: int
    outcome: str
    path: str
    reason: str
    decision_id: str | None = None
    seq: int | None = None
    timestamp: str | None = None
    command: str | None = None
    action: str | None = None
    product_class: str | None = None
    satellite: str | None = None
    sensor: str | None = None
    gsd_m: float | None = None
    target_gsd_m: float | None = None
    output_gsd_m: float | None = None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    fired: tuple[str, ...] = ()
    evidence: tuple[EvidenceRow, ...] = ()
    footprints: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    masked: bool = False
    policy: PolicyId | None = None
    inputs: tuple[FileRef, ...] = ()
    outputs: tuple[FileRef, ...] = ()
    bytes_in: int = 0
    bytes_out: int = 0
    notes: tuple[str, ...] = ()

    @property
    def rank(self) -> int:
        """Where the outcome comes in :data:`OUTCOMES` (failed first)."""
        return OUTCOMES.index(self.outcome)


# --------------------------------------------------------------------------- defensive reading


def _text(value: Any) -> str | None:
    """Display text of a scalar (None for None and for containers)."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    text = display_text(value if isinstance(value, str) else str(value))
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _number(value: Any) -> float | None:
    """A finite number, else None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _texts(value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else []
    return tuple(t for t in (_text(v) for v in items) if t is not None)


def _files(value: Any) -> tuple[FileRef, ...]:
    items = value if isinstance(value, list | tuple) else []
    files = []
    for item in items:
        entry = _map(item)
        path = _text(entry.get("path"))
        if path is None:
            continue
        digest = _text(entry.get("sha256"))
        files.append(FileRef(path, _count(entry.get("size")), digest))
    return tuple(files)


def _bytes_out(files: Sequence[FileRef]) -> int:
    paths = [f.path for f in files]
    return sum(f.size or 0 for f in files if not is_package_member(f.path, paths))


def _policy(value: Any) -> PolicyId | None:
    ref = _map(value)
    name = _text(ref.get("name"))
    if name is None:
        return None
    return PolicyId(name, _text(ref.get("version")) or "", _text(ref.get("sha256")) or "")


def _evidence(value: Any) -> tuple[tuple[EvidenceRow, ...], tuple[str, ...]]:
    rows: list[EvidenceRow] = []
    footprints: list[str] = []
    for item in value if isinstance(value, list | tuple) else []:
        e = _map(item)
        fact = _text(e.get("fact")) or "?"
        raw = e.get("value")
        rows.append(EvidenceRow(fact, _text(raw) or "", _text(e.get("source")) or "", _text(e.get("field")) or ""))
        if fact == "footprint_wkt" and isinstance(raw, str) and raw not in footprints:
            footprints.append(raw)
    return tuple(rows), tuple(footprints)


def _zones(result: Mapping[str, Any]) -> tuple[tuple[str, ...], bool]:
    masked = _texts(result.get("mask_zones"))
    named = list(masked)
    for fired in result.get("rules_fired") or []:
        for zone in _texts(_map(fired).get("zones")):
            if zone not in named:
                named.append(zone)
    return tuple(named), bool(masked) or result.get("action") == "mask"


def finest_gsd_m(entry: Entry) -> float | None:
    """The finest ground distance a decision's record gives: its gsd and every gsd or nominal resolution evidence.

    Parameters
    ----------
    entry
        A row of the report.

    Returns
    -------
    float or None
        The smallest positive value, or None when the record gives none.

    Examples
    --------
    >>> finest_gsd_m(Entry(0, "degraded", "a.tif", "", gsd_m=0.5,
    ...                    evidence=(EvidenceRow("gsd_m", "0.3", "a.tif", "geotransform"),)))
    0.3
    """
    values = [entry.gsd_m] if entry.gsd_m is not None else []
    for row in entry.evidence:
        if row.fact in _GSD_FACTS:
            try:
                values.append(float(row.value))
            except ValueError:
                continue
    good = [v for v in values if math.isfinite(v) and v > 0]
    return min(good) if good else None


def _entry(index: int, rec: Mapping[str, Any], outcome: str, reason: str, notes: Sequence[str] = ()) -> Entry:
    inp = _map(rec.get("input"))
    result = _map(rec.get("result"))
    output = _map(rec.get("output"))
    evidence, footprints = _evidence(result.get("evidence"))
    zones, masked = _zones(result)
    inputs, outputs = _files(inp.get("files")), _files(output.get("files"))
    decision_id = _text(rec.get("decision_id"))
    return Entry(
        index=index, outcome=outcome, path=_text(inp.get("path")) or "(no path recorded)", reason=reason,
        decision_id=decision_id, seq=_count(rec.get("seq")), timestamp=_text(rec.get("timestamp")),
        command=_text(rec.get("command")), action=_text(result.get("action")),
        product_class=_text(result.get("product_class")) or _text(inp.get("product_class")),
        satellite=_text(inp.get("satellite")), sensor=_text(inp.get("sensor")),
        gsd_m=_number(result.get("gsd_m")) if "gsd_m" in result else _number(inp.get("gsd_m")),
        target_gsd_m=_number(result.get("target_gsd_m")), output_gsd_m=_number(output.get("gsd_m")),
        reasons=_texts(result.get("reasons")), warnings=_texts(result.get("warnings")),
        rules=_texts(result.get("rules")),
        fired=tuple(t for t in (_text(_map(f).get("id")) for f in result.get("rules_fired") or []) if t),
        evidence=evidence, footprints=footprints, zones=zones, masked=masked,
        policy=_policy(rec.get("policy")), inputs=inputs, outputs=outputs,
        bytes_in=sum(f.size or 0 for f in inputs), bytes_out=_bytes_out(outputs), notes=tuple(notes))


def _deciding_reason(rec: Mapping[str, Any]) -> str:
    result = _map(rec.get("result"))
    reasons = _texts(result.get("reasons"))
    return _text(result.get("why")) or (reasons[-1] if reasons else "") or "(no reason recorded)"


def _record_outcome(rec: Mapping[str, Any]) -> tuple[str, str]:
    """Outcome and deciding reason of a decision record or a ``failed`` event."""
    if rec.get("event") == FAILED_EVENT:
        return "failed", _text(rec.get("error")) or "(no error recorded)"
    if rec.get("command") != "enforce":
        return "screened", _deciding_reason(rec)
    return _ENFORCE_OUTCOME.get(str(_map(rec.get("result")).get("action")), "other"), _deciding_reason(rec)


def _shown_record(rec: Mapping[str, Any]) -> bool:
    """Whether a record is a row of the report: a decision, or a failure."""
    event = rec.get("event")
    if event == FAILED_EVENT:
        return True
    return event is None and isinstance(rec.get("result"), Mapping)


def _release_notes(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Notes on decisions whose recorded release was never confirmed, or was reconciled as incomplete."""
    waiting: dict[str, str] = {}
    for rec in records:
        decision_id = rec.get("decision_id")
        if not isinstance(decision_id, str):
            continue
        event = rec.get("event")
        if event == RELEASED_EVENT:
            waiting.pop(decision_id, None)
        elif event == RECONCILE_EVENT:
            absent, differs = _texts(rec.get("absent")), _texts(rec.get("differs"))
            waiting[decision_id] = ("release not completed (reconciled by a later run: "
                                    f"{len(absent)} file(s) absent, {len(differs)} differing)")
        elif event is None and _map(rec.get("output")).get("release") == RELEASE_AFTER_RECORD:
            waiting[decision_id] = "release not confirmed: no 'released' record follows this decision"
    return waiting


def entries_from_records(records: Iterable[Mapping[str, Any]]) -> list[Entry]:
    """One row per decision record and per ``failed`` event of a log, in log order.

    ``enforce`` decisions are ``released`` (allow), ``degraded`` (resample or
    mask) or ``blocked``; ``failed`` events are ``failed``; decisions of other
    commands (``screen``) released nothing and are ``screened``. Events that
    are not decisions (``released``, ``reconcile``, a quarantined torn tail)
    are not rows: a release that was never confirmed, or was reconciled as
    incomplete, is a note on its decision's row.

    Parameters
    ----------
    records
        The log's records, in chain order.

    Returns
    -------
    list of Entry
    """
    recs = [r for r in records if isinstance(r, Mapping)]
    notes = _release_notes(recs)
    entries: list[Entry] = []
    for rec in recs:
        if not _shown_record(rec):
            continue
        outcome, reason = _record_outcome(rec)
        note = notes.get(rec["decision_id"]) if isinstance(rec.get("decision_id"), str) else None
        entries.append(_entry(len(entries), rec, outcome, reason, [note] if note and rec.get("event") is None else []))
    return entries


def entries_from_results(results: Sequence[ProductResult], records: Iterable[Mapping[str, Any]],
                         log_name: str) -> list[Entry]:
    """One row per product of a batch, with what its record in the log adds.

    The outcome and reason are the batch's; evidence, footprints, files and the
    policy come from the product's record (found by decision id; for a skipped
    product, the earlier run's record). A product whose record the log does not
    hold is shown from its result alone, with a note.

    Parameters
    ----------
    results
        The batch's results, in its order.
    records
        The records of the log the batch wrote to.
    log_name
        The log's name, for the note on a product whose record is not there.

    Returns
    -------
    list of Entry
    """
    wanted = {r.decision_id for r in results if r.decision_id}
    by_id: dict[str, Mapping[str, Any]] = {}
    recs = []
    for record in records:
        decision_id = record.get("decision_id") if isinstance(record, Mapping) else None
        if isinstance(decision_id, str) and decision_id in wanted:
            recs.append(record)
            if _shown_record(record):
                by_id[decision_id] = record
    notes = _release_notes(recs)
    entries: list[Entry] = []
    for i, res in enumerate(results):
        rec: Mapping[str, Any] | None = by_id.get(res.decision_id) if res.decision_id else None
        outcome = res.result.value if res.result.value in OUTCOMES else "other"
        reason = _text(res.reason) or "(no reason given)"
        if rec is None:
            note = (f"no record of decision {res.decision_id} in {log_name}" if res.decision_id
                    else "no decision was recorded")
            outputs = tuple(FileRef(_text(o.path) or "", o.size, o.sha256) for o in res.outputs)
            entries.append(Entry(
                index=i, outcome=outcome, path=_text(res.path) or "", reason=reason, decision_id=res.decision_id,
                product_class=_text(res.product_class), satellite=_text(res.satellite), gsd_m=_number(res.gsd_m),
                target_gsd_m=_number(res.target_gsd_m), output_gsd_m=_number(res.output_gsd_m), outputs=outputs,
                bytes_in=res.bytes_in, bytes_out=res.bytes_out, notes=(note,)))
            continue
        pending = notes.get(res.decision_id or "")
        entry = _entry(i, rec, outcome, reason, [pending] if pending else [])
        # The batch's own counts: a skipped product read and released nothing this time.
        entries.append(replace(entry, path=_text(res.path) or entry.path, bytes_in=res.bytes_in,
                               bytes_out=res.bytes_out, output_gsd_m=(
                                   _number(res.output_gsd_m) if res.output_gsd_m is not None
                                   else entry.output_gsd_m)))
    return entries
