"""Export policies: load and validate a rule file, evaluate a product against it.

A policy is a TOML file (``rules/*.toml``). Loading validates it strictly:
unknown keys, wrong types, impossible limits and rules that could let a
restricted resolution through are errors, reported with the file and the
key. Evaluation is a pure function of the policy, the product class and the
ground resolution; it says which rule decided and why.

The file format is versioned by its ``schema`` key so that it can grow
(conditions on satellite, region or recipient) without old files changing
meaning.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn

from rspolicy.errors import PolicyError
from rspolicy.model import Action, PolicyRef, ProductClass, strictest

SCHEMA = "rspolicy-policy/1"
DEFAULT_POLICY = "cnsa-2022"

Comparator = Literal["<", "<="]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SAR_COMPLEX_MODES = ("intensity", "coherent")
_SAR_DETECTED_MODES = ("amplitude", "intensity")

#: A policy file larger than this is not a policy (the default one is ~3 KB).
MAX_POLICY_BYTES = 1024 * 1024

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

    @property
    def relation(self) -> str:
        """The comparator in words, for reasons."""
        return "finer than" if self.comparator == "<" else "at or finer than"

    def restricts(self, gsd_m: float, tolerance: float) -> bool:
        """Whether a product of this ground resolution is restricted.

        >>> rule = Rule("r", ProductClass.PANCHROMATIC, "<", 0.5, Action.RESAMPLE, 0.5, "")
        >>> rule.restricts(0.5, 1e-6), rule.restricts(0.4999999, 1e-6), rule.restricts(0.499, 1e-6)
        (False, False, True)
        """
        value = snap(gsd_m, self.limit_m, tolerance)
        return value < self.limit_m if self.comparator == "<" else value <= self.limit_m


@dataclass(frozen=True)
class Resampling:
    """How a policy wants pixels degraded."""

    method: str
    sar_complex: str
    sar_detected: str


@dataclass(frozen=True)
class Policy:
    """A loaded, validated policy."""

    ref: PolicyRef
    title: str
    authority: str
    description: str
    tolerance: float
    disagreement: float
    unlisted_class: Action
    resampling: Resampling
    rules: tuple[Rule, ...]

    def rules_for(self, product_class: ProductClass) -> tuple[Rule, ...]:
        """The rules that apply to a class."""
        return tuple(r for r in self.rules if r.product_class is product_class)


@dataclass(frozen=True)
class Outcome:
    """What a policy says about one (class, resolution) pair."""

    action: Action
    target_gsd_m: float | None
    rule: str | None
    reason: str


def snap(value: float, limit: float, tolerance: float) -> float:
    """``limit`` when ``value`` is within ``tolerance`` (relative) of it, else ``value``.

    >>> snap(0.4999999996, 0.5, 1e-6), snap(0.499, 0.5, 1e-6)
    (0.5, 0.499)
    """
    return limit if math.isclose(value, limit, rel_tol=tolerance, abs_tol=0.0) else value


def evaluate(policy: Policy, product_class: ProductClass, gsd_m: float | None) -> Outcome:
    """Evaluate one product against a policy.

    Parameters
    ----------
    policy
        The policy.
    product_class
        The product's class; UNKNOWN is always blocked.
    gsd_m
        The finest ground resolution of the product, or None when nothing
        gave one (blocked).

    Returns
    -------
    Outcome
        The strictest action of the rules for the class; among resamples,
        the coarsest target.

    Examples
    --------
    >>> policy = load_policy()
    >>> evaluate(policy, ProductClass.PANCHROMATIC, 0.5).action
    <Action.ALLOW: 'allow'>
    >>> o = evaluate(policy, ProductClass.PANCHROMATIC, 0.3)
    >>> o.action, o.target_gsd_m, o.rule
    (<Action.RESAMPLE: 'resample'>, 0.5, 'cnsa-2022/panchromatic')
    >>> evaluate(policy, ProductClass.UNKNOWN, 10.0).action
    <Action.BLOCK: 'block'>
    """
    if product_class is ProductClass.UNKNOWN:
        return Outcome(Action.BLOCK, None, None, "the product class could not be established (fails closed)")
    if gsd_m is None:
        return Outcome(Action.BLOCK, None, None, "no evidence of the ground resolution (fails closed)")
    rules = policy.rules_for(product_class)
    if not rules:
        return Outcome(policy.unlisted_class, None, None,
                       f"policy {policy.ref.name} has no rule for class {product_class.value}")
    restricting = [r for r in rules if r.restricts(gsd_m, policy.tolerance)]
    if not restricting:
        limits = ", ".join(f"{r.limit_m:g} m ({r.id})" for r in rules)
        return Outcome(Action.ALLOW, None, rules[0].id,
                       f"{product_class.value} at {gsd_m:.6g} m is not finer than the limit {limits}")
    action = strictest(r.action for r in restricting)
    deciding = [r for r in restricting if r.action is action]
    if action is Action.RESAMPLE:
        rule = max(deciding, key=lambda r: r.target_m or r.limit_m)
        target = rule.target_m if rule.target_m is not None else rule.limit_m
        return Outcome(action, target, rule.id,
                       f"{product_class.value} at {gsd_m:.6g} m is {rule.relation} the limit {rule.limit_m:g} m "
                       f"({rule.id}): degrade to {target:g} m")
    rule = deciding[0]
    return Outcome(action, None, rule.id,
                   f"{product_class.value} at {gsd_m:.6g} m is {rule.relation} the limit {rule.limit_m:g} m "
                   f"({rule.id}): {action.value}")


def rules_dirs() -> list[Path]:
    """Where named policies are looked up, in order.

    ``$RSPOLICY_RULES_DIR`` first, then the ``rules/`` directory of a source
    checkout, then the copy installed inside the package.
    """
    dirs: list[Path] = []
    env = os.environ.get("RSPOLICY_RULES_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parent.parent / "rules")
    installed = resources.files("rspolicy").joinpath("rules")
    dirs.append(Path(str(installed)))
    return dirs


def find_policy_file(name_or_path: str | os.PathLike[str] | None) -> Path:
    """Resolve a policy name (``cnsa-2022``) or file path to a file.

    Raises
    ------
    PolicyError
        When no such policy exists.
    """
    spec = DEFAULT_POLICY if name_or_path is None else os.fspath(name_or_path)
    candidate = Path(spec)
    if candidate.suffix == ".toml" or os.sep in spec or candidate.exists():
        if not candidate.is_file():
            raise PolicyError(f"{spec}: no such policy file")
        return candidate
    if not _NAME.match(spec):
        raise PolicyError(f"{spec!r} is not a policy name (lower-case letters, digits, '.', '_', '-')")
    for directory in rules_dirs():
        path = directory / f"{spec}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in rules_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise PolicyError(f"no policy named {spec!r} (known: {', '.join(known) or 'none'})")


def load_policy(name_or_path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate a policy by name or path (default ``cnsa-2022``).

    Raises
    ------
    PolicyError
        With the file and the offending key, when the file is missing, larger
        than :data:`MAX_POLICY_BYTES`, not TOML (including documents nested
        too deeply for the parser), or does not validate. The message is one
        line.
    """
    path = find_policy_file(name_or_path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy ({exc.strerror or exc})") from exc
    if len(raw) > MAX_POLICY_BYTES:
        raise PolicyError(f"{path}: larger than {MAX_POLICY_BYTES} bytes, not a policy file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{path}: not a valid TOML policy ({_one_line(exc)})") from exc
    except RecursionError:
        raise PolicyError(f"{path}: not a valid TOML policy (nested too deeply to parse)") from None
    except (ValueError, ArithmeticError, MemoryError) as exc:
        # tomllib lets some failures through as plain builtins, e.g. an
        # integer of more digits than int() accepts.
        raise PolicyError(f"{path}: not a valid TOML policy ({type(exc).__name__}: {_one_line(exc)})") from None
    try:
        return _validate(doc, path, hashlib.sha256(raw).hexdigest())
    except PolicyError:
        raise
    except (RecursionError, ValueError, ArithmeticError, TypeError, LookupError) as exc:
        raise PolicyError(f"{path}: cannot be validated ({type(exc).__name__}: {_one_line(exc)})") from None


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


def _validate(doc: Mapping[str, Any], path: Path, sha256: str) -> Policy:
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
