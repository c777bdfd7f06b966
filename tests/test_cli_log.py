"""Every decision of ``screen --log`` and ``enforce`` lands in the audit log, and nothing leaves unrecorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rspolicy.cli import cli

from .conftest import SAMPLE_DATA


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def decisions(path: Path) -> list[dict[str, Any]]:
    """The decision records of a log, each released one checked to be followed by its "released" record."""
    records = read_log(path)
    for i, rec in enumerate(records):
        if "event" not in rec and rec.get("output", {}).get("files"):
            later = [r for r in records[i + 1:] if r.get("decision_id") == rec["decision_id"]]
            assert [r["event"] for r in later] == ["released"], rec["input"]["path"]
    return [r for r in records if "event" not in r]


@pytest.fixture(autouse=True)
def _no_home_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("RSPOLICY_LOG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def test_enforce_logs_every_decision(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    result = invoke("enforce", str(SAMPLE_DATA), "-o", str(tmp_path / "out"), "--log", str(log),
                    "--recipient", "ESA", "--purpose", "charter activation 1234", "--operator", "officer-7")
    assert result.exit_code == 3
    records = decisions(log)
    assert len(records) == 15
    for rec in records:
        assert {"decision_id", "timestamp", "rspolicy", "policy", "input", "result", "output", "recipient",
                "purpose", "operator", "host", "prev", "hash"} <= set(rec)
        assert rec["recipient"] == "ESA" and rec["operator"] == "officer-7"
        assert rec["timestamp"].endswith("Z") and rec["policy"]["name"] == "cnsa-2022"
        assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in rec["input"]["files"])
    ids = [r["decision_id"] for r in records]
    assert len(set(ids)) == 15
    resampled = [r for r in records if r["result"]["action"] == "resample"]
    assert len(resampled) == 4
    for rec in resampled:
        assert rec["output"]["gsd_m"] >= rec["result"]["target_gsd_m"] * (1 - 1e-6)
        assert rec["output"]["files"] and all(len(f["sha256"]) == 64 for f in rec["output"]["files"])
    member = next(r for r in records if "!" in r["input"]["path"])
    assert all("!" in f["path"] for f in member["input"]["files"])  # package members named, not temp paths
    verify = invoke("log", "verify", str(log))
    assert verify.exit_code == 0 and f"{len(read_log(log))} records" in verify.stdout


def test_enforce_records_the_inputs_as_screen_does(tmp_path: Path) -> None:
    """enforce hashes its inputs while it degrades; the record must name and hash them as screen's does."""
    product = SAMPLE_DATA / "svn1_pan_0.3m"
    invoke("enforce", str(product), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "enforce.jsonl"))
    invoke("screen", str(product), "--log", str(tmp_path / "screen.jsonl"))
    [enforced], [screened] = decisions(tmp_path / "enforce.jsonl"), read_log(tmp_path / "screen.jsonl")
    assert enforced["result"]["action"] == "resample"
    assert enforced["input"]["files"] == screened["input"]["files"]
    assert len(enforced["input"]["files"]) == 2
    for f in enforced["input"]["files"]:
        data = Path(f["path"]).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()


def test_enforce_logs_to_the_state_directory_by_default(tmp_path: Path) -> None:
    invoke("enforce", str(SAMPLE_DATA / "gf2_pms1_l1a"), "-o", str(tmp_path / "out"))
    assert len(decisions(tmp_path / "state" / "rspolicy" / "decisions.jsonl")) == 2


def test_screen_logs_only_when_asked(tmp_path: Path) -> None:
    invoke("screen", str(SAMPLE_DATA / "gf2_pms1_l1a"))
    assert not (tmp_path / "state").exists()
    log = tmp_path / "screen.jsonl"
    invoke("screen", "--log", str(log), str(SAMPLE_DATA / "gf2_pms1_l1a"))
    invoke("screen", str(SAMPLE_DATA / "sv1_pan_0.5m"), env={"RSPOLICY_LOG": str(log)})
    records = read_log(log)
    assert [r["command"] for r in records] == ["screen"] * 3
    assert "output" not in records[0]
    assert invoke("log", "verify", str(log)).exit_code == 0


def test_blocked_decisions_are_logged_too(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    log = tmp_path / "d.jsonl"
    assert invoke("enforce", str(bad), "-o", str(tmp_path / "out"), "--log", str(log)).exit_code == 4
    [rec] = read_log(log)
    reason = rec["result"]["reasons"][0]
    assert rec["result"]["action"] == "block" and reason.startswith(f"{bad}: ")
    assert "not a readable raster" in reason or "not a TIFF" in reason


def test_unusable_log_releases_nothing(tmp_path: Path) -> None:
    log_dir = tmp_path / "ro"
    log_dir.mkdir()
    log = log_dir / "d.jsonl"
    log.write_text("{not json}\n")  # a log that cannot be chained onto: append refuses
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(out),
                                      "--log", str(log)])
    assert result.exit_code == 1 and "rspolicy: error:" in result.stderr and str(log) in result.stderr
    assert [p for p in out.rglob("*") if p.is_file()] == []


def test_console_entry_point_reports_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    log = tmp_path / "d.jsonl"
    log.write_text("{not json}\n")
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"),
                           "-o", str(tmp_path / "out"), "--log", str(log)], capture_output=True, text=True,
                          env=env, check=False)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rspolicy: error:") and str(log) in lines[0]


def test_export_names_the_release_events_apart_from_decisions(tmp_path: Path) -> None:
    """An auditor reading the CSV tells a decision from the record that its files were placed."""
    import csv
    import io

    log = tmp_path / "log.jsonl"
    runner = CliRunner()
    enforced = runner.invoke(cli, ["enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(tmp_path / "out"),
                                   "--log", str(log)])
    assert enforced.exit_code == 3
    exported = runner.invoke(cli, ["log", "export", str(log), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["action"], r["event"]) for r in rows] == [("resample", ""), ("", "released")]
    assert rows[0]["decision_id"] == rows[1]["decision_id"]
