"""Quicklooks of degraded products that can never leak what they show.

A quicklook is a small WebP image of a product's source (before) or of what was
released (after), both at the same ground scale. Its pixels must be coarser on
the ground than every limit of the policy, so that the report, which anyone may
be shown, never carries detail the policy holds back:

* the floor is :data:`QUICKLOOK_MARGIN` times the policy's coarsest limit
  (:func:`coarsest_limit_m`: the largest resample target or ``gsd_m`` threshold
  of any of its rules);
* an image's ground distance per pixel is taken from the *finest* evidence of
  it: the record's gsd and every gsd or nominal-resolution evidence it holds,
  and the evidence read afresh from the files now (:func:`read_quicklooks`),
  whichever is smallest; a coarser claim never makes a quicklook finer;
* a quicklook of ``m`` pixels across an image of ``n`` pixels, each at least
  ``g`` metres on the ground, has pixels of at least ``n * g / m`` metres: ``m``
  is chosen as ``floor(n * g / q)`` per axis, with ``q`` at or above the floor,
  so every pixel is at least ``q``. That bound is what the report prints
  beside each image (``data-ground-m``);
* pixels are read through :func:`rspolicy.isolation.run_isolated` (products
  are hostile: GDAL runs in the worker with a time and memory limit), from the
  full-resolution image (never the file's own overviews), averaged down by
  GDAL (complex SAR: the mean of ``|z|^2`` per quicklook pixel);
* a file that is missing, that is not the one recorded (its sha256 differs), an
  image inside a delivery package, or a ground scale no evidence gives shows no
  image, and the report says why.

Sizes come from a byte budget for all images of a report
(:func:`side_for`), between :data:`MIN_SIDE` and :data:`MAX_SIDE` pixels on
the long side; a budget can only make quicklooks coarser, never finer.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rspolicy.isolation import Limits
from rspolicy.records import sha256_file

__all__ = [
    "IMAGE_BUDGET_BYTES",
    "MAX_SIDE",
    "MIN_SIDE",
    "QUICKLOOK_LIMITS",
    "QUICKLOOK_MARGIN",
    "ImageSpec",
    "PairRequest",
    "Quicklook",
    "QuicklookPair",
    "coarsest_limit_m",
    "read_quicklooks",
    "side_for",
]

#: A quicklook's pixels are at least this many times the policy's coarsest limit on the ground.
QUICKLOOK_MARGIN = 1.25
#: Long side of a quicklook, in pixels, before the ground-scale floor (which may make it smaller).
MIN_SIDE = 32
MAX_SIDE = 192
#: What all the quicklooks of one report may weigh together (bytes in the page, estimated).
IMAGE_BUDGET_BYTES = 1_500_000
#: Bytes in the page per pixel and channel of a stretched image, for the estimate: lossy WebP at
#: :data:`_WEBP_QUALITY` takes about half a byte for imagery (PNG about 0.9), and base64 adds a third.
_BYTES_PER_SAMPLE = 0.7
#: Lossy WebP quality: a quicklook shows where the detail went, not radiometry; half PNG's bytes.
_WEBP_QUALITY = 80
#: Time and memory for reading one product's pair of quicklooks in the isolated worker.
QUICKLOOK_LIMITS = Limits(seconds=120.0, memory_bytes=2 << 30)
#: Pixels of a complex image read in one strip (its intensity is averaged by rspolicy, not GDAL).
_STRIP_PIXELS = 8 << 20



def coarsest_limit_m(policy: Any) -> float | None:
    """The coarsest resolution limit a policy states: the largest target or ``gsd_m`` threshold of any rule.

    Every comparison of ``gsd_m`` counts, however deeply it is nested, and so
    does every resample target.

    Parameters
    ----------
    policy
        A loaded :class:`rspolicy.policy.Policy`.

    Returns
    -------
    float or None
        In metres; None when no rule names a resolution.

    Examples
    --------
    >>> from rspolicy.policy import load_policy
    >>> coarsest_limit_m(load_policy("cnsa-2022"))
    2.0
    """
    from rspolicy.policy.conditions import All, AnyOf, Compare, Not  # noqa: PLC0415 - policies load lazily

    def limits(condition: Any) -> Iterator[float]:
        if isinstance(condition, Compare) and condition.fact == "gsd_m":
            yield from (float(limit) for _, limit in condition.comparisons)
        elif isinstance(condition, All | AnyOf):
            for part in condition.parts:
                yield from limits(part)
        elif isinstance(condition, Not):
            yield from limits(condition.part)

    found: list[float] = []
    for rule in policy.rules:
        if rule.target_m is not None:
            found.append(float(rule.target_m))
        found.extend(limits(rule.condition))
    good = [v for v in found if math.isfinite(v) and v > 0]
    return max(good) if good else None


def side_for(images: int, budget: int = IMAGE_BUDGET_BYTES) -> int:
    """The long side of each of ``images`` single-channel quicklooks sharing ``budget`` bytes.

    Parameters
    ----------
    images
        How many quicklooks the report holds.
    budget
        Their encoded bytes in all (an estimate).

    Returns
    -------
    int
        Between :data:`MIN_SIDE` and :data:`MAX_SIDE`.

    Examples
    --------
    >>> side_for(8), side_for(2000)
    (192, 32)
    """
    each = budget / max(1, images) / _BYTES_PER_SAMPLE
    return max(MIN_SIDE, min(MAX_SIDE, int(math.sqrt(each))))


@dataclass(frozen=True)
class ImageSpec:
    """One image to show: its file, the product's other files, and what the record says of them.

    Attributes
    ----------
    label
        The name to give it in messages.
    image
        The image file (a local path).
    sha256
        Its sha256 as recorded; the image is shown only when the file still has it.
    sidecars
        The product's other files with their recorded sha256, read afresh for
        their ground-distance evidence.
    recorded_gsd_m
        The finest ground distance the record gives for this image, or None.
    """

    label: str
    image: str
    sha256: str | None
    sidecars: tuple[tuple[str, str | None], ...] = ()
    recorded_gsd_m: float | None = None


@dataclass(frozen=True)
class PairRequest:
    """What :func:`read_quicklooks` is asked: a product's source and output, and the scale they must keep.

    Attributes
    ----------
    source, output
        The images (None: not shown, for a reason the caller gives).
    min_ground_m
        The floor: no quicklook pixel may be finer on the ground.
    byte_budget
        Encoded bytes this pair may weigh (estimated).
    sar
        Whether the product is SAR (shown in decibels).
    """

    source: ImageSpec | None
    output: ImageSpec | None
    min_ground_m: float
    byte_budget: int
    sar: bool = False


@dataclass(frozen=True)
class Quicklook:
    """A WebP quicklook and the facts that make it safe to show.

    Attributes
    ----------
    image
        The encoded image (WebP).
    width, height
        Its size in pixels.
    ground_m
        The least ground distance any of its pixels covers (metres): above the floor.
    gsd_m
        The finest ground distance of the image it shows (metres).
    image_width, image_height
        The size of that image in pixels.
    """

    image: bytes
    width: int
    height: int
    ground_m: float
    gsd_m: float
    image_width: int
    image_height: int

    @property
    def data_uri(self) -> str:
        """The image as a ``data:`` URI."""
        return "data:image/webp;base64," + base64.b64encode(self.image).decode("ascii")

    @property
    def decimation(self) -> float:
        """Image pixels per quicklook pixel, along the coarser-sampled axis."""
        return min(self.image_width / self.width, self.image_height / self.height)


@dataclass(frozen=True)
class QuicklookPair:
    """Before and after quicklooks of one degraded product, or why either is not shown."""

    before: Quicklook | None
    after: Quicklook | None
    before_note: str = ""
    after_note: str = ""


# --------------------------------------------------------------------------- in the worker


@dataclass(frozen=True)
class _Opened:
    """An image checked and measured, ready to read."""

    spec: ImageSpec
    ds: Any
    gsd_m: float


def read_quicklooks(request: PairRequest) -> QuicklookPair:
    """Read both quicklooks of a pair: run it through :func:`rspolicy.isolation.run_isolated`.

    Each image is checked (a regular file with its recorded sha256, and so are
    the files read with it), its finest ground distance taken from the record
    and from evidence read afresh, and both are read at one ground scale ``q``:
    at least ``request.min_ground_m``, and coarser when the images would
    otherwise exceed the byte budget.

    Parameters
    ----------
    request
        The images and the floor.

    Returns
    -------
    QuicklookPair
        Each image, or the reason it is not shown.
    """
    notes = ["", ""]
    with contextlib.ExitStack() as stack:
        opened: list[_Opened | None] = []
        for i, spec in enumerate((request.source, request.output)):
            if spec is None:
                opened.append(None)
                continue
            try:
                opened.append(_open(spec, stack))
            except _NotShownError as why:
                notes[i] = str(why)
                opened.append(None)
        present = [o for o in opened if o is not None]
        if not present:
            return QuicklookPair(None, None, *notes)
        channels = max(len(_bands(o.ds, request.sar)) for o in present)
        max_side = side_for(2 * channels, request.byte_budget)
        extent = max(max(o.ds.width, o.ds.height) * o.gsd_m for o in present)
        scale = max(request.min_ground_m, extent / max_side)
        looks: list[Quicklook | None] = []
        for i, item in enumerate(opened):
            if item is None:
                looks.append(None)
                continue
            try:
                looks.append(_quicklook(item, scale, request.sar))
            except _NotShownError as why:
                notes[i] = str(why)
                looks.append(None)
    return QuicklookPair(looks[0], looks[1], *notes)


class _NotShownError(Exception):
    """Why an image is not shown: one line for the report."""


def _check_file(path: str, recorded: str | None, label: str) -> None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _NotShownError(f"{label}: {exc.strerror or 'cannot be read'}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _NotShownError(f"{label}: not a regular file")
    if not recorded:
        raise _NotShownError(f"{label}: the record gives no sha256 to check the file against")
    try:
        same = sha256_file(Path(path)) == recorded
    except OSError as exc:
        raise _NotShownError(f"{label}: {exc.strerror or 'cannot be read'}") from None
    if not same:
        raise _NotShownError(f"{label}: the file has changed since the decision (its sha256 differs from the record)")


def _fresh_gsd(spec: ImageSpec) -> list[float]:
    """Ground distances the product's files give now (the readers' evidence, as screening reads it)."""
    from rspolicy.model import Fact  # noqa: PLC0415
    from rspolicy.readers.discover import ProductFiles, read_product_here  # noqa: PLC0415
    from rspolicy.resolution import is_length  # noqa: PLC0415

    main = Path(spec.image)
    sidecars = tuple(Path(p) for p, _ in spec.sidecars)
    labels = {main: spec.label, **{p: os.fspath(p) for p in sidecars}}
    product = read_product_here(ProductFiles(spec.label, main, sidecars), labels)
    return [float(e.value) for e in product.evidence  # type: ignore[arg-type]
            if e.fact in (Fact.GSD, Fact.NOMINAL_RESOLUTION) and is_length(e.value)]


def _open(spec: ImageSpec, stack: contextlib.ExitStack) -> _Opened:
    _check_file(spec.image, spec.sha256, spec.label)
    for path, digest in spec.sidecars:
        _check_file(path, digest, f"{spec.label}: {os.path.basename(path)}")
    fresh = [v for v in _fresh_gsd(spec) if math.isfinite(v) and v > 0]
    if not fresh:
        # The record alone is not enough: the scale must come from the files as the gate reads them.
        raise _NotShownError(f"{spec.label}: its files give no ground scale, so no safe quicklook scale is known")
    recorded = spec.recorded_gsd_m
    candidates = [*fresh, *([recorded] if recorded is not None and math.isfinite(recorded) and recorded > 0 else [])]
    from rasterio.errors import RasterioError  # noqa: PLC0415

    from rspolicy.errors import ProductReadError  # noqa: PLC0415
    from rspolicy.readers.gdalopen import open_input  # noqa: PLC0415

    try:
        ds = stack.enter_context(open_input(Path(spec.image), OVERVIEW_LEVEL="NONE"))
    except (RasterioError, ProductReadError) as exc:
        raise _NotShownError(f"{spec.label}: cannot be opened ({' '.join(str(exc).split())[:200]})") from None
    return _Opened(spec, ds, min(candidates))


def _bands(ds: Any, sar: bool) -> tuple[int, ...]:
    """Bands to show: red, green and blue where the file names them, else the first band."""
    if not sar and ds.count >= 3:
        from rasterio.enums import ColorInterp  # noqa: PLC0415

        interp = list(ds.colorinterp)
        wanted = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
        if all(c in interp for c in wanted):
            return tuple(interp.index(c) + 1 for c in wanted)
    return (1,)


def _quicklook(item: _Opened, scale: float, sar: bool) -> Quicklook:
    import numpy as np  # noqa: PLC0415

    ds, gsd = item.ds, item.gsd_m
    # Each image pixel covers at least gsd metres: m = floor(n * gsd / scale) pixels across keeps
    # every quicklook pixel at least n * gsd / m >= scale metres.
    # (Never more pixels than the image has: a coarse image is shown at its own pixel size.)
    width = min(ds.width, math.floor(ds.width * gsd / scale))
    height = min(ds.height, math.floor(ds.height * gsd / scale))
    if width < 1 or height < 1:
        raise _NotShownError(f"{item.spec.label}: smaller than one pixel at a safe quicklook scale ({scale:.3g} m)")
    ground = min(ds.width * gsd / width, ds.height * gsd / height)
    bands = _bands(ds, sar)
    try:
        if np.dtype(ds.dtypes[0]).kind == "c":
            data = _complex_amplitude(ds, height, width)[np.newaxis]
        else:
            from rasterio.enums import Resampling  # noqa: PLC0415

            data = ds.read(list(bands), out_shape=(len(bands), height, width), resampling=Resampling.average,
                           masked=True)
    except Exception as exc:  # noqa: BLE001 - whatever GDAL raises on a damaged file, the image is not shown
        raise _NotShownError(f"{item.spec.label}: cannot be read ({' '.join(str(exc).split())[:200]})") from None
    return Quicklook(_encode(_stretch(data, sar)), width, height, ground, gsd, ds.width, ds.height)


def _complex_amplitude(ds: Any, height: int, width: int) -> Any:
    """The square root of the mean ``|z|^2`` of each quicklook pixel of a complex image, read strip by strip."""
    import numpy as np  # noqa: PLC0415
    from rasterio.windows import Window  # noqa: PLC0415

    rows = np.floor(np.arange(height + 1) * ds.height / height).astype(int)
    cols = np.floor(np.arange(width + 1) * ds.width / width).astype(int)
    counts = np.diff(cols)
    out = np.zeros((height, width), dtype="float64")
    for j in range(height):
        power_sum = np.zeros(ds.width, dtype="float64")
        step = max(1, _STRIP_PIXELS // max(1, ds.width))
        for r0 in range(rows[j], rows[j + 1], step):
            r1 = min(rows[j + 1], r0 + step)
            strip = ds.read(1, window=Window(0, r0, ds.width, r1 - r0))
            power_sum += (np.abs(strip.astype("complex128")) ** 2).sum(axis=0)
        per_column = np.add.reduceat(power_sum, cols[:-1]) / counts
        out[j] = np.sqrt(per_column / (rows[j + 1] - rows[j]))
    return np.ma.masked_invalid(out)


def _stretch(data: Any, sar: bool) -> Any:
    """8-bit display values: a 2-98 % stretch over valid pixels (SAR in decibels); nodata black."""
    import numpy as np  # noqa: PLC0415

    values: Any = np.ma.masked_invalid(np.ma.asarray(data, dtype="float64"))
    if sar:
        values = np.ma.masked_invalid(20.0 * np.ma.log10(np.ma.maximum(np.ma.abs(values), 1e-12)))
    valid = values.compressed()
    if valid.size == 0:
        scaled = np.zeros(values.shape, dtype="uint8")
    else:
        lo, hi = np.percentile(valid, [2, 98])
        span = hi - lo if hi > lo else 1.0
        scaled = (np.clip((values.filled(lo) - lo) / span, 0, 1) * 255).round().astype("uint8")
        scaled[np.ma.getmaskarray(values)] = 0
    shape: tuple[int, ...] = scaled.shape
    return scaled[0] if shape[0] == 1 else np.moveaxis(scaled, 0, -1)


def _encode(pixels: Any) -> bytes:
    from PIL import Image  # noqa: PLC0415

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="WEBP", quality=_WEBP_QUALITY, method=6)
    return buffer.getvalue()


def image_files(files: Sequence[tuple[str, str | None]], main: str | None = None) -> tuple[int, ...] | None:
    """Index of the image among a product's files, then the others'; None when there is no image.

    The image is ``main`` when named, else the first ``.tif``/``.tiff`` file.

    Examples
    --------
    >>> image_files([("a.xml", None), ("a.tiff", None)])
    (1, 0)
    """
    suffixes = (".tif", ".tiff")
    names = [p for p, _ in files]
    if main is not None and main in names:
        first = names.index(main)
    else:
        found = [i for i, p in enumerate(names) if p.lower().endswith(suffixes)]
        if not found:
            return None
        first = found[0]
    return (first, *(i for i in range(len(names)) if i != first))
