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


def test_enforce_logs_every_decision(tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    result = invoke("enforce", str(SAMPLE_DATA), "-o", str(tmp_path / "out"), "--log", str(log),
                    "--recipient", "ESA", "--purpose", "charter activation 1234", "--operator", "officer-7")
    assert result.exit_code == 0  # degraded and released: the batch completed
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
    assert enforced.exit_code == 0
    exported = runner.invoke(cli, ["log", "export", str(log), "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["action"], r["event"]) for r in rows] == [("resample", ""), ("", "released")]
    assert rows[0]["decision_id"] == rows[1]["decision_id"]


# --------------------------------------------------------------------------- the tests' own home


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def test_tests_never_write_to_the_real_default_log(tmp_path: Path) -> None:
    """conftest points HOME, the XDG folders and $RSPOLICY_LOG into the test's own folders, subprocesses too."""
    import os
    import subprocess
    import sys

    from rspolicy.config import config_path, default_log_path

    from .conftest import REAL_ENVIRON

    ours = tmp_path / "state" / "rspolicy" / "decisions.jsonl"
    assert default_log_path() == ours
    assert config_path() == tmp_path / "config" / "rspolicy" / "config.toml"
    assert "RSPOLICY_LOG" not in os.environ and "RSPOLICY_LOG_KEY" not in os.environ
    assert Path(os.environ["HOME"]) != Path(REAL_ENVIRON["HOME"])
    real = [default_log_path(REAL_ENVIRON), config_path(REAL_ENVIRON)]
    if REAL_ENVIRON.get("RSPOLICY_LOG"):
        real.append(Path(REAL_ENVIRON["RSPOLICY_LOG"]))
    assert ours not in real
    before = {p: _stat(p) for p in real}

    product = str(SAMPLE_DATA / "svn1_pan_0.3m")
    assert invoke("enforce", product, "-o", str(tmp_path / "out")).exit_code == 0
    assert invoke("screen", product).exit_code == 3
    assert invoke("log", "head").exit_code == 0
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", product, "-o", str(tmp_path / "out2")],
                          capture_output=True, text=True, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr

    assert {p: _stat(p) for p in real} == before
    assert [r["command"] for r in decisions(ours)] == ["enforce", "enforce"]


# --------------------------------------------------------------------------- `rspolicy log` finds enforce's log


def test_log_commands_read_the_log_enforce_writes_by_default(tmp_path: Path) -> None:
    import os

    invoke("enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(tmp_path / "out"))
    log = tmp_path / "state" / "rspolicy" / "decisions.jsonl"
    count = len(read_log(log))
    assert len(decisions(log)) == 1 and count > 1  # the decision and its "released" record

    verify = invoke("log", "verify")
    assert verify.exit_code == 0 and verify.stdout.startswith(f"OK: {count} records")
    head = invoke("log", "head")
    assert head.exit_code == 0 and head.stdout.split() == [read_log(log)[-1]["hash"], str(count), "records", str(log)]
    shown = invoke("log", "show", "--json")
    assert [json.loads(line) for line in shown.stdout.splitlines()] == read_log(log)
    exported = invoke("log", "export", "--format", "jsonl")
    assert exported.stdout.encode() == log.read_bytes()

    # Without XDG_STATE_HOME the default is ~/.local/state, for enforce and for log alike.
    env = {"XDG_STATE_HOME": ""}
    home_log = Path(os.environ["HOME"]) / ".local" / "state" / "rspolicy" / "decisions.jsonl"
    invoke("enforce", str(SAMPLE_DATA / "sv1_pan_0.5m"), "-o", str(tmp_path / "out2"), env=env)
    assert len(decisions(home_log)) == 1
    assert invoke("log", "head", env=env).stdout.endswith(f"{home_log}\n")


def test_log_commands_follow_the_environment_and_the_config_file_as_enforce_does(tmp_path: Path) -> None:
    config = tmp_path / "config" / "rspolicy" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('log = "logs/configured.jsonl"\n')
    product = str(SAMPLE_DATA / "sv1_pan_0.5m")
    invoke("enforce", product, "-o", str(tmp_path / "out1"))
    configured = config.parent / "logs" / "configured.jsonl"
    assert len(decisions(configured)) == 1
    count = len(read_log(configured))
    assert invoke("log", "head").stdout.endswith(f"  {count} records  {configured}\n")

    from_env = tmp_path / "env.jsonl"
    env = {"RSPOLICY_LOG": str(from_env)}
    invoke("enforce", product, "-o", str(tmp_path / "out2"), env=env)
    assert len(decisions(from_env)) == 1 and len(read_log(configured)) == count
    assert invoke("log", "head", env=env).stdout.endswith(f"  {count} records  {from_env}\n")

    explicit = tmp_path / "explicit.jsonl"
    invoke("enforce", product, "-o", str(tmp_path / "out3"), "--log", str(explicit), env=env)
    assert len(decisions(explicit)) == 1 and len(read_log(from_env)) == count
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("command", [["show"], ["verify"], ["head"], ["export", "--format", "csv"], ["repair"]])
def test_a_missing_default_log_is_one_line_naming_it(tmp_path: Path, command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["log", *command])
    path = tmp_path / "state" / "rspolicy" / "decisions.jsonl"
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"rspolicy: error: {path}: no such log (LOG not given: this is where "
                                          "`rspolicy enforce` logs)"]
    named = CliRunner().invoke(cli, ["log", *command, str(tmp_path / "nope.jsonl")])
    assert named.exit_code == 2
    assert named.stderr.splitlines() == [f"rspolicy: error: {tmp_path / 'nope.jsonl'}: no such log"]


# --------------------------------------------------------------------------- CSV export for auditors


def _csv_rows(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def _sha256sum(files: list[dict[str, Any]]) -> str:
    return "\n".join(f"{f['sha256']}  {f['path']}" for f in files)


def test_export_csv_carries_who_why_reasons_and_every_file_with_its_digest(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    out = tmp_path / "out"
    enforced = invoke("enforce", str(SAMPLE_DATA / "svn1_pan_0.3m"), "-o", str(out), "--log", str(log),
                      "--recipient", "ESA", "--purpose", "charter activation 1234", "--operator", "officer-7")
    assert enforced.exit_code == 0, enforced.output
    [record] = decisions(log)
    exported = invoke("log", "export", str(log), "--format", "csv")
    assert exported.exit_code == 0
    decision, released = _csv_rows(exported.stdout)

    assert (decision["recipient"], decision["purpose"], decision["operator"]) == \
        ("ESA", "charter activation 1234", "officer-7")
    assert decision["command"] == "enforce" and decision["host"] == record["host"]
    assert decision["policy_version"] == record["policy"]["version"]
    assert decision["reasons"].splitlines() == record["result"]["reasons"] and decision["reasons"]
    assert decision["inputs"] == _sha256sum(record["input"]["files"])
    assert decision["outputs"] == _sha256sum(record["output"]["files"])
    assert float(decision["output_gsd_m"]) == record["output"]["gsd_m"]
    assert (decision["event"], decision["detail"]) == ("", "")
    # Each line is what sha256sum prints, and the files are the ones that were read and written.
    for line in decision["inputs"].splitlines() + decision["outputs"].splitlines():
        digest, path = line.split("  ", 1)
        assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest
    assert {Path(line.split("  ", 1)[1]).parent for line in decision["outputs"].splitlines()} == {out}

    assert (released["event"], released["decision_id"], released["action"]) == ("released", record["decision_id"], "")
    assert released["operator"] == "officer-7" and released["inputs"] == released["outputs"] == ""


def test_export_csv_carries_any_event_kind(tmp_path: Path) -> None:
    from rspolicy.audit import AuditLog

    log = tmp_path / "log.jsonl"
    with AuditLog(log, fsync=False) as audit_log:
        audit_log.append({"event": "failed", "decision_id": "d1", "timestamp": "2025-03-01T10:00:00Z",
                          "command": "enforce", "input": {"path": "/data/a.tiff"}, "operator": "op",
                          "result": {"action": "resample", "reasons": ["finer than 0.5 m"]},
                          "error": "/out/a.tiff: No space left on device"})
        audit_log.append({"event": "reconcile", "decision_id": "d2", "timestamp": "2025-03-01T10:01:00Z",
                          "command": "enforce", "input": {"path": "/data/b.tiff"}, "operator": "op",
                          "absent": ["/out/b.tiff"], "differs": [], "note": "stopped"})
        audit_log.append({"event": "some-later-kind", "timestamp": "2025-03-01T10:02:00Z", "extra": {"n": 1}})
    failed, reconcile, later = _csv_rows(invoke("log", "export", str(log), "--format", "csv").stdout)
    assert (failed["event"], failed["path"], failed["error"]) == \
        ("failed", "/data/a.tiff", "/out/a.tiff: No space left on device")
    assert (failed["action"], failed["reasons"], failed["detail"]) == ("resample", "finer than 0.5 m", "")
    assert reconcile["event"] == "reconcile"
    assert json.loads(reconcile["detail"]) == {"absent": ["/out/b.tiff"], "differs": [], "note": "stopped"}
    assert (later["event"], json.loads(later["detail"])) == ("some-later-kind", {"extra": {"n": 1}})
    assert [r["seq"] for r in (failed, reconcile, later)] == ["1", "2", "3"]
    # The table shows an event as such, never as the decision a failed record carries.
    shown = invoke("log", "show", str(log)).stdout.splitlines()
    assert [line.split()[3] for line in shown[1:]] == ["(FAILED)", "(RECONCILE)", "(SOME-LATER-KIND)"]


def test_export_file_cells_escape_names_as_sha256sum_does() -> None:
    from rspolicy.audit import flatten

    digest = "ab" * 32
    rec = {"input": {"files": [{"path": "/d/plain name.tiff", "sha256": digest},
                               {"path": "/d/two\nlines\\x.tiff", "sha256": digest}]},
           "result": {"reasons": ["first", "second\nhalf"]}}
    flat = flatten(rec)
    assert flat["inputs"].split("\n") == [f"{digest}  /d/plain name.tiff", f"\\{digest}  /d/two\\nlines\\\\x.tiff"]
    assert flat["reasons"].split("\n") == ["first", "second half"]
    assert flat["outputs"] is None and flat["detail"] is None
