"""A package in, a package out: what each member's outcome and record carry, and how members are staged."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rspolicy.cli import cli

from .conftest import SAMPLE_DATA
from .test_fail_closed import _package

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"  # degraded to 0.5 m
GF3 = SAMPLE_DATA / "gf3_ufs_l2"  # two polarisations, allowed, one meta.xml shared by both


def _enforce(*args: str) -> tuple[Result, dict[str, dict[str, Any]]]:
    result = CliRunner().invoke(cli, ["enforce", "--json", *args])
    outcomes = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            outcome = json.loads(line)
            outcomes[outcome["path"].rsplit("/", 1)[-1]] = outcome
    return result, outcomes


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _mixed_package(tmp_path: Path) -> tuple[Path, str]:
    """A member the policy blocks (sorted first: "0" before "S"), then a PAN product to degrade."""
    tiff = next(PAN03.glob("*.tiff"))
    members: dict[str, Path | bytes] = {"d/0_mystery.tif": b"not a tiff at all", f"d/{tiff.name}": tiff,
                                        f"d/{next(PAN03.glob('*.xml')).name}": next(PAN03.glob("*.xml"))}
    return _package(tmp_path / "delivery.tar.gz", members), tiff.name


def test_every_member_ends_in_its_own_outcome_and_record(tmp_path: Path) -> None:
    package, pan = _mixed_package(tmp_path)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result, outcomes = _enforce(str(package), "-o", str(out), "--log", str(log))
    assert result.exit_code == 4
    # A blocked member does not stop the ones after it.
    assert outcomes["0_mystery.tif"]["outcome"] == "blocked" and outcomes[pan]["outcome"] == "degraded"
    size = package.stat().st_size
    assert [outcomes[m]["bytes_in"] for m in ("0_mystery.tif", pan)] == [size // 2, size // 2]
    assert all(isinstance(o["bytes_in"], int) for o in outcomes.values())
    by_member = {r["batch"]["member"].rsplit("/", 1)[-1]: r for r in _records(log) if "batch" in r}
    assert {r["batch"]["members"] for r in by_member.values()} == {2}
    assert by_member["0_mystery.tif"]["batch"]["member"] == f"{package}!d/0_mystery.tif"
    # The blocked member's record names its own file inside the package, hashed.
    assert by_member["0_mystery.tif"]["input"]["files"] == [
        {"path": f"{package}!d/0_mystery.tif", "size": 17, "sha256": _sha(b"not a tiff at all")}]
    assert [f["path"] for f in by_member[pan]["input"]["files"]] == [f"{package}!d/{pan}",
                                                                     f"{package}!d/{pan[:-5]}.xml"]


def test_a_package_that_cannot_be_written_fails_only_the_members_that_would_have_left(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rspolicy.enforce.write_package", full_disk)  # worker processes are forked: they see it
    package, pan = _mixed_package(tmp_path)
    result, outcomes = _enforce(str(package), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 1
    assert outcomes["0_mystery.tif"]["outcome"] == "blocked"
    assert "cannot write the output package" not in outcomes["0_mystery.tif"]["reason"]
    failed = outcomes[pan]
    assert failed["outcome"] == "failed" and failed["outputs"] == [] and failed["bytes_out"] == 0
    assert failed["reason"].startswith(f"cannot write the output package ({package}: cannot write the output "
                                       "(No space left on device))")


def test_members_sharing_one_sidecar_leave_with_one_copy_of_it_from_deep_folders(tmp_path: Path) -> None:
    """GF-3 polarisations share their meta.xml: written once, both products released, folders kept."""
    package = _package(tmp_path / "gf3.tar.gz", {f"scene/a/b/{p.name}": p for p in sorted(GF3.iterdir())})
    out = tmp_path / "out"
    result, outcomes = _enforce(str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 0, result.output
    assert sorted(o["outcome"] for o in outcomes.values()) == ["released", "released"]
    with tarfile.open(out / package.name) as tar:
        names = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert names == sorted(f"scene/a/b/{p.name}" for p in GF3.iterdir())


def test_members_are_staged_on_the_output_folder_not_in_the_temporary_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Staged members move into the output package with rename: they must be staged on the output's file system."""
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs a temporary folder on another file system than the output (/dev/shm)")
    elsewhere = Path(tempfile.mkdtemp(dir=other))
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))  # worker processes are forked: they see it
    try:
        package, pan = _mixed_package(tmp_path)
        result, outcomes = _enforce(str(package), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"))
        assert outcomes[pan]["outcome"] == "degraded", outcomes[pan]["reason"]
        assert result.exit_code == 4
    finally:
        for leftover in sorted(elsewhere.rglob("*"), reverse=True):
            leftover.rmdir() if leftover.is_dir() else leftover.unlink()
        elsewhere.rmdir()


def _count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run enforce in this process and list every file it hashes, in order."""
    import rspolicy.enforce as enforce_module
    import rspolicy.records as records_module

    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")
    hashed: list[str] = []
    real = records_module.sha256_file

    def spy(path: Path) -> str:
        hashed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(records_module, "sha256_file", spy)
    monkeypatch.setattr(enforce_module, "sha256_file", spy)
    return hashed


def test_each_input_file_is_hashed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker hashes a product's files once; the record reuses those digests (a 2 GB scene is not read twice
    for its record). Loose products, package members, an empty package and a blocked product alike."""
    hashed = _count_hashing(monkeypatch)
    src = tmp_path / "src"
    src.mkdir()
    for f in PAN03.iterdir():
        (src / "loose").mkdir(exist_ok=True)
        (src / "loose" / f.name).write_bytes(f.read_bytes())
    (src / "garbage.tif").write_bytes(b"not a tiff")
    package, _ = _mixed_package(src)
    _package(src / "empty.tar.gz", {"d/readme.txt": b"nothing"})
    from .test_fail_closed import _gf3_package  # two polarisations that would write their shared sidecar differently

    (tmp_path / "gf3").mkdir()
    conflicting, _, _ = _gf3_package(tmp_path / "gf3")
    (src / conflicting.name).write_bytes(conflicting.read_bytes())
    with tarfile.open(conflicting) as tar:  # the same two products as loose files
        tar.extractall(src / "gf3-loose", filter="data")
    result, _ = _enforce(str(src), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 4, result.output
    # Inputs (package members in their unpacked folder too) and staged outputs: each once, except the GF-3
    # meta.xml that the two polarisations share, an input of each.
    twice = sorted({h for h in hashed if hashed.count(h) > 1 and not h.endswith(".meta.xml")})
    assert twice == []
    inputs = [h for h in hashed if h.startswith(os.fspath(src))]
    assert {os.fspath(src / "garbage.tif"), os.fspath(package), os.fspath(src / "empty.tar.gz"),
            *(os.fspath(src / "loose" / f.name) for f in PAN03.iterdir())} <= set(inputs)


def test_every_product_counts_the_bytes_it_read(tmp_path: Path) -> None:
    """A blocked product, an empty package, a package of one product: each carries its input's size."""
    src = tmp_path / "src"
    src.mkdir()
    garbage = src / "garbage.tif"
    garbage.write_bytes(b"not a tiff, 25 bytes long")
    empty = _package(src / "empty.tar.gz", {"d/readme.txt": b"nothing"})
    tiff = next(PAN03.glob("*.tiff"))
    one = _package(src / "one.tar.gz", {f"d/{tiff.name}": tiff, f"d/{tiff.stem}.xml": tiff.with_suffix(".xml")})
    result, outcomes = _enforce(str(src), "-o", str(tmp_path / "out"), "--log", str(tmp_path / "log"))
    assert result.exit_code == 4
    assert outcomes["garbage.tif"]["outcome"] == "blocked" and outcomes["garbage.tif"]["bytes_in"] == 25
    assert outcomes["empty.tar.gz"]["outcome"] == "blocked"
    assert outcomes["empty.tar.gz"]["bytes_in"] == empty.stat().st_size
    assert outcomes[tiff.name]["outcome"] == "degraded" and outcomes[tiff.name]["bytes_in"] == one.stat().st_size


def test_a_shared_sidecar_already_written_does_not_hold_back_the_files_after_it(tmp_path: Path) -> None:
    """The second polarisation finds the shared meta.xml written; its own RPC file, listed after it, still leaves."""
    from rspolicy.samples.gf_optical import linear_rpc, write_rpb

    src = tmp_path / "src"
    src.mkdir()
    for f in GF3.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    tiffs = sorted(src.glob("*.tiff"))
    for tiff in tiffs:  # the RPCs give the same 1.5 m as the geotransform
        write_rpb(tiff.with_suffix(".rpb"), linear_rpc(116.4, 39.9, 1.5, 200, 200))
    out = tmp_path / "out"
    result, outcomes = _enforce(str(src), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 0, result.output
    assert sorted(o["outcome"] for o in outcomes.values()) == ["released", "released"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in src.iterdir())


def test_a_loose_shared_sidecar_conflict_is_a_complete_decision(tmp_path: Path) -> None:
    """Blocked at enforce time: its bytes and time are counted, and a rerun skips it like any decision."""
    from .test_fail_closed import _gf3_package

    package, _hh, hv = _gf3_package(tmp_path)
    loose = tmp_path / "loose"
    with tarfile.open(package) as tar:
        tar.extractall(loose, filter="data")
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result, outcomes = _enforce(str(loose), "-o", str(out), "--log", str(log))
    assert result.exit_code == 4
    blocked = outcomes[hv]
    assert blocked["outcome"] == "blocked" and "shared with another product" in blocked["reason"]
    meta = next(loose.rglob("*.meta.xml"))
    assert blocked["bytes_in"] == next(loose.rglob(hv)).stat().st_size + meta.stat().st_size
    assert blocked["seconds"] > 0
    again, second = _enforce(str(loose), "-o", str(out), "--log", str(log))
    assert again.exit_code == 0 and {o["outcome"] for o in second.values()} == {"skipped"}


def _leaky_sidecar(src: Path, dst: Path, change: Any) -> bool:
    import shutil

    shutil.copy(src, dst)  # a buggy writer that leaves ImageGSD 0.3 in the sidecar
    return True


def _refusing_writer(*_args: Any, **_kwargs: Any) -> Any:
    from rspolicy.errors import ResampleError

    raise ResampleError("this writer refuses")


def _full_disk_writer(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device", "/somewhere/out.tiff")


@pytest.mark.parametrize(("patch", "replacement", "outcome", "reason"), [
    ("rewrite_sidecar", _leaky_sidecar, "blocked",
     "the written output failed its re-screen (resample: finest resolution 0.3 m from {xml} ImageGSD; panchromatic "
     "at 0.3 m is finer than the limit 0.5 m (cnsa-2022/panchromatic): degrade to 0.5 m); it was deleted"),
    ("_stage_degraded", _refusing_writer, "blocked", "this writer refuses; nothing was written"),
    ("_stage_degraded", _full_disk_writer, "failed", "{path}: cannot write the output (/somewhere/out.tiff: No space "
                                                     "left on device); nothing was written"),
])
def test_a_product_stopped_while_staging_keeps_its_inputs_and_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patch: str, replacement: Any, outcome: str,
        reason: str) -> None:
    import rspolicy.enforce as enforce_module
    from rspolicy.records import sha256_file as real

    hashed = _count_hashing(monkeypatch)  # in process: the patch below acts here too
    monkeypatch.setattr(enforce_module, patch, replacement)
    log = tmp_path / "log.jsonl"
    result, outcomes = _enforce(str(PAN03), "-o", str(tmp_path / "out"), "--log", str(log))
    assert result.exit_code == (1 if outcome == "failed" else 4)
    tiff = next(PAN03.glob("*.tiff"))
    shown = outcomes[tiff.name]
    assert shown["outcome"] == outcome
    assert shown["reason"] == reason.format(path=tiff, xml=tiff.with_suffix(".xml").name)
    [record] = _records(log)
    assert [(f["path"], f["sha256"]) for f in record["input"]["files"]] == [
        (os.fspath(f), real(f)) for f in (tiff, tiff.with_suffix(".xml"))]
    assert sorted(hashed) == sorted(set(hashed))  # each input hashed once: the record reuses the digests


def test_a_special_file_named_is_decided_once_per_request(tmp_path: Path) -> None:
    """A FIFO named on the command line is never opened: blocked, and a rerun of the same request skips it."""
    fifo = tmp_path / "pipe.tif"
    os.mkfifo(fifo)
    released = SAMPLE_DATA / "sv1_pan_0.5m"
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    first, outcomes = _enforce(str(fifo), str(released), "-o", str(out), "--log", str(log))
    assert first.exit_code == 4 and outcomes["pipe.tif"]["outcome"] == "blocked"
    logged = len(_records(log))
    again, outcomes = _enforce(str(fifo), str(released), "-o", str(out), "--log", str(log))
    assert again.exit_code == 0 and outcomes["pipe.tif"]["outcome"] == "skipped" and len(_records(log)) == logged
    assert outcomes["pipe.tif"]["bytes_in"] == 0  # never opened, never read
    other, outcomes = _enforce(str(fifo), str(released), "-o", str(out), "--log", str(log), "--recipient", "B")
    assert other.exit_code == 4 and outcomes["pipe.tif"]["outcome"] == "blocked"


def test_a_conflicting_shared_sidecar_in_a_package_is_named_by_its_output_path(tmp_path: Path) -> None:
    from .test_fail_closed import _gf3_package

    package, _hh, hv = _gf3_package(tmp_path)
    out = tmp_path / "out"
    result, outcomes = _enforce(str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 4
    with tarfile.open(package) as tar:
        meta = next(m.name for m in tar.getmembers() if m.name.endswith(".meta.xml"))
    assert outcomes[hv]["reason"].startswith(f"{out / package.name}!{meta}: a sidecar shared with another product")


def test_a_member_the_policy_blocks_keeps_the_policy_reason(tmp_path: Path) -> None:
    """A readable image with no class evidence is blocked by the policy; nothing tries to stage it."""
    import numpy as np
    from affine import Affine
    from rasterio.crs import CRS

    from rspolicy.samples.gf_optical import write_image

    scene = tmp_path / "scene.tif"
    write_image(scene, np.full((1, 32, 32), 7, dtype=np.uint16), crs=CRS.from_epsg(32650),
                transform=Affine(0.3, 0, 448_000.0, 0, -0.3, 4_417_000.0))
    package = _package(tmp_path / "delivery.tar.gz", {"d/scene.tif": scene})
    policy = tmp_path / "block-unknown.toml"
    policy.write_text((Path(__file__).resolve().parents[1] / "rules" / "cnsa-2022.toml").read_text()
                      .replace('unknown_class = "strictest"', 'unknown_class = "block"'))
    result, outcomes = _enforce(str(package), "--policy", str(policy), "-o", str(tmp_path / "out"),
                                "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 4
    blocked = outcomes["scene.tif"]
    assert blocked["outcome"] == "blocked"
    assert blocked["reason"] == ("the product class could not be established (fails closed): no evidence of the "
                                 "product class: no sidecar, sensor, file-name token, data type or band layout "
                                 "identifies it")
    assert not any("nothing was written" in r for r in blocked["reasons"])


def test_loose_products_rerun_are_skipped_with_their_bytes(tmp_path: Path) -> None:
    """Released and blocked alike: a rerun writes no decision and counts the bytes it hashed."""
    src = tmp_path / "src"
    (src / "ok").mkdir(parents=True)
    released = SAMPLE_DATA / "sv1_pan_0.5m"
    for f in released.iterdir():
        (src / "ok" / f.name).write_bytes(f.read_bytes())
    (src / "garbage.tif").write_bytes(b"not a tiff, 25 bytes long")
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    first, outcomes = _enforce(str(src), "-o", str(out), "--log", str(log))
    assert first.exit_code == 4 and sorted(o["outcome"] for o in outcomes.values()) == ["blocked", "released"]
    logged = len(_records(log))
    again, outcomes = _enforce(str(src), "-o", str(out), "--log", str(log))
    assert again.exit_code == 0 and {o["outcome"] for o in outcomes.values()} == {"skipped"}
    assert len(_records(log)) == logged
    assert outcomes["garbage.tif"]["bytes_in"] == 25
    tiff = next(released.glob("*.tiff"))
    assert outcomes[tiff.name]["bytes_in"] == sum(f.stat().st_size for f in released.iterdir())
    assert all(isinstance(o["bytes_in"], int) for o in outcomes.values())


def test_a_skipped_product_is_shown_as_this_run_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for f in (SAMPLE_DATA / "sv1_pan_0.5m").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    first, outcomes = _enforce(str(src), "-o", str(out), "--log", str(log))
    [shown] = outcomes.values()
    assert first.exit_code == 0 and shown["path"].startswith(str(src))
    monkeypatch.chdir(tmp_path)
    again, outcomes = _enforce("src", "-o", str(out), "--log", str(log))
    [shown] = outcomes.values()
    assert again.exit_code == 0 and shown["outcome"] == "skipped"
    assert shown["path"] == f"src/{next(src.glob('*.tiff')).name}"


def test_a_product_blocked_by_its_re_screen_keeps_its_notes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rspolicy.enforce as enforce_module

    monkeypatch.setattr(enforce_module, "rewrite_sidecar", _leaky_sidecar)  # worker processes are forked: they see it
    src = tmp_path / "src"
    src.mkdir()
    for f in PAN03.iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    companion = src / (next(PAN03.glob("*.tiff")).stem + ".txt")
    companion.write_text("a note from the ground station\n")
    log = tmp_path / "log.jsonl"
    result, _ = _enforce(str(src), "-o", str(tmp_path / "out"), "--log", str(log))
    assert result.exit_code == 4
    [record] = _records(log)
    assert "failed its re-screen" in record["result"]["why"]
    assert record["output"]["notes"] == [f"withheld: {companion}: not a file rspolicy understands: not delivered"]
