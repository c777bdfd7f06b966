"""A run of ``rspolicy enforce`` killed at any point leaves nothing unrecorded, and the next run reconciles.

The kills come from a wrapper (``python -c``) that patches ``os.replace``,
``os.fsync`` or ``AuditLog.append`` to ``os._exit`` at the command's own Nth
call (not a worker's), and
from SIGKILL after random delays. After each kill: every file under a product
name in OUTDIR has a record whose sha256 matches, no ``*.part`` is left
outside a stage folder, ``log verify`` flags exactly the recorded releases
that did not happen, and a rerun completes, removes the stage folders and
leaves a log that verifies.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rspolicy.cli import cli
from rspolicy.enforce import STAGE_PREFIX

from .conftest import SAMPLE_DATA

PRODUCTS = [SAMPLE_DATA / "svn1_pan_0.3m", SAMPLE_DATA / "sv1_pan_0.5m", SAMPLE_DATA / "gf3_sl_l2",
            next(SAMPLE_DATA.glob("*.tar.gz"))]

WRAPPER = """
import os, sys
kind, nth = sys.argv[1], int(sys.argv[2])
sys.argv = ["rspolicy", *sys.argv[3:]]
calls = [0]
command = os.getpid()
def hit():
    if os.getpid() != command:
        return  # a worker process (forked with the patch): the kill is the command's
    calls[0] += 1
    if calls[0] == nth:
        os._exit(137)
if kind == "replace":
    real_replace = os.replace
    def replace(*args, **kwargs):
        hit()
        return real_replace(*args, **kwargs)
    os.replace = replace
elif kind == "fsync":
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        hit()
    os.fsync = fsync
else:
    from rspolicy import audit
    real_append = audit.AuditLog.append
    def append(self, record):
        written = real_append(self, record)
        hit()  # killed with the record durable and whatever it announces not yet done
        return written
    audit.AuditLog.append = append
from rspolicy.cli import main
main()
"""


def enforce_args(out: Path, log: Path, jobs: int = 1) -> list[str]:
    # One process by default, so that the instrumented calls (staging's fsyncs included) happen where the
    # wrapper patched them; the random kills also run with worker processes.
    return ["enforce", *map(str, PRODUCTS), "-o", str(out), "--log", str(log), "--jobs", str(jobs)]


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
            "RSPOLICY_LOG": ""}


def records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    # A torn last line (killed mid-write) was never acknowledged.
    return [json.loads(line) for line in log.read_text().splitlines(keepends=True) if line.endswith("\n")]


def product_files(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*")
                  if p.is_file() and not any(part.startswith(STAGE_PREFIX) for part in p.relative_to(out).parts))


def check_after_kill(out: Path, log: Path) -> None:
    recorded = {(f["path"], f["sha256"]) for r in records(log) if "event" not in r
                for f in r.get("output", {}).get("files", []) if "!" not in f["path"]}
    for f in product_files(out):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert (str(f), digest) in recorded, f"{f} is in OUTDIR without a matching record"
        assert not f.name.endswith(".part")
    verify = CliRunner().invoke(cli, ["log", "verify", str(log)]) if log.exists() else None
    if verify is not None and verify.exit_code != 0:
        # Only a release that was recorded and not completed (or a torn last line) may fail it.
        assert "release not completed" in verify.stdout or "torn-tail" in verify.stdout, verify.stdout


def check_rerun(tmp_path: Path, out: Path, log: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "rspolicy", *enforce_args(out, log)], capture_output=True,
                          text=True, env=env(tmp_path), check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr  # every product released or degraded (or skipped: done before)
    assert "Traceback" not in proc.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(STAGE_PREFIX)]
    verify = CliRunner().invoke(cli, ["log", "verify", str(log)])
    assert verify.exit_code == 0 and verify.stdout.startswith("OK"), verify.stdout
    # Everything in place is recorded, and every product left: released now or "output exists".
    check_after_kill(out, log)
    assert {p.name for p in product_files(out)} >= {"SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff",
                                                   PRODUCTS[-1].name}
    assert effective_decisions(log) == EXPECTED_DECISIONS


#: Decisions per product of PRODUCTS (the package holds two).
EXPECTED_DECISIONS = 5


def effective_decisions(log: Path) -> int:
    """Decisions that stand: every decision record less those a reconcile record voided (never released).

    A rerun skips what a killed run completed, so whatever the kill point, each product has exactly one.
    """
    recs = records(log)
    voided = {r["decision_id"] for r in recs if r.get("event") == "reconcile"}
    standing = [r for r in recs if "event" not in r and r["decision_id"] not in voided]
    paths = [r["input"]["path"] for r in standing]
    assert len(paths) == len(set(paths)), f"a product decided twice: {sorted(paths)}"
    return len(standing)


def killed_run(tmp_path: Path, kind: str, nth: int) -> tuple[Path, Path, int]:
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    proc = subprocess.run([sys.executable, "-c", WRAPPER, kind, str(nth), *enforce_args(out, log)],
                          capture_output=True, text=True, env=env(tmp_path), check=False, timeout=120)
    assert "Traceback" not in proc.stderr
    return out, log, proc.returncode


@pytest.mark.parametrize(("kind", "nth"), [("append", 1), ("append", 3), ("replace", 1), ("replace", 2),
                                           ("replace", 4), ("fsync", 3), ("fsync", 6)])
def test_kill_at_an_instrumented_point(tmp_path: Path, kind: str, nth: int) -> None:
    out, log, status = killed_run(tmp_path, kind, nth)
    assert status == 137, "the run ended before the kill point: choose an earlier one"
    check_after_kill(out, log)
    check_rerun(tmp_path, out, log)


def test_kill_between_record_and_release_is_reported_then_reconciled(tmp_path: Path) -> None:
    out, log, status = killed_run(tmp_path, "append", 1)  # the first product's record, nothing placed
    assert status == 137
    [first] = records(log)
    assert first["output"]["files"] and product_files(out) == []
    verify = CliRunner().invoke(cli, ["log", "verify", str(log)])
    assert verify.exit_code == 1
    assert f"release not completed: decision {first['decision_id']}, " in verify.stdout and "absent" in verify.stdout
    check_rerun(tmp_path, out, log)
    [reconcile] = [r for r in records(log) if r.get("event") == "reconcile"]
    assert reconcile["decision_id"] == first["decision_id"]
    assert sorted(reconcile["absent"]) == sorted(f["path"] for f in first["output"]["files"] if "!" not in f["path"])
    # The reconciled product was released by the rerun under a new decision.
    again = [r for r in records(log) if "event" not in r and r["input"]["path"] == first["input"]["path"]]
    assert len(again) == 2 and again[1]["output"]["files"]
    # A third run finds nothing to reconcile.
    before = len(records(log))
    CliRunner().invoke(cli, enforce_args(out, log), env=env(tmp_path))
    assert not [r for r in records(log)[before:] if r.get("event") == "reconcile"]


@pytest.mark.parametrize(("seed", "jobs"), [(1, 1), (2, 2), (3, 2), (4, 3)])
def test_kill_after_a_random_delay(tmp_path: Path, seed: int, jobs: int) -> None:
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rspolicy", *enforce_args(out, log, jobs)], env=env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(random.Random(seed).uniform(0.5, 2.0))
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert b"Traceback" not in stderr
    if out.exists():
        check_after_kill(out, log)
    check_rerun(tmp_path, out, log)


def test_no_reconciling_while_another_run_stages_into_the_folder(tmp_path: Path) -> None:
    out, log, status = killed_run(tmp_path, "append", 1)
    assert status == 137
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_stage = out / f"{STAGE_PREFIX}{other.pid}-busy"
        live_stage.mkdir()
        result = CliRunner().invoke(cli, enforce_args(out, log), env=env(tmp_path))
        assert result.exit_code in (0, 4) and f"another run (pid {other.pid})" in result.stderr
        assert not [r for r in records(log) if r.get("event") == "reconcile"]
        assert live_stage.is_dir()  # a running owner's stage is left alone
    finally:
        other.kill()
        other.wait()
    result = CliRunner().invoke(cli, enforce_args(out, log), env=env(tmp_path))
    assert [r["event"] for r in records(log) if r.get("event") == "reconcile"] == ["reconcile"]
    assert not live_stage.exists()
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0
