"""``DataArray.rspolicy``: screening and degrading arrays, eager and on Dask, bit for bit alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from pyproj import CRS

import rspolicy.accessor  # noqa: F401 - registers the accessor
from rspolicy.accessor import ArrayBlockedError
from rspolicy.errors import ProductReadError, RSPolicyError
from rspolicy.model import Action, ProductClass
from rspolicy.resample import area_average

UTM50 = CRS(32650).to_wkt()


def scene(data: Any, pixel: float = 0.3, *, name: str = "scene", attrs: dict[str, Any] | None = None) -> xr.DataArray:
    rows, cols = data.shape[-2:]
    y = 4_417_000 - pixel * (np.arange(rows) + 0.5)
    x = 448_000 + pixel * (np.arange(cols) + 0.5)
    dims = ("y", "x") if data.ndim == 2 else ("band", "y", "x")
    coords: dict[str, Any] = {"y": y, "x": x}
    if data.ndim == 3:
        coords["band"] = np.arange(1, data.shape[0] + 1)
    da = xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=attrs or {})
    return da.assign_coords(spatial_ref=((), 0, {"crs_wkt": UTM50}))


def pixels(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 1000, size=shape).astype(dtype)


def test_screening_an_array_uses_its_grid_and_the_stated_class() -> None:
    da = scene(pixels((50, 60)))
    decision = da.rspolicy.screen(product_class="panchromatic")
    assert (decision.product_class, decision.gsd_m, decision.action, decision.target_gsd_m, decision.rule) == (
        ProductClass.PANCHROMATIC, 0.3, Action.RESAMPLE, 0.5, "cnsa-2022/panchromatic")
    assert decision.path == "<array scene>"
    coarse = scene(pixels((50, 60)), 0.6).rspolicy.screen(product_class="panchromatic")
    assert coarse.action is Action.ALLOW


def test_the_class_from_the_attributes_cannot_be_loosened_by_the_caller() -> None:
    da = scene(pixels((40, 40)), 1.0, attrs={"product_class": "multispectral"})
    assert da.rspolicy.screen().product_class is ProductClass.MULTISPECTRAL
    disputed = da.rspolicy.screen(product_class="panchromatic")
    # Two strong statements that disagree: unknown, held to the strictest class (2.0 m at 1 m).
    assert (disputed.product_class, disputed.action, disputed.target_gsd_m) == (
        ProductClass.UNKNOWN, Action.RESAMPLE, 2.0)
    unknown = scene(pixels((40, 40)), 0.3).rspolicy.screen()
    assert (unknown.product_class, unknown.target_gsd_m) == (ProductClass.UNKNOWN, 2.0)


def test_degrading_gives_the_grid_coordinates_and_attributes_of_the_output() -> None:
    data = pixels((3, 50, 61))
    out = scene(data, attrs={"nodata": 0}).rspolicy.enforce(product_class="multispectral", policy="cnsa-2022")
    # 0.3 m to 2.0 m: a factor of 20/3 on both axes.
    assert out.shape == (3, 8, 10) and out.dims == ("band", "y", "x")
    assert np.array_equal(out.values, area_average(data, (20 / 3, 20 / 3), nodata=0))
    assert np.allclose(np.diff(out.x), 2.0) and np.allclose(np.diff(out.y), -2.0)
    assert out.x.values[0] == pytest.approx(448_000 + 1.0) and out.y.values[0] == pytest.approx(4_417_000 - 1.0)
    assert out.spatial_ref.attrs["GeoTransform"].split()[:3] == ["448000.0", "2.0", "0.0"]
    assert out.spatial_ref.attrs["crs_wkt"] == UTM50
    assert out.attrs["rspolicy_action"] == "resample" and out.attrs["rspolicy_target_gsd_m"] == 2.0
    assert out.attrs["rspolicy_rule"] == "cnsa-2022/multispectral"
    assert out.attrs["rspolicy_credit"] == "Data provided by China National Space Administration"
    again = out.rspolicy.screen()  # the output re-screens: its attributes now state the class
    assert (again.product_class, again.action) == (ProductClass.MULTISPECTRAL, Action.ALLOW)


def test_nodata_is_honoured() -> None:
    data = pixels((30, 30))
    data[:10, :10] = 0  # one whole output pixel of nodata
    data[20, 20] = 0  # one invalid input pixel in another
    out = scene(data, attrs={"_FillValue": 0}).rspolicy.enforce(product_class="panchromatic")
    assert np.array_equal(out.values, area_average(data, (5 / 3, 5 / 3), nodata=0))
    assert out.values[0, 0] == 0


@pytest.mark.parametrize(("dtype", "chunks"), [("uint16", (7, 11)), ("float32", (64, 5)), ("uint8", (13, 13))])
def test_a_dask_array_stays_lazy_and_equals_the_eager_result_bit_for_bit(dtype: str, chunks: tuple[int, int]) -> None:
    data = pixels((2, 97, 83), dtype, seed=3)
    calls: list[int] = []

    def load(block: np.ndarray) -> np.ndarray:
        calls.append(1)
        return block

    lazy = dsa.from_array(data, chunks=(1, *chunks)).map_blocks(load, dtype=data.dtype,
                                                                meta=np.array((), data.dtype))
    eager_out = scene(data, attrs={"nodata": 1}).rspolicy.enforce(product_class="panchromatic")
    lazy_out = scene(lazy, attrs={"nodata": 1}).rspolicy.enforce(product_class="panchromatic")
    assert calls == [] and isinstance(lazy_out.data, dsa.Array)
    # No output chunk splits a period of the factor (5/3: 5 input pixels make 3 output pixels).
    assert all(c % 3 == 0 for c in lazy_out.data.chunks[-1][:-1])
    computed = lazy_out.compute()
    assert calls
    assert computed.dtype == eager_out.dtype
    assert np.array_equal(computed.values, eager_out.values, equal_nan=True)
    assert computed.x.equals(eager_out.x) and computed.y.equals(eager_out.y)


def test_an_allowed_array_is_returned_as_it_is_with_the_decision() -> None:
    data = pixels((20, 20))
    out = scene(data, 0.5).rspolicy.enforce(product_class="panchromatic")
    assert np.array_equal(out.values, data) and out.attrs["rspolicy_action"] == "allow"


def test_what_may_not_leave_raises_and_the_error_is_an_rspolicy_error() -> None:
    complex_scene = scene((pixels((20, 20)) * (1 + 1j)).astype("complex64"), 0.3)
    with pytest.raises(ArrayBlockedError) as blocked:
        complex_scene.rspolicy.enforce(product_class="sar")
    assert isinstance(blocked.value, RSPolicyError) and isinstance(blocked.value, PermissionError)
    referred = scene(pixels((20, 20)), 0.3)
    with pytest.raises(ArrayBlockedError, match="no approval reference was given"):
        referred.rspolicy.enforce(policy="in-rsdp-2011", product_class="panchromatic")
    approved = referred.rspolicy.enforce(policy="in-rsdp-2011", product_class="panchromatic", approval="IN-7")
    assert approved.attrs["rspolicy_action"] == "allow"


def test_an_array_without_a_grid_is_refused() -> None:
    bare = xr.DataArray(pixels((10, 10)), dims=("y", "x"), name="bare")
    with pytest.raises(ProductReadError, match="no CRS"):
        bare.rspolicy.screen(product_class="panchromatic")
    irregular = scene(pixels((10, 10))).assign_coords(x=np.r_[np.arange(9) * 0.3, 10.0])
    with pytest.raises(ProductReadError, match="not a regular grid"):
        irregular.rspolicy.screen(product_class="panchromatic")


def test_a_decision_in_memory_is_logged_with_the_array_in_place_of_file_hashes(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    decision = scene(pixels((20, 30))).rspolicy.screen(product_class="panchromatic", log=log,
                                                        recipient="DE:DLR", operator="chain")
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["decision_id"] == decision.decision_id and record["command"] == "screen"
    (described,) = record["input"]["files"]
    assert described["path"] == "<array scene>" and described["size"] == 20 * 30 * 2
    assert described["array"] == {"shape": [20, 30], "dtype": "uint16", "dims": ["y", "x"], "chunked": False}
    assert record["result"]["rules_fired"][0]["id"] == "cnsa-2022/panchromatic"
    assert record["operator"] == "chain" and record["recipient"] == "DE:DLR"


CLUSTER_RUN = """
import json, resource, sys
import dask.array as dsa
import numpy as np
from distributed import Client, LocalCluster
from pyproj import CRS
import xarray as xr

import rspolicy.accessor  # noqa: F401
from rspolicy.resample import area_average


def peak_rss_kib():
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def scene(data):
    rows, cols = data.shape
    y = 4_417_000 - 0.3 * (np.arange(rows) + 0.5)
    x = 448_000 + 0.3 * (np.arange(cols) + 0.5)
    da = xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x}, name="scene")
    return da.assign_coords(spatial_ref=((), 0, {"crs_wkt": CRS(32650).to_wkt()}))


if __name__ == "__main__":
    side, chunk = 16_384, 1_024
    rng = dsa.random.default_rng(7)
    lazy = rng.integers(1, 1000, size=(side, side), chunks=chunk, dtype=np.uint16)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, memory_limit="2GiB",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        small = scene(rng.integers(1, 1000, size=(100, 100), chunks=50, dtype=np.uint16))
        small.rspolicy.enforce(product_class="panchromatic").data.sum().compute()  # imports, in every worker
        before = client.run(peak_rss_kib)
        out = scene(lazy).rspolicy.enforce(product_class="panchromatic")
        total = int(out.data.sum(dtype="uint64").compute())
        after = client.run(peak_rss_kib)
        window = out.data[99:102, 198:201].compute()
        source = lazy[165:170, 330:335].compute()
    json.dump({"scene_bytes": int(lazy.nbytes), "shape": list(out.shape), "total": total,
               "window_matches": bool(np.array_equal(window, area_average(source, 5 / 3))),
               "grown": [(after[w] - before[w]) * 1024 for w in after], "chunk_bytes": chunk * chunk * 2},
              sys.stdout)
"""


def test_a_scene_larger_than_a_worker_degrades_on_a_local_cluster_in_bounded_memory(tmp_path: Path) -> None:
    """A 512 MiB scene through two single-threaded workers: each worker's peak memory grows by a few chunks,
    never by the scene, and the result is the kernel's on the window checked.

    The cluster runs in a process of its own: its worker processes (and multiprocessing's helpers) are
    never children of the test process.
    """
    import subprocess
    import sys

    script = tmp_path / "cluster_run.py"
    script.write_text(CLUSTER_RUN)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["scene_bytes"] == 512 * 2**20
    assert result["shape"] == [9831, 9831] and result["total"] > 0 and result["window_matches"]
    assert len(result["grown"]) == 2
    for grown in result["grown"]:
        # Measured 29-37 MiB: a few chunks and the kernel's accumulators, not the 512 MiB scene.
        assert grown < 64 * result["chunk_bytes"], grown  # 128 MiB: a quarter of the scene
