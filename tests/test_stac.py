"""STAC Items for what leaves (``enforce --stac``), validated offline, and STAC ItemCollections as input."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import socket
import tarfile
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import shapely
from click.testing import CliRunner

import rspolicy
from rspolicy.cli import cli
from rspolicy.errors import RSPolicyError
from rspolicy.results import Result
from rspolicy.stac import EXTENSIONS, STAC_ITEM_SUFFIX, StacError, polarisations, validate_item

from .conftest import SAMPLE_DATA

PAN1 = SAMPLE_DATA / "gf2_pms1_l1a" / "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.tiff"
PAN03 = SAMPLE_DATA / "svn1_pan_0.3m"
GF3_META = SAMPLE_DATA / "gf3_ufs_l2" / "GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_DH_L20006303810.meta.xml"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any attempt to open a connection fails the test (and is counted)."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _decisions(log: Path) -> dict[str, dict[str, Any]]:
    return {r["decision_id"]: r for r in _records(log) if r.get("event") is None and r.get("decision_id")}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def stac_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """``enforce --stac`` over the whole sample data, through the click group."""
    root = tmp_path_factory.mktemp("stac")
    out, log = root / "out", root / "log.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(SAMPLE_DATA), "-o", str(out), "--stac", "--log", str(log),
                                      "--json", "-q"])
    return out, log, result


def test_every_product_that_leaves_has_an_item_beside_it_and_nothing_else_does(stac_batch: Any) -> None:
    out, log, result = stac_batch
    assert result.exit_code in (0, 4), result.output
    decisions = _decisions(log)
    released = [r for r in decisions.values() if r["result"]["action"] in ("allow", "resample", "mask")]
    assert len(released) >= 10
    for record in decisions.values():
        files = [f["path"] for f in record["output"]["files"]]
        items = [f for f in files if f.endswith(STAC_ITEM_SUFFIX)]
        if record["result"]["action"] == "block":
            assert not files
            continue
        # One Item per product, recorded among its outputs (so the audit chain covers it).
        assert len(items) == 1, files
    loose_items = sorted(out.rglob("*" + STAC_ITEM_SUFFIX))
    packaged = [r for r in released if "!" in r["output"]["files"][0]["path"]]
    assert len(loose_items) == len(released) - len(packaged)


def test_the_items_validate_offline_and_describe_the_files_and_the_decision(stac_batch: Any,
                                                                          no_network: list[Any]) -> None:
    out, log, _ = stac_batch
    decisions = _decisions(log)
    seen = 0
    for item_file in sorted(out.rglob("*" + STAC_ITEM_SUFFIX)):
        item = json.loads(item_file.read_text(encoding="utf-8"))
        validate_item(item, item_file)
        props = item["properties"]
        record = decisions[props["rspolicy:decision_id"]]
        result = record["result"]
        assert props["rspolicy:action"] == result["action"]
        assert props["rspolicy:policy"] == record["policy"]
        assert props["gsd"] == pytest.approx(result["gsd_m"])
        # Every asset is a file that left, with its size and checksum; the image carries the output's pixel size.
        recorded = {Path(f["path"]).resolve(): f for f in record["output"]["files"]}
        for key, asset in item["assets"].items():
            path = (item_file.parent / urllib.parse.unquote(asset["href"])).resolve()
            assert path in recorded, (key, path)
            assert asset["file:checksum"] == "1220" + _sha(path) == "1220" + recorded[path]["sha256"]
            assert asset["file:size"] == path.stat().st_size
        data = item["assets"]["data"]
        assert data["roles"] == ["data"]
        assert data["raster:spatial_resolution"] == pytest.approx(record["output"]["gsd_m"])
        # Lineage: the processing extension and a link to the source, with the source's checksum.
        assert EXTENSIONS["processing"] in item["stac_extensions"]
        assert props["processing:software"]["rspolicy"] == rspolicy.__version__
        assert record["decision_id"] in props["processing:lineage"]
        (source,) = [link for link in item["links"] if link["rel"] == "derived_from"]
        assert source["href"].startswith("file:///")
        source_path = Path(urllib.parse.unquote(source["href"][len("file://"):]))
        assert source_path.is_absolute() and source_path.is_file()
        assert source["file:checksum"] == "1220" + _sha(source_path)
        seen += 1
    assert seen >= 10
    assert not no_network


def test_item_fields_follow_the_product(stac_batch: Any) -> None:
    out, log, _ = stac_batch
    decisions = _decisions(log)
    items = {p.name: json.loads(p.read_text()) for p in out.rglob("*" + STAC_ITEM_SUFFIX)}

    degraded = items["SVN1-01_20230315_L2A0001234567_1112300000001-PAN.stac.json"]
    props = degraded["properties"]
    # gsd stays the sensor's; the output's pixel size is the raster extension's.
    assert props["gsd"] == pytest.approx(0.3)
    assert degraded["assets"]["data"]["raster:spatial_resolution"] >= 0.5
    assert props["rspolicy:target_gsd_m"] == 0.5
    assert "area-averaged from 0.3 m" in props["processing:lineage"]
    assert degraded["assets"]["data"]["bands"] == [{"name": "pan", "eo:common_name": "pan"}]
    assert EXTENSIONS["eo"] in degraded["stac_extensions"]

    sar = items["GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_HV_L20006303810.stac.json"]
    props = sar["properties"]
    assert props["sar:instrument_mode"] == "UFS"
    assert props["sar:frequency_band"] == "C"
    assert props["sar:polarizations"] == ["HV"]  # the image's channel, not the product's pair
    assert EXTENSIONS["sar"] in sar["stac_extensions"]
    # A date from the file name alone is the whole day.
    assert props["start_datetime"] == "2022-02-19T00:00:00Z" and props["end_datetime"].startswith("2022-02-19T23:59")
    assert sar["properties"]["datetime"] is None

    record = decisions[props["rspolicy:decision_id"]]
    footprints = [e["value"] for e in record["result"]["evidence"] if e["fact"] == "footprint_wkt"]
    assert footprints
    geometry = shapely.geometry.shape(sar["geometry"])
    for wkt in footprints:
        assert geometry.buffer(1e-9).covers(shapely.from_wkt(wkt))
    assert sar["bbox"] == pytest.approx(list(geometry.bounds))


def test_members_of_a_package_get_their_item_inside_the_output_package(stac_batch: Any) -> None:
    out, _, _ = stac_batch
    (package,) = out.rglob("*.tar.gz")
    with tarfile.open(package) as tar:
        names = tar.getnames()
        items = [n for n in names if n.endswith(STAC_ITEM_SUFFIX)]
        assert items
        for name in items:
            member = tar.extractfile(name)
            assert member is not None
            item = json.loads(member.read())
            validate_item(item, name)
            for asset in item["assets"].values():
                inside = str(Path(name).parent / urllib.parse.unquote(asset["href"])).replace("/./", "/")
                assert inside in names, inside


def _valid_item(stac_batch: Any) -> dict[str, Any]:
    out, _, _ = stac_batch
    path = next(p for p in out.rglob("*" + STAC_ITEM_SUFFIX) if "GF3_MYN_UFS" in p.name)
    return dict(json.loads(path.read_text()))


@pytest.mark.parametrize(("change", "complaint"), [
    (lambda d: d["assets"]["data"].__setitem__("raster:spatial_resolution", -1), "raster:spatial_resolution"),
    (lambda d: d["assets"]["data"].__setitem__("file:checksum", "not-hex"), "does not match"),
    (lambda d: d["properties"].__setitem__("sar:polarizations", ["XX"]), "'XX' is not one of"),
    (lambda d: d["properties"].__delitem__("sar:frequency_band"), "sar:frequency_band"),
    (lambda d: d["properties"].__setitem__("processing:software", {}), "processing:software"),
    (lambda d: d["properties"].__setitem__("processing:datetime", "yesterday"), "yesterday"),
    (lambda d: d.__setitem__("geometry", {"type": "Polygon", "coordinates": "nowhere"}), ""),
    (lambda d: d.__delitem__("assets"), "assets"),
])
def test_an_item_that_breaks_a_schema_does_not_validate(stac_batch: Any, no_network: list[Any], change: Any,
                                                       complaint: str) -> None:
    item = copy.deepcopy(_valid_item(stac_batch))
    validate_item(item)
    change(item)
    with pytest.raises(StacError, match="not a valid STAC Item") as caught:
        validate_item(item, "the-item.json")
    assert complaint in str(caught.value)
    assert str(caught.value).startswith("the-item.json: ")
    assert isinstance(caught.value, RSPolicyError) and isinstance(caught.value, ValueError)
    assert not no_network


def test_an_extension_without_an_offline_schema_is_refused_not_fetched(stac_batch: Any,
                                                                       no_network: list[Any]) -> None:
    item = copy.deepcopy(_valid_item(stac_batch))
    item["stac_extensions"].append("https://stac-extensions.github.io/view/v1.0.0/schema.json")
    with pytest.raises(StacError, match=r"no offline schema for .*view"):
        validate_item(item)
    item = copy.deepcopy(_valid_item(stac_batch))
    item["stac_version"] = "0.9.0"
    with pytest.raises(StacError, match="no offline schema"):
        validate_item(item)
    assert not no_network


def test_declaring_an_extension_without_using_it_does_not_validate(stac_batch: Any) -> None:
    item = copy.deepcopy(_valid_item(stac_batch))
    for asset in item["assets"].values():
        asset.pop("raster:spatial_resolution", None)
    with pytest.raises(StacError):
        validate_item(item)


@pytest.mark.parametrize(("code", "channels"), [
    ("HHHV", ("HH", "HV")), ("DH", ("HH", "HV")), ("DV", ("VV", "VH")), ("VV", ("VV",)),
    ("HH/HV", ("HH", "HV")), ("QP", ("HH", "HV", "VH", "VV")), ("HX", None), ("", None), ("HHH", None),
])
def test_polarisation_codes(code: str, channels: tuple[str, ...] | None) -> None:
    assert polarisations(code) == channels


def test_the_library_writes_items_too(tmp_path: Path) -> None:
    outcomes = rspolicy.enforce_products([PAN03], tmp_path / "out", log=False, stac=True)
    (outcome,) = outcomes
    assert outcome.result is Result.DEGRADED
    items = [Path(o.path) for o in outcome.outputs if o.path.endswith(STAC_ITEM_SUFFIX)]
    assert len(items) == 1 and items[0].is_file()
    validate_item(json.loads(items[0].read_text()))
    # Without stac=True there is none.
    again = rspolicy.enforce_products([PAN03], tmp_path / "plain", log=False)
    assert not [o for o in again[0].outputs if o.path.endswith(STAC_ITEM_SUFFIX)]


def test_an_item_that_cannot_be_placed_fails_the_product_and_nothing_of_it_is_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    squatter = out / "SVN1-01_20230315_L2A0001234567_1112300000001-PAN.stac.json"  # a named folder maps onto OUT
    squatter.parent.mkdir(parents=True)
    squatter.write_text("{}")
    result = CliRunner().invoke(cli, ["enforce", str(PAN03), "-o", str(out), "--stac", "--log",
                                      str(tmp_path / "log.jsonl")])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in squatter.parent.iterdir()) == [squatter.name]
    assert squatter.read_text() == "{}"


# ---------------------------------------------------------------- ItemCollections as input


def _collection(folder: Path, features: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def _feature(item_id: str, assets: dict[str, str], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "stac_version": "1.1.0", "id": item_id, "geometry": None, "links": [],
            "properties": {"datetime": "2020-05-10T03:00:00Z", **properties},
            "assets": {k: {"href": v} for k, v in assets.items()}}


def _copy_product(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.parent.iterdir():
        if f.name.startswith(src.name.rsplit(".", 1)[0]):
            shutil.copy2(f, dest / f.name)
    return dest / src.name


def _screen(path: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(cli, ["screen", str(path), "--json"])
    assert "Traceback" not in result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_an_item_collection_names_its_local_assets_with_relative_and_file_hrefs(tmp_path: Path) -> None:
    image = _copy_product(PAN1, tmp_path / "data")
    collection = _collection(tmp_path / "catalogue", [
        _feature("relative", {"image": "../data/" + image.name}),
        _feature("uri", {"meta": (GF3_META).as_uri()}),
    ])
    decisions = _screen(collection)
    paths = sorted(Path(d["path"]).name for d in decisions)
    assert image.name in paths
    assert {"GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_HH_L20006303810.tiff",
            "GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_HV_L20006303810.tiff"} <= set(paths)


def test_a_catalogue_claiming_a_finer_resolution_is_believed(tmp_path: Path) -> None:
    image = _copy_product(PAN1, tmp_path / "data")
    plain = {d["path"]: d for d in _screen(image)}
    assert next(iter(plain.values()))["action"] == "allow"  # 0.81 m PAN passes on its own
    collection = _collection(tmp_path, [_feature("pan", {"image": "data/" + image.name}, gsd=0.3)])
    (decision,) = _screen(collection)
    assert decision["gsd_m"] == pytest.approx(0.3)
    assert decision["action"] == "resample" and decision["target_gsd_m"] == 0.5
    assert any(e["field"] == "gsd" and "items.json#pan" in e["source"] for e in decision["evidence"])


@pytest.mark.parametrize("claim", [
    {"gsd": "fine"}, {"gsd": -1}, {"gsd": [0.3]},
    {"assets_raster": {"raster:bands": [{"spatial_resolution": 0}]}},
])
def test_an_unusable_claim_blocks(tmp_path: Path, claim: dict[str, Any]) -> None:
    image = _copy_product(PAN1, tmp_path / "data")
    feature = _feature("pan", {"image": "data/" + image.name}, **{k: v for k, v in claim.items()
                                                                     if k != "assets_raster"})
    if "assets_raster" in claim:
        feature["assets"]["image"].update(claim["assets_raster"])
    (decision,) = _screen(_collection(tmp_path, [feature]))
    assert decision["action"] == "block", decision["reasons"]


@pytest.mark.parametrize(("document", "reason"), [
    ({"type": "FeatureCollection", "features": [_feature("r", {"a": "https://example.org/a.tif"})]},
     "is not a local file"),
    ({"type": "FeatureCollection", "features": [_feature("r", {"a": "s3://bucket/a.tif"})]}, "is not a local file"),
    ({"type": "FeatureCollection", "features": [_feature("r", {"a": "file://host/a.tif"})]}, "is not a local file"),
    ({"type": "FeatureCollection", "features": [{"type": "Feature", "id": "x"}]}, "not a STAC Item with assets"),
    ({"type": "FeatureCollection", "features": [], "stac_version": "1.1.0"}, "holds no Items"),
    ({"type": "FeatureCollection", "features": [_feature("r", {"a": "missing.tif"})]}, "no such file"),
])
def test_what_cannot_be_read_is_blocked_with_its_reason(tmp_path: Path, no_network: list[Any],
                                                         document: dict[str, Any], reason: str) -> None:
    path = tmp_path / "items.json"
    path.write_text(json.dumps(document))
    decisions = _screen(path)
    assert decisions
    assert all(d["action"] == "block" for d in decisions)
    assert any(reason in " ".join(d["reasons"]) for d in decisions), decisions
    assert not no_network


def test_a_stac_file_that_is_not_json_is_blocked_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "items.json"
    path.write_bytes(b'{"type": "FeatureCollection", "stac_version": "1.1.0", "features": [')
    (decision,) = _screen(path)
    assert decision["action"] == "block"
    assert "not readable as JSON" in decision["reasons"][0]


def test_enforce_takes_an_item_collection_and_a_changed_claim_is_decided_again(tmp_path: Path) -> None:
    image = _copy_product(PAN1, tmp_path / "data")
    collection = _collection(tmp_path, [_feature("pan", {"image": "data/" + image.name}, gsd=0.81)])
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    first = CliRunner().invoke(cli, ["enforce", str(collection), "-o", str(out), "--stac", "--log", str(log)])
    assert first.exit_code == 0, first.output
    assert "RELEASED" in first.output
    again = CliRunner().invoke(cli, ["enforce", str(collection), "-o", str(out), "--stac", "--log", str(log)])
    assert "skipped" in again.output.lower()
    collection.write_text(collection.read_text().replace('"gsd": 0.81', '"gsd": 0.3'))
    changed = CliRunner().invoke(cli, ["enforce", str(collection), "-o", str(out), "--stac", "--log", str(log)])
    # Decided again (not skipped): the catalogue's 0.3 m now degrades, and the earlier output is in the way.
    assert "DEGRADED" in changed.output or "FAILED" in changed.output, changed.output
    assert "1 skipped" not in changed.output


def test_claims_reach_products_in_a_named_folder_and_inside_a_named_package(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "scenes"
    image = _copy_product(PAN1, folder)
    package = next(SAMPLE_DATA.glob("*.tar.gz"))
    shutil.copy2(package, tmp_path / "data" / package.name)
    collection = _collection(tmp_path, [_feature("folder", {"all": "data/scenes"}, gsd=0.3),
                                        _feature("package", {"pkg": "data/" + package.name}, gsd=0.25)])
    decisions = {Path(d["path"].split("!")[-1]).name: d for d in _screen(collection)}
    assert decisions[image.name]["gsd_m"] == pytest.approx(0.3)
    members = [d for name, d in decisions.items() if name != image.name]
    assert members
    for member in members:
        assert member["gsd_m"] == pytest.approx(0.25)
        assert member["action"] in ("resample", "block")
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(collection), "-o", str(out), "--log", str(log), "--json",
                                      "-q"])
    assert "Traceback" not in result.output
    enforced = [r for r in _records(log) if r.get("event") is None and r.get("decision_id")]
    assert {r["result"]["gsd_m"] for r in enforced} == {0.3, 0.25}


def test_a_json_object_that_is_not_stac_is_blocked_as_such(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"satellite": "GF2", "padding": "x" * 10000, "stac_version": "1.1.0"}))
    (decision,) = _screen(path)
    assert decision["action"] == "block"
    assert "not a STAC Item or ItemCollection" in decision["reasons"][0]


def test_names_with_spaces_hashes_and_bytes_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    """Hrefs are percent-encoded from the name's bytes; the Item written is itself usable as input."""
    scene = tmp_path / "in"
    scene.mkdir()
    odd = os.fsdecode(b"scene #1 \xff")
    for f in PAN03.iterdir():
        shutil.copy2(f, scene / f.name.replace("SVN1-01_20230315_L2A0001234567_1112300000001", odd))
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = CliRunner().invoke(cli, ["enforce", str(scene), "-o", str(out), "--stac", "--log", str(log)])
    assert result.exit_code == 0, result.output
    (item_file,) = out.glob("*" + STAC_ITEM_SUFFIX)
    item = json.loads(item_file.read_text(encoding="utf-8"))
    validate_item(item)
    assert item["assets"]["data"]["href"] == "./scene%20%231%20%FF-PAN.tiff"
    assert item["id"] == "scene #1 \\xff-PAN"
    # The Item names what left: screened as input, the degraded image is found and allowed at 0.5 m.
    (decision,) = _screen(item_file)
    assert decision["action"] == "allow" and decision["gsd_m"] == pytest.approx(0.5)


@pytest.mark.parametrize(("said", "gsd", "action"), [
    ({"gsd": 0.3}, 0.3, "resample"),  # gsd alone: the pixel size
    ({"gsd": 0.3, "raster:spatial_resolution": 0.3}, 0.3, "resample"),
    ({"gsd": 0.3, "raster:spatial_resolution": 0.5}, 0.5, "allow"),  # the sensor's gsd beside a pixel size
    ({"gsd": 0.1, "raster:spatial_resolution": 0.9}, 0.81, "allow"),  # the file's own 0.81 m is finer
])
def test_gsd_is_the_sensors_when_the_item_gives_a_pixel_size(tmp_path: Path, said: dict[str, float], gsd: float,
                                                             action: str) -> None:
    image = _copy_product(PAN1, tmp_path / "data")
    feature = _feature("pan", {"image": "data/" + image.name}, gsd=said["gsd"])
    if "raster:spatial_resolution" in said:
        feature["assets"]["image"]["raster:spatial_resolution"] = said["raster:spatial_resolution"]
    (decision,) = _screen(_collection(tmp_path, [feature]))
    assert decision["gsd_m"] == pytest.approx(gsd, abs=0.01)
    assert decision["action"] == action
    assert any(e["field"] == "gsd" for e in decision["evidence"])  # shown either way
