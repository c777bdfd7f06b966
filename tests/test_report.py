"""The batch report: JSON and CSV read back as written, formulas defused, never half written."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspolicy import report
from rspolicy.errors import OutputError, ReportError, RSPolicyError
from rspolicy.report import CSV_COLUMNS, csv_cell, write_report
from rspolicy.results import BatchSummary, FileDigest, ProductResult, Result

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_P = "c" * 64

RESULTS = [
    ProductResult("in/GF2_PMS1_E113.tiff", Result.RELEASED, "within the 1 m limit", decision_id="d-1",
                  product_class="multispectral", satellite="GF-2", gsd_m=3.2, target_gsd_m=None,
                  outputs=(FileDigest("out/GF2_PMS1_E113.tiff", 1000, SHA_A), FileDigest("out/GF2.xml", 24, SHA_B)),
                  bytes_in=1024, seconds=1.25),
    ProductResult("in/pkg.tar.gz!GF2_PAN1.tiff", Result.DEGRADED, "0.8 m finer than 1 m", decision_id="d-2",
                  product_class="panchromatic", satellite="GF-2", gsd_m=0.8, target_gsd_m=1.0, output_gsd_m=1.0,
                  outputs=(FileDigest("out/pkg.tar.gz", 500, SHA_P),
                           FileDigest("out/pkg.tar.gz!GF2_PAN1.tiff", 9, SHA_A)),
                  bytes_in=4096),
    ProductResult("in/=HYPERLINK(\"http://evil\",\"x\").tiff", Result.BLOCKED, "-1 bands; class unknown",
                  decision_id="d-3", product_class="unknown", bytes_in=10),
    ProductResult("in/@SUM(A1).tiff", Result.FAILED, "+ cannot write out/x.tiff: disk full", bytes_in=7),
    ProductResult("in/高分二号, \"quoted\"\nnext.tiff", Result.SKIPPED, "already released", decision_id="d-0"),
]
POLICY = {"name": "default", "version": "2024-1", "sha256": "d" * 64}


def summary_of(results: list[ProductResult]) -> BatchSummary:
    return BatchSummary.of(results, seconds=12.3456)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        return list(reader)


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- JSON --------------------------------------------------------------------------------------------------------


def test_json_reads_back_with_summary_policy_and_every_product(tmp_path: Path) -> None:
    target = tmp_path / "night.json"
    write_report(target, summary_of(RESULTS), RESULTS, policy=POLICY)
    data = json.loads(target.read_text(encoding="utf-8"))
    assert list(data) == ["summary", "policy", "products"]
    assert data["summary"] == {"released": 1, "degraded": 1, "blocked": 1, "failed": 1, "skipped": 1, "products": 5,
                               "bytes_in": 1024 + 4096 + 10 + 7, "bytes_out": 1024 + 500, "seconds": 12.346}
    assert data["policy"] == POLICY
    assert data["products"] == [r.to_dict() for r in RESULTS]
    degraded = data["products"][1]
    assert (degraded["outcome"], degraded["class"], degraded["gsd_m"], degraded["target_gsd_m"]) == \
        ("degraded", "panchromatic", 0.8, 1.0)
    assert [o["sha256"] for o in degraded["outputs"]] == [SHA_P, SHA_A]
    # JSON is the exact form: no formula guard there
    assert data["products"][2]["path"] == RESULTS[2].path


def test_json_keeps_one_product_per_line_and_readable_text(tmp_path: Path) -> None:
    target = tmp_path / "night.json"
    write_report(target, summary_of(RESULTS), RESULTS)
    text = target.read_text(encoding="utf-8")
    assert "高分二号" in text
    product_lines = [line for line in text.splitlines() if '"outcome"' in line]
    assert len(product_lines) == len(RESULTS)
    assert "policy" not in json.loads(text)


def test_json_of_an_empty_batch(tmp_path: Path) -> None:
    target = tmp_path / "empty.JSON"  # suffix in any case
    write_report(target, summary_of([]), [])
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["products"] == []
    assert data["summary"]["products"] == 0


def test_an_undecodable_name_byte_is_escaped_not_fatal(tmp_path: Path) -> None:
    # Display strings never hold surrogate escapes; one that slips through must not cost the whole report.
    results = [ProductResult("in/bad\udcff.tiff", Result.BLOCKED, "unreadable")]
    for name in ("r.json", "r.csv"):
        write_report(tmp_path / name, summary_of(results), results)
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["products"][0]["path"] == "in/bad\udcff.tiff"
    assert read_csv(tmp_path / "r.csv")[0]["path"] == "in/bad\\udcff.tiff"


# -- CSV ---------------------------------------------------------------------------------------------------------


def test_csv_has_one_row_per_product_in_order(tmp_path: Path) -> None:
    target = tmp_path / "night.csv"
    write_report(target, summary_of(RESULTS), RESULTS, policy=POLICY)
    rows = read_csv(target)
    assert [r["outcome"] for r in rows] == [r.result.value for r in RESULTS]
    first, second = rows[0], rows[1]
    assert first["path"] == "in/GF2_PMS1_E113.tiff"
    assert (first["decision_id"], first["class"], first["satellite"]) == ("d-1", "multispectral", "GF-2")
    assert float(first["gsd_m"]) == 3.2 and first["target_gsd_m"] == "" and first["output_gsd_m"] == ""
    assert first["outputs"] == f"out/GF2_PMS1_E113.tiff={SHA_A};out/GF2.xml={SHA_B}"
    assert (int(first["bytes_in"]), int(first["bytes_out"])) == (1024, 1024)
    assert (float(second["gsd_m"]), float(second["target_gsd_m"]), float(second["output_gsd_m"])) == (0.8, 1.0, 1.0)
    assert int(second["bytes_out"]) == 500  # the package, its member not counted twice
    # quotes, commas, newlines and CJK survive the round trip
    assert rows[4]["path"] == RESULTS[4].path


def test_csv_numbers_read_back_exactly(tmp_path: Path) -> None:
    gsd = 0.1 + 0.2
    results = [ProductResult("a.tif", Result.DEGRADED, "r", gsd_m=gsd, target_gsd_m=1 / 3, bytes_in=2**40)]
    write_report(tmp_path / "r.csv", summary_of(results), results)
    row = read_csv(tmp_path / "r.csv")[0]
    assert float(row["gsd_m"]) == gsd and float(row["target_gsd_m"]) == 1 / 3 and int(row["bytes_in"]) == 2**40


def test_csv_cells_that_would_be_formulas_get_an_apostrophe(tmp_path: Path) -> None:
    evil = ProductResult("=cmd|' /C calc'!A0", Result.RELEASED, "@SUM(1+1)*cmd|' /C calc'!A0", decision_id="-2+3",
                         satellite="+GF-2", product_class="\tpan",
                         outputs=(FileDigest("=out.tiff", 1, SHA_A),))
    write_report(tmp_path / "r.csv", summary_of([evil]), [evil])
    row = read_csv(tmp_path / "r.csv")[0]
    assert row["path"] == "'=cmd|' /C calc'!A0"
    assert row["reason"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
    assert row["decision_id"] == "'-2+3"
    assert row["satellite"] == "'+GF-2"
    assert row["class"] == "'\tpan"
    assert row["outputs"] == f"'=out.tiff={SHA_A}"
    rows = read_csv_all(tmp_path / "r.csv")
    assert not any(cell.startswith(report.FORMULA_PREFIXES) for row in rows for cell in row)


def read_csv_all(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_csv_cell_edges() -> None:
    assert csv_cell("-") == "'-"
    assert csv_cell("\r=1") == "'\r=1"
    assert csv_cell(" =1") == " =1"  # a leading space is not a formula
    assert csv_cell("") == ""


_text = st.text(max_size=40)


@settings(max_examples=150, deadline=None,  # each example fsyncs two files: disk time, not the code
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_text, reason=_text, sat=st.none() | _text,
       gsd=st.none() | st.floats(min_value=1e-6, max_value=1e6, allow_nan=False))
def test_any_text_reads_back_exactly_from_json_and_defused_from_csv(
        tmp_path: Path, path: str, reason: str, sat: str | None, gsd: float | None) -> None:
    results = [ProductResult(path, Result.BLOCKED, reason, satellite=sat, gsd_m=gsd)]
    write_report(tmp_path / "p.json", summary_of(results), results)
    write_report(tmp_path / "p.csv", summary_of(results), results)
    product = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))["products"][0]
    assert (product["path"], product["reason"], product["satellite"], product["gsd_m"]) == (path, reason, sat, gsd)
    row = read_csv(tmp_path / "p.csv")[0]
    assert (row["path"], row["reason"], row["satellite"]) == (csv_cell(path), csv_cell(reason), csv_cell(sat or ""))
    assert (float(row["gsd_m"]) if row["gsd_m"] else None) == gsd


# -- formats and failures ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["night.txt", "night", "night.json.tmp", "night.xlsx"])
def test_an_unknown_suffix_is_a_report_error_and_writes_nothing(tmp_path: Path, name: str) -> None:
    with pytest.raises(ReportError, match="json or"):
        write_report(tmp_path / name, summary_of(RESULTS), RESULTS)
    assert folder_names(tmp_path) == []
    assert issubclass(ReportError, RSPolicyError) and issubclass(ReportError, ValueError)


def old_report(folder: Path, name: str) -> Path:
    target = folder / name
    target.write_text("the previous report\n", encoding="utf-8")
    return target


@pytest.mark.parametrize("name", ["night.json", "night.csv"])
def test_a_value_that_cannot_be_written_leaves_the_previous_report_and_no_temporary(tmp_path: Path,
                                                                                    name: str) -> None:
    target = old_report(tmp_path, name)
    bad = [*RESULTS[:3], ProductResult("nan.tif", Result.BLOCKED, "r", gsd_m=math.nan), *RESULTS[3:]]
    with pytest.raises(ReportError, match=r"product 4 \(nan.tif\)"):
        write_report(target, summary_of(RESULTS), bad)
    assert target.read_text(encoding="utf-8") == "the previous report\n"
    assert folder_names(tmp_path) == [name]


def test_a_policy_json_cannot_hold_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="policy"):
        write_report(tmp_path / "r.json", summary_of(RESULTS), RESULTS, policy={"loaded": object()})
    assert folder_names(tmp_path) == []


class _Exploding(ProductResult):
    def to_dict(self) -> dict[str, Any]:
        raise RuntimeError("killed while writing")


@pytest.mark.parametrize("name", ["night.json", "night.csv"])
def test_a_failure_midway_leaves_the_previous_report_whole(tmp_path: Path, name: str) -> None:
    target = old_report(tmp_path, name)
    results = [*RESULTS, _Exploding("x.tif", Result.RELEASED, "r")]
    with pytest.raises(RuntimeError, match="killed while writing"):
        write_report(target, summary_of(results), results)
    assert target.read_text(encoding="utf-8") == "the previous report\n"
    assert folder_names(tmp_path) == [name]


def test_a_failed_rename_leaves_the_previous_report_and_no_temporary(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    target = old_report(tmp_path, "night.json")

    def refuse(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rspolicy.report.os.replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_report(target, summary_of(RESULTS), RESULTS)
    assert target.read_text(encoding="utf-8") == "the previous report\n"
    assert folder_names(tmp_path) == ["night.json"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_an_os_error_and_leaves_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write the report"):
            write_report(folder / "night.csv", summary_of(RESULTS), RESULTS)
        assert folder_names(folder) == []
    finally:
        folder.chmod(0o755)


def test_a_folder_that_refuses_the_temporary_is_an_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-only case for a root test run, where chmod 0555 does not stop writes."""
    target = old_report(tmp_path, "night.csv")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr("rspolicy.report.tempfile.mkstemp", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        write_report(target, summary_of(RESULTS), RESULTS)
    assert target.read_text(encoding="utf-8") == "the previous report\n"
    assert folder_names(tmp_path) == ["night.csv"]


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="No such file") as missing:
        write_report(tmp_path / "absent" / "night.json", summary_of(RESULTS), RESULTS)
    assert isinstance(missing.value, OSError) and isinstance(missing.value, RSPolicyError)
    assert folder_names(tmp_path) == []


def test_a_folder_in_the_way_is_an_os_error_and_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "night.json").mkdir()
    with pytest.raises(OutputError):  # an OSError too (IsADirectoryError or PermissionError, by platform)
        write_report(tmp_path / "night.json", summary_of(RESULTS), RESULTS)
    assert folder_names(tmp_path) == ["night.json"]


def test_permissions_new_0644_and_an_existing_report_keeps_its_own(tmp_path: Path) -> None:
    new = tmp_path / "new.json"
    write_report(new, summary_of(RESULTS), RESULTS)
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    kept = old_report(tmp_path, "kept.csv")
    kept.chmod(0o600)
    write_report(kept, summary_of(RESULTS), RESULTS)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert len(read_csv(kept)) == len(RESULTS)


def test_a_report_replaces_the_previous_one(tmp_path: Path) -> None:
    target = old_report(tmp_path, "night.json")
    write_report(target, summary_of(RESULTS[:1]), RESULTS[:1])
    assert json.loads(target.read_text(encoding="utf-8"))["summary"]["products"] == 1
    write_report(str(target), summary_of(RESULTS), RESULTS)  # a str path too
    assert json.loads(target.read_text(encoding="utf-8"))["summary"]["products"] == len(RESULTS)
