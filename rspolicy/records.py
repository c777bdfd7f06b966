"""Audit records: one JSON object per decision, modelled on OPA's decision-log events.

The record says who asked (operator, host, recipient, purpose), under which
policy (name, version, sha256), about what (every file of the product with
its size and sha256, the satellite, sensor, product id and acquisition
time), what was decided and why (class, resolution, action, target, rules,
reasons, warnings, evidence) and, for ``enforce``, what was written. The
chain fields (``seq``, ``prev``, ``hash`` ...) are added by
:class:`rspolicy.audit.AuditLog`.
"""

from __future__ import annotations

import getpass
import hashlib
import math
import os
import socket
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import rspolicy
from rspolicy.audit import AuditLog, iter_records, utc_timestamp
from rspolicy.model import Decision, Fact, Scalar
from rspolicy.results import is_package_member
from rspolicy.safeio import open_regular

#: ``output.release`` of an enforce record written before its files were placed.
RELEASE_AFTER_RECORD = "after-record"
#: ``event`` of the record saying every file of a decision is in place.
RELEASED_EVENT = "released"
#: ``event`` of the record saying a recorded release did not (fully) happen.
RECONCILE_EVENT = "reconcile"
#: ``event`` of the record saying rspolicy could not complete a product (I/O, permissions, disk full):
#: an error of its own kind, never a policy decision.
FAILED_EVENT = "failed"


@dataclass(frozen=True)
class Requester:
    """Who a decision was made for, and by whom."""

    operator: str
    host: str
    recipient: str | None = None
    purpose: str | None = None

    @classmethod
    def current(cls, *, operator: str | None = None, recipient: str | None = None,
                purpose: str | None = None) -> Requester:
        """The OS user (unless an operator is given) on this host."""
        return cls(operator or _os_user(), socket.gethostname(), recipient, purpose)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"


def display_text(text: str) -> str:
    r"""``text`` with undecodable file-name bytes (surrogate escapes) shown as ``\xff``: always valid UTF-8."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _clean(obj: Any) -> Any:
    if isinstance(obj, str):
        return display_text(obj)
    if isinstance(obj, Mapping):
        return {display_text(str(k)): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def sha256_file(path: Path) -> str:
    """The sha256 of a file, streamed: no file is held in memory (a FIFO or device is refused, never read)."""
    with open_regular(path) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_digest(path: Path, label: str | None = None) -> dict[str, Any]:
    """Name, size and sha256 of one file."""
    return {"path": label or os.fspath(path), "size": path.stat().st_size, "sha256": sha256_file(path)}


def _json_value(value: Scalar) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def decision_record(decision: Decision, requester: Requester, *, command: str,
                    outputs: Sequence[Mapping[str, Any]] = (), output_gsd_m: float | None = None,
                    notes: Iterable[str] = (), inputs: Sequence[Mapping[str, Any]] = (),
                    batch: Mapping[str, str | int] | None = None,
                    masked_fraction: float | None = None) -> dict[str, Any]:
    """The audit record of one decision.

    Parameters
    ----------
    decision
        The (final) decision.
    requester
        Operator, host, recipient, purpose.
    command
        ``screen``, ``enforce`` or ``batch``.
    outputs
        Files written: ``path`` (local, or ``package!member``), ``size``, ``sha256``.
    output_gsd_m
        Resolution of what was written, from its re-screen.
    notes
        Anything else that happened.
    inputs
        The input files' ``path`` (as labelled in the decision), ``size`` and
        ``sha256`` when the caller has hashed them already; otherwise they are
        hashed here.
    batch
        ``key`` (and for a package member, ``member``): what a later run of
        the same batch looks the product up by to skip it
        (:func:`completed_products`).
    masked_fraction
        The share of the source's pixels a mask decision set to nodata.
    """
    product = decision.product
    if inputs:
        files = [dict(i) for i in inputs]
    else:
        files = ([file_digest(f, product.label(i)) for i, f in enumerate(product.files) if f.is_file()]
                 if product is not None else [])
    first = product.first if product is not None else (lambda _fact: None)
    record: dict[str, Any] = {
        "decision_id": decision.decision_id,
        "timestamp": utc_timestamp(),
        "rspolicy": rspolicy.__version__,
        "command": command,
        "policy": decision.policy.to_dict(),
        "input": {
            "path": decision.path,
            "files": files,
            "satellite": decision.satellite,
            "sensor": decision.sensor,
            "product_id": _json_value(first(Fact.PRODUCT_ID)),
            "acquisition_time": _json_value(first(Fact.ACQUISITION_TIME)),
            "product_class": decision.product_class.value,
            "gsd_m": decision.gsd_m,
        },
        "result": {
            "product_class": decision.product_class.value,
            "gsd_m": decision.gsd_m,
            "action": decision.action.value,
            "target_gsd_m": decision.target_gsd_m,
            "rules": [decision.rule] if decision.rule else [],
            "rules_fired": [f.to_dict() for f in decision.fired],
            # Names only: the zones themselves are part of the policy's identity (its sha256).
            "mask_zones": [z.name for z in decision.mask_zones],
            "reasons": list(decision.reasons),
            "why": decision.why,
            "warnings": list(decision.warnings),
            "evidence": [{"fact": e.fact.value, "source": e.source, "field": e.field, "value": _json_value(e.value)}
                         for e in decision.evidence],
        },
        "operator": requester.operator,
        "host": requester.host,
    }
    if command == "enforce":
        record["output"] = {"files": [dict(o) for o in outputs], "gsd_m": output_gsd_m,
                            "notes": list(notes), "masked_fraction": masked_fraction}
        if outputs:
            # Written before the files are moved into place: a "released" or
            # "reconcile" record must follow (see pending_releases).
            record["output"]["release"] = RELEASE_AFTER_RECORD
    if batch:
        record["batch"] = dict(batch)
    if requester.recipient:
        record["recipient"] = requester.recipient
    if requester.purpose:
        record["purpose"] = requester.purpose
    request = decision.request
    if request is not None:
        if request.approval:
            record["approval"] = request.approval
        record["release_time"] = request.at.isoformat(timespec="seconds")
    if decision.obligations:
        record["obligations"] = decision.obligations.to_dict()
    clean: dict[str, Any] = _clean(record)
    return clean


def failure_record(path: str, error: str, requester: Requester, *, decision: Decision | None = None,
                   inputs: Sequence[Mapping[str, Any]] = (), batch: Mapping[str, str | int] | None = None
                   ) -> dict[str, Any]:
    """The record of a product rspolicy could not complete: ``event`` ``failed``, never a decision.

    Nothing of the product was released. When a decision had been taken
    before the failure, it is carried (``result``) for the auditor, but the
    record is not a decision: a later run decides the product again.
    """
    if decision is not None:
        record = decision_record(decision, requester, command="enforce", inputs=inputs, batch=batch)
        record.pop("output", None)
    else:
        record = {"decision_id": None, "timestamp": utc_timestamp(), "rspolicy": rspolicy.__version__,
                  "command": "enforce", "input": {"path": path, "files": [dict(i) for i in inputs]},
                  "operator": requester.operator, "host": requester.host}
        if batch:
            record["batch"] = dict(batch)
    record["event"] = FAILED_EVENT
    record["error"] = error
    clean: dict[str, Any] = _clean(record)
    return clean


# --------------------------------------------------------------------------- release bookkeeping


@dataclass(frozen=True)
class PendingRelease:
    """An enforce record whose files were not yet confirmed in place.

    Attributes
    ----------
    decision_id
        The decision.
    path
        The product's display path.
    files
        ``(local path, sha256)`` of every file the record says was released
        (a package member counts through its package file).
    """

    decision_id: str
    path: str
    files: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ReleaseProblem:
    """One file of a pending release that is not as recorded."""

    path: str
    problem: Literal["absent", "differs"]


def _released_files(output: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    entries = [f for f in output.get("files", ()) if isinstance(f, Mapping) and isinstance(f.get("path"), str)]
    paths = {str(f["path"]) for f in entries}
    # A package member ("package!member") is checked through its package file.
    return tuple((str(f["path"]), str(f.get("sha256", ""))) for f in entries
                 if not is_package_member(str(f["path"]), paths))


def pending_releases(records: Iterable[Mapping[str, Any]]) -> list[PendingRelease]:
    """Enforce records written before their files were placed and not followed by a released or reconcile record.

    Parameters
    ----------
    records
        The log's records in chain order.

    Returns
    -------
    list of PendingRelease
        In log order. Records written before this bookkeeping existed
        (placed first, recorded after) are never pending.
    """
    pending: dict[str, PendingRelease] = {}
    for rec in records:
        decision_id = rec.get("decision_id")
        if not isinstance(decision_id, str):
            continue
        event = rec.get("event")
        if event in (RELEASED_EVENT, RECONCILE_EVENT):
            pending.pop(decision_id, None)
            continue
        output = rec.get("output")
        if event is None and rec.get("command") == "enforce" and isinstance(output, Mapping) \
                and output.get("release") == RELEASE_AFTER_RECORD:
            files = _released_files(output)
            if files:
                path = rec.get("input", {}).get("path") if isinstance(rec.get("input"), Mapping) else None
                pending[decision_id] = PendingRelease(decision_id, str(path), files)
    return list(pending.values())


def release_problems(pending: PendingRelease, *, compare_digest: bool) -> list[ReleaseProblem]:
    """The files of a pending release that are absent (or, with ``compare_digest``, differ).

    Links are never followed: a symbolic link where a file was recorded is
    not that file.
    """
    problems: list[ReleaseProblem] = []
    for path, digest in pending.files:
        try:
            st = os.lstat(path)
        except OSError:
            problems.append(ReleaseProblem(path, "absent"))
            continue
        if compare_digest:
            try:
                same = stat.S_ISREG(st.st_mode) and sha256_file(Path(path)) == digest
            except OSError:
                same = False
            if not same:
                problems.append(ReleaseProblem(path, "differs"))
    return problems


def _event_record(event: str, pending: PendingRelease, requester: Requester, **extra: Any) -> dict[str, Any]:
    return {"event": event, "decision_id": pending.decision_id, "timestamp": utc_timestamp(),
            "rspolicy": rspolicy.__version__, "command": "enforce", "input": {"path": display_text(pending.path)},
            "operator": requester.operator, "host": requester.host, **_clean(extra)}


def released_record(decision_id: str, path: str, requester: Requester, *,
                    confirmed_later: bool = False) -> dict[str, Any]:
    """The record saying every file of an enforce decision is in place."""
    extra = {"note": "confirmed in place by a later run"} if confirmed_later else {}
    return _event_record(RELEASED_EVENT, PendingRelease(decision_id, path, ()), requester, **extra)


def reconcile_record(pending: PendingRelease, problems: Sequence[ReleaseProblem],
                     requester: Requester) -> dict[str, Any]:
    """The record saying a recorded release did not (fully) happen: what is absent or differs."""
    return _event_record(RECONCILE_EVENT, pending, requester,
                         absent=[p.path for p in problems if p.problem == "absent"],
                         differs=[p.path for p in problems if p.problem == "differs"],
                         note="the run that wrote the decision's record stopped before its files were in place")


def reconcile_releases(log: AuditLog, outdir: Path, requester: Requester) -> list[dict[str, Any]]:
    """Settle the pending releases of one output folder, as the next ``enforce`` run does before its own work.

    Every pending release whose files all lie under ``outdir`` gets one
    record: ``reconcile`` naming what is absent or differs from its recorded
    sha256, or ``released`` when a run was stopped after placing everything.
    Only this folder's pending records are checked (their digests compared);
    settled decisions are never looked at again.

    Parameters
    ----------
    log
        The audit log (its records are read, and the new ones appended).
    outdir
        The output folder (resolved here).
    requester
        Who runs the reconciling command.

    Returns
    -------
    list of dict
        The records appended.

    Raises
    ------
    AuditLogError
        The log cannot be read or written.
    """
    root = Path(os.path.realpath(outdir))
    files = [f for f in log.files() if f.exists()]
    appended: list[dict[str, Any]] = []
    for pending in pending_releases(iter_records(files) if files else ()):
        if not all(_under(Path(path), root) for path, _ in pending.files):
            continue
        problems = release_problems(pending, compare_digest=True)
        if problems:
            appended.append(log.append(reconcile_record(pending, problems, requester)))
        else:
            appended.append(log.append(released_record(pending.decision_id, pending.path, requester,
                                                       confirmed_later=True)))
    return appended


def _under(path: Path, root: Path) -> bool:
    return path.is_absolute() and path != root and path.is_relative_to(root)


# --------------------------------------------------------------------------- resuming a batch


@dataclass(frozen=True)
class PriorDecision:
    """A product an earlier run completed: decided, and (when it released files) confirmed in place.

    Attributes
    ----------
    decision_id, path, action, product_class, gsd_m, target_gsd_m, why
        From the decision record.
    members
        How many products the package it came from held (1 for a loose product).
    outputs
        Every file it released (``path``, ``size``, ``sha256``; package
        members as ``package!member``).
    output_gsd_m
        What was written.
    """

    decision_id: str
    path: str
    action: str
    product_class: str | None
    gsd_m: float | None
    target_gsd_m: float | None
    why: str
    outputs: tuple[tuple[str, int, str], ...]
    output_gsd_m: float | None
    members: int = 1

    def missing_outputs(self) -> list[ReleaseProblem]:
        """Released files that are no longer in place with their recorded sha256 (links are not files)."""
        files = _released_files({"files": [{"path": p, "sha256": d} for p, _, d in self.outputs]})
        return release_problems(PendingRelease(self.decision_id, self.path, files), compare_digest=True)


def _prior(rec: Mapping[str, Any]) -> PriorDecision:
    result = rec.get("result") if isinstance(rec.get("result"), Mapping) else {}
    output = rec.get("output") if isinstance(rec.get("output"), Mapping) else {}
    assert isinstance(result, Mapping) and isinstance(output, Mapping)
    files = [f for f in output.get("files", ()) if isinstance(f, Mapping)]
    reasons = result.get("reasons") or [""]
    return PriorDecision(
        decision_id=str(rec.get("decision_id")), path=str(rec.get("input", {}).get("path", "")),
        action=str(result.get("action")), product_class=result.get("product_class"),
        gsd_m=result.get("gsd_m"), target_gsd_m=result.get("target_gsd_m"),
        why=str(result.get("why") or reasons[-1]),
        outputs=tuple((str(f.get("path")), int(f.get("size", 0)), str(f.get("sha256", ""))) for f in files),
        output_gsd_m=output.get("gsd_m"), members=_members(rec.get("batch")))


def _members(batch: Any) -> int:
    value = batch.get("members", 1) if isinstance(batch, Mapping) else 1
    return value if isinstance(value, int) and value > 0 else 1


@dataclass(frozen=True)
class BatchHistory:
    """What earlier ``enforce`` runs of a log did, by batch key.

    Attributes
    ----------
    done
        ``{key: {member ("" for a loose product): PriorDecision}}`` of completed products.
    owned
        ``{path: sha256s}``: every output file an enforce decision of the log
        recorded, completed or not (a run killed half-way may have placed
        some), with the digests recorded for it. A rerun may replace a file
        that is still byte for byte one of these without ``--force``; one
        edited since is not rspolicy's to overwrite.
    """

    done: Mapping[str, Mapping[str, PriorDecision]] = field(default_factory=dict)
    owned: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def still_ours(self, path: str) -> bool:
        """Whether ``path`` is a regular file whose bytes this log recorded for it (links are never ours)."""
        digests = self.owned.get(path)
        if not digests:
            return False
        try:
            return stat.S_ISREG(os.lstat(path).st_mode) and sha256_file(Path(path)) in digests
        except OSError:
            return False


def completed_products(records: Iterable[Mapping[str, Any]]) -> BatchHistory:
    """The products earlier ``enforce`` runs completed, by their batch key and package member.

    A decision that released files counts once a ``released`` record
    follows it (a ``reconcile`` record voids it); a decision that released
    nothing (blocked) counts as soon as it is recorded. A ``failed`` record
    never counts. The latest completed decision of a key wins.

    Parameters
    ----------
    records
        The log's records in chain order.

    Returns
    -------
    BatchHistory
        The completed products, and every output file recorded with its digests.
    """
    done: dict[str, dict[str, PriorDecision]] = {}
    owned: dict[str, set[str]] = {}
    waiting: dict[str, tuple[str, str, Mapping[str, Any]]] = {}
    for rec in records:
        decision_id = rec.get("decision_id")
        event = rec.get("event")
        if event in (RELEASED_EVENT, RECONCILE_EVENT):
            settled = waiting.pop(str(decision_id), None)
            if settled is not None and event == RELEASED_EVENT:
                key, member, decision = settled
                done.setdefault(key, {})[member] = _prior(decision)
            continue
        batch = rec.get("batch")
        if event is not None or rec.get("command") != "enforce" or not isinstance(batch, Mapping) \
                or not isinstance(batch.get("key"), str) or not isinstance(decision_id, str):
            continue
        key, member = str(batch["key"]), str(batch.get("member", ""))
        output = rec.get("output")
        if isinstance(output, Mapping):
            for f in output.get("files", ()):
                if isinstance(f, Mapping) and isinstance(f.get("path"), str):
                    owned.setdefault(f["path"], set()).add(str(f.get("sha256")))
        if isinstance(output, Mapping) and output.get("release") == RELEASE_AFTER_RECORD:
            waiting[decision_id] = (key, member, rec)
        else:
            done.setdefault(key, {})[member] = _prior(rec)
    return BatchHistory(done, {k: frozenset(v) for k, v in owned.items()})
