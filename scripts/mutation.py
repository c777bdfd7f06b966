"""Mutation-test rspolicy's decision path with mutmut and print killed and surviving mutants per module.

Outside CI (it takes tens of minutes on two cores). Run from the repository root::

    python scripts/mutation.py                 # the whole decision path
    python scripts/mutation.py policy.core screen   # only these entries of DECISION_PATH
    python scripts/mutation.py --keep DIR      # leave the scratch copies (mutants, mutmut's cache) in DIR/MODULE
    python scripts/mutation.py --keep DIR --collect enforce   # report a kept run again (settling what is open)

mutmut changes one thing at a time in a function (an operator, a constant, a
comparison, a returned value) and runs the tests that call that function; a
mutant that no test notices *survives*. The run happens in a scratch copy of
the tracked files (mutmut writes its ``mutants/`` tree beside the code), with
``../shared`` linked in when this clone has it, so the real-metadata tests
run too. The hostile corpus and the kill tests are left out of mutation runs
(each case runs commands in subprocesses: minutes per mutant); hypothesis runs
without shrinking (a failing example only has to fail, not be minimal).

Exit status 1 when any mutant is left open: it survived and :data:`EQUIVALENT` does not explain it, or it
was never settled (no test ran it, mutmut did not check it, the check was interrupted).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: The decision path: module -> (the functions mutated in it, the tests run against its mutants). Functions
#: use mutmut's names: ``x_func`` for a function, ``xǁClassǁmethod`` for a method, ``*`` for the whole
#: module. The tests are the files that state the module's contracts; mutmut runs, of those, the tests
#: that call the mutated function.
DECISION_PATH: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "policy.core": (("x_evaluate", "x__combine", "x__stricter_of", "x_stricter_outcome", "x__check_target", "x__rule",
                     "x__compile",
                     "x_parse_recipient", "x__identity"),
                    ("test_policy_engine.py", "test_policy_language.py", "test_policy.py", "test_policy_messages.py",
                     "test_decision_contracts.py", "test_rules_cli.py")),
    "policy.conditions": (("*",), ("test_policy_engine.py", "test_policy_language.py", "test_policy.py",
                                   "test_rules_cli.py")),
    "screen": (("x_decide", "x__decide"),
               ("test_decision_contracts.py", "test_classify_resolve.py", "test_classification_resolution_outputs.py",
                "test_fail_closed.py", "test_cli_screen.py")),
    "classify": (("*",), ("test_classify_resolve.py", "test_classification_resolution_outputs.py",
                          "test_decision_contracts.py", "test_cli_screen.py")),
    "resolution": (("*",), ("test_classify_resolve.py", "test_classification_resolution_outputs.py",
                            "test_decision_contracts.py", "test_fail_closed.py", "test_cli_screen.py")),
    "degrade": (("x_plan_degrade", "x__factor"), ("test_decision_contracts.py", "test_degrade.py",
                                                  "test_enforce.py")),
    "resample": (("x__exact_in", "x_as_fraction", "x__ceil_fraction", "x__simplest_between",
                  "xǁ_Kernelǁ_finish"), ("test_resample.py", "test_decision_contracts.py")),
    "enforce": (("x__blocked", "x__rescreen", "x__stage_one", "x_prepare", "x__completed", "x__prepare_product",
                 "x__prepare_package", "x__already_written", "xǁOutcomeǁresult", "xǁ_Runǁ*"),
                ("test_batch.py", "test_enforce_packages.py", "test_enforce.py", "test_enforce_safety.py",
                 "test_enforce_records.py", "test_fail_closed.py", "test_gate_paths.py", "test_cli_log.py")),
    "records": (("x_pending_releases", "x_release_problems", "x__released_files"),
                ("test_release_records.py", "test_enforce_safety.py", "test_cli_log.py", "test_enforce.py",
                 "test_enforce_records.py")),
    "audit": (("x_verify", "x__check_hash", "x__digest", "x__parse"), ("test_audit.py", "test_cli_log.py")),
}

#: Surviving mutants shown to be equivalent (no behaviour can tell them from the original), with why.
#: Keys are mutmut's mutant names; they follow the code, so a change to a function renumbers its mutants
#: and this table is checked again with the table the run prints.
EQUIVALENT: dict[str, str] = {
    "rspolicy.resample.x__ceil_fraction__mutmut_1":
        "`<` for `<=` in the early return: at denominator == bound the walk below finds the value itself",
    "rspolicy.resample.x__ceil_fraction__mutmut_41":
        "`>` for `>=`: the early return has already handled a value whose denominator fits, so `semi` (whose "
        "denominator fits) never equals it",
    "rspolicy.resample.x__simplest_between__mutmut_7":
        "`<` for `<=`: at `whole + 1 == hi` the recursion returns `whole + 1` as well",
    "rspolicy.resample.xǁ_Kernelǁ_finish__mutmut_57":
        "divides the empty pixels too: their quotient is replaced by 0 and then by the fill value just below",
    **{f"rspolicy.resample.xǁ_Kernelǁ_finish__mutmut_{n}":
       "the clip to the output type's range is defensive: a correctly rounded mean (or root mean power) of "
       "in-range samples stays in range, and float64 sums of 32-bit samples err far below half a unit"
       for n in (79, 80, 81, 82, 83, 87, 88, 89, 93)},
    **{f"rspolicy.resample.xǁ_Kernelǁ_finish__mutmut_{n}":
       "what is written into empty pixels before the cast is replaced by the fill value right after it"
       for n in (107, 111)},
    "rspolicy.resolution.x__disagreements__mutmut_7":
        "`<` to `<=` when keeping the finest value per method: a tie is the same value from the same source and "
        "the same measurement (two axes of it); the warning then names the other axis of it, equally true",
    "rspolicy.degrade.x__factor__mutmut_3":
        "`<` for `<=` at a ratio of exactly 1: as_fraction(1.0) is 1 as well",
    **{f"rspolicy.enforce.x__rescreen__mutmut_{n}":
       "drops the decided-class hint from the re-screen: a degraded or rebuilt output carries the same class in "
       "its RSPOLICY_PRODUCT_CLASS tag, and a copied one is the input's own bytes, so the class is found anyway"
       for n in (20, 25)},
    "rspolicy.enforce.x__prepare_package__mutmut_20":
        "looks for an earlier run under the empty key too: records without a batch key never enter the history "
        "(completed_products keys only records whose batch names a key), so the empty key finds nothing",
    **{f"rspolicy.enforce.x__prepare_product__mutmut_{n}":
       "looks for an earlier run under the empty key too: records without a batch key never enter the history "
       "(completed_products keys only records whose batch names a key), so the empty key finds nothing"
       for n in (26,)},
    **{f"rspolicy.enforce.x__prepare_package__mutmut_{n}":
       "the empty package's unreadable product loses its file (None for the package path): its record names "
       "its input from the package's digest (inputs=package_digest), not from the product's files"
       for n in (55, 58)},
    **{f"rspolicy.enforce.{name}":
       "`product is None and product.raster is None` for `or`: a decision other than BLOCK always carries its "
       "product, read from its image (a product is found by its image, and a read problem blocks), so for the "
       "decisions that reach the second test both forms are false"
       for name in ("x__prepare_product__mutmut_58", "x__prepare_package__mutmut_100")},
    **{f"rspolicy.enforce.{name}":
       "guards against a decision without its product: decide() always returns the product it decided, so the "
       "guard's other branch is never taken"
       for name in ("x__prepare_product__mutmut_51", "x__prepare_package__mutmut_94",
                    "x__prepare_package__mutmut_236", "x__prepare_package__mutmut_237")},
    **{f"rspolicy.enforce.x__prepare_package__mutmut_{n}":
       "`durable=None`/`True` for a member's files: fsync of files about to be packed changes nothing a run "
       "can observe (the package file itself is what the run makes durable)" for n in (119, 130)},
    **{f"rspolicy.enforce.{name}":
       "drops `strict=True` from a zip of lists built one from the other, always of one length"
       for name in ("x__prepare_package__mutmut_136", "x__prepare_package__mutmut_139",
                    "x__prepare_package__mutmut_140", "x__prepare_product__mutmut_17",
                    "x__prepare_product__mutmut_20", "x__prepare_product__mutmut_21")},
    **{f"rspolicy.enforce.x__prepare_package__mutmut_{n}":
       "the name of the members' folder inside the worker's private stage: nothing outside reads it"
       for n in (78, 79)},
    **{f"rspolicy.enforce.x__stage_one__mutmut_{n}":
       "the size and thread names of the pool that hashes and flushes staged files while they are re-screened: "
       "what it computes does not depend on either" for n in (2, 3, 4, 5, 6, 7, 8)},
    "rspolicy.enforce.x__stage_one__mutmut_35":
        "fsync of staged files also when not asked to be durable (package members): nothing a run can observe",
    **{f"rspolicy.enforce.x__stage_one__mutmut_{n}":
       "whether the hashing of files about to be deleted is cancelled: the results are never read" for n in (50, 51)},
    **{f"rspolicy.enforce.x__stage_one__mutmut_{n}":
       "drops `strict=True` from a zip of the staged files with lists built from them, always of one length"
       for n in (85, 89, 90, 109, 112, 113)},
    **{f"rspolicy.enforce.x_prepare__mutmut_{n}":
       "changes the fixed text in an unreadable item's batch key: the key only has to be the same on every run "
       "and unlike a product's (whose inputs pair a path with a 64-digit digest); any fixed text is"
       for n in (18, 19, 21)},
    **{f"rspolicy.enforce.x__completed__mutmut_{n}":
       "the default for a key with no earlier run (None, or none, for {}): it is only tested for truth"
       for n in (4, 6)},
    **{f"rspolicy.enforce.x__completed__mutmut_{n}":
       "a skipped outcome's key or member: a skipped product is never recorded, and nothing else reads them"
       for n in (18, 19, 24, 25)},
    **{f"rspolicy.enforce.xǁ_Runǁcommit__mutmut_{n}":
       "whether errors are ignored when removing a worker's stage after its files were placed: removing it does "
       "not fail (the run's own folder, holding what is left of the worker's files), so the flag is never "
       "consulted" for n in (8, 10, 11)},
    **{f"rspolicy.enforce.xǁ_Runǁ_commit_loose__mutmut_{n}":
       "drops `strict=True` from a zip of a product's moves and outputs, built together one per staged file"
       for n in (8, 11, 12, 59, 62, 63)},
    **{f"rspolicy.enforce.x__prepare_product__mutmut_{n}":
       "whether errors are ignored when removing the stage this worker made a moment ago and alone writes to: "
       "removing it does not fail, so the flag is never consulted" for n in (96, 98, 99)},
    "rspolicy.enforce.x__prepare_product__mutmut_100":
        "`stage = ''` for None once the empty stage is removed: the run then removes '' with errors ignored, "
        "which does nothing, as None does",
    "rspolicy.enforce.xǁ_Runǁplace__mutmut_12":
        "`getattr(exc, 'strerror')` without a default: every error placing a file raises is an OSError "
        "(OutputError included), which always has the attribute",
    "rspolicy.enforce.x__prepare_package__mutmut_207":
        "`members_out = None` for `[]` after a write failure: it is only tested for truth afterwards",
    **{f"rspolicy.enforce.x__prepare_package__mutmut_{n}":
       "whether errors are ignored when removing the stage this worker made a moment ago and alone writes to: "
       "removing it does not fail, so the flag is never consulted" for n in (62, 64, 65, 240, 242, 243)},
    "rspolicy.enforce.x__blocked__mutmut_4":
        "`deciding_reason=None` for the reason just appended: Decision.why (its only reader) then falls back to "
        "the last reason, which is that same reason",
    **{f"rspolicy.degrade.x_plan_degrade__mutmut_{n}":
       "`>= 0` for `> 0` on a planned spacing: a zero spacing never gets here (readers refuse spacings under 1 mm "
       "and the decision blocks non-positive resolution evidence)" for n in (62, 64)},
    "rspolicy.enforce.x__rescreen__mutmut_6":
        "the labels group_files gives the staged files are not used: the one product found is read again with "
        "read_product's own labels",
    "rspolicy.policy.x_snap__mutmut_10": "drops `abs_tol=0.0` from math.isclose, whose default it is",
    "rspolicy.policy.x_evaluate__mutmut_59":
        "`rule.target_m if ... or True`: a loaded resample rule always has a target (the loader defaults it to "
        "the limit), so the fallback is never taken",
    "rspolicy.policy.x_load_policy__mutmut_7":
        "reads the whole file instead of one byte past the bound: the same refusal, only the memory bound is "
        "lost, which no test can see without a memory limit",
    "rspolicy.policy.x_load_policy__mutmut_9": "reads two bytes past the bound instead of one: the same refusal",
    "rspolicy.policy.x_load_policy__mutmut_16": "`UTF-8` for `utf-8`: codec names are case-insensitive",
    "rspolicy.screen.x__stricter__mutmut_2":
        "`>` to `>=` between severities inside `if candidate.severity != current.severity`: they differ there, "
        "so `>=` is `>`",
    **{f"rspolicy.records.x__released_files__mutmut_{n}":
       "a recorded file without `sha256` gets the digest `None` (or `XXXX`) instead of the empty string: the "
       "digest is only compared with a file's sha256, which is 64 hex digits and equals none of them"
       for n in (19, 21, 24)},
    **{f"rspolicy.records.x_pending_releases__mutmut_{n}":
       "the default of `rec.get('input', ...)` (None for {}) is never used: the condition has just found "
       "`input` to be a mapping" for n in (42, 44)},
    **{f"rspolicy.audit.{name}": "`ASCII` for `ascii`: codec names are case-insensitive"
       for name in ("x__digest__mutmut_5", "x__check_hash__mutmut_90")},
    "rspolicy.audit.x_verify__mutmut_16":
        "`alg` starts as '' instead of None: it is never read before the first record sets it with `chain`",
    "rspolicy.audit.x_verify__mutmut_22":
        "`last_file` starts as Path() even when files are given: every file the loop finishes overwrites it and a "
        "problem returns before it is read, so its first value is only read when there are no files: Path() then",
    **{f"rspolicy.audit.x_verify__mutmut_{n}":
       "`str(None)` for `str(exc)` after `exc.strerror or`: the OSError of a failed open or read is raised from "
       "errno and always has a strerror" for n in (59, 184)},
}

_RESULT = re.compile(r"^\s*(rspolicy\.(\w+)\.\S+): (.+?)\s*$")

_CONFIG = """

[tool.mutmut]
source_paths = ["rspolicy"]
only_mutate = {only}
also_copy = ["sample_data", "rules"{shared}]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-x", "-q", "--hypothesis-profile=mutation",
                       "--ignore=tests/test_hostile.py", "--ignore=tests/test_hostile_property.py",
                       "--ignore=tests/test_enforce_kill.py"]
pytest_add_cli_args_test_selection = {tests}
mutate_only_covered_lines = true
# The tests under a mutant may take 2 x this multiplier as long as unchanged before they count as a
# timeout (mutmut's default, 15, lets one looping mutant hold a core for many minutes).
timeout_multiplier = {timeout_multiplier}
"""


def scratch_copy(dest: Path) -> None:
    """The tracked files (as they are in the working tree), and ``../shared`` linked in when present."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        # The tests find ../shared two levels above tests/: beside the copy, and beside mutmut's mutants/ tree.
        (dest / "shared").symlink_to(shared)


#: Appended to the scratch copy's tests/conftest.py. mutmut mutates only lines its coverage pass saw run
#: (``MUTANT_UNDER_TEST=mutant_generation``), and runs against a mutant only the tests its statistics pass
#: (``stats``) saw calling the mutated function; both see only their own process, so what enforce's isolated
#: workers (forks) run would be left unmutated or never matched with the tests that drive it. In those two
#: passes only, the test process acts as if it were already a worker, so that isolated work runs in it
#: (commands a test starts in a subprocess are not affected), and tests that end a worker on purpose
#: (marked ``kills_worker``) are left out; mutants then run with isolation as usual.
_STATS_IN_PROCESS = """

@pytest.fixture(autouse=True)
def _mutation_stats_in_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.environ.get("MUTANT_UNDER_TEST") not in ("stats", "mutant_generation"):
        return
    if request.node.get_closest_marker("kills_worker"):
        pytest.skip("ends a worker on purpose: not run in process")
    import rspolicy.isolation

    monkeypatch.setattr(rspolicy.isolation._state, "in_worker", True)
"""


#: One BLAS/OpenMP thread: mutmut limits a mutant's CPU time, and idle OpenBLAS threads spinning in a forked
#: test process would spend it and turn a caught mutant into a false timeout.
_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}


def _patterns(module: str) -> list[str]:
    return [f"rspolicy.{module}.{f}__mutmut_*" if f != "*" else f"rspolicy.{module}.*"
            for f in DECISION_PATH[module][0]]


def run(module: str, workdir: Path, children: int, timeout_multiplier: float) -> dict[str, str]:
    """Mutate one module of the decision path in ``workdir`` (a scratch copy); return mutant name -> status."""
    tests = DECISION_PATH[module][1]
    conftest = workdir / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text(encoding="utf-8") + _STATS_IN_PROCESS, encoding="utf-8")
    shared = ', "shared"' if (workdir / "shared").exists() else ""
    with (workdir / "pyproject.toml").open("a", encoding="utf-8") as fh:
        fh.write(_CONFIG.format(only=f'["rspolicy/{module.replace(".", "/")}.py"]', shared=shared,
                                tests=repr([f"tests/{t}" for t in tests]).replace("'", '"'),
                                timeout_multiplier=timeout_multiplier))
    env = {**os.environ, **_ENV}
    done = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(children),
                           *_patterns(module)], cwd=workdir, env=env, stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"mutmut run failed for {module} (exit {done.returncode}); its error is above")
    return collect(module, workdir, children)


def collect(module: str, workdir: Path, children: int) -> dict[str, str]:
    """The statuses of a finished mutmut run in ``workdir``, timeouts and survivors settled (see :func:`settle`)."""
    env = {**os.environ, **_ENV}
    listing = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=workdir, env=env,
                             capture_output=True, text=True, check=True).stdout
    wanted = [re.compile(re.escape(p).replace(r"\*", ".*")) for p in _patterns(module)]
    statuses = {}
    for line in listing.splitlines():
        match = _RESULT.match(line)
        if match and any(w.fullmatch(match[1]) for w in wanted):
            statuses[match[1]] = match[3]
    return settle(statuses, workdir, DECISION_PATH[module][1], env, children)


def settle(statuses: dict[str, str], workdir: Path, tests: tuple[str, ...], env: dict[str, str],
           children: int) -> dict[str, str]:
    """Run timed-out mutants and unexplained survivors again, ``children`` at a time; their final statuses.

    - A "timeout": mutmut's limit is CPU time estimated from the unchanged run, and tests that spend it in
      subprocesses or threads can pass it without being slow, so a timeout is not evidence until the
      mutant's own tests have had the time to fail or pass (five minutes with no CPU limit; one that still
      does not finish hangs, and is caught).
    - A survivor not shown equivalent: mutmut runs, of the module's tests, only those its statistics saw
      calling the function (see _STATS_IN_PROCESS for what they cannot see); every test file of the module
      is run before a survivor is reported.
    """
    recheck = {name: status for name, status in statuses.items()
               if status == "timeout" or (status == "survived" and name not in EQUIVALENT)}

    def again(name: str) -> str:
        if recheck[name] == "timeout":
            return rerun(name, workdir, tests_for(name, workdir, env), env, hang_seconds=300)
        return rerun(name, workdir, tuple(f"tests/{t}" for t in tests), env, hang_seconds=None)

    with ThreadPoolExecutor(max_workers=children) as pool:
        return {**statuses, **dict(zip(recheck, pool.map(again, list(recheck)), strict=True))}


def tests_for(name: str, workdir: Path, env: dict[str, str]) -> tuple[str, ...]:
    """The tests mutmut runs against one mutant (its statistics' choice)."""
    listing = subprocess.run([sys.executable, "-m", "mutmut", "tests-for-mutant", name], cwd=workdir, env=env,
                             capture_output=True, text=True, check=True).stdout
    return tuple(line.strip() for line in listing.splitlines() if line.strip().startswith("tests/"))


def rerun(name: str, workdir: Path, tests: tuple[str, ...], env: dict[str, str], hang_seconds: float | None) -> str:
    """Run ``tests`` (files or test ids) against one mutant, with no CPU-time limit.

    With ``hang_seconds``, a run that does not finish in that time hangs (caught); otherwise it may take up
    to fifteen minutes, beyond which it is reported as a timeout (left open).
    """
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutation",
               *tests]
    # PYTHONPATH: a test that runs ``python -m rspolicy`` in a subprocess imports the mutated tree too.
    path = os.pathsep.join(filter(None, [str(workdir / "mutants"), env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, cwd=workdir / "mutants",
                              env={**env, "MUTANT_UNDER_TEST": name, "PYTHONPATH": path}, capture_output=True,
                              timeout=hang_seconds or 900, check=False)
    except subprocess.TimeoutExpired:
        return "hangs" if hang_seconds else "timeout"
    return "killed" if done.returncode != 0 else "survived"


#: Outcomes that settle a mutant: a test failed under it, its tests hung, or it is shown equivalent. Anything
#: else (survived, no tests, not checked, suspicious, segfault, an interrupted check) leaves it open.
_SETTLED = frozenset({"killed", "hangs", "equivalent"})


def table(statuses: dict[str, str]) -> tuple[str, list[str]]:
    """The per-module table, and the mutants left open (survivors not shown equivalent, unchecked ones)."""
    per_module: dict[str, Counter[str]] = {}
    unexplained: list[str] = []
    for name, status in sorted(statuses.items()):
        module = name.split(".")[1]
        counts = per_module.setdefault(module, Counter())
        shown = "equivalent" if status == "survived" and name in EQUIVALENT else status
        if shown not in _SETTLED:
            unexplained.append(f"{name}: {status}")
        counts[shown] += 1
    columns = ["killed", "hangs", "survived", "equivalent", "no tests", "other"]
    lines = [f"{'module':<12} {'mutants':>8} " + " ".join(f"{c:>10}" for c in columns)]
    total: Counter[str] = Counter()
    for module, counts in per_module.items():
        known = {c: counts.get(c, 0) for c in columns[:-1]}
        known["other"] = sum(counts.values()) - sum(known.values())
        total.update(known)
        lines.append(f"{module:<12} {sum(counts.values()):>8} " + " ".join(f"{known[c]:>10}" for c in columns))
    lines.append(f"{'total':<12} {sum(total.values()):>8} " + " ".join(f"{total[c]:>10}" for c in columns))
    return "\n".join(lines), unexplained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"entries of DECISION_PATH (default: all of {', '.join(DECISION_PATH)})")
    parser.add_argument("--keep", type=Path, help="use this (new) folder for the scratch copies and keep it")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing new: report (and settle) the runs already in the --keep folder")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants run at once")
    parser.add_argument("--timeout-multiplier", type=float, default=4.0,
                        help="mutmut's timeout_multiplier (default 4: a mutant's tests may run 8x as long)")
    args = parser.parse_args()
    unknown = [m for m in args.modules if m not in DECISION_PATH]
    if unknown:
        parser.error(f"not in DECISION_PATH: {', '.join(unknown)}")
    selected = list(args.modules or DECISION_PATH)
    if args.collect:
        if not args.keep:
            parser.error("--collect needs --keep DIR")
        statuses = {}
        for module in selected:
            statuses.update(collect(module, args.keep / module, args.children))
        return report(statuses)
    root = args.keep or Path(tempfile.mkdtemp(prefix="rspolicy-mutation-"))
    if args.keep:
        root.mkdir(parents=True, exist_ok=False)
    statuses = {}
    try:
        for module in selected:
            # One scratch copy per module: mutmut's configuration (what to mutate, which tests) is per tree.
            workdir = root / module
            workdir.mkdir()
            scratch_copy(workdir)
            statuses.update(run(module, workdir, args.children, args.timeout_multiplier))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return report(statuses)


def report(statuses: dict[str, str]) -> int:
    """Print the table and the mutants left open; exit status 1 when any is."""
    if not statuses:
        print("no mutant was run: nothing to report", file=sys.stderr)
        return 1
    text, unexplained = table(statuses)
    print(text)
    if "hangs" in statuses.values():
        print("\n(hangs: under the mutant its tests did not finish in five minutes, which the unchanged code does: "
              "caught)")
    # An explanation in EQUIVALENT that a test contradicts is wrong (or the test is flaky): either way it must
    # be looked at. One naming a mutant the run did not make follows code that has changed since.
    modules = {name.split(".")[1] for name in statuses}
    contradicted = sorted(n for n in EQUIVALENT if statuses.get(n) in ("killed", "hangs"))
    stale = sorted(n for n in EQUIVALENT if n.split(".")[1] in modules and n not in statuses)
    if stale:
        print(f"\n{len(stale)} EQUIVALENT entr(ies) name no mutant of this run (the code moved; check them):")
        for name in stale:
            print(f"  {name}")
    if contradicted:
        print(f"\n{len(contradicted)} mutant(s) explained as equivalent were killed (the explanation is wrong):")
        for name in contradicted:
            print(f"  {name}: {statuses[name]}")
    if unexplained:
        print(f"\n{len(unexplained)} mutant(s) neither killed nor shown equivalent:")
        for name in unexplained:
            print(f"  {name}")
        print("see one with: mutmut show NAME (in the module's folder under --keep)")
    return 1 if unexplained or contradicted else 0


if __name__ == "__main__":
    sys.exit(main())
