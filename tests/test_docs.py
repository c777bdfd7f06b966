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
