"""Fail closed: a stage that raises blocks its product with the error as the reason, and nothing is written.

And every error path of enforcing a package: an existing output, a package
with no image, a write that fails, a sidecar two products share but decide
differently.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner, Result
from rasterio.crs import CRS

from rspolicy import isolation
from rspolicy.cli import cli
from rspolicy.errors import OutputError
from rspolicy.samples.gf3 import gf3_names, write_gf3_meta
from rspolicy.samples.gf_optical import write_image

from .conftest import SAMPLE_DATA

PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Readers in this process, so that a patched stage is the one that runs."""
    monkeypatch.setenv("RSPOLICY_ISOLATION", "off")
    isolation.shutdown()
    yield
    isolation.shutdown()


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _decisions(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _boom(*_args: object, **_kwargs: object) -> Any:
    raise RuntimeError("boom from a broken stage")


@pytest.mark.parametrize("target", [
    "rspolicy.readers.discover.read_geotiff",             # the image reader
    "rspolicy.readers.discover.read_gf_optical_sidecar",  # a sidecar reader
    "rspolicy.readers.discover.parse_rpb",                # a companion parser
])
def test_a_reader_that_raises_blocks_its_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  in_process: None, target: str) -> None:
    monkeypatch.setattr(target, _boom)
    product = SAMPLE_DATA / "gf2_pms1_l1a" / "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.tiff"
    out = tmp_path / "out"
    result = _invoke("enforce", "--json", str(product), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    [decision] = _decisions(result)
    assert result.exit_code == 4 and decision["action"] == "block"
    assert any("boom from a broken stage" in r for r in decision["reasons"]), decision["reasons"]
    assert _files(out) == []


@pytest.mark.parametrize("target", ["rspolicy.screen.classify", "rspolicy.screen.resolve",
                                    "rspolicy.screen.evaluate"])
def test_a_decision_stage_that_raises_blocks_its_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         target: str) -> None:
    monkeypatch.setattr(target, _boom)
    out = tmp_path / "out"
    result = _invoke("enforce", "--json", str(PAN03), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    [decision] = _decisions(result)
    assert result.exit_code == 4 and decision["action"] == "block"
    assert "internal error while deciding (RuntimeError: boom from a broken stage)" in decision["reasons"][0]
    assert _files(out) == []
    screened = _invoke("screen", "--json", str(PAN03))
    assert screened.exit_code == 4 and _decisions(screened)[0]["action"] == "block"


# --- packages ----------------------------------------------------------------------------------------------------


def _package(path: Path, members: dict[str, Path | bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                import io

                info = tarfile.TarInfo(name)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def _pan_package(tmp_path: Path) -> Path:
    tiff = next(PAN03.glob("*.tiff"))
    xml = next(PAN03.glob("*.xml"))
    return _package(tmp_path / "delivery.tar.gz", {f"d/{tiff.name}": tiff, f"d/{xml.name}": xml})


def test_an_existing_output_package_is_not_replaced(tmp_path: Path) -> None:
    package = _pan_package(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / package.name).write_bytes(b"an earlier delivery")
    result = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    [decision] = _decisions(result)
    # An output already there is not a policy matter: the product failed (exit 1), nothing was replaced.
    assert result.exit_code == 1 and decision["outcome"] == "failed"
    assert "output package exists" in decision["reason"]
    assert (out / package.name).read_bytes() == b"an earlier delivery" and len(_files(out)) == 1


def test_an_output_package_this_log_released_is_replaced_when_its_input_changed(tmp_path: Path) -> None:
    """Not a skip (the input changed), not someone else's file (this log released it unchanged): replaced."""
    package = _pan_package(tmp_path)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    first = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(log))
    assert first.exit_code == 0 and [d["outcome"] for d in _decisions(first)] == ["degraded"]
    xml = next(PAN03.glob("*.xml"))
    _package(package, {f"d/{next(PAN03.glob('*.tiff')).name}": next(PAN03.glob("*.tiff")),
                       f"d/{xml.name}": xml.read_bytes() + b"\n"})
    again = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(log))
    assert again.exit_code == 0, again.output
    assert [d["outcome"] for d in _decisions(again)] == ["degraded"]
    assert CliRunner().invoke(cli, ["log", "verify", str(log)]).exit_code == 0


def test_an_existing_output_package_fails_only_the_members_that_would_have_left(tmp_path: Path) -> None:
    """A member the policy blocks stays blocked (a policy decision); the ones that would have left failed."""
    tiff = next(PAN03.glob("*.tiff"))
    xml = next(PAN03.glob("*.xml"))
    package = _package(tmp_path / "delivery.tar.gz", {f"d/{tiff.name}": tiff, f"d/{xml.name}": xml,
                                                      "d/mystery.tif": b"not a tiff at all"})
    out = tmp_path / "out"
    out.mkdir()
    (out / package.name).write_bytes(b"an earlier delivery")
    result = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    outcomes = {d["path"].rsplit("/", 1)[-1]: d for d in _decisions(result)}
    assert outcomes["mystery.tif"]["outcome"] == "blocked"
    assert "output package exists" not in outcomes["mystery.tif"]["reason"]
    assert outcomes[tiff.name]["outcome"] == "failed" and "output package exists" in outcomes[tiff.name]["reason"]
    assert result.exit_code == 1


def test_a_package_that_cannot_be_moved_into_place_names_the_package(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from rspolicy.enforce import OutputFolder

    def refuse(self: OutputFolder, src: Path, rel: Any) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(OutputFolder, "place", refuse)  # the parent places files: patched here, it refuses
    package = _pan_package(tmp_path)
    out = tmp_path / "out"
    result = _invoke("enforce", str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 1
    assert f"{out / package.name}: recorded but could not be moved into place (Permission denied); the next run " \
           "with this log records that it was not released" in result.output


def test_a_package_with_no_image_is_blocked_and_writes_nothing(tmp_path: Path) -> None:
    package = _package(tmp_path / "empty.tar.gz", {"d/readme.txt": b"no image here"})
    out = tmp_path / "out"
    result = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    [decision] = _decisions(result)
    assert result.exit_code == 4 and decision["action"] == "block"
    assert decision["path"] == str(package)
    assert decision["reasons"][0] == f"{package}: package holds no product image" == decision["reason"]
    assert _files(out) == [] and list(out.iterdir()) == []  # no stage folder left behind either
    [record] = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert record["input"]["path"] == str(package)
    assert record["input"]["files"] == [{"path": str(package), "size": package.stat().st_size,
                                         "sha256": hashlib.sha256(package.read_bytes()).hexdigest()}]


def test_a_package_that_cannot_be_written_fails_its_products(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OutputError(f"{tmp_path}: {errno.errorcode[errno.ENOSPC]}: No space left on device")

    monkeypatch.setattr("rspolicy.enforce.write_package", full_disk)
    package = _pan_package(tmp_path)
    out = tmp_path / "out"
    log = tmp_path / "log.jsonl"
    result = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(log))
    [decision] = _decisions(result)
    assert result.exit_code == 1 and decision["outcome"] == "failed"
    assert "cannot write the output package" in decision["reason"] and "No space left" in decision["reason"]
    assert _files(out) == []
    assert _invoke("log", "verify", str(log)).exit_code == 0
    [record] = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["event"] == "failed" and "No space left" in record["error"]  # a failure, not a block


def _gf3_package(tmp_path: Path) -> tuple[Path, str, str]:
    """A GF-3 dual-polarisation package: HH at 0.5 m (degraded), HV at 1.5 m (allowed), one shared meta.xml."""
    names = gf3_names("MYN", "UFS", 29108, 116.4, 39.9, "20220219", "L2", "DH", 6303810)
    src = tmp_path / "src"
    src.mkdir()
    write_gf3_meta(src / names.meta, product_type="SLP", width=120, height=120, imaging_mode="UFS", polar="DH",
                   nominal_resolution=3.0, widthspace=1.5, heightspace=1.5)
    pixels = np.random.default_rng(3).integers(100, 900, (1, 120, 120), dtype=np.uint16)
    utm = CRS.from_epsg(32650)
    write_image(src / names.tiffs["HH"], pixels, crs=utm, transform=Affine(0.5, 0, 448_000.0, 0, -0.5, 4_417_000.0))
    write_image(src / names.tiffs["HV"], pixels, crs=utm, transform=Affine(1.5, 0, 448_000.0, 0, -1.5, 4_417_000.0))
    package = _package(tmp_path / "gf3.tar.gz", {f"p/{p.name}": p for p in sorted(src.iterdir())})
    return package, names.tiffs["HH"], names.tiffs["HV"]


@pytest.mark.parametrize("outdir", ["out", "out!1"])  # "!" in OUTDIR's name is not the member separator
def test_a_shared_sidecar_two_products_would_write_differently_blocks_the_second(tmp_path: Path, outdir: str) -> None:
    package, hh, hv = _gf3_package(tmp_path)
    out = tmp_path / outdir
    result = _invoke("enforce", "--json", str(package), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    decisions = {d["path"].rsplit("/", 1)[-1]: d for d in _decisions(result)}
    assert decisions[hh]["action"] == "resample" and decisions[hv]["action"] == "block"
    assert "shared with another product" in decisions[hv]["reasons"][-1]
    assert result.exit_code == 4
    with tarfile.open(out / package.name) as tar:
        names = sorted(Path(m.name).name for m in tar.getmembers() if m.isfile())
    assert hv not in names and hh in names  # the allowed HV did not leave with a sidecar of another grid
    # The blocked member's record names its own files inside the package, with their digests.
    [record] = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
                if r.get("input", {}).get("path", "").endswith(hv)]
    with tarfile.open(package) as tar:
        contents = {Path(m.name).name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar.getmembers()
                    if m.isfile()}
    assert [(Path(f["path"]).name, f["sha256"]) for f in record["input"]["files"]] == \
        [(name, hashlib.sha256(contents[name]).hexdigest()) for name in (hv, _meta_name(contents))]


def _meta_name(contents: dict[str, bytes]) -> str:
    return next(name for name in contents if name.endswith(".meta.xml"))


def test_a_shared_sidecar_conflict_among_loose_files_blocks_the_second(tmp_path: Path) -> None:
    package, hh, hv = _gf3_package(tmp_path)
    loose = tmp_path / "loose"
    with tarfile.open(package) as tar:
        tar.extractall(loose, filter="data")
    out = tmp_path / "out"
    result = _invoke("enforce", "--json", str(loose), "-o", str(out), "--log", str(tmp_path / "log.jsonl"))
    decisions = {d["path"].rsplit("/", 1)[-1]: d for d in _decisions(result)}
    assert decisions[hh]["action"] == "resample" and decisions[hv]["action"] == "block"
    assert "shared with another product" in decisions[hv]["reasons"][-1]
    # The enforce-time refusal is what decided: it is the reason shown and recorded, and nothing is targeted.
    assert "shared with another product" in decisions[hv]["reason"]
    assert decisions[hv]["target_gsd_m"] is None
    [record] = [r for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
                if r.get("input", {}).get("path", "").endswith(hv)]
    assert "shared with another product" in record["result"]["why"]
    assert not list(out.rglob(hv))


@pytest.mark.parametrize("value", [0.0, -0.5, float("nan"), float("inf"), "0.3", True])
def test_resolution_evidence_that_is_not_a_length_blocks(value: object) -> None:
    """A reader refuses such values; if one got through anyway, the decision blocks rather than drop it."""
    from rspolicy.model import Evidence, Fact, ProductEvidence, Strength
    from rspolicy.policy import load_policy
    from rspolicy.screen import decide

    evidence = (Evidence(Fact.GSD, 3.0, "a.tif", "geotransform"), Evidence(Fact.GSD, value, "a.xml", "ImageGSD"),
                Evidence(Fact.CLASS_HINT, "panchromatic", "a.xml", "Sensor", "", Strength.STRONG))
    decision = decide(ProductEvidence("a.tif", None, (Path("a.tif"),), evidence), load_policy())
    assert decision.action.value == "block"
    assert decision.reasons[0] == f"a.xml ImageGSD: {value!r} is not a usable ground resolution"
