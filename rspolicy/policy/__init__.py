"""Export policies: loading and validation, the condition language, zones, evaluation and policy tests.

The stages are kept apart, as in OPA: :func:`load_policy` reads and compiles
a policy file once; :func:`evaluate` is a pure function of the policy, a
product's facts and the request; :mod:`rspolicy.policy.testing` runs a
policy's own test cases. See :mod:`rspolicy.policy.core` for the rule
combination and :mod:`rspolicy.policy.conditions` for the language.
"""

from rspolicy.policy.core import (
    DEFAULT_POLICY,
    MAX_LIMIT_M,
    MAX_POLICY_BYTES,
    MIN_LIMIT_M,
    SCHEMA,
    Outcome,
    Policy,
    Rule,
    _one_line,  # noqa: F401 - kept for callers of the former module
    check_policy,
    evaluate,
    find_policy_file,
    load_policy,
    parse_recipient,
    policy_names,
    request_from,
    rules_dirs,
    schema_path,
    snap,
    stricter_outcome,
)
from rspolicy.policy.facts import ProductFacts, product_facts
from rspolicy.policy.resampling import Resampling

__all__ = [
    "DEFAULT_POLICY",
    "MAX_LIMIT_M",
    "MAX_POLICY_BYTES",
    "MIN_LIMIT_M",
    "SCHEMA",
    "Outcome",
    "Policy",
    "ProductFacts",
    "Resampling",
    "Rule",
    "check_policy",
    "evaluate",
    "find_policy_file",
    "load_policy",
    "parse_recipient",
    "policy_names",
    "product_facts",
    "request_from",
    "rules_dirs",
    "schema_path",
    "snap",
    "stricter_outcome",
]
