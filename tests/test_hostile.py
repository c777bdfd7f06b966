"""The hostile corpus through the real command line: no leak, no crash, no hang, every decision recorded.

Each case of :mod:`tests.hostile.corpus` is enforced (``--json --log``) and
screened; the outcome is held to the rules the gate is built to, and what
was released is measured independently by :mod:`tests.hostile.measure`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rspolicy.cli import cli
from rspolicy.errors import RSPolicyError
from tests.hostile.corpus import Case, build_corpus
from tests.hostile.measure import (
    Run,
    leaks,
    log_records,
    parse_decisions,
    run_subprocess,
    screen_args,
    unrecorded_releases,
)
from tests.hostile.measure import enforce_args as enforce_command_line


def _case_names() -> list[str]:
    # Collection needs the case names before any fixture runs; building the corpus takes about a second.
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [c.name for c in build_corpus(Path(tmp) / "c")]


CASE_NAMES = _case_names()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("hostile")
    return {c.name: c for c in build_corpus(root / "corpus")}


def _invoke(args: list[str]) -> Run:
    """Run the click group in process; an RSPolicyError is what ``rspolicy.cli.main`` turns into one line, exit 1."""
    result = CliRunner().invoke(cli, args, catch_exceptions=True)
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        if isinstance(result.exception, RSPolicyError):
            stderr += f"rspolicy: error: {result.exception}\n"
            code = 1
        else:
            import traceback

            stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(
                *result.exc_info)) if result.exc_info else "Traceback"
    return Run(code, result.stdout, stderr, parse_decisions(result.stdout))


def _run(case: Case, args: list[str]) -> Run:
    return run_subprocess(args, timeout=60) if case.subprocess_only else _invoke(args)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case(corpus: dict[str, Case], name: str) -> None:
    case = corpus[name]
    log = case.folder / "audit.jsonl"
    outdir = case.output_dir()
    problems: list[str] = []

    run = _run(case, enforce_command_line(case, log))
    if run.timed_out:
        problems.append("enforce hung (timeout)")
    if "Traceback" in run.stdout + run.stderr:
        problems.append("enforce printed a traceback:\n" + run.stderr[-2000:])
    if run.exit_code not in case.expected_exit:
        problems.append(f"enforce exit {run.exit_code}, expected one of {sorted(case.expected_exit)}; "
                        f"stderr: {run.stderr.strip()[-400:]}")
    if case.category == "policy-file" or case.expected_exit == {1}:
        if case.category == "policy-file" and run.decisions:
            problems.append(f"{len(run.decisions)} decision(s) under a policy that must be refused")
        if run.exit_code in (1, 2) and len(run.stderr.strip().splitlines()) != 1:
            problems.append(f"the error is not one line: {run.stderr.strip()[:400]!r}")
    elif not run.decisions:
        problems.append("enforce printed no decision")
    for d in run.decisions:
        action = d.get("action")
        if action not in case.expected_actions:
            problems.append(f"{d.get('path')}: {action} ({'; '.join(map(str, d.get('reasons') or []))}), "
                            f"expected {sorted(case.expected_actions)}")
        if action == "allow" and case.finest_m is not None and case.finest_m < case.limit_m * (1 - 1e-6):
            problems.append(f"{d.get('path')}: allowed at a true {case.finest_m:g} m, finer than {case.limit_m:g} m")
        path = d.get("path")
        if isinstance(path, str) and not path.isprintable():
            problems.append(f"decision path not shown escaped: {path!r}")
    problems += leaks(case, outdir)

    records = log_records(log)
    if run.decisions or log.exists():
        verify = _invoke(["log", "verify", str(log)])
        if verify.exit_code != 0:
            problems.append(f"log verify exit {verify.exit_code}: {verify.stdout.strip()} {verify.stderr.strip()}")
        # "released"/"reconcile" event records confirm a decision's files are in place; they decide nothing.
        # A "failed" record is the one record of a product rspolicy could not complete.
        decided = [r for r in records if r.get("command") == "enforce" and r.get("event") in (None, "failed")]
        if len(decided) != len(run.decisions):
            problems.append(f"{len(decided)} log record(s) for {len(run.decisions)} decision(s)")
    problems += unrecorded_releases(outdir, log)
    if case.rescreen_class is not None and run.exit_code in (0, 3):
        again = _invoke(["screen", str(outdir), "--json"])
        for d in again.decisions:
            if d.get("product_class") != case.rescreen_class or d.get("action") != "allow":
                problems.append(f"re-screen of the output: {d.get('product_class')} {d.get('action')}, "
                                f"expected {case.rescreen_class} allow")

    screened = _run(case, screen_args(case))
    if screened.timed_out:
        problems.append("screen hung (timeout)")
    if "Traceback" in screened.stdout + screened.stderr:
        problems.append("screen printed a traceback:\n" + screened.stderr[-2000:])
    if case.category == "policy-file":
        if screened.exit_code != 2:
            problems.append(f"screen exit {screened.exit_code} for a policy that must be refused")
    elif case.category != "output-dir":
        for d in screened.decisions:
            if d.get("action") not in case.expected_actions:
                problems.append(f"screen: {d.get('path')}: {d.get('action')}, expected "
                                f"{sorted(case.expected_actions)}")
        if not screened.decisions:
            problems.append("screen printed no decision")
    assert not problems, f"{case.name} ({case.why}):\n  " + "\n  ".join(problems)


def test_corpus_is_broad(corpus: dict[str, Case]) -> None:
    from tests.hostile.corpus import CATEGORIES

    assert len(corpus) >= 50
    by_category = {c: [k for k in corpus.values() if k.category == c] for c in CATEGORIES}
    assert all(len(v) >= 3 for v in by_category.values()), {c: len(v) for c, v in by_category.items()}
    for case in corpus.values():
        assert case.why and case.expected_exit
        for path in case.inputs:
            assert os.path.lexists(path), path
