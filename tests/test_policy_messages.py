"""Policy files are refused with one exact message each: the file, the table, the key and the problem.

Every message below is the one a policy author reads; a change to how a
policy is checked or worded shows up here.
"""

# The golden messages are kept whole, one per line, so that each reads as the author sees it.
# ruff: noqa: E501

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from rspolicy.errors import PolicyError
from rspolicy.model import Action, ProductClass
from rspolicy.policy import MAX_LIMIT_M, MIN_LIMIT_M, evaluate, load_policy, rules_dirs
from rspolicy.policy.conditions import classes_named, gsd_upper_bounds

HEAD = 'schema = "rspolicy-policy/1"\n[policy]\nname = "p"\nversion = "1"\n'
RULE = '[[rule]]\nid = "r"\nclass = "panchromatic"\ncomparator = "<"\nlimit_m = 0.5\naction = "resample"\n'

CASES = {
    "no_schema": '[policy]\nname = "p"\nversion = "1"\n' + RULE,
    "wrong_schema": 'schema = "x/2"\n[policy]\nname = "p"\nversion = "1"\n' + RULE,
    "unknown_top": 'extra = 1\n' + HEAD + RULE,
    "no_policy_table": 'schema = "rspolicy-policy/1"\n' + RULE,
    "policy_not_table": 'schema = "rspolicy-policy/1"\npolicy = 3\n' + RULE,
    "unknown_policy_key": HEAD + 'colour = "red"\n' + RULE,
    "bad_name": 'schema = "rspolicy-policy/1"\n[policy]\nname = "Bad Name"\nversion = "1"\n' + RULE,
    "name_not_string": 'schema = "rspolicy-policy/1"\n[policy]\nname = 5\nversion = "1"\n' + RULE,
    "blank_version": 'schema = "rspolicy-policy/1"\n[policy]\nname = "p"\nversion = "  "\n' + RULE,
    "unknown_evaluation_key": HEAD + '[evaluation]\nspeed = 1\n' + RULE,
    "evaluation_not_table": 'schema = "rspolicy-policy/1"\nevaluation = 1\n[policy]\nname = "p"\nversion = "1"\n' + RULE,
    "tolerance_string": HEAD + '[evaluation]\ntolerance_relative = "small"\n' + RULE,
    "tolerance_bool": HEAD + '[evaluation]\ntolerance_relative = true\n' + RULE,
    "tolerance_zero": HEAD + '[evaluation]\ntolerance_relative = 0.0\n' + RULE,
    "tolerance_negative": HEAD + '[evaluation]\ntolerance_relative = -1e-6\n' + RULE,
    "tolerance_large": HEAD + '[evaluation]\ntolerance_relative = 0.01\n' + RULE,
    "tolerance_nan": HEAD + '[evaluation]\ntolerance_relative = nan\n' + RULE,
    "huge_int": HEAD + '[evaluation]\ndisagreement_relative = ' + '9'*400 + '\n' + RULE,
    "unlisted_bad": HEAD + '[evaluation]\nunlisted_class = "resample"\n' + RULE,
    "resampling_unknown": HEAD + '[resampling]\nkernel = "x"\n' + RULE,
    "resampling_not_table": 'schema = "rspolicy-policy/1"\nresampling = "x"\n[policy]\nname = "p"\nversion = "1"\n' + RULE,
    "method_bad": HEAD + '[resampling]\nmethod = "nearest"\n' + RULE,
    "sar_complex_bad": HEAD + '[resampling]\nsar_complex = "phase"\n' + RULE,
    "sar_detected_bad": HEAD + '[resampling]\nsar_detected = "db"\n' + RULE,
    "no_rules": HEAD,
    "rules_not_list": 'rule = 3\n' + HEAD,
    "rule_not_table": 'rule = [1]\n' + HEAD,
    "rule_unknown_key": HEAD + RULE + 'colour = 1\n',
    "rule_bad_class": HEAD + RULE.replace('"panchromatic"', '"unknown"'),
    "rule_bad_comparator": HEAD + RULE.replace('"<"', '">"'),
    "rule_limit_tiny": HEAD + RULE.replace('0.5', '0.0009'),
    "rule_limit_huge": HEAD + RULE.replace('0.5', '4.1e7'),
    "rule_bad_action": HEAD + RULE.replace('"resample"', '"mask"'),
    "second_rule_target_below": HEAD + RULE + RULE.replace('id = "r"', 'id = "s"') + 'target_m = 0.4\n',
    "rule_le_target_equal": HEAD + RULE.replace('"<"', '"<="') + 'target_m = 0.5\n',
    "block_with_target": HEAD + RULE.replace('"resample"', '"block"') + 'target_m = 1.0\n',
    "duplicate_ids": HEAD + RULE + RULE,
}

EXPECTED = {
    'no_schema': "{path}:1: schema: must be 'rspolicy-policy/2' (or 'rspolicy-policy/1', for a policy written for "
                 "earlier releases), not None",
    'wrong_schema': "{path}:1: schema: must be 'rspolicy-policy/2' (or 'rspolicy-policy/1', for a policy written for "
                    "earlier releases), not 'x/2'",
    'unknown_top': '{path}: [top level] extra: unknown key (allowed: evaluation, policy, resampling, rule, schema)',
    'no_policy_table': '{path}: [top level] policy: must be a table',
    'policy_not_table': '{path}: [top level] policy: must be a table',
    'unknown_policy_key': '{path}: [policy] colour: unknown key (allowed: authority, description, name, title, version)',
    'bad_name': "{path}: [policy] name: lower-case letters, digits, '.', '_' and '-' only",
    'name_not_string': '{path}: [policy] name: must be a non-empty string',
    'blank_version': '{path}: [policy] version: must be a non-empty string',
    'unknown_evaluation_key': '{path}: [evaluation] speed: unknown key (allowed: disagreement_relative, tolerance_relative, unlisted_class)',
    'evaluation_not_table': '{path}: [top level] evaluation: must be a table',
    'tolerance_string': '{path}: [evaluation] tolerance_relative: must be a number',
    'tolerance_bool': '{path}: [evaluation] tolerance_relative: must be a number',
    'tolerance_zero': '{path}: [evaluation] tolerance_relative: must be a finite positive number',
    'tolerance_negative': '{path}: [evaluation] tolerance_relative: must be a finite positive number',
    'tolerance_large': '{path}: [evaluation] tolerance_relative: larger than 1e-3 would let visibly finer products through',
    'tolerance_nan': '{path}: [evaluation] tolerance_relative: must be a finite positive number',
    'huge_int': '{path}: [evaluation] disagreement_relative: must be a finite positive number (this integer does not fit a float)',
    'unlisted_bad': "{path}: [evaluation] unlisted_class: must be one of block, allow, not 'resample'",
    'resampling_unknown': '{path}: [resampling] kernel: unknown key (allowed: method, sar_complex, sar_detected)',
    'resampling_not_table': '{path}: [top level] resampling: must be a table',
    'method_bad': "{path}: [resampling] method: must be one of area-average, not 'nearest'",
    'sar_complex_bad': "{path}: [resampling] sar_complex: must be one of intensity, coherent, not 'phase'",
    'sar_detected_bad': "{path}: [resampling] sar_detected: must be one of amplitude, intensity, not 'db'",
    'no_rules': '{path}: [top level] rule: at least one [[rule]] table is required',
    'rules_not_list': '{path}: [top level] rule: at least one [[rule]] table is required',
    'rule_not_table': '{path}: [rule 1] must be a table',
    'rule_unknown_key': '{path}: [rule 1] colour: unknown key (allowed: action, class, comparator, description, id, limit_m, target_m)',
    'rule_bad_class': "{path}: [rule 1] class: must be one of panchromatic, multispectral, hyperspectral, thermal, sar, not 'unknown'",
    'rule_bad_comparator': "{path}: [rule 1] comparator: must be one of <, <=, not '>'",
    'rule_limit_tiny': '{path}: [rule 1] limit_m: 0.0009 m is not a ground resolution in [0.001 m, 4e+07 m]',
    'rule_limit_huge': '{path}: [rule 1] limit_m: 4.1e+07 m is not a ground resolution in [0.001 m, 4e+07 m]',
    'rule_bad_action': "{path}: [rule 1] action: must be one of resample, block, not 'mask'",
    'second_rule_target_below': '{path}: [rule 2] target_m: 0.4 m is itself restricted by < 0.5 m; it must be >= limit_m',
    'rule_le_target_equal': '{path}: [rule 1] target_m: 0.5 m is itself restricted by <= 0.5 m; give a target coarser than the limit',
    'block_with_target': '{path}: [rule 1] target_m: only a resample rule has a target',
    'duplicate_ids': "{path}: rule id 'r' is used twice",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_problem_has_its_own_message(tmp_path: Path, name: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(CASES[name])
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == EXPECTED[name].format(path=path)


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return load_policy(path)


def test_what_a_policy_says_is_what_is_loaded(tmp_path: Path) -> None:
    policy = _load(tmp_path, HEAD + 'title = "T"\nauthority = "A"\ndescription = "  words  "\n'
                   '[evaluation]\ntolerance_relative = 1e-3\ndisagreement_relative = 0.25\nunlisted_class = "allow"\n'
                   '[resampling]\nmethod = "area-average"\nsar_complex = "coherent"\nsar_detected = "intensity"\n'
                   + RULE + 'target_m = 0.75\ndescription = " half a metre "\n')
    assert (policy.ref.name, policy.ref.version, policy.title, policy.authority, policy.description) == (
        "p", "1", "T", "A", "words")
    assert policy.ref.path == str(tmp_path / "policy.toml")
    assert (policy.tolerance, policy.disagreement, policy.default) == (1e-3, 0.25, Action.ALLOW)
    assert (policy.resampling.method, policy.resampling.sar_complex, policy.resampling.sar_detected) == (
        "area-average", "coherent", "intensity")
    # A schema-1 rule becomes a rule of the current schema, plus one allowing the classes it names.
    rule, listed = policy.rules
    assert (rule.id, classes_named(rule.condition), gsd_upper_bounds(rule.condition), rule.action, rule.target_m,
            rule.description) == ("r", {ProductClass.PANCHROMATIC}, [("<", 0.5)], Action.RESAMPLE, 0.75,
                                   "half a metre")
    assert (listed.id, listed.action, classes_named(listed.condition)) == (
        "p/listed-classes", Action.ALLOW, {ProductClass.PANCHROMATIC})
    assert (policy.schema, policy.unknown_class) == ("rspolicy-policy/1", "block")


def test_defaults(tmp_path: Path) -> None:
    policy = _load(tmp_path, HEAD + RULE + RULE.replace('id = "r"', 'id = "b"').replace('"resample"', '"block"'))
    assert policy.rules[1].action is Action.BLOCK and policy.rules[1].target_m is None
    assert (policy.title, policy.authority, policy.description) == ("p", "unspecified", "")
    assert (policy.tolerance, policy.disagreement, policy.default) == (1e-6, 0.10, Action.BLOCK)
    assert (policy.resampling.method, policy.resampling.sar_complex, policy.resampling.sar_detected) == (
        "area-average", "intensity", "amplitude")
    assert policy.rules[0].target_m == 0.5 and policy.rules[0].description == ""


@pytest.mark.parametrize("limit", [MIN_LIMIT_M, MAX_LIMIT_M])
def test_the_bounds_of_a_limit_are_themselves_limits(tmp_path: Path, limit: float) -> None:
    policy = _load(tmp_path, HEAD + RULE.replace("0.5", repr(limit)))
    assert gsd_upper_bounds(policy.rules[0].condition) == [("<", limit)]


def test_named_policies_are_found_in_rspolicy_rules_dir_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.toml").write_text(HEAD.replace('name = "p"', 'name = "mine"') + RULE)
    monkeypatch.setenv("RSPOLICY_RULES_DIR", str(tmp_path))
    assert rules_dirs()[0] == tmp_path
    assert load_policy("mine").ref.name == "mine"


def test_named_policies_are_found_in_the_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel carries rules/ inside the package (pyproject force-include): that copy is looked in last."""
    package = tmp_path / "site" / "rspolicy"
    (package / "rules").mkdir(parents=True)
    (package / "rules" / "wheel-only.toml").write_text(HEAD.replace('name = "p"', 'name = "wheel-only"') + RULE)
    monkeypatch.delenv("RSPOLICY_RULES_DIR", raising=False)
    monkeypatch.setattr(resources, "files", lambda name: package if name == "rspolicy" else None)
    assert rules_dirs()[-1] == package / "rules"
    assert load_policy("wheel-only").ref.name == "wheel-only"


def test_evaluation_reasons_name_the_class_the_value_and_the_rules(tmp_path: Path) -> None:
    policy = _load(tmp_path, HEAD + RULE + RULE.replace('id = "r"', 'id = "b"').replace('"resample"', '"block"')
                   .replace("0.5", "0.2"))
    unknown = evaluate(policy, ProductClass.UNKNOWN, 3.0)
    assert (unknown.rule, unknown.reason) == (None, "the product class could not be established (fails closed)")
    none = evaluate(policy, ProductClass.PANCHROMATIC, None)
    assert (none.rule, none.reason) == (None, "no evidence of the ground resolution (fails closed)")
    allowed = evaluate(policy, ProductClass.PANCHROMATIC, 0.7)
    assert (allowed.rule, allowed.reason) == (
        "p/listed-classes", "panchromatic at 0.7 m: a class with a limit, not finer than it (p/listed-classes): allow")
    resampled = evaluate(policy, ProductClass.PANCHROMATIC, 0.3)
    assert (resampled.rule, resampled.target_gsd_m, resampled.reason) == (
        "r", 0.5, "panchromatic at 0.3 m is finer than the limit 0.5 m (r): degrade to 0.5 m")
    blocked = evaluate(policy, ProductClass.PANCHROMATIC, 0.1)
    assert (blocked.action, blocked.rule, blocked.reason) == (
        Action.BLOCK, "b", "panchromatic at 0.1 m is finer than the limit 0.2 m (b): block")
    unlisted = evaluate(policy, ProductClass.SAR, 0.1)
    assert (unlisted.action, unlisted.rule, unlisted.reason) == (
        Action.BLOCK, None, "no rule of p covers sar at 0.1 m: the policy's default is to block")


def test_finding_a_policy_by_name_or_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rspolicy.policy import MAX_POLICY_BYTES, find_policy_file

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RSPOLICY_RULES_DIR", str(tmp_path / "rules"))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "alpha.toml").write_text(HEAD + RULE)
    (tmp_path / "plain").write_text(HEAD + RULE)  # no suffix, no separator: a file that exists is a path
    assert find_policy_file("alpha") == tmp_path / "rules" / "alpha.toml"
    assert find_policy_file("plain") == Path("plain")
    with pytest.raises(PolicyError) as caught:
        find_policy_file("beta")
    assert str(caught.value).startswith("no policy named 'beta' (known: alpha, ")
    for spec in ("beta.toml", f"sub{__import__('os').sep}beta"):
        with pytest.raises(PolicyError) as caught:
            find_policy_file(spec)
        assert str(caught.value) == f"{spec}: no such policy file"
    with pytest.raises(PolicyError) as caught:
        find_policy_file("Beta Policy")
    assert str(caught.value) == "'Beta Policy' is not a policy name (lower-case letters, digits, '.', '_', '-')"
    monkeypatch.setattr("rspolicy.policy.core.rules_dirs", lambda: [tmp_path / "empty"])
    with pytest.raises(PolicyError) as caught:
        find_policy_file("beta")
    assert str(caught.value) == "no policy named 'beta' (known: none)"
    exact = tmp_path / "exact.toml"
    exact.write_bytes((HEAD + RULE).encode().ljust(MAX_POLICY_BYTES, b" "))
    assert load_policy(exact).ref.name == "p"
    exact.write_bytes(exact.read_bytes() + b" ")
    with pytest.raises(PolicyError) as caught:
        load_policy(exact)
    assert str(caught.value) == f"{exact}: larger than {MAX_POLICY_BYTES} bytes, not a policy file"


@pytest.mark.parametrize(("content", "message"), [
    (b"a = [", "not a valid TOML policy (Invalid value (at end of document))"),
    (b"x = \xff\n", "not a valid TOML policy ('utf-8' codec can't decode byte 0xff in position 4: invalid start byte)"),
    (b"n = " + b"9" * 5000 + b"\n", "not a valid TOML policy (ValueError: Exceeds the limit (4300 digits) for integer string"),
])
def test_unreadable_toml_is_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(content)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: {message}"), str(caught.value)
