"""Masking through ``rspolicy enforce``: a policy's zone becomes nodata in what leaves, through the
geotransform or through the RPCs of an L1A product, and the output still re-screens."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner, Result
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import RPCTransformer

from rspolicy.cli import cli
from rspolicy.readers.companions import parse_rpb
from rspolicy.samples.gf_optical import synthetic_pixels, write_image

from .conftest import SAMPLE_DATA

L1A = SAMPLE_DATA / "gf2_pms1_l1a"
L1A_PAN = "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1"

POLICY = """\
schema = "rspolicy-policy/2"

[policy]
name = "mask-test"
version = "1"

[evaluation]
default = "allow"
unknown_class = "strictest"

[zones.site]
file = "site.geojson"

[[rule]]
id = "mask-test/site"
when = {{ zone_intersects = "site" }}
action = "mask"
zones = ["site"]
{extra}
"""

RESAMPLE_TOO = """
[[rule]]
id = "mask-test/pan"
when = { class = "panchromatic", gsd_m = { "<" = 4.0 } }
action = "resample"
target_m = 4.0
"""


def _policy(tmp_path: Path, ring: list[tuple[float, float]], extra: str = "") -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "site.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": [[*ring, ring[0]]]}))
    path = folder / "mask-test.toml"
    path.write_text(POLICY.format(extra=extra))
    return path


def _enforce(*args: str) -> Result:
    return CliRunner().invoke(cli, ["enforce", *args], catch_exceptions=False)


def _decisions(log: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if "result" in r]


ORIGIN_X, ORIGIN_Y, PIXEL = 448_000.0, 4_417_000.0, 2.0
UTM50 = CRS.from_epsg(32650)


def _utm_scene(tmp_path: Path) -> tuple[Path, np.ndarray]:
    src = tmp_path / "src"
    src.mkdir()
    pixels = synthetic_pixels(1, 200, 200) + 1  # no zero: zero is the nodata a mask chooses for uint16
    image = write_image(src / "scene-PAN.tif", pixels, crs=UTM50,
                        transform=Affine(PIXEL, 0, ORIGIN_X, 0, -PIXEL, ORIGIN_Y))
    return image, pixels


def _utm_ring(col0: float, row0: float, col1: float, row1: float) -> list[tuple[float, float]]:
    to_lonlat = Transformer.from_crs(UTM50, "EPSG:4326", always_xy=True)
    corners = [(col0, row0), (col1, row0), (col1, row1), (col0, row1)]
    return [to_lonlat.transform(ORIGIN_X + c * PIXEL, ORIGIN_Y - r * PIXEL) for c, r in corners]


def test_a_zone_is_masked_through_the_geotransform_and_the_output_re_screens(tmp_path: Path) -> None:
    image, pixels = _utm_scene(tmp_path)
    policy = _policy(tmp_path, _utm_ring(50, 50, 100, 100))
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "mask" and decision["result"]["mask_zones"] == ["site"]
    assert decision["output"]["files"], "the masked product re-screened and left"
    fraction = decision["output"]["masked_fraction"]
    assert 50 * 50 / 200**2 <= fraction <= 52 * 52 / 200**2
    with rasterio.open(out / image.name) as ds:
        masked = ds.read(1)
        assert ds.nodata == 0 and ds.tags()["RSPOLICY_MASKED_ZONES"] == "site"
        inside = ds.index(ORIGIN_X + 75.5 * PIXEL, ORIGIN_Y - 75.5 * PIXEL)
        outside = ds.index(ORIGIN_X + 150.5 * PIXEL, ORIGIN_Y - 20.5 * PIXEL)
    assert masked[inside] == 0
    assert masked[outside] == pixels[0][outside]  # mask only: every other pixel exactly as it was
    untouched = np.ones_like(masked, dtype=bool)
    untouched[49:101, 49:101] = False
    assert np.array_equal(masked[untouched], pixels[0][untouched])


def test_a_mask_and_a_resample_apply_together(tmp_path: Path) -> None:
    image, pixels = _utm_scene(tmp_path)
    policy = _policy(tmp_path, _utm_ring(50, 50, 100, 100), RESAMPLE_TOO)
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert (decision["result"]["action"], decision["result"]["target_gsd_m"]) == ("mask", 4.0)
    assert {f["id"] for f in decision["result"]["rules_fired"]} == {"mask-test/site", "mask-test/pan"}
    assert decision["output"]["gsd_m"] >= 4.0
    with rasterio.open(out / image.name) as ds:
        assert ds.res == (4.0, 4.0)
        data = ds.read(1)
        inside = ds.index(ORIGIN_X + 75 * PIXEL, ORIGIN_Y - 75 * PIXEL)
        row, col = ds.index(ORIGIN_X + 150.5 * PIXEL, ORIGIN_Y - 20.5 * PIXEL)
    assert data[inside] == 0
    block = pixels[0][2 * row:2 * row + 2, 2 * col:2 * col + 2].astype(float)
    assert abs(float(data[row, col]) - block.mean()) <= 0.5  # averaged as before, outside the zone


def test_a_zone_away_from_the_scene_masks_nothing_and_the_product_leaves_as_it_is(tmp_path: Path) -> None:
    image, _ = _utm_scene(tmp_path)
    policy = _policy(tmp_path, [(10.0, 50.0), (10.1, 50.0), (10.1, 50.1), (10.0, 50.1)])
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "allow" and decision["result"]["rules_fired"] == []
    assert (out / image.name).read_bytes() == image.read_bytes()


def test_a_zone_is_masked_through_the_rpcs_of_an_l1a_product(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(L1A, src)
    for other in src.glob("*MSS1*"):
        other.unlink()
    image = src / f"{L1A_PAN}.tiff"
    rpcs = parse_rpb(src / f"{L1A_PAN}.rpb")
    with rasterio.open(image) as ds:
        pixels = ds.read(1)
        assert ds.transform.is_identity  # L1A: only the RPCs place it on the ground
    with RPCTransformer(rpcs) as rpc:
        # The zone: the ground under pixels rows 100..160, cols 200..260, at the RPC height offset.
        xs, ys = rpc.xy([100, 100, 160, 160], [200, 260, 260, 200], zs=[rpcs.height_off] * 4, offset="ul")
    policy = _policy(tmp_path, list(zip(xs, ys, strict=True)))
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(src), "-o", str(out), "--log", str(log))
    assert result.exit_code == 0, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "mask"
    assert 0 < decision["output"]["masked_fraction"] < 0.05
    with rasterio.open(out / image.name) as ds:
        masked = ds.read(1)
        assert ds.nodata is not None
        assert ds.rpcs is not None or (out / f"{L1A_PAN}.rpb").is_file()
    assert masked[130, 230] == ds.nodata  # the ground point inside the zone
    assert masked[400, 40] == pixels[400, 40]  # far from it: exactly as it was
    assert masked[10, 500] == pixels[10, 500]


def test_a_product_that_cannot_be_placed_is_blocked_not_released_unmasked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    # No georeferencing at all, but a sidecar-like resolution from the file name is not enough either:
    image = write_image(src / "scene-PAN.tif", synthetic_pixels(1, 64, 64) + 1)
    policy = _policy(tmp_path, _utm_ring(0, 0, 10, 10))
    result = CliRunner().invoke(cli, ["screen", "--json", "--policy", str(policy), str(image)])
    decision = json.loads(result.stdout)
    assert decision["action"] == "block"  # no footprint may hide the zone, and no resolution evidence


@pytest.mark.parametrize("complex_samples", [True])
def test_complex_samples_that_must_be_masked_are_blocked(tmp_path: Path, complex_samples: bool) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = (synthetic_pixels(1, 64, 64).astype(np.float32) * (1 + 1j)).astype(np.complex64)
    image = write_image(src / "scene.tif", data, crs=UTM50, transform=Affine(PIXEL, 0, ORIGIN_X, 0, -PIXEL, ORIGIN_Y))
    policy = _policy(tmp_path, _utm_ring(10, 10, 20, 20))
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 4, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "block"
    assert "masking complex SAR samples is not supported" in decision["result"]["why"]
    assert not any(p.is_file() for p in out.rglob("*"))


def test_a_sidecar_placing_the_product_over_the_zone_against_its_georeferencing_blocks_it(tmp_path: Path) -> None:
    """The sidecar's corners put the scene over the zone, its geotransform elsewhere: which pixels lie in the
    zone cannot be known, so nothing leaves (masking where the geotransform says would mask nothing)."""
    from rspolicy.samples.gf_optical import OpticalScene, write_sidecar

    src = tmp_path / "src"
    src.mkdir()
    name = "GF2_PMS1_E100.0_N30.0_20200510_L1A0004793969-PAN1"
    scene = OpticalScene(width=200, height=200, image_gsd="2.0", center_lon=100.0, center_lat=30.0)
    write_sidecar(src / f"{name}.xml", scene)
    image = write_image(src / f"{name}.tiff", synthetic_pixels(1, 200, 200) + 1, crs=UTM50,
                        transform=Affine(PIXEL, 0, ORIGIN_X, 0, -PIXEL, ORIGIN_Y))
    policy = _policy(tmp_path, [(99.99, 29.99), (100.01, 29.99), (100.01, 30.01), (99.99, 30.01)])
    out, log = tmp_path / "out", tmp_path / "log.jsonl"
    result = _enforce("--policy", str(policy), str(image), "-o", str(out), "--log", str(log))
    assert result.exit_code == 4, result.output
    (decision,) = _decisions(log)
    assert decision["result"]["action"] == "block"
    assert "cannot be masked reliably" in decision["result"]["why"]
    assert not any(p.is_file() for p in out.rglob("*"))
