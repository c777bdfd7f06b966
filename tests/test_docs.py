"""Documentation that runs: no example is marked to skip, so none can hide a broken call."""

from __future__ import annotations

from pathlib import Path

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
    assert any("screen([folder])" in e.source for e in examples)
    assert Path(rspolicy.__file__).name == "__init__.py"


def test_the_mutation_script_names_modules_and_tests_that_exist() -> None:
    """A renamed test file or module must not silently drop out of the mutation run."""
    import runpy

    script = runpy.run_path(str(REPO / "scripts" / "mutation.py"), run_name="mutation")
    for module, (functions, tests) in script["DECISION_PATH"].items():
        assert (REPO / "rspolicy" / f"{module}.py").is_file(), module
        assert functions and tests
        missing = [t for t in tests if not (REPO / "tests" / t).is_file()]
        assert not missing, (module, missing)
    assert all(name.startswith("rspolicy.") and why for name, why in script["EQUIVALENT"].items())
