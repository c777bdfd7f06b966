"""Generate rspolicy's bundled sample products (a few MB in all).

Every sidecar is modelled field for field on a real distributor file (see
``sample_data/README.md``); the pixels are synthetic. Run from the repository
root::

    python sample_data/generate.py            # rewrite sample_data/ in place
    python sample_data/generate.py OUTDIR     # write the same set elsewhere

The output is deterministic: the same products, the same decisions.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from rspolicy.samples.gf3 import Gf3Names, gf3_names, write_gf3_meta
from rspolicy.samples.gf_optical import (
    OpticalScene,
    linear_rpc,
    order_xml,
    synthetic_pixels,
    write_image,
    write_rpb,
    write_sidecar,
)
from rspolicy.samples.hdf5 import write_fy3_mersi, write_fy4a_agri, write_hy1c_czi

HERE = Path(__file__).resolve().parent
COMPRESS = {"compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}
UTM50N = CRS.from_epsg(32650)

#: The products and the decision each must get under cnsa-2022.
EXPECTED: dict[str, str] = {
    "gf2_pms1_l1a/GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1.tiff": "allow",
    "gf2_pms1_l1a/GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-MSS1.tiff": "allow",
    "sv1_pan_0.5m/SV1-01_20200601_L2A0000123456_1012000000001-PAN.tiff": "allow",
    "svn1_pan_0.3m/SVN1-01_20230315_L2A0001234567_1112300000001-PAN.tiff": "resample",
    "gf7_bwdpan_l1a/GF7_DLC_E116.3_N39.9_20210402_L1A0000456789-BWDPAN.tiff": "allow",
    "gf3_sl_l2/GF3_KAS_SL_012345_E116.4_N39.9_20210101_L2_HH_L20000123456.tiff": "resample",
    "gf3_ufs_l2/GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_HH_L20006303810.tiff": "allow",
    "gf3_ufs_l2/GF3_MYN_UFS_029108_E116.4_N39.9_20220219_L2_HV_L20006303810.tiff": "allow",
    "gf3_sl_slc/GF3_SAY_SL_016789_E121.5_N31.2_20210615_L1A_HH_L10000234567.tiff": "resample",
    "fy4a_agri/FY4A-_AGRI--_N_DISK_1047E_L1-_FDI-_MULT_NOM_20190101000000_20190101001459_4000M_V0001.HDF": "allow",
    "fy3d_mersi/FY3D_MERSI_GBAL_L1_20190101_0000_0250M_MS.HDF": "allow",
    "hy1c_czi/": "allow",
    "GF2_PMS2_E116.5_N39.9_20230213_L1A0012889847.tar.gz!GF2_PMS2_E116.5_N39.9_20230213_L1A12889847001/"
    "GF2_PMS2_E116.5_N39.9_20230213_L1A12889847001-PAN2.tiff": "allow",
    "GF2_PMS2_E116.5_N39.9_20230213_L1A0012889847.tar.gz!GF2_PMS2_E116.5_N39.9_20230213_L1A12889847001/"
    "GF2_PMS2_E116.5_N39.9_20230213_L1A12889847001-MSS2.tiff": "allow",
    "plain_geotiff/rgbn_epsg4326.tif": "resample",
}


def _l1a_optical(folder: Path, stem: str, scene: OpticalScene, gsd_m: float, bands: int, seed: int) -> None:
    """An L1A product: image without map georeferencing, RPCs in the .rpb, sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    write_sidecar(folder / f"{stem}.xml", scene)
    write_rpb(folder / f"{stem}.rpb",
              linear_rpc(scene.center_lon, scene.center_lat, gsd_m, scene.width, scene.height, height_off=50.0))
    write_image(folder / f"{stem}.tiff", synthetic_pixels(bands, scene.height, scene.width, seed=seed), **COMPRESS)


def _ortho_optical(folder: Path, stem: str, scene: OpticalScene, gsd_m: float, seed: int) -> None:
    """A map-projected (L2) panchromatic product in UTM 50N with a sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    write_sidecar(folder / f"{stem}.xml", scene)
    transform = Affine(gsd_m, 0, 448_000.0, 0, -gsd_m, 4_417_000.0)
    write_image(folder / f"{stem}.tiff", synthetic_pixels(1, scene.height, scene.width, seed=seed),
                crs=UTM50N, transform=transform, **COMPRESS)


def _gf3(folder: Path, names: Gf3Names, product_type: str, channels: dict[str, np.ndarray],
         transform: Affine | None, **meta: Any) -> None:
    """A GF-3 product: one ``.meta.xml`` shared by one image per polarisation."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = next(iter(channels.values())).shape
    write_gf3_meta(folder / names.meta, product_type=product_type, width=width, height=height, **meta)
    for channel, pixels in channels.items():
        write_image(folder / names.tiffs[channel], pixels[np.newaxis], crs=UTM50N if transform else None,
                    transform=transform, **COMPRESS)


def _corners(lon: float, lat: float, half: float = 0.002) -> tuple[tuple[float, float], ...]:
    """GF-3 corner order: topLeft, topRight, bottomLeft, bottomRight."""
    return ((lon - half, lat + half), (lon + half, lat + half), (lon - half, lat - half), (lon + half, lat - half))


def _amplitude(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # Detected SAR amplitude: Rayleigh-distributed speckle on a smooth scene.
    scene = 300 + 150 * np.sin(np.arange(width) / 20.0)[np.newaxis, :]
    return np.clip(rng.rayleigh(1.0, (height, width)) * scene, 0, 65535).astype(np.uint16)


def _slc(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 100, (height, width)) + 1j * rng.normal(0, 100, (height, width))).astype(np.complex64)


def _package(out: Path) -> None:
    """A GF-2 delivery package: PAN2 + MSS2 (2023 field set), order file, browse, and a sidecar copy."""
    pid = "12889847001"
    inner = f"GF2_PMS2_E116.5_N39.9_20230213_L1A{pid}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / inner
        common = {"satellite": "GF2", "sensor": "PMS2", "product_id": pid, "scene_id": "12889847",
                  "center_lon": 116.5, "center_lat": 39.9, "extended": True,
                  "receive_time": "2023-02-13 14:17:10", "center_time": "2023-02-13 22:17:10"}
        pan = OpticalScene(bands="5", image_gsd="0.810000000000000", width=512, height=512, **common)  # type: ignore[arg-type]
        mss = OpticalScene(bands="1,2,3,4", image_gsd="3.240000000000000", width=128, height=128,
                           gain_mode="G2,G1,G1,G2", integration_level="S5,S4,S5,S3", **common)  # type: ignore[arg-type]
        _l1a_optical(folder, f"{inner}-PAN2", pan, 0.81, 1, seed=21)
        _l1a_optical(folder, f"{inner}-MSS2", mss, 3.24, 4, seed=22)
        # The real 2023 package carries an identical copy of the MSS2 sidecar under the scene name.
        (folder / f"{inner}.xml").write_bytes((folder / f"{inner}-MSS2.xml").read_bytes())
        (folder / "order.xml").write_text(order_xml(product_id=pid), encoding="utf-8")
        browse = synthetic_pixels(1, 64, 64, dtype="uint8", seed=23)
        write_image(folder / f"{inner}-PAN2.jpg", browse, driver="JPEG")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(folder.iterdir()):
                info = tar.gettarinfo(str(path), arcname=f"{inner}/{path.name}")
                info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 1_676_246_400, 0, 0, "", "", 0o644
                with path.open("rb") as fh:
                    tar.addfile(info, fh)


def generate(out: Path) -> None:
    """Write every sample product into ``out``."""
    _l1a_optical(out / "gf2_pms1_l1a", "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-PAN1",
                 OpticalScene(bands="5", image_gsd="0.81", width=512, height=512, center_lon=116.5, center_lat=39.9),
                 0.81, 1, seed=1)
    _l1a_optical(out / "gf2_pms1_l1a", "GF2_PMS1_E116.5_N39.9_20200510_L1A0004793969-MSS1",
                 OpticalScene(bands="1,2,3,4", image_gsd="3.24", width=128, height=128, center_lon=116.5,
                              center_lat=39.9, gain_mode="G2,G2,G2,G2", integration_level="S4,S4,S4,S4"),
                 3.24, 4, seed=2)
    _ortho_optical(out / "sv1_pan_0.5m", "SV1-01_20200601_L2A0000123456_1012000000001-PAN",
                   OpticalScene(satellite="SV1-01", sensor="PAN", bands="1", image_gsd="0.5", width=400, height=400,
                                product_id="1012000000001", center_lon=116.4, center_lat=39.9), 0.5, seed=3)
    _ortho_optical(out / "svn1_pan_0.3m", "SVN1-01_20230315_L2A0001234567_1112300000001-PAN",
                   OpticalScene(satellite="SVN1-01", sensor="PAN", bands="1", image_gsd="0.3", width=500, height=500,
                                product_id="1112300000001", center_lon=116.4, center_lat=39.9), 0.3, seed=4)
    _l1a_optical(out / "gf7_bwdpan_l1a", "GF7_DLC_E116.3_N39.9_20210402_L1A0000456789-BWDPAN",
                 OpticalScene(satellite="GF7", sensor="DLC", bands="1", image_gsd="0.65", width=400, height=400,
                              product_id="456789", center_lon=116.3, center_lat=39.9), 0.65, 1, seed=5)
    _gf3(out / "gf3_sl_l2", gf3_names("KAS", "SL", 12345, 116.4, 39.9, "20210101", "L2", "HH", 123456),
         "SLP", {"HH": _amplitude(400, 400, 6)}, Affine(0.5, 0, 448_000.0, 0, -0.5, 4_417_000.0),
         imaging_mode="SL", polar="HH", product_id=123456, station="KAS", orbit_id=12345,
         nominal_resolution=1.0, widthspace=0.5, heightspace=0.5, incidence_near=35.2, incidence_far=36.1,
         corners=_corners(116.4, 39.9), start="2021-01-01 10:12:01.000000", end="2021-01-01 10:12:03.000000")
    _gf3(out / "gf3_ufs_l2", gf3_names("MYN", "UFS", 29108, 116.4, 39.9, "20220219", "L2", "DH", 6303810),
         "SLP", {"HH": _amplitude(200, 200, 7), "HV": _amplitude(200, 200, 8)},
         Affine(1.5, 0, 448_000.0, 0, -1.5, 4_417_000.0), imaging_mode="UFS", polar="DH", product_id=6303810,
         nominal_resolution=3.0, widthspace=1.5, heightspace=1.5, corners=_corners(116.4, 39.9),
         start="2022-02-19 08:33:23.753066", end="2022-02-19 08:33:29.050428")
    _gf3(out / "gf3_sl_slc", gf3_names("SAY", "SL", 16789, 121.5, 31.2, "20210615", "L1A", "HH", 234567),
         "SLC", {"HH": _slc(300, 256, 9)}, None, imaging_mode="SL", polar="HH", product_id=234567,
         station="SAY", orbit_id=16789, product_level="1A", nominal_resolution=1.0, widthspace=0.45,
         heightspace=0.6, incidence_near=37.5, incidence_far=38.3, corners=_corners(121.5, 31.2),
         start="2021-06-15 21:40:10.100000", end="2021-06-15 21:40:12.400000")
    write_fy4a_agri(_mkdir(out / "fy4a_agri"), resolution_m=4000, start=datetime(2019, 1, 1, 0, 0))
    write_fy3_mersi(_mkdir(out / "fy3d_mersi"), resolution_m=250, start=datetime(2019, 1, 1, 0, 0))
    write_hy1c_czi(_mkdir(out / "hy1c_czi"))
    _package(out / "GF2_PMS2_E116.5_N39.9_20230213_L1A0012889847.tar.gz")
    plain = _mkdir(out / "plain_geotiff")
    write_image(plain / "rgbn_epsg4326.tif", synthetic_pixels(4, 300, 300, seed=10), crs=CRS.from_epsg(4326),
                transform=Affine(1e-5, 0, 116.40, 0, -1e-5, 39.91), **COMPRESS)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: list[str]) -> int:
    """Generate into the folder given, or into sample_data/ itself."""
    out = Path(argv[1]) if len(argv) > 1 else HERE
    generate(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
