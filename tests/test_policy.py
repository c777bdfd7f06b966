"""Policy files: loading, validation, evaluation at and around the limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rspolicy.errors import PolicyError, RSPolicyError
from rspolicy.model import Action, ProductClass
from rspolicy.policy import evaluate, find_policy_file, load_policy
from rspolicy.policy.conditions import classes_named, gsd_upper_bounds

REPO = Path(__file__).resolve().parents[1]


def test_default_policy_is_the_real_file() -> None:
    policy = load_policy()
    path = REPO / "rules" / "cnsa-2022.toml"
    assert policy.ref.name == "cnsa-2022"
    assert policy.ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    limits = {r.id: (gsd_upper_bounds(r.condition), r.target_m) for r in policy.rules}
    assert limits["cnsa-2022/panchromatic"] == ([("<", 0.5)], 0.5)
    assert limits["cnsa-2022/multispectral"] == ([("<", 2.0)], 2.0)
    assert limits["cnsa-2022/sar"] == ([("<", 1.0)], 1.0)
    assert policy.unknown_class == "strictest" and policy.default is Action.BLOCK


@pytest.mark.parametrize(("cls", "gsd", "action", "target"), [
    (ProductClass.PANCHROMATIC, 0.5, Action.ALLOW, None),
    (ProductClass.PANCHROMATIC, 0.5 * (1 - 5e-7), Action.ALLOW, None),  # within 1e-6: counts as the limit
    (ProductClass.PANCHROMATIC, 0.499, Action.RESAMPLE, 0.5),
    (ProductClass.PANCHROMATIC, 0.3, Action.RESAMPLE, 0.5),
    (ProductClass.PANCHROMATIC, 0.81, Action.ALLOW, None),
    (ProductClass.MULTISPECTRAL, 2.0, Action.ALLOW, None),
    (ProductClass.MULTISPECTRAL, 1.999, Action.RESAMPLE, 2.0),
    (ProductClass.SAR, 1.0, Action.ALLOW, None),
    (ProductClass.SAR, 0.5, Action.RESAMPLE, 1.0),
    (ProductClass.UNKNOWN, 100.0, Action.ALLOW, None),  # held to the strictest class: coarser than every limit
    (ProductClass.UNKNOWN, 0.8, Action.RESAMPLE, 2.0),
    (ProductClass.UNKNOWN, 0.3, Action.RESAMPLE, 2.0),
    (ProductClass.UNKNOWN, None, Action.BLOCK, None),
    (ProductClass.PANCHROMATIC, None, Action.BLOCK, None),
])
def test_boundaries(cls: ProductClass, gsd: float | None, action: Action, target: float | None) -> None:
    outcome = evaluate(load_policy(), cls, gsd)
    assert (outcome.action, outcome.target_gsd_m) == (action, target)


@given(st.floats(0.01, 100.0))
def test_nothing_finer_than_the_limit_is_allowed(gsd: float) -> None:
    policy = load_policy()
    for product_class in ProductClass:
        outcome = evaluate(policy, product_class, gsd)
        for rule in policy.rules:
            classes = classes_named(rule.condition)
            if product_class is not ProductClass.UNKNOWN and product_class not in classes:
                continue
            for _, limit in gsd_upper_bounds(rule.condition):
                if outcome.action is Action.ALLOW:
                    assert gsd >= limit * (1 - 1e-6)
                else:
                    assert outcome.target_gsd_m is not None and outcome.target_gsd_m >= limit


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(body)
    return path


BASE = """
schema = "rspolicy-policy/1"
[policy]
name = "test"
version = "1"
[[rule]]
id = "pan"
class = "panchromatic"
comparator = "{comparator}"
limit_m = 0.5
action = "{action}"
{extra}
"""


def test_inclusive_comparator_blocks_the_limit_itself(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, BASE.format(comparator="<=", action="block", extra="")))
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.5).action is Action.BLOCK
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.5000001).action is Action.BLOCK  # snaps onto the limit
    assert evaluate(policy, ProductClass.PANCHROMATIC, 0.51).action is Action.ALLOW


def test_class_without_rule_is_blocked(tmp_path: Path) -> None:
    policy = load_policy(_write(tmp_path, BASE.format(comparator="<", action="resample", extra="")))
    outcome = evaluate(policy, ProductClass.SAR, 50.0)
    assert outcome.action is Action.BLOCK and "no rule of test covers sar at 50 m" in outcome.reason


@pytest.mark.parametrize(("body", "message"), [
    (BASE.format(comparator="<", action="resample", extra="typo = 1"), "typo: unknown key"),
    (BASE.format(comparator="<>", action="resample", extra=""), "comparator"),
    (BASE.format(comparator="<=", action="resample", extra=""), "target_m"),  # target == limit is restricted
    (BASE.format(comparator="<", action="resample", extra="target_m = 0.4"), "target_m"),
    (BASE.format(comparator="<", action="block", extra="target_m = 1.0"), "only a resample rule"),
    (BASE.format(comparator="<", action="resample", extra="").replace("limit_m = 0.5", "limit_m = -1"), "limit_m"),
    (BASE.format(comparator="<", action="resample", extra="").replace('"panchromatic"', '"lidar"'), "class"),
    (BASE.format(comparator="<", action="resample", extra="").replace("rspolicy-policy/1", "v9"), "schema"),
    ("not toml = = 1", "not a valid TOML"),
])
def test_invalid_policies_are_refused(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as info:
        load_policy(_write(tmp_path, body))
    assert str(tmp_path / "p.toml") in str(info.value)
    assert isinstance(info.value, RSPolicyError) and isinstance(info.value, ValueError)


def test_unknown_policy_name_lists_known() -> None:
    with pytest.raises(PolicyError, match="cnsa-2022"):
        find_policy_file("no-such-policy")


# --- hostile policy files ------------------------------------------------------------------------

DEFAULT_TEXT = (REPO / "rules" / "cnsa-2022.toml").read_text(encoding="utf-8")
LIMIT = '"<" = 0.5'


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "message"), [
    ("x = " + "[" * 10_000 + "]" * 10_000, "nested too deeply"),
    ("x = " + "{a = " * 10_000 + "1" + "}" * 10_000, "nested too deeply"),
    (DEFAULT_TEXT.replace(LIMIT, '"<" = ' + "9" * 5000, 1), "not a valid TOML policy"),
    (DEFAULT_TEXT.replace(LIMIT, '"<" = ' + "9" * 400, 1), "does not fit a float"),
    (DEFAULT_TEXT.replace(LIMIT, '"<" = 1e-300', 1), "not a ground resolution"),
    (DEFAULT_TEXT.replace(LIMIT, '"<" = 1e400', 1), "finite positive"),
    (DEFAULT_TEXT.replace(LIMIT, '"<" = nan', 1), "finite positive"),
    ("# " + "x" * (1024 * 1024) + "\n" + DEFAULT_TEXT, "larger than 1048576 bytes"),
    ("\udcff", "not a valid TOML policy"),
])
def test_hostile_policy_files_end_as_one_line_policy_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "hostile.toml"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(PolicyError, match=message) as exc:
        load_policy(path)
    assert str(exc.value).startswith(f"{path}:")  # the line follows when the problem has one
    assert "\n" not in str(exc.value)


def test_default_policy_edits_used_above_hit_a_real_key() -> None:
    # The replacements above must change the file, or those tests prove nothing.
    assert DEFAULT_TEXT.count(LIMIT) == 1


def test_a_policy_just_under_the_size_bound_loads(tmp_path: Path) -> None:
    padding = "# " + "x" * (1024 * 1024 - len(DEFAULT_TEXT.encode()) - 10) + "\n"
    path = write_policy(tmp_path, padding + DEFAULT_TEXT)
    assert load_policy(path).ref.name == "cnsa-2022"


@pytest.mark.parametrize(("message", "shown"), [
    ("a\n  b\tc  ", "a b c"),
    ("x" * 200, "x" * 200),
    ("x" * 201, "x" * 200 + "..."),
    ("y" * 198 + " \n z", "y" * 198 + " z"),
    ("", ""),
])
def test_policy_error_details_are_one_line_and_cut_at_200_characters(message: str, shown: str) -> None:
    from rspolicy.policy import _one_line

    assert _one_line(ValueError(message)) == shown
