"""The library's entry points: one per verb at the top of the package, with the command line's defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import rspolicy
from rspolicy.cli import cli
from rspolicy.errors import AuditLogError, OutputError, PolicyError, RSPolicyError
from rspolicy.results import Result

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"
PAN05 = SAMPLE_DATA / "sv1_pan_0.5m"


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _shape(record: dict[str, Any]) -> dict[str, Any]:
    """What two runs into different folders must record alike: the keys, and what was decided about what."""
    result = record.get("result", {})
    return {
        "keys": sorted(record),
        "event": record.get("event"),
        "command": record.get("command"),
        "policy": record.get("policy"),
        "operator": record.get("operator"),
        "recipient": record.get("recipient"),
        "input": [(Path(f["path"]).name, f["sha256"]) for f in record.get("input", {}).get("files", [])],
        "decided": {k: result.get(k) for k in ("action", "target_gsd_m", "rules", "rules_fired", "why")},
        "output": sorted(Path(f["path"]).name for f in (record.get("output") or {}).get("files", [])),
    }


def test_the_entry_points_are_at_the_top_and_do_not_collide_with_modules() -> None:
    for name in ("screen_products", "enforce_products", "load_policy", "area_average"):
        assert callable(getattr(rspolicy, name)), name
        assert name in rspolicy.__all__
    for name in rspolicy.__all__:
        assert hasattr(rspolicy, name), name
    with pytest.raises(AttributeError, match="no attribute 'screen_prodcts'"):
        rspolicy.screen_prodcts  # type: ignore[attr-defined]  # noqa: B018
    assert (Path(rspolicy.__file__).parent / "py.typed").is_file()


def test_importing_rspolicy_loads_no_gdal() -> None:
    code = "import rspolicy, sys; print(sorted(m for m in ('rasterio', 'pyproj', 'numpy') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_enforcing_through_the_library_records_what_the_command_records(tmp_path: Path) -> None:
    cli_log, lib_log = tmp_path / "cli.jsonl", tmp_path / "lib.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), str(PAN05), "-o", str(tmp_path / "cli"), "--log",
                                      str(cli_log), "--operator", "officer", "--recipient", "DE:DLR"])
    assert result.exit_code == 0, result.output
    outcomes = rspolicy.enforce_products([PAN03, PAN05], tmp_path / "lib", log=lib_log, operator="officer",
                                         recipient="DE:DLR")
    assert sorted(o.result.value for o in outcomes) == ["degraded", "released"]
    assert [_shape(r) for r in _records(lib_log)] == [_shape(r) for r in _records(cli_log)]
    assert {r.get("event") for r in _records(lib_log)} == {None, "released"}


def test_the_default_log_is_the_commands_and_a_rerun_is_skipped(tmp_path: Path) -> None:
    state = Path(os.environ["XDG_STATE_HOME"])  # a private home for every test (conftest)
    default = state / "rspolicy" / "decisions.jsonl"
    assert not default.exists()
    first = rspolicy.enforce_products(PAN03, tmp_path / "out")
    assert [o.result for o in first] == [Result.DEGRADED] and default.is_file()
    again = rspolicy.enforce_products(PAN03, tmp_path / "out")
    assert [o.result for o in again] == [Result.SKIPPED]


def test_log_false_records_nothing(tmp_path: Path) -> None:
    outcomes = rspolicy.enforce_products(PAN03, tmp_path / "out", log=False)
    assert [o.result for o in outcomes] == [Result.DEGRADED]
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "rspolicy").exists()


def test_screening_logs_only_where_a_log_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decisions = rspolicy.screen_products(PAN03)
    assert [d.rule for d in decisions] == ["cnsa-2022/panchromatic"]
    assert not (Path(os.environ["XDG_STATE_HOME"]) / "rspolicy").exists()
    monkeypatch.setenv("RSPOLICY_LOG", str(tmp_path / "named.jsonl"))
    rspolicy.screen_products([PAN03, PAN05], recipient="FR:CNES", purpose="research")
    records = _records(tmp_path / "named.jsonl")
    assert [r["command"] for r in records] == ["screen", "screen"]
    assert records[0]["recipient"] == "FR:CNES" and records[0]["purpose"] == "research"


def test_library_errors_are_rspolicy_errors_mixed_with_builtins(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as bad_policy:
        rspolicy.screen_products(PAN03, "no-such-policy", log=False)
    assert isinstance(bad_policy.value, ValueError)
    with pytest.raises(PolicyError, match="not an ISO 3166-1 alpha-2"):
        rspolicy.screen_products(PAN03, recipient="XX:Somebody", log=False)
    with pytest.raises(PolicyError, match="later than now"):
        rspolicy.enforce_products(PAN03, tmp_path / "out", at="2099-01-01T00:00:00Z", log=False)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as no_folder:
        rspolicy.enforce_products(PAN03, blocker / "out", log=False)
    assert isinstance(no_folder.value, OSError)
    locked = tmp_path / "locked"
    locked.mkdir()
    shutil.copy(next(PAN03.glob("*.xml")), locked / "log.jsonl")  # not a log
    with pytest.raises(RSPolicyError):
        rspolicy.enforce_products(PAN03, tmp_path / "out2", log=locked / "log.jsonl")
    with pytest.raises(AuditLogError) as no_log:
        rspolicy.enforce_products(PAN03, tmp_path / "out3", log=blocker / "sub" / "log.jsonl")
    assert isinstance(no_log.value, OSError) and "cannot open the audit log" in str(no_log.value)


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_log_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """A FIFO would block the open and /dev/zero never ends: both are refused before a byte is read."""
    if kind == "fifo":
        log = tmp_path / "log.jsonl"
        os.mkfifo(log)
    else:
        log = Path("/dev/zero")
    with pytest.raises(AuditLogError, match="not a regular file") as refused:
        rspolicy.enforce_products(PAN03, tmp_path / "out", log=log)
    assert isinstance(refused.value, OSError)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.tif*"))
    with pytest.raises(AuditLogError, match="not a regular file"):
        rspolicy.screen_products(PAN03, log=log)
    verified = CliRunner().invoke(cli, ["log", "verify", str(log)])
    assert verified.exit_code == 1 and "not a regular file" in verified.output
