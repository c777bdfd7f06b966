"""Property: whatever a generated product looks like, nothing released measures finer than the limit.

Products are drawn by hypothesis: geotransforms of any kind (NaN, inf, 0,
negative, rotated, tiny, huge), CRS kinds (UTM, geographic, none, feet),
extra pages of random size, sidecars that lie (ImageGSD coarser than the
truth) and companions (world file, .aux.xml, junk). Each is screened, then
enforced; every image of every released file is measured against the
product's true extent by :mod:`tests.hostile.measure`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rspolicy.cli import cli
from rspolicy.samples.gf_optical import sidecar_xml
from tests.hostile.corpus import (
    GF2_STEM,
    PAN_LIMIT,
    Page,
    aux_xml,
    geo_tags,
    gf2_scene,
    matrix_tags,
    pixels,
    world_file,
    write_tiff,
)
from tests.hostile.measure import finer_than, parse_decisions, released_images

_FT = 1200 / 3937
#: Ground metres per degree at 40N on WGS84 (east-west, north-south), a hair under the truth so that
#: the check is never laxer than the ground.
_M_PER_DEG_X, _M_PER_DEG_Y = 85_394.0 * 0.999, 111_035.0 * 0.999

scales = st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 1e-9, 1e9, -0.4]),
                   st.floats(0.05, 5.0))
degrees = st.one_of(st.sampled_from([math.nan, 0.0, 1e-12, 400.0]), st.floats(1e-6, 1e-4))


@st.composite
def products(draw: st.DrawFn) -> dict[str, object]:
    width = draw(st.integers(16, 120))
    crs = draw(st.sampled_from(["utm", "geographic", "none", "feet"]))
    scale = draw(degrees if crs == "geographic" else scales)
    rotated = draw(st.booleans())
    extra = draw(st.lists(st.integers(8, 400), max_size=2))
    lie = draw(st.one_of(st.none(), st.floats(0.5, 10.0)))
    companion = draw(st.sampled_from([None, "tfw", "aux", "junk"]))
    return {"width": width, "scale": scale, "crs": crs, "rotated": rotated, "extra": extra, "lie": lie,
            "companion": companion}


def _write(folder: Path, p: dict[str, object]) -> tuple[Path, tuple[float, float] | None]:
    """Write the product; return the image and its true ground extent (x, y), None when it has none."""
    width = int(p["width"])  # type: ignore[call-overload]
    scale = float(p["scale"])  # type: ignore[arg-type]
    crs = str(p["crs"])
    units = {"utm": (1.0, 1.0), "feet": (_FT, _FT), "geographic": (_M_PER_DEG_X, _M_PER_DEG_Y),
             "none": (math.nan, math.nan)}[crs]
    usable = math.isfinite(scale) and scale != 0 and math.isfinite(units[0]) and abs(scale) * width < 1e7
    truth = (abs(scale) * units[0] * width, abs(scale) * units[1] * width) if usable else None
    epsg = {"utm": 32650, "feet": 2263, "geographic": 4326, "none": None}[crs]
    kind = "geographic" if crs == "geographic" else "projected"
    origin = (116.0, 40.0) if crs == "geographic" else (448_000.0, 4_417_000.0)
    if p["rotated"] and epsg is not None and crs != "geographic" and truth is not None:
        s = scale / math.sqrt(2)
        tags = tuple(matrix_tags(s, -s, origin[0], -s, -s, origin[1], epsg=epsg))
    else:
        tags = tuple(geo_tags(scale, scale, epsg=epsg, kind=kind, origin=origin))
    pages = [Page(pixels(width, width), tags)]
    pages += [Page(pixels(n, n, seed=n), subfiletype=1) for n in p["extra"]]  # type: ignore[attr-defined]
    tif = write_tiff(folder / f"{GF2_STEM}-PAN1.tiff", pages)
    if p["lie"] is not None:
        (folder / f"{GF2_STEM}-PAN1.xml").write_text(sidecar_xml(gf2_scene(width, float(p["lie"]))))  # type: ignore[arg-type]
    companion = p["companion"]
    if companion == "tfw":
        world_file(tif.with_suffix(".tfw"), 2.0, 2.0)
    elif companion == "aux":
        aux_xml(folder / f"{tif.name}.aux.xml", 2.0)
    elif companion == "junk":
        (folder / f"{GF2_STEM}-PAN1.dat").write_bytes(np.arange(256, dtype=np.uint8).tobytes())
    return tif, truth


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(products())
def test_nothing_released_is_finer_than_the_limit(product: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        tif, truth = _write(folder, product)
        runner = CliRunner()
        screened = runner.invoke(cli, ["screen", str(tif), "--json"])
        assert "Traceback" not in screened.output
        assert screened.exception is None or isinstance(screened.exception, SystemExit), screened.exception
        outdir = Path(tmp) / "out"
        enforced = runner.invoke(cli, ["enforce", str(tif), "-o", str(outdir), "--log", f"{tmp}/log.jsonl",
                                       "--json"])
        assert enforced.exception is None or isinstance(enforced.exception, SystemExit), enforced.exception
        actions = {d["action"] for d in parse_decisions(enforced.stdout)}
        images = released_images(outdir)
        if actions & {"allow", "resample"}:
            # Released although the truth is unknowable: the gate trusted evidence that cannot be measured.
            assert truth is not None or not images, f"released {images} from a product with no usable extent"
            for image in images:
                assert truth is not None
                assert not finer_than(truth, (image.width, image.height), PAN_LIMIT), \
                    f"{image} is finer than {PAN_LIMIT} m over {truth} ({product})"
        else:
            assert not images, f"blocked, yet released {images}"
