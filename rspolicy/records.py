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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rspolicy
from rspolicy.audit import utc_timestamp
from rspolicy.model import Decision, Fact, Scalar


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


def sha256_file(path: Path) -> str:
    """The sha256 of a file, streamed: no file is held in memory."""
    with path.open("rb") as fh:
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
                    notes: Iterable[str] = (), inputs: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
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
            "reasons": list(decision.reasons),
            "warnings": list(decision.warnings),
            "evidence": [{"fact": e.fact.value, "source": e.source, "field": e.field, "value": _json_value(e.value)}
                         for e in decision.evidence],
        },
        "operator": requester.operator,
        "host": requester.host,
    }
    if command == "enforce":
        record["output"] = {"files": [dict(o) for o in outputs], "gsd_m": output_gsd_m,
                            "notes": list(notes)}
    if requester.recipient:
        record["recipient"] = requester.recipient
    if requester.purpose:
        record["purpose"] = requester.purpose
    return record
