"""Policies: load and validate a policy file, compile its rules, evaluate a product against them.

A policy is a TOML file (``rules/*.toml``) of schema ``rspolicy-policy/2``,
validated against the published JSON schema (``policy.schema.json`` beside
this module) and then for what a schema cannot say (zones and lists that
exist, resample targets that escape their own rule). Errors name the file,
the line and the key, and say what was expected.

Evaluation is a pure function of the policy, the product's facts and the
request. Rules are combined deny-overrides: block > refer > mask and
resample (the coarsest target wins, masks add up) > allow; what no rule
covers gets the policy's ``default``. A referred product is blocked unless
the request carries an approval reference.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from rspolicy.errors import PolicyError
from rspolicy.model import Action, FiredRule, Obligations, PolicyRef, ProductClass, Recipient, Request
from rspolicy.policy import v1
from rspolicy.policy.conditions import (
    All,
    ClassIs,
    Compare,
    Condition,
    RecipientList,
    compile_condition,
    facts_tested,
    gsd_upper_bounds,
)
from rspolicy.policy.facts import ProductFacts, normalise_name
from rspolicy.policy.resampling import Resampling
from rspolicy.policy.zones import Zone, load_zone, one_line
from rspolicy.safeio import read_regular

SCHEMA = "rspolicy-policy/2"
DEFAULT_POLICY = "cnsa-2022"
#: Suffix of a policy's test file (``rules/NAME.tests.toml``), which is not a policy.
TESTS_SUFFIX = ".tests.toml"

#: A policy file larger than this is not a policy (the default one is ~4 KB).
MAX_POLICY_BYTES = 1024 * 1024
MIN_LIMIT_M = v1.MIN_LIMIT_M
MAX_LIMIT_M = v1.MAX_LIMIT_M

UnknownClass = Literal["block", "strictest"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ACTION_WORDS = {Action.ALLOW: "allow", Action.BLOCK: "block", Action.REFER: "refer for a person's approval"}


@dataclass(frozen=True)
class Rule:
    """One compiled rule: when its condition holds, what it asks for."""

    id: str
    action: Action
    condition: Condition
    target_m: float | None = None
    zones: tuple[str, ...] = ()
    description: str = ""
    line: int | None = None

    def render(self) -> str:
        """The rule in words."""
        return f"{self.id}: when {self.condition.render()}: {self.asks()}"

    def asks(self) -> str:
        """What the rule asks for, in words."""
        if self.action is Action.RESAMPLE:
            return f"degrade to {self.target_m:g} m"
        if self.action is Action.MASK:
            return f"mask zone {', '.join(self.zones)}"
        return _ACTION_WORDS[self.action]


@dataclass(frozen=True)
class Policy:
    """A loaded, validated, compiled policy.

    Attributes
    ----------
    ref
        Name, version and sha256 over all its files (zones included).
    default
        What a product no rule covers gets (allow, refer or block).
    unknown_class
        ``block``: a product of unknown class is blocked; ``strictest``: it is
        held to every rule that any class could meet.
    lists, zones
        Named recipient lists and areas the rules refer to.
    obligations
        Credit line and conditions of use stamped into every release.
    files
        Every file the policy is made of (the policy, then its zones).
    """

    ref: PolicyRef
    title: str
    authority: str
    description: str
    tolerance: float
    disagreement: float
    default: Action
    unknown_class: UnknownClass
    resampling: Resampling
    rules: tuple[Rule, ...]
    source: str = ""
    lists: Mapping[str, RecipientList] = field(default_factory=dict)
    zones: Mapping[str, Zone] = field(default_factory=dict)
    obligations: Obligations = field(default_factory=Obligations)
    files: tuple[Path, ...] = ()
    schema: str = SCHEMA

    @property
    def uses_time(self) -> bool:
        """Whether a rule tests the age of the data (its decisions then depend on the release time)."""
        return any("age_days" in facts_tested(r.condition) for r in self.rules)


@dataclass(frozen=True)
class Outcome:
    """What a policy says about one product and request.

    Attributes
    ----------
    action
        ALLOW, RESAMPLE, MASK or BLOCK (a referral without approval blocks).
    target_gsd_m
        The coarsest resample target asked for, or None.
    rule
        The rule that decided, or None (fail-closed blocks, the default).
    reason
        One sentence: what decided, and why.
    fired
        Every rule whose condition held (or may hold, for restricting rules).
    mask_zones
        The zones to mask, in policy order.
    approval
        The approval reference a referral was released under.
    """

    action: Action
    target_gsd_m: float | None
    rule: str | None
    reason: str
    fired: tuple[FiredRule, ...] = ()
    mask_zones: tuple[str, ...] = ()
    approval: str | None = None


def snap(value: float, limit: float, tolerance: float) -> float:
    """``limit`` when ``value`` is within ``tolerance`` (relative) of it, else ``value``.

    >>> snap(0.4999999996, 0.5, 1e-6), snap(0.499, 0.5, 1e-6)
    (0.5, 0.499)
    """
    return limit if math.isclose(value, limit, rel_tol=tolerance, abs_tol=0.0) else value


def _subject(facts: ProductFacts) -> str:
    what = " or ".join(sorted(c.value for c in facts.classes)) if facts.classes else "unknown class"
    return f"{what} at {facts.gsd_m:.6g} m"


def _why(rule: Rule, facts: ProductFacts, request: Request) -> str:
    parts = [p for p in rule.condition.explain(facts, request) if p]
    # The resolution reads as part of the subject ("panchromatic at 0.3 m is finer than ..."): first.
    parts.sort(key=lambda p: not p.startswith("is "))
    subject = _subject(facts)
    if not parts:
        return f"{subject}: {rule.description} ({rule.id})" if rule.description else f"{subject} ({rule.id})"
    if parts[0].startswith("is "):
        return f"{subject} {' and '.join(parts)} ({rule.id})"
    return f"{subject}: {'; '.join(parts)} ({rule.id})"


def evaluate(policy: Policy, facts: ProductFacts | ProductClass, gsd_m: float | None = None,
             request: Request | None = None) -> Outcome:
    """Evaluate one product against a policy (a pure function of its arguments).

    Parameters
    ----------
    policy
        The policy.
    facts
        The product's facts; a bare class (with ``gsd_m``) stands for a
        product of which nothing else is known.
    gsd_m
        With a bare class: the finest ground resolution.
    request
        Recipient, purpose, approval and release time (default: none given,
        released now).

    Returns
    -------
    Outcome
        Deny-overrides over every rule that fired.

    Examples
    --------
    >>> policy = load_policy()
    >>> evaluate(policy, ProductClass.PANCHROMATIC, 0.5).action
    <Action.ALLOW: 'allow'>
    >>> o = evaluate(policy, ProductClass.PANCHROMATIC, 0.3)
    >>> o.action, o.target_gsd_m, o.rule
    (<Action.RESAMPLE: 'resample'>, 0.5, 'cnsa-2022/panchromatic')
    >>> o = evaluate(policy, ProductClass.UNKNOWN, 0.8)
    >>> o.action, o.target_gsd_m
    (<Action.RESAMPLE: 'resample'>, 2.0)
    """
    if isinstance(facts, ProductClass):
        facts = ProductFacts.of(facts, gsd_m)
    request = request if request is not None else Request()
    if facts.gsd_m is None:
        return Outcome(Action.BLOCK, None, None, "no evidence of the ground resolution (fails closed)")
    if not facts.class_known and policy.unknown_class == "block":
        return Outcome(Action.BLOCK, None, None, "the product class could not be established (fails closed)")
    fired: list[tuple[Rule, FiredRule]] = []
    certain: list[tuple[Rule, FiredRule]] = []
    for rule in policy.rules:
        may_hold, may_fail = rule.condition.test(facts, request)
        fires = may_hold and not may_fail if rule.action is Action.ALLOW else may_hold
        if fires:
            entry = (rule, FiredRule(rule.id, rule.action, _why(rule, facts, request), rule.target_m, rule.zones))
            fired.append(entry)
            if not may_fail:
                certain.append(entry)
    outcome = _combine(policy, facts, request, fired)
    if len(certain) == len(fired):
        return outcome
    # Some restricting rule only may hold: where it does not, the product may fall to another rule or
    # to the default, which can be stricter (a "block" default). The decision is the stricter of the two.
    return _stricter_of(outcome, _combine(policy, facts, request, certain))


_TIER = {Action.ALLOW: 0, Action.RESAMPLE: 1, Action.MASK: 1, Action.REFER: 2, Action.BLOCK: 3}


def _stricter_of(every: Outcome, certain: Outcome) -> Outcome:
    """The stricter of the outcome with every rule that may hold and the one with the certain rules only."""
    chosen = stricter_outcome(every, certain)
    if chosen.action is certain.action and _TIER[certain.action] > _TIER[every.action]:
        return dataclasses.replace(chosen, fired=every.fired, reason=(
            f"{certain.reason} (had the rules that may hold not held: they may not, so the stricter outcome "
            "applies)"))
    return dataclasses.replace(chosen, fired=every.fired)


def stricter_outcome(first: Outcome, second: Outcome) -> Outcome:
    """``first``, unless ``second`` asks for more: a stricter action, a coarser target or more zones.

    Two outcomes that each ask for something of the mask-and-resample tier the other does not are merged
    (coarsest target, every zone), with ``first``'s reason.
    """
    if _TIER[second.action] != _TIER[first.action]:
        return second if _TIER[second.action] > _TIER[first.action] else first
    if _TIER[first.action] != 1:
        return first
    zones = tuple(dict.fromkeys((*first.mask_zones, *second.mask_zones)))
    target = max((t for t in (first.target_gsd_m, second.target_gsd_m) if t is not None), default=None)
    if zones == first.mask_zones and target == first.target_gsd_m:
        return first
    if zones == second.mask_zones and target == second.target_gsd_m:
        return second
    return dataclasses.replace(first, action=Action.MASK if zones else Action.RESAMPLE, target_gsd_m=target,
                               mask_zones=zones)


def _combine(policy: Policy, facts: ProductFacts, request: Request,
             fired: list[tuple[Rule, FiredRule]]) -> Outcome:
    record = tuple(f for _, f in fired)

    def of(action: Action) -> list[FiredRule]:
        return [f for _, f in fired if f.action is action]

    if blocks := of(Action.BLOCK):
        return Outcome(Action.BLOCK, None, blocks[0].id, f"{blocks[0].why}: block", record)
    refers = of(Action.REFER)
    approved: FiredRule | None = None
    if refers:
        if request.approval is None:
            return Outcome(Action.BLOCK, None, refers[0].id,
                           f"{refers[0].why}: referred for a person's approval, and no approval reference was "
                           "given (--approval REF)", record)
        approved = refers[0]
    resamples, masks = of(Action.RESAMPLE), of(Action.MASK)
    if resamples or masks:
        zones = tuple(dict.fromkeys(z for m in masks for z in m.zones))
        target = max((r.target_gsd_m for r in resamples if r.target_gsd_m is not None), default=None)
        deciding = masks[0] if masks else max(resamples, key=lambda r: r.target_gsd_m or 0.0)
        steps = ([f"mask zone {', '.join(zones)}"] if zones else []) + (
            [f"degrade to {target:g} m"] if target is not None else [])
        note = f" (referral approved under {request.approval})" if approved else ""
        return Outcome(Action.MASK if zones else Action.RESAMPLE, target, deciding.id,
                       f"{deciding.why}: {', '.join(steps)}{note}", record, zones,
                       request.approval if approved else None)
    if approved is not None:
        return Outcome(Action.ALLOW, None, approved.id,
                       f"{approved.why}: referred, and approved under {request.approval}", record,
                       approval=request.approval)
    if allows := of(Action.ALLOW):
        return Outcome(Action.ALLOW, None, allows[0].id, f"{allows[0].why}: allow", record)
    default = policy.default
    uncovered = f"no rule of {policy.ref.name} covers {_subject(facts)}"
    if default is Action.REFER:
        if request.approval is None:
            return Outcome(Action.BLOCK, None, None, f"{uncovered}: the policy refers what no rule covers, and no "
                                                     "approval reference was given (--approval REF)", record)
        return Outcome(Action.ALLOW, None, None, f"{uncovered}: referred by default, and approved under "
                                                 f"{request.approval}", record, approval=request.approval)
    return Outcome(default, None, None, f"{uncovered}: the policy's default is to {default.value}", record)


# --- finding and loading -------------------------------------------------------------------------------


def rules_dirs() -> list[Path]:
    """Where named policies are looked up, in order.

    ``$RSPOLICY_RULES_DIR`` first, then the ``rules/`` directory of a source
    checkout, then the copy installed inside the package.
    """
    dirs: list[Path] = []
    env = os.environ.get("RSPOLICY_RULES_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parent.parent.parent / "rules")
    installed = resources.files("rspolicy").joinpath("rules")
    dirs.append(Path(str(installed)))
    return dirs


def policy_names() -> list[tuple[str, Path]]:
    """Every named policy, the first found for each name (``rules list``)."""
    seen: dict[str, Path] = {}
    for directory in rules_dirs():
        if directory.is_dir():
            for path in sorted(directory.glob("*.toml")):
                if not path.name.endswith(TESTS_SUFFIX):
                    seen.setdefault(path.stem, path)
    return sorted(seen.items())


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
    known = [name for name, _ in policy_names()]
    raise PolicyError(f"no policy named {spec!r} (known: {', '.join(known) or 'none'})")


_one_line = one_line


def read_toml(path: Path, what: str = "policy", limit: int = MAX_POLICY_BYTES) -> tuple[bytes, str, dict[str, Any]]:
    """A TOML file's bytes, text and document, with one-line errors naming the file."""
    try:
        raw = read_regular(path, limit)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    if len(raw) > limit:
        raise PolicyError(f"{path}: larger than {limit} bytes, not a {what} file")
    try:
        text = raw.decode("utf-8")
        doc = tomllib.loads(text)
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: not a valid TOML {what} ({_one_line(exc)})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not a valid TOML {what} ({_one_line(exc)})") from exc
    except RecursionError:
        raise PolicyError(f"{path}: not a valid TOML {what} (nested too deeply to parse)") from None
    except (ValueError, ArithmeticError, MemoryError) as exc:
        # tomllib lets some failures through as plain builtins, e.g. an
        # integer of more digits than int() accepts.
        raise PolicyError(f"{path}: not a valid TOML {what} ({type(exc).__name__}: {_one_line(exc)})") from None
    return raw, text, doc


def load_policy(name_or_path: str | os.PathLike[str] | None = None) -> Policy:
    """Load, validate and compile a policy by name or path (default ``cnsa-2022``).

    Raises
    ------
    PolicyError
        One line with the file, the line and the key of the first problem:
        the file is missing, larger than :data:`MAX_POLICY_BYTES`, not TOML,
        or does not validate (see :func:`check_policy` for all problems).

    Examples
    --------
    >>> policy = load_policy("cnsa-2022")
    >>> policy.ref.name, policy.ref.version
    ('cnsa-2022', '2022.2')
    >>> load_policy("no-such-policy")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rspolicy.errors.PolicyError: no policy named 'no-such-policy' (known: cnsa-2022, de-satdsiv, ...)
    """
    problems, policy = _load(find_policy_file(name_or_path))
    if policy is None:
        raise PolicyError(problems[0])
    return policy


def check_policy(path: str | os.PathLike[str]) -> list[str]:
    """Every problem of a policy file, one line each (empty when it is valid): ``rules check``."""
    try:
        problems, _ = _load(find_policy_file(path))
    except PolicyError as exc:
        return [str(exc)]
    return problems


def _load(path: Path) -> tuple[list[str], Policy | None]:
    raw, text, doc = read_toml(path)
    sha = hashlib.sha256(raw).hexdigest()
    try:
        if doc.get("schema") == v1.SCHEMA:
            return [], _from_v1(v1.validate_v1(doc, path, sha))
        problems = schema_problems(doc, text, path, "policy.schema.json")
        if problems:
            return problems, None
        return [], _compile(doc, text, path, raw)
    except PolicyProblemsError as exc:
        return exc.problems, None
    except PolicyError as exc:
        return [str(exc)], None
    except (RecursionError, ValueError, ArithmeticError, TypeError, LookupError) as exc:
        return [f"{path}: cannot be validated ({type(exc).__name__}: {_one_line(exc)})"], None


# --- schema validation with lines ----------------------------------------------------------------------


@functools.cache
def _schema(name: str) -> Any:
    from jsonschema import Draft202012Validator  # noqa: PLC0415 - only loading a policy needs it

    document = json.loads(resources.files("rspolicy.policy").joinpath(name).read_text(encoding="utf-8"))
    return Draft202012Validator(document)


def schema_path(name: str = "policy.schema.json") -> Path:
    """The published JSON schema of policy files (or of their tests, ``tests.schema.json``)."""
    return Path(str(resources.files("rspolicy.policy").joinpath(name)))


def schema_problems(doc: Mapping[str, Any], text: str, path: Path, schema: str) -> list[str]:
    """Every schema violation as ``FILE:LINE: KEY: problem (expected ...)``, in line order."""
    if doc.get("schema") != _schema(schema).schema["properties"]["schema"]["const"]:
        expected = _schema(schema).schema["properties"]["schema"]["const"]
        line = locate_line(text, ["schema"])
        also = (f" (or {v1.SCHEMA!r}, for a policy written for earlier releases)" if schema == "policy.schema.json"
                else "")
        return [f"{path}:{line or 1}: schema: must be {expected!r}{also}, not {doc.get('schema')!r}"]
    found = []
    for error in _schema(schema).iter_errors(doc):
        where = list(error.absolute_path)
        problem = _problem(error, where)
        line = locate_line(text, where) or 1
        found.append((line, f"{path}:{line}: {_key(where)}: {problem}"))
    found.sort(key=lambda item: item[0])
    return list(dict.fromkeys(message for _, message in found))


def _key(where: Sequence[str | int]) -> str:
    out = ""
    for part in where:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "top level"


def _problem(error: Any, where: list[str | int]) -> str:
    schema, value, kind = error.schema, error.instance, error.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        if extra:
            where.append(extra[0])
        return f"unknown key {extra[0]!r}" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    if kind == "required":
        missing = [k for k in error.validator_value if k not in value]
        return f"missing key {missing[0]!r}" + (f" ({_REQUIRED_WORDS[missing[0]]})" if missing[0] in _REQUIRED_WORDS
                                                else "")
    if kind == "enum":
        return f"{value!r} is not allowed (expected one of: {', '.join(map(str, error.validator_value))})"
    if kind == "const":
        return f"expected {error.validator_value!r}, not {value!r}"
    if kind == "type":
        wanted = str(error.validator_value)
        return f"expected {_TYPE_WORDS.get(wanted, wanted)}, not {_shown(value)}"
    if kind == "oneOf":
        if where and where[-1] == "class":
            classes = ", ".join(schema["oneOf"][0]["enum"])
            return f"{value!r} is not a class (expected one of: {classes}; or a list of them)"
        return f"expected a name or a non-empty list of names, not {_shown(value)}"
    if kind == "not":
        keys = [k for k in error.validator_value.get("required", []) if isinstance(value, dict) and k in value]
        if keys:
            where.append(keys[0])
            return f"not allowed here ({_NOT_WORDS.get(keys[0], 'not allowed with this action')})"
        return "not allowed here"
    if kind == "pattern":
        return f"{value!r} does not have the expected form ({_PATTERN_WORDS.get(error.validator_value, error.message)})"
    if kind in ("exclusiveMinimum", "minimum", "maximum"):
        return f"{value!r} is out of range (expected {_BOUND_WORDS[kind]} {error.validator_value})"
    if kind in ("minItems", "minProperties", "minLength"):
        return "must not be empty"
    return str(error.message)


_TYPE_WORDS = {"object": "a table", "array": "a list", "string": "a string", "number": "a number",
               "boolean": "true or false", "integer": "an integer"}
_NOT_WORDS = {"target_m": "only a rule with action = \"resample\" has a target",
              "zones": "only a rule with action = \"mask\" names zones"}
_REQUIRED_WORDS = {"target_m": "a resample rule gives its target in metres",
                   "zones": "a mask rule names the zones it masks"}
_BOUND_WORDS = {"exclusiveMinimum": "more than", "minimum": "at least", "maximum": "at most"}
_PATTERN_WORDS = {"^[a-z0-9][a-z0-9._-]*$": "lower-case letters, digits, '.', '_' and '-'",
                  "^[a-z0-9][a-z0-9._/-]*$": "lower-case letters, digits, '.', '_', '/' and '-'",
                  "^[A-Za-z]{2}(:.+)?$": "an ISO 3166 country code, or CC:ORGANISATION"}


def _shown(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__) + (
        f" ({value!r})" if isinstance(value, str | int | float) else "")


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def locate_line(text: str, where: Sequence[str | int]) -> int | None:
    r"""The line of ``where`` (a key path such as ``["rule", 2, "when", "gsd_m"]``) in a TOML text.

    Tables, sub-tables and arrays of tables are found by their headers, keys
    by ``key =`` (dotted or inside an inline table) within the part found so
    far, list items of a list written one item per line by their line; the
    deepest part found gives the line.

    >>> text = 'a = 1\n[[rule]]\nid = "x"\n[[rule]]\nid = "y"\nwhen = { gsd_m = { "<" = 1 } }'
    >>> locate_line(text, ["rule", 1, "when", "gsd_m"])
    6
    >>> locate_line('[[rule]]\nid = "x"\n[rule.when]\nclass = "sar"', ["rule", 0, "when", "class"])
    4
    """
    lines = text.splitlines()
    headers: list[tuple[int, bool, list[str]]] = []
    for number, line in enumerate(lines, 1):
        match = _HEADER.match(line)
        if match:
            headers.append((number, match.group(1) == "[[", [p.strip().strip('"') for p in match.group(2).split(".")]))
    first_header = headers[0][0] if headers else len(lines) + 1
    start, end = 1, first_header  # the part of the text the path is in so far: top-level keys first
    prefix: list[str] = []
    best: int | None = None
    key_line: int | None = None
    path = list(where)
    index = 0
    while index < len(path):
        part = path[index]
        if isinstance(part, int):
            if key_line is not None and _strip_comment(lines[key_line - 1]).endswith("["):
                item = key_line + 1 + part
                if item < end:
                    best = start = item
            index += 1
            continue
        names = [*prefix, part]
        inside = [h for h in headers if h[2] == names and (not prefix or start <= h[0] < end)]
        if inside:
            chosen = inside[0]
            if chosen[1] and index + 1 < len(path) and isinstance(path[index + 1], int):
                position = int(path[index + 1])
                if position < len(inside):
                    chosen = inside[position]
                index += 1
            best = start = chosen[0]
            later = [h[0] for h in headers if h[0] > start and not (h[2][:len(names)] == names and not
                                                                      (h[1] and h[2] == names))]
            end = later[0] if later else len(lines) + 1
            prefix, key_line = names, None
            index += 1
            continue
        key = re.compile(r'(^|[{,.\s])"?' + re.escape(part) + r'"?\s*[=.]')
        found = next((n for n in range(start, end) if key.search(lines[n - 1])), None)
        if found is None:
            deeper = [h for h in headers if h[2][:len(names)] == names and (not prefix or start <= h[0] < end)]
            if not deeper:
                break
            # Only sub-tables ([zones.a] for "zones"): the next part names one of them.
            start, end = deeper[0][0], len(lines) + 1
            prefix, key_line = names, None
            index += 1
            continue
        best = start = key_line = found
        prefix = names
        index += 1
    return best


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0].rstrip() if '"' not in line else line.rstrip()


# --- compiling -----------------------------------------------------------------------------------------


def _compile(doc: Mapping[str, Any], text: str, path: Path, raw: bytes) -> Policy:
    def fail(where: Sequence[str | int], problem: str) -> None:
        line = locate_line(text, where) or 1
        raise PolicyError(f"{path}:{line}: {_key(where)}: {problem}")

    meta = doc["policy"]
    evaluation = doc.get("evaluation", {})
    tolerance = float(evaluation.get("tolerance_relative", 1e-6))
    problems: list[str] = []
    lists: dict[str, RecipientList] = {}
    for name, spec in doc.get("lists", {}).items():
        try:
            lists[name] = _recipient_list(name, spec, fail)
        except PolicyError as exc:
            problems.append(str(exc))
    zones: dict[str, Zone] = {}
    zone_files: list[tuple[Path, str]] = []
    for name, spec in doc.get("zones", {}).items():
        try:
            zones[name], file, file_sha = load_zone(name, spec, path, fail)
        except PolicyError as exc:
            problems.append(str(exc))
        else:
            zone_files.append((file, file_sha))
    rules: list[Rule] = []
    for index, spec in enumerate(doc["rule"]):
        try:
            rules.append(_rule(spec, ["rule", index], text, tolerance, lists, zones, fail))
        except PolicyError as exc:
            problems.append(str(exc))
    ids = [spec["id"] for spec in doc["rule"]]
    for index, rule_id in enumerate(ids):
        if rule_id in ids[:index]:
            try:
                fail(["rule", index, "id"], f"rule id {rule_id!r} is used twice")
            except PolicyError as exc:
                problems.append(str(exc))
    if problems:
        raise PolicyProblemsError(problems)
    obligations = doc.get("obligations", {})
    sha = _identity(path, raw, zone_files)
    resampling = doc.get("resampling", {})
    return Policy(
        ref=PolicyRef(name=meta["name"], version=meta["version"], sha256=sha, path=str(path)),
        title=meta.get("title", meta["name"]), authority=meta.get("authority", "unspecified"),
        description=meta.get("description", "").strip(), tolerance=tolerance,
        disagreement=float(evaluation.get("disagreement_relative", 0.10)),
        default=Action(evaluation.get("default", "block")),
        unknown_class=evaluation.get("unknown_class", "block"),
        resampling=Resampling(resampling.get("method", "area-average"), resampling.get("sar_complex", "intensity"),
                              resampling.get("sar_detected", "amplitude")),
        rules=tuple(rules), source=meta.get("source", ""), lists=lists, zones=zones,
        obligations=Obligations(obligations.get("credit"), tuple(obligations.get("conditions", ()))),
        files=(path, *(file for file, _ in zone_files)))


class PolicyProblemsError(PolicyError):
    """Several problems of one policy file, each a line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems[0])
        self.problems = problems


def _rule(spec: Mapping[str, Any], where: list[str | int], text: str, tolerance: float,
          lists: Mapping[str, RecipientList], zones: Mapping[str, Zone], fail: Any) -> Rule:
    condition = (compile_condition(spec["when"], tolerance=tolerance, lists=lists, zones=zones,
                                   where=[*where, "when"], fail=fail) if "when" in spec else All(()))
    action = Action(spec["action"])
    target = float(spec["target_m"]) if "target_m" in spec else None
    if target is not None:
        if not MIN_LIMIT_M <= target <= MAX_LIMIT_M:
            fail([*where, "target_m"], f"{target:g} m is not a ground resolution "
                                       f"(expected {MIN_LIMIT_M:g} m to {MAX_LIMIT_M:g} m)")
        _check_target(condition, target, tolerance, [*where, "target_m"], fail)
    for zone in spec.get("zones", []):
        if zone not in zones:
            fail([*where, "zones"], f"no zone named {zone!r} in [zones] "
                                    f"(defined: {', '.join(sorted(zones)) or 'none'})")
    return Rule(spec["id"], action, condition, target, tuple(spec.get("zones", ())),
                spec.get("description", "").strip(), locate_line(text, where))


def _check_target(condition: Condition, target: float, tolerance: float, where: Sequence[str | int],
                  fail: Any) -> None:
    """A resample target must escape its own rule, or the degraded output would be restricted again."""
    bounds = gsd_upper_bounds(condition)
    if not bounds:
        fail(where, "a resample rule needs a gsd_m '<' or '<=' limit in its condition (directly or under 'all'), "
                    "which the target escapes; otherwise its own output would be restricted again")
    for op, limit in bounds:
        # Snapped as a product's resolution is: a target within the tolerance of an inclusive limit is on it.
        snapped = snap(target, limit, tolerance)
        if snapped < limit or (op == "<=" and snapped <= limit):
            advice = "give a target coarser than the limit" if op == "<=" else "it must be >= the limit"
            fail(where, f"{target:g} m is itself restricted by gsd_m {op} {limit:g} m; {advice}")


def _recipient_list(name: str, spec: Mapping[str, Any], fail: Any) -> RecipientList:
    countries: set[str] = set()
    organisations: set[tuple[str, str]] = set()
    for index, entry in enumerate(spec["recipients"]):
        try:
            recipient = parse_recipient(entry, strict=True)
        except PolicyError as exc:
            fail(["lists", name, "recipients", index], str(exc))
            raise
        assert recipient.country is not None  # strict parsing requires one
        if recipient.organisation is None:
            countries.add(recipient.country)
        else:
            organisations.add((recipient.country, normalise_name(recipient.organisation)))
    return RecipientList(name, frozenset(countries), frozenset(organisations), spec.get("description", ""),
                         bool(spec.get("example", False)))


def parse_recipient(text: str, *, strict: bool = False) -> Recipient:
    """``CC`` or ``CC:ORGANISATION`` with an ISO 3166-1 alpha-2 country code, else a bare organisation name.

    >>> parse_recipient("de:DLR")
    Recipient(country='DE', organisation='DLR')
    >>> parse_recipient("European Space Agency")
    Recipient(country=None, organisation='European Space Agency')

    Raises
    ------
    PolicyError
        When a two-letter code (alone or before ``:``) is not an ISO 3166-1
        alpha-2 country, the text is empty, or ``strict`` (policy lists) and
        no country is given.
    """
    import pycountry  # noqa: PLC0415 - only recipients need the country table

    country, colon, organisation = text.partition(":")
    code = country.strip().upper()
    organisation = " ".join(organisation.split())
    if not colon and not (len(code) == 2 and code.isalpha()):
        name = " ".join(text.split())
        if strict or not name:
            raise PolicyError(f"{text!r} is not CC or CC:ORGANISATION with an ISO 3166-1 alpha-2 country code")
        return Recipient(None, name)
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise PolicyError(f"{text!r}: {code!r} is not an ISO 3166-1 alpha-2 country code (expected e.g. DE or DE:DLR)")
    if colon and not organisation:
        raise PolicyError(f"{text!r}: no organisation after ':' (expected e.g. DE:DLR)")
    return Recipient(code, organisation or None)


def _identity(path: Path, raw: bytes, zone_files: Sequence[tuple[Path, str]]) -> str:
    """sha256 of the policy file alone, or over the policy and its zone files when it has any.

    The combined digest covers each file's name relative to the policy's folder and its sha256, so
    a zone edited, renamed or swapped changes the policy's identity.
    """
    own = hashlib.sha256(raw).hexdigest()
    if not zone_files:
        return own
    digest = hashlib.sha256(f"{path.name}\0{own}\n".encode())
    base = path.resolve().parent
    for file, file_sha in sorted(zone_files):
        # The digest of the bytes that were parsed, not of a second read.
        digest.update(f"{file.relative_to(base).as_posix()}\0{file_sha}\n".encode())
    return digest.hexdigest()


def _from_v1(old: v1.Policy) -> Policy:
    """A schema-1 policy as rules of the current schema: the same decisions, the same reasons' numbers."""
    rules: list[Rule] = []
    for r in old.rules:
        condition = All((ClassIs(frozenset({r.product_class})),
                         Compare("gsd_m", ((r.comparator, r.limit_m),), old.tolerance)))
        rules.append(Rule(r.id, r.action, condition, r.target_m, (), r.description))
    listed = frozenset(r.product_class for r in old.rules)
    rules.append(Rule(f"{old.ref.name}/listed-classes", Action.ALLOW, ClassIs(listed), None, (),
                      "a class with a limit, not finer than it"))
    return Policy(ref=old.ref, title=old.title, authority=old.authority, description=old.description,
                  tolerance=old.tolerance, disagreement=old.disagreement, default=old.unlisted_class,
                  unknown_class="block", resampling=old.resampling,
                  rules=tuple(rules), files=(Path(old.ref.path),), schema=v1.SCHEMA)


def request_from(recipient: str | Recipient | None = None, purpose: str | None = None, approval: str | None = None,
                 at: Any = None) -> Request:
    """A :class:`~rspolicy.model.Request` from command-line style values.

    Raises
    ------
    PolicyError
        For a recipient whose country is not an ISO code, an empty purpose
        or approval, or a time that is not ISO 8601 with a timezone.
    """
    from datetime import UTC, datetime  # noqa: PLC0415

    who = parse_recipient(recipient) if isinstance(recipient, str) else recipient
    if purpose is not None and not purpose.strip():
        raise PolicyError("--purpose: must not be empty")
    if approval is not None and not approval.strip():
        raise PolicyError("--approval: must not be empty")
    when: datetime
    if at is None:
        when = datetime.now(UTC)
    elif isinstance(at, datetime):
        when = at
    else:
        try:
            when = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
        except ValueError:
            raise PolicyError(f"--at: {at!r} is not an ISO 8601 time (e.g. 2026-12-03T12:00:00Z)") from None
    if when.tzinfo is None:
        raise PolicyError(f"--at: {at!r} has no timezone (add Z for UTC, or +08:00)")
    return Request(who, purpose.strip().casefold() if purpose else None, approval.strip() if approval else None,
                   when.astimezone(UTC))

