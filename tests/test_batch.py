"""``rspolicy enforce`` as the nightly batch step: discovery, outcomes, exit codes, resume, failures, reports.

Every test goes through the real click group (or a real subprocess where a
signal, a resource limit or a pipe is the point) on real files copied from
the sample data.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner, Result
from rasterio.crs import CRS

from rspolicy.cli import cli
from rspolicy.enforce import STAGE_PREFIX, EnforceOptions, enforce
from rspolicy.policy import load_policy
from rspolicy.results import Result as Outcome
from rspolicy.samples.gf_optical import write_image

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"  # degraded to 0.5 m
PAN05 = SAMPLE_DATA / "sv1_pan_0.5m"  # released as it is
PACKAGE = next(SAMPLE_DATA.glob("*.tar.gz"))  # two products: PAN 0.81 m and MSS 3.24 m, both released
MS2 = SAMPLE_DATA / "gf2_pms1_l1a"  # PAN 0.81 m and MSS 3.24 m: two products, both released


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["enforce", *args], input=stdin, catch_exceptions=False)


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def decisions(log: Path) -> list[dict[str, Any]]:
    return [r for r in records(log) if "event" not in r]


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def blocked_tif(path: Path) -> Path:
    """A single-band image with no class and no georeferencing: blocked (no evidence of its resolution)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_image(path, np.full((1, 16, 16), 7, dtype=np.uint8))


def many(root: Path, n: int) -> Path:
    """``n`` copies of the 0.3 m PAN product, each in a folder of its own (same file names)."""
    for i in range(n):
        shutil.copytree(PAN03, root / f"scene{i:03d}")
    return root


# --- discovery ------------------------------------------------------------------------------------------------


def test_a_product_named_by_each_of_its_files_and_its_folder_is_decided_once(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PAN03, src)
    image, sidecar = sorted(src.iterdir(), key=lambda p: p.suffix != ".tiff")
    log = tmp_path / "log.jsonl"
    result = run(str(image), str(sidecar), str(src), str(image), "-o", str(tmp_path / "out"), "--log", str(log))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1 and result.stdout.startswith("DEGRADED")
    assert len(decisions(log)) == 1


def test_equal_names_in_different_folders_never_collide(tmp_path: Path) -> None:
    src = many(tmp_path / "src", 2)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    images = sorted(src.rglob("*.tiff"))
    assert images[0].name == images[1].name
    result = run(*map(str, images), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    written = files(out)
    assert {Path(p).parent.as_posix() for p in written} == {"scene000", "scene001"}  # mirrored under the root
    assert len(written) == 4 and len(decisions(log)) == 2


def test_a_folder_argument_maps_onto_outdir_and_two_folders_keep_their_names(tmp_path: Path) -> None:
    src = many(tmp_path / "src", 2)
    one = run(str(src / "scene000"), "-o", str(tmp_path / "one"), "--log", str(tmp_path / "l1.jsonl"))
    assert one.exit_code == 0 and {Path(p).parent.as_posix() for p in files(tmp_path / "one")} == {"."}
    two = run(str(src / "scene000"), str(src / "scene001"), "-o", str(tmp_path / "two"),
              "--log", str(tmp_path / "l2.jsonl"))
    assert two.exit_code == 0 and {Path(p).parent.as_posix() for p in files(tmp_path / "two")} == {
        "scene000", "scene001"}


def test_paths_from_standard_input(tmp_path: Path) -> None:
    src = many(tmp_path / "src", 3)
    listing = "".join(f"{p}\n" for p in sorted(src.rglob("*.tiff"))) + "\n"
    log = tmp_path / "log.jsonl"
    result = run("-", "-o", str(tmp_path / "out"), "--log", str(log), stdin=listing)
    assert result.exit_code == 0, result.output
    assert len(decisions(log)) == 3 and len(files(tmp_path / "out")) == 6


@pytest.mark.parametrize("what", ["empty_folder", "no_products", "mistyped", "empty_stdin"])
def test_nothing_to_do_is_a_usage_error(tmp_path: Path, what: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    if what == "no_products":
        (folder / "notes.txt").write_text("no image here")
    args, stdin = [str(folder)], None
    if what == "mistyped":
        args = [str(tmp_path / "inn")]
    elif what == "empty_stdin":
        args, stdin = ["-"], ""
    log = tmp_path / "log.jsonl"
    result = run(*args, "-o", str(tmp_path / "out"), "--log", str(log), stdin=stdin)
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("rspolicy: error:")
    assert ("no such file" if what == "mistyped" else "no products found under") in line
    assert records(log) == [] and (not (tmp_path / "out").exists() or files(tmp_path / "out") == {})


def test_a_folder_without_products_beside_one_with_products_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run(str(PAN05), str(empty), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 2 and f"no products found under {empty}" in result.stderr


# --- outcomes and exit codes ----------------------------------------------------------------------------------


def test_every_product_ends_in_one_outcome_and_blocked_gives_4(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(PAN03, src / "a")
    shutil.copytree(PAN05, src / "b")
    blocked_tif(src / "c" / "mystery.tif")
    report = tmp_path / "report.json"
    result = run(str(src), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"), "--report",
                 str(report))
    assert result.exit_code == 4, result.output
    data = json.loads(report.read_text())
    assert {k: data["summary"][k] for k in ("released", "degraded", "blocked", "failed", "skipped")} == {
        "released": 1, "degraded": 1, "blocked": 1, "failed": 0, "skipped": 0}
    by_name = {Path(p["path"]).parent.name: p for p in data["products"]}
    assert by_name["c"]["outcome"] == "blocked" and "no evidence of the ground resolution" in by_name["c"]["reason"]
    assert by_name["a"]["outcome"] == "degraded" and by_name["a"]["target_gsd_m"] == 0.5


def test_released_degraded_and_skipped_give_0(tmp_path: Path) -> None:
    args = [str(PAN03), str(PAN05), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl")]
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 0 and [line.split()[0] for line in again.stdout.splitlines()] == ["SKIPPED"] * 2


def test_a_missing_file_is_blocked_with_the_reason_that_decided(tmp_path: Path) -> None:
    listing = f"{tmp_path / 'gone.tif'}\n{next(PAN05.glob('*.tiff'))}\n"
    report = tmp_path / "r.json"
    result = run("-", "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"), "--report", str(report),
                 stdin=listing)
    assert result.exit_code == 4
    gone = next(p for p in json.loads(report.read_text())["products"] if p["path"].endswith("gone.tif"))
    # The reason that decided, not the last one said ("the product class could not be established").
    assert gone["outcome"] == "blocked" and gone["reason"].endswith("gone.tif: no such file or directory")


def test_a_failure_outranks_a_block_and_is_logged_as_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rspolicy.enforce as enforce_module

    def full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(enforce_module, "degrade_raster", full)
    src = tmp_path / "src"
    shutil.copytree(PAN03, src / "a")
    shutil.copytree(PAN05, src / "b")
    blocked_tif(src / "c" / "mystery.tif")
    log = tmp_path / "log.jsonl"
    result = run(str(src), "-o", str(tmp_path / "out"), "--log", str(log), "--jobs", "1")
    assert result.exit_code == 1
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["FAILED", "RELEASED", "BLOCKED"]
    events = [(r.get("event"), r["result"]["action"]) for r in records(log) if "result" in r]
    assert (("failed", "resample") in events and (None, "block") in events
            and not any(e == (None, "resample") for e in events))  # the failure is never a policy decision
    assert "No space left on device" in next(r["error"] for r in records(log) if r.get("event") == "failed")
    assert not (tmp_path / "out" / "a").exists()
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0


def test_each_product_is_charged_the_time_its_work_item_took(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loose product gets its item's time; a package's time is shared by its products (clock under test)."""
    import types

    import rspolicy.enforce as enforce_module

    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")  # the clock below is read in this process
    ticks = iter([100.0, 103.0, 200.0, 208.0])
    monkeypatch.setattr(enforce_module, "time", types.SimpleNamespace(monotonic=lambda: next(ticks)))
    src = tmp_path / "src"
    shutil.copytree(PAN03, src / "loose")
    shutil.copy(PACKAGE, src / PACKAGE.name)
    outcomes = enforce([src], EnforceOptions(tmp_path / "out", load_policy()))
    seconds = {(Path(o.display).parent.name if "!" not in o.display else "package"): o.seconds for o in outcomes}
    assert sorted(o.seconds for o in outcomes) == [3.0, 4.0, 4.0]
    assert seconds["loose"] == 3.0


# --- failure isolation ----------------------------------------------------------------------------------------


def test_one_bad_product_never_stops_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rspolicy.enforce as enforce_module

    real = enforce_module._stage_degraded

    def buggy(decision: Any, *args: Any) -> Any:
        if "scene001" in decision.path:
            raise RuntimeError("a bug in a writer")
        return real(decision, *args)

    monkeypatch.setattr(enforce_module, "_stage_degraded", buggy)
    src = many(tmp_path / "src", 3)
    outcomes = enforce([src], EnforceOptions(tmp_path / "out", load_policy()))
    assert [o.result for o in outcomes] == [Outcome.DEGRADED, Outcome.FAILED, Outcome.DEGRADED]
    assert "RuntimeError: a bug in a writer" in outcomes[1].reason
    assert sorted({Path(p).parent.as_posix() for p in files(tmp_path / "out")}) == ["scene000", "scene002"]


_REAL_PREPARE = None


def _crashing_prepare(item: Any, ctx: Any) -> Any:
    """Module level, so that the worker can unpickle it: ends its worker as a C library's segfault would."""
    if "scene002" in str(getattr(getattr(item, "files", None), "main", "")):
        os._exit(139)
    assert _REAL_PREPARE is not None
    return _REAL_PREPARE(item, ctx)


@pytest.mark.kills_worker
def test_a_worker_that_dies_fails_only_its_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rspolicy.enforce as enforce_module

    monkeypatch.setattr(sys.modules[__name__], "_REAL_PREPARE", enforce_module.prepare)
    crashing = _crashing_prepare
    monkeypatch.setattr(enforce_module, "prepare", crashing)  # worker processes are forked: they see it
    src = many(tmp_path / "src", 5)
    outcomes = enforce([src], EnforceOptions(tmp_path / "out", load_policy(), jobs=2))
    results = {Path(o.display).parent.name: o for o in outcomes}
    assert sorted(results) == [f"scene{i:03d}" for i in range(5)]
    assert results["scene002"].result is Outcome.FAILED and "worker" in results["scene002"].reason
    assert all(o.result is Outcome.DEGRADED for name, o in results.items() if name != "scene002"), [
        (o.display, o.reason) for o in outcomes]
    assert [o.display for o in outcomes] == sorted(o.display for o in outcomes)  # recorded in input order


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_full_disk_fails_the_product_and_the_log_says_so(tmp_path: Path) -> None:
    """A real write failure (files may not grow past 1 MB, as on a nearly full disk): failed, exit 1, no block."""
    src = tmp_path / "src"
    src.mkdir()
    pixels = np.random.default_rng(1).integers(0, 255, (1, 2400, 2400), dtype=np.uint8)
    write_image(src / "SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff", pixels, crs=CRS.from_epsg(32650),
                transform=Affine(0.3, 0, 448_000, 0, -0.3, 4_417_000))
    shutil.copytree(PAN05, src / "small")
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log", str(log),
                           "--jobs", "1"], capture_output=True, text=True, preexec_fn=_limit_file_size, check=False,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("FAILED") and lines[1].startswith("RELEASED")
    [failed] = [r for r in records(log) if r.get("event") == "failed"]
    assert failed["result"]["action"] == "resample" and failed["error"]
    assert list(files(out)) == ["small/SV1-01_20200601_L2A0000123456_1012000000001-PAN.tiff",
                                "small/SV1-01_20200601_L2A0000123456_1012000000001-PAN.xml"]
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0
    # With room again, the rerun does the failed product and skips the released one.
    again = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log",
                            str(log)], capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0 and [line.split()[0] for line in again.stdout.splitlines()] == [
        "DEGRADED", "SKIPPED"]


# --- resume ---------------------------------------------------------------------------------------------------


def test_rerun_writes_no_new_decision_and_redoes_what_is_missing_or_changed(tmp_path: Path) -> None:
    src = many(tmp_path / "src", 3)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    assert run(str(src), "-o", str(out), "--log", str(log)).exit_code == 0
    first = len(records(log))
    assert [line.split()[0] for line in run(str(src), "-o", str(out), "--log", str(log)).stdout.splitlines()] == [
        "SKIPPED"] * 3
    assert len(records(log)) == first
    # An output removed, an output altered, an input changed: those products are done again.
    next((out / "scene000").glob("*.tiff")).unlink()
    with next((out / "scene001").glob("*.xml")).open("a") as fh:
        fh.write("<!-- edited -->")
    with next((src / "scene002").glob("*.xml")).open("a") as fh:
        fh.write("\n")
    result = run(str(src), "-o", str(out), "--log", str(log))
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["DEGRADED", "FAILED", "DEGRADED"]
    assert "output exists" in result.stdout.splitlines()[1]  # an altered file is not this batch's: never replaced
    forced = run(str(src / "scene001"), str(src / "scene000"), "-o", str(out), "--log", str(log), "--force")
    assert forced.exit_code == 0
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0


def test_a_package_rerun_is_skipped_member_by_member_with_its_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    package = Path(shutil.copy(PACKAGE, src / PACKAGE.name))
    empty = src / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("d/readme.txt"), io.BytesIO(b""))
    out, log = tmp_path / "out", tmp_path / "log.jsonl"

    def outcomes(result: Result) -> list[dict[str, Any]]:
        return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]

    first = outcomes(run(str(src), "-o", str(out), "--log", str(log), "--json"))
    assert sorted(o["outcome"] for o in first) == ["blocked", "released", "released"]
    members = sorted(o["path"] for o in first if "!" in o["path"])
    assert len(members) == 2 and all(m.startswith(f"{package}!") for m in members)  # named inside the package
    logged = len(records(log))
    again = run(str(src), "-o", str(out), "--log", str(log), "--json")
    assert again.exit_code == 0
    second = outcomes(again)
    assert [o["outcome"] for o in second] == ["skipped"] * 3
    assert len(records(log)) == logged  # no new decision
    assert sorted(o["path"] for o in second if "!" in o["path"]) == members
    assert [o["path"] for o in second if "!" not in o["path"]] == [str(empty)]
    assert all(isinstance(o["bytes_in"], int) for o in second)
    assert sum(o["bytes_in"] for o in second if "!" in o["path"]) == package.stat().st_size
    assert [o["bytes_in"] for o in second if "!" not in o["path"]] == [empty.stat().st_size]


def test_a_different_policy_or_option_is_not_the_same_batch(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    assert run(str(PAN05), "-o", str(out), "--log", str(log)).exit_code == 0
    other = run(str(PAN05), "-o", str(out), "--log", str(log), "--recipient", "another centre")
    assert other.stdout.startswith("RELEASED") and other.exit_code == 0  # decided again: a new request


def test_a_package_under_another_option_is_not_the_same_batch(tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    assert run(str(PACKAGE), "-o", str(out), "--log", str(log)).exit_code == 0
    assert [line.split()[0] for line in run(str(PACKAGE), "-o", str(out), "--log", str(log)).stdout.splitlines()] \
        == ["SKIPPED", "SKIPPED"]
    other = run(str(PACKAGE), "-o", str(out), "--log", str(log), "--purpose", "another study")
    assert [line.split()[0] for line in other.stdout.splitlines()] == ["RELEASED", "RELEASED"]


def _wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_cleanly_and_the_rerun_finishes(tmp_path: Path, signum: int, status: int) -> None:
    src = many(tmp_path / "src", 30)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    args = [sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log", str(log), "--jobs", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: len(records(log)) >= 4, 120)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and f"stopped by {signal.Signals(signum).name}" in stderr
    done = len(stdout.splitlines())
    assert 4 <= done < 30
    assert not [p for p in out.iterdir() if p.name.startswith(STAGE_PREFIX)]
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0  # every release completed
    rerun = subprocess.run(args, capture_output=True, text=True, check=False, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    kinds = [line.split()[0] for line in rerun.stdout.splitlines()]
    assert kinds.count("SKIPPED") == done and kinds.count("DEGRADED") == 30 - done
    assert len(decisions(log)) == 30  # one decision per product
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0


def test_a_closed_pipe_is_quiet_and_the_batch_completes(tmp_path: Path) -> None:
    src = many(tmp_path / "src", 6)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    command = (f"set -o pipefail; {sys.executable} -m rspolicy enforce {src} -o {out} --log {log} --jobs 1 "
               "| head -n 1")
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and len(decisions(log)) == 6


# --- report and progress --------------------------------------------------------------------------------------


def test_report_csv_has_one_row_per_product_with_output_digests(tmp_path: Path) -> None:
    out, report = tmp_path / "out", tmp_path / "r.csv"
    assert run(str(MS2), str(PAN03), "-o", str(out), "--log", str(tmp_path / "l.jsonl"), "--report",
               str(report)).exit_code == 0
    with report.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["outcome"] for r in rows) == ["degraded", "released", "released"]
    for row in rows:
        for entry in row["outputs"].split(";"):
            path, digest = entry.rsplit("=", 1)
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == digest


def test_report_of_an_unknown_kind_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(PAN05), "-o", str(tmp_path / "out"), "--report", str(tmp_path / "r.xlsx"))
    assert result.exit_code == 2 and "FILE.json, FILE.csv or FILE.html" in result.stderr


def test_progress_lines_off_a_terminal_and_nothing_when_quiet(tmp_path: Path) -> None:
    noisy = run(str(PAN05), "-o", str(tmp_path / "a"), "--log", str(tmp_path / "a.jsonl"))
    assert "progress: 1/1 products" in noisy.stderr and "1 released" in noisy.stderr
    quiet = run(str(PAN05), "-o", str(tmp_path / "b"), "--log", str(tmp_path / "b.jsonl"), "--quiet")
    assert quiet.exit_code == 0 and quiet.stdout == "" and quiet.stderr == ""


# --- creation options -----------------------------------------------------------------------------------------


def test_creation_options_reach_the_degraded_image(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(str(PAN03), "-o", str(out), "--log", str(tmp_path / "l.jsonl"), "--co", "COMPRESS=DEFLATE",
                 "--co", "ZLEVEL=1")
    assert result.exit_code == 0
    with rasterio.open(next(out.glob("*.tiff"))) as ds:
        assert ds.compression is not None and ds.compression.value == "DEFLATE"


@pytest.mark.parametrize("bad", ["COMPRESS", "=DEFLATE", "DRIVER=PNG"])
def test_a_malformed_creation_option_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    result = run(str(PAN03), "-o", str(tmp_path / "out"), "--co", bad)
    assert result.exit_code == 2 and not (tmp_path / "out").exists()


# --- scale-out on Dask ----------------------------------------------------------------------------------------


def test_a_local_dask_cluster_gives_the_outcomes_outputs_and_log_of_a_local_run(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    src = many(tmp_path / "src", 3)
    shutil.copytree(PAN05, src / "pan05")
    blocked_tif(src / "zz" / "mystery.tif")
    shutil.copy(next(SAMPLE_DATA.glob("*.tar.gz")), src)

    def batch(name: str, *extra: str) -> tuple[list[str], list[dict[str, Any]], Path]:
        out, log = tmp_path / f"out-{name}", tmp_path / f"{name}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log",
                               str(log), *extra], capture_output=True, text=True, check=False, timeout=600)
        assert proc.returncode == 4, proc.stderr  # the mystery image is blocked
        return proc.stdout.splitlines(), records(log), out

    local_lines, local_log, local_out = batch("local", "--jobs", "1")
    dask_lines, dask_log, dask_out = batch("dask", "--scheduler", "local", "--jobs", "2")

    def shape(recs: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r.get("event"), r["input"]["path"], r.get("result", {}).get("action"),
                 r.get("result", {}).get("gsd_m"), r.get("result", {}).get("target_gsd_m"),
                 sorted(Path(f["path"]).relative_to(out).as_posix() for f in r.get("output", {}).get("files", ())))
                for r, out in ((r, local_out if r in local_log else dask_out) for r in recs)]

    assert shape(dask_log) == shape(local_log)
    assert [line.split()[0] for line in dask_lines] == [line.split()[0] for line in local_lines]
    assert sorted(files(dask_out)) == sorted(files(local_out))
    for name in files(local_out):
        if name.endswith(".tiff"):
            with rasterio.open(local_out / name) as a, rasterio.open(dask_out / name) as b:
                assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
    assert CliRunner().invoke(cli, ["log", "verify", str(tmp_path / "dask.jsonl")]).exit_code == 0


def test_workers_end_with_a_killed_command(tmp_path: Path) -> None:
    """SIGKILL leaves no worker holding the command's streams open (a pipeline waiting on them would hang)."""
    src = many(tmp_path / "src", 40)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log",
                             str(log), "--jobs", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: len(records(log)) >= 3, 120)  # every lane has forked its worker by now
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)  # returns only when every process holding stdout and stderr has ended
    rerun = subprocess.run([sys.executable, "-m", "rspolicy", "enforce", str(src), "-o", str(out), "--log",
                            str(log)], capture_output=True, text=True, check=False, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0


def test_bytes_out_counts_a_package_once_whatever_the_output_folder_is_called() -> None:
    from rspolicy.results import FileDigest, ProductResult

    for folder in ("/out", "/out!1"):
        outputs = (FileDigest(f"{folder}/p.tar.gz!a.tif", 5, "a"), FileDigest(f"{folder}/p.tar.gz", 7, "p"))
        assert ProductResult("p", Outcome.RELEASED, "ok", outputs=outputs).bytes_out == 7
        loose = (FileDigest(f"{folder}/a.tif", 5, "a"), FileDigest(f"{folder}/a.xml", 2, "x"))
        assert ProductResult("a", Outcome.RELEASED, "ok", outputs=loose).bytes_out == 7
