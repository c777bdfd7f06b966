"""Documentation that runs: no example is marked to skip, so none can hide a broken call."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import REPO


def test_no_doctest_is_skipped() -> None:
    marked = [f"{path.relative_to(REPO)}:{number}"
              for path in sorted((REPO / "rspolicy").rglob("*.py"))
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
              if "doctest:" in line and "SKIP" in line]
    assert marked == [], f"doctests marked to skip: {marked}"


def test_the_package_docstring_example_is_collected() -> None:
    import doctest

    import rspolicy

    examples = doctest.DocTestFinder().find(rspolicy, "rspolicy")[0].examples
    assert any("rspolicy.screen_products(folder, log=False)" in e.source for e in examples)
    assert Path(rspolicy.__file__).name == "__init__.py"


def test_the_mutation_script_names_modules_and_tests_that_exist() -> None:
    """A renamed test file or module must not silently drop out of the mutation run."""
    import runpy

    script = runpy.run_path(str(REPO / "scripts" / "mutation.py"), run_name="mutation")
    for module, (functions, tests) in script["DECISION_PATH"].items():
        assert (REPO / "rspolicy" / f"{module.replace('.', '/')}.py").is_file(), module
        assert functions and tests
        missing = [t for t in tests if not (REPO / "tests" / t).is_file()]
        assert not missing, (module, missing)
    assert all(name.startswith("rspolicy.") and why for name, why in script["EQUIVALENT"].items())


def _defined(module: str, mangled: str) -> bool:
    """Whether mutmut's name for a function (``x_name``, ``xǁClassǁmethod``, ``xǁClassǁ*``) names real code."""
    import ast

    tree = ast.parse((REPO / "rspolicy" / f"{module.replace('.', '/')}.py").read_text(encoding="utf-8"))
    if mangled == "*":
        return True
    if mangled.startswith("xǁ"):
        cls, method = mangled[2:].split("ǁ")
        return any(isinstance(node, ast.ClassDef) and node.name == cls and (method == "*" or any(
            isinstance(item, ast.FunctionDef) and item.name == method for item in node.body)) for node in tree.body)
    return any(isinstance(node, ast.FunctionDef) and node.name == mangled[2:] for node in tree.body)


def test_the_mutation_script_names_functions_that_exist() -> None:
    """A renamed function must not silently drop out of the mutation run (mutmut would mutate nothing)."""
    import runpy

    script = runpy.run_path(str(REPO / "scripts" / "mutation.py"), run_name="mutation")
    missing = [(module, f) for module, (functions, _) in script["DECISION_PATH"].items() for f in functions
               if not _defined(module, f)]
    assert not missing


def test_the_mutation_report_fails_on_anything_left_open(capsys: pytest.CaptureFixture[str]) -> None:
    import runpy

    script = runpy.run_path(str(REPO / "scripts" / "mutation.py"), run_name="mutation")
    report, equivalent = script["report"], next(iter(script["EQUIVALENT"]))
    assert report({"rspolicy.policy.x_a__mutmut_1": "killed", "rspolicy.policy.x_a__mutmut_2": "hangs"}) == 0
    assert report({equivalent: "survived"}) == 0
    for status in ("survived", "no tests", "not checked", "timeout", "segfault"):
        assert report({"rspolicy.policy.x_a__mutmut_1": status}) == 1, status
    assert report({equivalent: "killed"}) == 1  # an explanation a test contradicts
    assert report({}) == 1
    assert "explained as equivalent were killed" in capsys.readouterr().out


def test_the_readme_python_examples_run(tmp_path: Path) -> None:
    """Every ```python block of the README runs as it is, from the repository root, in a private home."""
    import re
    import subprocess
    import sys

    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("RSPOLICY_LOG", None)
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == 0, f"{block}\n{done.stderr}"
        assert done.stdout.strip(), block
