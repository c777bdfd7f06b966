"""Screening reads several products per round trip and on several workers: same decisions, same order, and a
product whose read kills its worker is still the only one blocked."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rspolicy import isolation
from rspolicy.cli import cli
from rspolicy.model import Action, Decision, Request
from rspolicy.policy import load_policy
from rspolicy.readers import discover as discover_module
from rspolicy.screen import iter_screen, screen

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"


def _comparable(decision: Decision) -> dict[str, Any]:
    """A decision without what differs between two screenings of the same files (its id and time)."""
    shown = decision.to_dict()
    for key in ("decision_id", "timestamp", "decided_at"):
        shown.pop(key, None)
    return shown


def _many(root: Path, n: int) -> Path:
    for i in range(n):
        shutil.copytree(PAN03, root / f"scene{i:03d}")
    return root


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_screening_equals_sequential_screening_in_content_and_order(tmp_path: Path, jobs: int) -> None:
    src = _many(tmp_path / "src", 9)
    shutil.copytree(SAMPLE_DATA, src / "samples", ignore=shutil.ignore_patterns("*.py", "*.md"))
    policy = load_policy()
    request = Request()  # one release time for both: it is part of every decision
    one = list(iter_screen([src], policy, jobs=1, request=request))
    several = list(iter_screen([src], policy, jobs=jobs, request=request))
    assert [type(x).__name__ for x in one] == [type(x).__name__ for x in several]
    assert [_comparable(d) if isinstance(d, Decision) else d for d in one] == \
           [_comparable(d) if isinstance(d, Decision) else d for d in several]
    decided = [d for d in one if isinstance(d, Decision)]
    assert len(decided) > 20  # the loose copies, the samples and the package's members
    assert any("!" in d.path for d in decided)  # a package was read in between


_REAL_READ = discover_module.read_product_here


def _crashing_read(files: Any, labels: Any) -> Any:
    """Module level, so that the worker can unpickle it: ends its worker as a C library's segfault would."""
    if "scene004" in str(files.main):
        os._exit(139)
    return _REAL_READ(files, labels)


@pytest.mark.kills_worker
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_read_that_kills_its_worker_blocks_only_that_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              jobs: int) -> None:
    # 24 products: several per round trip, so the killed worker takes other products' reads down with it.
    src = _many(tmp_path / "src", 24)
    isolation.shutdown()  # the next worker is forked after the patch, and sees it
    monkeypatch.setattr(discover_module, "read_product_here", _crashing_read)
    try:
        decisions = screen([src], load_policy(), jobs=jobs)
    finally:
        isolation.shutdown()
    assert [Path(d.path).parent.name for d in decisions] == [f"scene{i:03d}" for i in range(24)]
    by_scene = {Path(d.path).parent.name: d for d in decisions}
    crashed = by_scene.pop("scene004")
    assert crashed.action is Action.BLOCK
    assert any("reading the product exited with status 139" in p for p in crashed.product.problems), \
        crashed.product.problems
    assert {(d.action, d.target_gsd_m) for d in by_scene.values()} == {(Action.RESAMPLE, 0.5)}


def test_screen_jobs_option_gives_the_same_output(tmp_path: Path) -> None:
    src = _many(tmp_path / "src", 6)
    runner = CliRunner()
    one = runner.invoke(cli, ["screen", str(src), "--jobs", "1"])
    two = runner.invoke(cli, ["screen", str(src), "-j", "2"])
    assert one.exit_code == two.exit_code == 3
    assert one.output == two.output
    assert runner.invoke(cli, ["screen", str(src), "--jobs", "0"]).exit_code == 2


def test_read_batches_keep_runs_in_order_around_other_items() -> None:
    items: list[Any] = ["skip-a", *(discover_module.FoundProduct(discover_module.ProductFiles(str(i), Path(str(i)),
                                                                                                ()), str, Path())
                                    for i in range(5)), "skip-b", discover_module.FoundProduct(
        discover_module.ProductFiles("5", Path("5"), ()), str, Path())]
    units = list(discover_module._batched(items, 2))
    shown = [[p.files.display for p in u] if isinstance(u, list) else u for u in units]
    assert shown == ["skip-a", ["0", "1"], ["2", "3"], ["4"], "skip-b", ["5"]]


if sys.platform != "linux":  # pragma: no cover - the isolation tests need fork
    pytestmark = pytest.mark.skip(reason="isolated workers need fork")
