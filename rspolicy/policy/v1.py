"""Policy files of schema ``rspolicy-policy/1``: one resolution limit per class.

Still read, so that files written for earlier releases keep their meaning;
:func:`rspolicy.policy.core.load_policy` turns them into rules of the
current schema (a class and a ground-resolution comparison each).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

from rspolicy.errors import PolicyError
from rspolicy.model import Action, PolicyRef, ProductClass
from rspolicy.policy.resampling import Resampling

SCHEMA = "rspolicy-policy/1"

Comparator = Literal["<", "<="]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SAR_COMPLEX_MODES = ("intensity", "coherent")
_SAR_DETECTED_MODES = ("amplitude", "intensity")

#: The range a limit or target may take, in metres: finer than a millimetre
#: or coarser than the Earth's circumference is not a resolution.
MIN_LIMIT_M = 1e-3
MAX_LIMIT_M = 4.0e7


@dataclass(frozen=True)
class Rule:
    """One resolution limit for one product class.

    A product is *restricted* by the rule when ``gsd <comparator> limit``
    (after snapping values within the tolerance onto the limit); a restricted
    product gets the rule's action, and a resample goes to ``target_m``.
    """

    id: str
    product_class: ProductClass
    comparator: Comparator
    limit_m: float
    action: Action
    target_m: float | None
    description: str


@dataclass(frozen=True)
class Policy:
    """A validated policy of schema 1."""

    ref: PolicyRef
    title: str
    authority: str
    description: str
    tolerance: float
    disagreement: float
    unlisted_class: Action
    resampling: Resampling
    rules: tuple[Rule, ...]


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, cut short."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:200] + "..."


class _Checker:
    """Typed access to a TOML table that reports errors with file and key."""

    def __init__(self, path: Path, table: Mapping[str, Any], where: str, allowed: set[str]) -> None:
        self.path, self.table, self.where = path, table, where
        unknown = sorted(set(table) - allowed)
        if unknown:
            self.fail(unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def fail(self, key: str, problem: str) -> NoReturn:
        raise PolicyError(f"{self.path}: [{self.where}] {key}: {problem}")

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if not isinstance(value, str) or not value.strip():
            self.fail(key, "must be a non-empty string")
        return str(value).strip()

    def number(self, key: str, default: float | None = None, *, positive: bool = True) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, "must be a number")
        try:
            number = float(value)
        except OverflowError:
            self.fail(key, "must be a finite positive number (this integer does not fit a float)")
        if not math.isfinite(number) or (positive and number <= 0):
            self.fail(key, "must be a finite positive number")
        return number

    def length(self, key: str, default: float | None = None) -> float:
        """A ground distance in metres within [1 mm, 40,000 km]."""
        number = self.number(key, default)
        if not MIN_LIMIT_M <= number <= MAX_LIMIT_M:
            self.fail(key, f"{number:g} m is not a ground resolution in [{MIN_LIMIT_M:g} m, {MAX_LIMIT_M:g} m]")
        return number

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str:
        value = self.string(key, default)
        if value not in options:
            self.fail(key, f"must be one of {', '.join(options)}, not {value!r}")
        return value


def validate_v1(doc: Mapping[str, Any], path: Path, sha256: str) -> Policy:
    """Validate a schema-1 document (raises :class:`PolicyError` naming the file and key)."""
    top = _Checker(path, doc, "top level", {"schema", "policy", "evaluation", "resampling", "rule"})
    if doc.get("schema") != SCHEMA:
        top.fail("schema", f"must be {SCHEMA!r} (this rspolicy reads that schema), not {doc.get('schema')!r}")
    meta = _Checker(path, _table(top, doc, "policy"), "policy", {"name", "version", "title", "authority",
                                                                  "description"})
    name = meta.string("name")
    if not _NAME.match(name):
        meta.fail("name", "lower-case letters, digits, '.', '_' and '-' only")
    ev = _Checker(path, _table(top, doc, "evaluation", required=False), "evaluation",
                  {"tolerance_relative", "disagreement_relative", "unlisted_class"})
    tolerance = ev.number("tolerance_relative", 1e-6)
    if tolerance > 1e-3:
        ev.fail("tolerance_relative", "larger than 1e-3 would let visibly finer products through")
    rs = _Checker(path, _table(top, doc, "resampling", required=False), "resampling",
                  {"method", "sar_complex", "sar_detected"})
    resampling = Resampling(rs.choice("method", ("area-average",), "area-average"),
                            rs.choice("sar_complex", _SAR_COMPLEX_MODES, "intensity"),
                            rs.choice("sar_detected", _SAR_DETECTED_MODES, "amplitude"))
    rules_raw = doc.get("rule", [])
    if not isinstance(rules_raw, list) or not rules_raw:
        top.fail("rule", "at least one [[rule]] table is required")
    rules = tuple(_rule(path, i, r) for i, r in enumerate(rules_raw))
    ids = [r.id for r in rules]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise PolicyError(f"{path}: rule id {duplicate!r} is used twice")
    return Policy(
        ref=PolicyRef(name=name, version=meta.string("version"), sha256=sha256, path=str(path)),
        title=meta.string("title", name),
        authority=meta.string("authority", "unspecified"),
        description=str(meta.table.get("description", "")).strip(),
        tolerance=tolerance,
        disagreement=ev.number("disagreement_relative", 0.10),
        unlisted_class=Action(ev.choice("unlisted_class", ("block", "allow"), "block")),
        resampling=resampling,
        rules=rules,
    )


def _table(checker: _Checker, doc: Mapping[str, Any], key: str, *, required: bool = True) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        checker.fail(key, "must be a table")
    return value


def _rule(path: Path, index: int, raw: Any) -> Rule:
    where = f"rule {index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{path}: [{where}] must be a table")
    c = _Checker(path, raw, where, {"id", "class", "comparator", "limit_m", "action", "target_m", "description"})
    classes = tuple(pc.value for pc in ProductClass if pc is not ProductClass.UNKNOWN)
    product_class = ProductClass(c.choice("class", classes))
    comparator: Comparator = "<" if c.choice("comparator", ("<", "<=")) == "<" else "<="
    limit = c.length("limit_m")
    action = Action(c.choice("action", ("resample", "block")))
    target: float | None = None
    if action is Action.RESAMPLE:
        target = c.length("target_m", limit)
        if target < limit or (comparator == "<=" and target <= limit):
            # A resample target the rule itself restricts would loop, or leak: refuse it.
            advice = "give a target coarser than the limit" if comparator == "<=" else "it must be >= limit_m"
            c.fail("target_m", f"{target:g} m is itself restricted by {comparator} {limit:g} m; {advice}")
    elif "target_m" in raw:
        c.fail("target_m", "only a resample rule has a target")
    return Rule(id=c.string("id"), product_class=product_class, comparator=comparator, limit_m=limit,
                action=action, target_m=target, description=str(raw.get("description", "")).strip())
