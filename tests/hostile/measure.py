"""An independent leak checker: measures what was released without rspolicy's readers.

Every file under OUTDIR is opened here with tifffile (every IFD and SubIFD),
tarfile (packages are looked into), h5py (every dataset) or a header parser
(JPEG, PNG); the ground spacing of each image is the case's TRUE extent
divided by the image's size, so a gate that mis-measured a product cannot
mislead this check.
"""

from __future__ import annotations

import io
import math
import os
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import tifffile

from tests.hostile.corpus import Case, snapshot

#: A value within this relative distance of the limit counts as the limit (as the policy does).
TOLERANCE = 1e-6


@dataclass(frozen=True)
class ReleasedImage:
    """One image found in a released file: where, what kind, and its size in pixels."""

    file: str
    kind: str
    width: int
    height: int


@dataclass(frozen=True)
class ReleasedFile:
    """One released file (a package member is named ``package!member``) and its bytes."""

    name: str
    data: bytes


def released_files(outdir: Path) -> list[ReleasedFile]:
    """Every regular file under ``outdir`` (symlinks are not followed) and every member of every package."""
    found: list[ReleasedFile] = []
    if not outdir.is_dir():
        return found
    for dirpath, _dirnames, filenames in os.walk(outdir, followlinks=False):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            label = str(path.relative_to(outdir))
            found.append(ReleasedFile(label, data))
            found.extend(_members(label, data))
    return found


def _members(label: str, data: bytes) -> list[ReleasedFile]:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            out = []
            for member in tar.getmembers():
                if member.isfile():
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        out.append(ReleasedFile(f"{label}!{member.name}", extracted.read()))
            return out
    except (tarfile.TarError, EOFError, OSError, ValueError):
        return []


def images_in(name: str, data: bytes) -> Iterator[ReleasedImage]:
    """Every image a file's bytes hold: TIFF IFDs and SubIFDs, HDF5 datasets, JPEG and PNG frames."""
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        yield from _tiff_images(name, data)
    elif data[:8] == b"\x89HDF\r\n\x1a\n":
        yield from _hdf5_images(name, data)
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        yield ReleasedImage(name, "png", width, height)
    elif data[:2] == b"\xff\xd8":
        size = _jpeg_size(data)
        if size is not None:
            yield ReleasedImage(name, "jpeg", *size)


def _tiff_images(name: str, data: bytes) -> Iterator[ReleasedImage]:
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            pending = list(tif.pages)
            seen = 0
            while pending and seen < 10_000:
                page = pending.pop()
                seen += 1
                if not isinstance(page, tifffile.TiffPage):
                    continue
                yield ReleasedImage(name, f"tiff ifd@{page.offset}", int(page.imagewidth), int(page.imagelength))
                for offset in page.subifds or ():
                    tif.filehandle.seek(offset)
                    pending.append(tifffile.TiffPage(tif, index=0))
    except Exception as exc:  # noqa: BLE001 - a released TIFF we cannot walk is itself a finding
        yield ReleasedImage(name, f"unreadable tiff ({type(exc).__name__})", 0, 0)


def _hdf5_images(name: str, data: bytes) -> Iterator[ReleasedImage]:
    found: list[ReleasedImage] = []

    def visit(path: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and len(obj.shape) >= 2:
            found.append(ReleasedImage(f"{name}:{path}", "hdf5", int(obj.shape[-1]), int(obj.shape[-2])))

    try:
        with h5py.File(io.BytesIO(data), "r") as h5:
            h5.visititems(visit)
    except Exception as exc:  # noqa: BLE001 - an unreadable released HDF5 is a finding
        found.append(ReleasedImage(name, f"unreadable hdf5 ({type(exc).__name__})", 0, 0))
    yield from found


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the first SOF marker."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def finer_than(extent_m: tuple[float, float], size: tuple[int, int], limit_m: float) -> bool:
    """Whether an image of ``size`` pixels over ``extent_m`` holds pixels finer than ``limit_m``.

    A grid of pixel size P covers an extent E with ceil(E / P) pixels, the
    last one partial (as GDAL's ``-tr`` and rspolicy's degrader write it): so
    an image is finer than the limit exactly when it has more pixels along an
    axis than ceil(E / limit). Dividing E by the pixel count would call a
    correct 0.5 m grid with a partial last pixel "0.497 m".

    >>> finer_than((100.2, 100.0), (201, 200), 0.5), finer_than((100.0, 100.0), (201, 200), 0.5)
    (False, True)
    """
    return any(count > math.ceil(extent / limit_m - TOLERANCE)
               for extent, count in zip(extent_m, size, strict=True))


def released_images(outdir: Path) -> list[ReleasedImage]:
    """Every image in every released file under ``outdir``, packages looked into."""
    return [image for f in released_files(outdir) for image in images_in(f.name, f.data)]


def leaks(case: Case, outdir: Path) -> list[str]:
    """Everything that should not have left, or should not exist, after enforcing ``case`` into ``outdir``.

    Returns
    -------
    list[str]
        One line per finding: an image finer than the limit (measured from
        the case's true extent), a poison marker in released bytes, a name
        that must never be released, a changed or new file outside OUTDIR,
        a ``*.part`` file or a stage folder.
    """
    found: list[str] = []
    files = released_files(outdir)
    for f in files:
        for image in images_in(f.name, f.data):
            if image.width <= 0 or image.height <= 0:
                found.append(f"{image.file}: {image.kind}")
                continue
            if case.extent_m is None:
                found.append(f"{image.file}: an image was released from a case with no usable ground extent")
                continue
            if finer_than(case.extent_m, (image.width, image.height), case.limit_m):
                gsd = min(case.extent_m[0] / image.width, case.extent_m[1] / image.height)
                found.append(f"{image.file}: {image.kind} {image.width}x{image.height} over "
                             f"{case.extent_m[0]:g} x {case.extent_m[1]:g} m is {gsd:.3g} m, finer than "
                             f"{case.limit_m:g} m")
        for marker in case.poison:
            if marker in f.data:
                found.append(f"{f.name}: holds the poison marker {marker.decode(errors='replace')}")
        base = f.name.rsplit("!", 1)[-1]
        for suffix in case.never_released:
            if base.lower().endswith(suffix.lower()):
                found.append(f"{f.name}: a {suffix} file must never be released")
    now = snapshot(case.folder, outdir)
    for rel in sorted(set(now) | set(case.baseline)):
        if rel not in case.baseline:
            found.append(f"{rel}: appeared outside OUTDIR")
        elif rel not in now:
            found.append(f"{rel}: disappeared outside OUTDIR")
        elif now[rel] != case.baseline[rel]:
            found.append(f"{rel}: changed outside OUTDIR")
    found += leftovers(outdir)
    return found


def leftovers(outdir: Path) -> list[str]:
    """``*.part`` files and ``.rspolicy-stage-*`` folders left in ``outdir``."""
    out: list[str] = []
    if not outdir.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(outdir, followlinks=False):
        for name in [*dirnames, *filenames]:
            if name.endswith(".part") or name.startswith(".rspolicy-stage-"):
                out.append(f"{Path(dirpath, name).relative_to(outdir)}: left behind")
    return out


@dataclass(frozen=True)
class Run:
    """What one command did: exit status, output streams, and the JSON decisions it printed."""

    exit_code: int | None
    stdout: str
    stderr: str
    decisions: tuple[dict[str, object], ...]
    timed_out: bool = False


def parse_decisions(stdout: str) -> tuple[dict[str, object], ...]:
    """The JSON objects with an ``action`` printed one per line."""
    import json

    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and "action" in obj:
                out.append(obj)
    return tuple(out)


def run_subprocess(args: list[str], timeout: float = 60.0) -> Run:
    """Run ``python -m rspolicy ARGS`` with a timeout (a hang is a finding, not a stuck suite)."""
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-m", "rspolicy", *args], capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode("utf-8", "replace")
        return Run(None, out, (exc.stderr or b"").decode("utf-8", "replace"), parse_decisions(out), True)
    out = proc.stdout.decode("utf-8", "replace")
    return Run(proc.returncode, out, proc.stderr.decode("utf-8", "replace"), parse_decisions(out))


def enforce_args(case: Case, log: Path) -> list[str]:
    """The ``enforce`` command line for a case."""
    return ["enforce", *(os.fsdecode(p) for p in case.inputs), "-o", str(case.output_dir()), "--log", str(log),
            "--json", *case.extra_args]


def screen_args(case: Case) -> list[str]:
    """The ``screen`` command line for a case."""
    return ["screen", *(os.fsdecode(p) for p in case.inputs), "--json", *case.extra_args]


def log_records(log: Path) -> list[dict[str, object]]:
    """The records of an audit log (torn or unparsable lines skipped; ``verify`` judges those)."""
    import json

    if not log.is_file():
        return []
    records = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            records.append(obj)
    return records


def _as_logged(path: str) -> str:
    r"""A path as a JSON log can hold it: bytes that are not UTF-8 written as ``\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def unrecorded_releases(outdir: Path, log: Path) -> list[str]:
    """Released files (top level of OUTDIR walk) no log record names as an output."""
    recorded: set[str] = set()
    for record in log_records(log):
        output = record.get("output")
        if isinstance(output, dict):
            for f in output.get("files", []) or []:
                if isinstance(f, dict) and isinstance(f.get("path"), str):
                    # A package member is recorded as ``package!member``: the package itself was released.
                    recorded.add(_as_logged(os.path.realpath(f["path"].split("!", 1)[0])))
    missing = []
    if outdir.is_dir():
        for dirpath, _dirs, names in os.walk(outdir, followlinks=False):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink() and _as_logged(os.path.realpath(path)) not in recorded:
                    missing.append(f"{path.relative_to(outdir)}: released with no record in the log")
    return missing
