"""Discovery: from the paths a user names to products and their evidence.

A product is one image file (GeoTIFF or HDF5) with the sidecars that share
its name (``.xml``, ``.rpb``, GF-3's ``.meta.xml`` shared by every
polarisation). Directories are walked; delivery packages are unpacked into a
private temporary directory that lives only while their products are being
handled. Files that are not products (order files, browse images, GDAL
``.aux.xml``) are reported as skipped with a reason, never silently.

Nothing here raises for a bad product: an unreadable file becomes a product
with a *problem*, which the decision stage blocks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rspolicy.errors import ProductReadError
from rspolicy.model import Evidence, Fact, ProductEvidence
from rspolicy.readers.cbers import is_cbers_root, read_cbers_sidecar
from rspolicy.readers.filename import filename_evidence, product_stem
from rspolicy.readers.geotiff import read_raster
from rspolicy.readers.gf3_sar import is_gf3_root, read_gf3_sidecar
from rspolicy.readers.gf_optical import is_gf_optical_root, read_gf_optical_sidecar
from rspolicy.readers.hdf5 import read_hdf5
from rspolicy.readers.hy import is_hy_root, read_hy_sidecar
from rspolicy.readers.package import is_package, opened_package
from rspolicy.readers.xmlutil import local_name, parse_xml

RASTER_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".he5")
BROWSE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
RPC_SUFFIXES = (".rpb", ".rpc", "_rpc.txt")
PACKAGE_SEPARATOR = "!"

#: GF-3 names carry the polarisation before the product number: every
#: polarisation image shares the one ``.meta.xml`` of the product.
_GF3_NAME = re.compile(r"^(GF3[A-Z]?_.+?_L\d[A-Z]?)_[A-Z]{2,4}_(L\d[A-Z]?\d+)", re.I)

SidecarReader = Callable[[Path, str], list[Evidence]]


@dataclass(frozen=True)
class Skipped:
    """A file that is not a product, and why it was passed over."""

    path: str
    reason: str


@dataclass(frozen=True)
class ProductFiles:
    """The files of one product before they are read."""

    display: str
    main: Path
    sidecars: tuple[Path, ...]


def _lower(path: Path) -> str:
    return path.name.lower()


def _is_image(path: Path) -> bool:
    return _lower(path).endswith(RASTER_SUFFIXES + HDF5_SUFFIXES)


def _gf3_key(name: str) -> str | None:
    match = _GF3_NAME.match(name)
    return f"{match.group(1)}_{match.group(2)}".upper() if match else None


def _claims(main: Path, other: Path) -> bool:
    """Whether ``other`` is a sidecar of the image ``main`` (same folder)."""
    name = _lower(other)
    if other == main or _is_image(other) or name.endswith(BROWSE_SUFFIXES) or name.endswith(".aux.xml"):
        return False
    if product_stem(other.name).lower() == product_stem(main.name).lower():
        return True
    if name == f"{product_stem(main.name).lower()}_rpc.txt":
        return True
    key = _gf3_key(main.name)
    return key is not None and _gf3_key(other.name) == key


def group_files(files: Sequence[Path], label: Callable[[Path], str]) -> tuple[list[ProductFiles], list[Skipped]]:
    """Group files into products and skipped files.

    Parameters
    ----------
    files
        Local files (a directory listing or an unpacked package).
    label
        How to name a file for humans (its display path).
    """
    by_dir: dict[Path, list[Path]] = {}
    for f in sorted(files):
        by_dir.setdefault(f.parent, []).append(f)
    products: list[ProductFiles] = []
    claimed: set[Path] = set()
    for siblings in by_dir.values():
        # Index by name so that a folder of thousands of scenes groups in linear time.
        index: dict[str, list[Path]] = {}
        for f in siblings:
            index.setdefault(product_stem(f.name).lower(), []).append(f)
            key = _gf3_key(f.name)
            if key:
                index.setdefault(key, []).append(f)
        for main in (f for f in siblings if _is_image(f)):
            stem = product_stem(main.name).lower()
            candidates = {*index.get(stem, ()), *index.get(f"{stem}_rpc", ()),
                          *index.get(_gf3_key(main.name) or "", ())}
            sidecars = tuple(sorted(f for f in candidates if _claims(main, f)))
            claimed.update(sidecars)
            claimed.add(main)
            products.append(ProductFiles(label(main), main, sidecars))
    skipped = [Skipped(label(f), _skip_reason(f)) for f in sorted(files) if f not in claimed]
    return products, skipped


def _skip_reason(path: Path) -> str:
    name = _lower(path)
    if name.endswith(".aux.xml"):
        return "GDAL auxiliary file, not a product"
    if name.endswith(BROWSE_SUFFIXES):
        return "browse or thumbnail image, not a product (not delivered)"
    if name.endswith(RPC_SUFFIXES):
        return "RPC file with no image beside it"
    if name.endswith(".xml"):
        try:
            tag = local_name(parse_xml(path).tag)
        except ProductReadError as exc:
            return f"unreadable XML with no image beside it ({exc.problem})"
        if tag == "InterfaceFile":
            return "processing-order file (<InterfaceFile>), not a product"
        if tag in ("ProductMetaData", "product", "prdf"):
            return f"product sidecar <{tag}> with no image beside it (no pixels to release)"
        return f"XML <{tag}> with no image beside it, not a product"
    return "not a product file"


def sidecar_reader(path: Path) -> SidecarReader | None:
    """The reader for an XML sidecar, chosen by its root element."""
    root = parse_xml(path)
    if is_gf3_root(root):
        return read_gf3_sidecar
    if is_hy_root(root):
        return read_hy_sidecar
    if is_gf_optical_root(root):
        return read_gf_optical_sidecar
    if is_cbers_root(root):
        return read_cbers_sidecar
    return None


def read_product(files: ProductFiles, label: Callable[[Path], str]) -> ProductEvidence:
    """Read every file of a product into evidence; failures become problems.

    Sidecar evidence comes first so that, where a sidecar and a file name
    both name the satellite, the sidecar's word is the one shown.
    """
    evidence: list[Evidence] = []
    problems: list[str] = []
    for sidecar in files.sidecars:
        name = _lower(sidecar)
        try:
            if name.endswith(".xml"):
                reader = sidecar_reader(sidecar)
                if reader is None:
                    evidence.append(Evidence(Fact.INFO, "unrecognised XML", label(sidecar), "root element",
                                             "not a known sidecar format; carried with the product"))
                else:
                    evidence.extend(reader(sidecar, label(sidecar)))
            elif name.endswith(RPC_SUFFIXES):
                evidence.append(Evidence(Fact.INFO, "RPC sidecar", label(sidecar), "file",
                                         "read by GDAL with the image"))
        except ProductReadError as exc:
            problems.append(f"{label(sidecar)}: {exc.problem}")
        except Exception as exc:  # noqa: BLE001 - fail closed: a reader bug blocks the product, never crashes
            problems.append(f"{label(sidecar)}: unexpected error while reading ({type(exc).__name__}: {exc})")
    try:
        if _lower(files.main).endswith(HDF5_SUFFIXES):
            evidence.extend(read_hdf5(files.main, files.display))
        else:
            evidence.extend(read_raster(files.main, files.display))
    except ProductReadError as exc:
        problems.append(f"{files.display}: {exc.problem}")
    except Exception as exc:  # noqa: BLE001 - fail closed, as above
        problems.append(f"{files.display}: unexpected error while reading ({type(exc).__name__}: {exc})")
    evidence.extend(filename_evidence(files.main.name, files.display))
    return ProductEvidence(
        path=files.display,
        raster=files.main,
        files=(files.main, *files.sidecars),
        evidence=tuple(evidence),
        problems=tuple(problems),
        labels=(files.display, *(label(s) for s in files.sidecars)),
    )


def unreadable(display: str, problem: str, path: Path | None = None) -> ProductEvidence:
    """A product that could not be read at all (blocked by the decision stage)."""
    return ProductEvidence(display, None, (path,) if path else (), (), (f"{display}: {problem}",))


def walk(directory: Path) -> list[Path]:
    """Every file below a directory, sorted, folders in name order."""
    found: list[Path] = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        found.extend(Path(root) / n for n in sorted(names))
    return found


def iter_products(paths: Iterable[str | os.PathLike[str]]) -> Iterator[ProductEvidence | Skipped]:
    """Products (and skipped files) behind the paths a user named.

    Paths may be image files, sidecars (the product they describe is
    screened), directories (walked) or delivery packages. A package's
    members exist on disk, in a private temporary directory, from the moment
    its first product is yielded until the generator moves past its last.

    Yields
    ------
    ProductEvidence or Skipped
        In the order the paths were given; within a directory or package,
        sorted by name.
    """
    for raw in paths:
        path = Path(raw)
        display = os.fspath(raw)
        if not path.exists():
            yield unreadable(display, "no such file or directory")
        elif path.is_dir():
            yield from _from_listing(walk(path), os.fspath)
        elif is_package(path):
            yield from _from_package(path, display)
        else:
            yield from from_single_file(path, display)


def _from_listing(files: Sequence[Path], label: Callable[[Path], str]) -> Iterator[ProductEvidence | Skipped]:
    packages = [f for f in files if is_package(f)]
    products, skipped = group_files([f for f in files if not is_package(f)], label)
    for product in products:
        yield read_product(product, label)
    yield from skipped
    for package in packages:
        yield from _from_package(package, label(package))


def _from_package(path: Path, display: str) -> Iterator[ProductEvidence | Skipped]:
    try:
        with opened_package(path) as (root, members):
            def label(p: Path) -> str:
                return f"{display}{PACKAGE_SEPARATOR}{p.relative_to(root).as_posix()}"

            nested = [m.local for m in members if is_package(m.local)]
            for inner in nested:
                yield Skipped(label(inner), "package inside a package: not opened (deliver packages flat)")
            products, skipped = group_files([m.local for m in members if not is_package(m.local)], label)
            if not products:
                yield unreadable(display, "package holds no product image")
            for product in products:
                yield read_product(product, label)
            yield from skipped
    except ProductReadError as exc:
        yield unreadable(display, exc.problem, path)


def from_single_file(path: Path, display: str) -> Iterator[ProductEvidence | Skipped]:
    """The product a single named file belongs to (itself, or the image it describes)."""
    siblings = [f for f in path.parent.iterdir() if f.is_file()] if path.parent.is_dir() else [path]
    base = path.parent

    def label(p: Path) -> str:
        return display if p == path else os.fspath(Path(display).parent / p.relative_to(base))

    products, _ = group_files(siblings, label)
    if _is_image(path):
        owner = next(p for p in products if p.main == path)
        yield read_product(owner, label)
        return
    owners = [p for p in products if path in p.sidecars]
    if owners:
        for owner in owners:
            yield read_product(owner, label)
        return
    yield unreadable(display, f"not a product: {_skip_reason(path)}", path)
