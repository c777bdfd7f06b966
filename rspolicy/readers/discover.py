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

import collections
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.rpc import RPC

from rspolicy.errors import ProductReadError
from rspolicy.isolation import IsolationError, Lanes, isolation_enabled, run_isolated
from rspolicy.model import Evidence, Fact, ProductEvidence, Withheld
from rspolicy.readers.browse import browse_size
from rspolicy.readers.cbers import is_cbers_root, read_cbers_sidecar
from rspolicy.readers.companions import (
    CompanionKind,
    companion_kind,
    parse_pam,
    parse_rpb,
    parse_rpc_txt,
    parse_world_file,
)
from rspolicy.readers.filename import filename_evidence, product_stem
from rspolicy.readers.geotiff import ExtraImage, GeoreferencingBeside, read_geotiff
from rspolicy.readers.gf3_sar import is_gf3_root, read_gf3_sidecar
from rspolicy.readers.gf_optical import is_gf_optical_root, read_gf_optical_sidecar
from rspolicy.readers.hdf5 import read_hdf5
from rspolicy.readers.hy import is_hy_root, read_hy_sidecar
from rspolicy.readers.package import is_package, opened_package
from rspolicy.readers.tiffstruct import inspect_tiff
from rspolicy.readers.xmlutil import local_name, parse_xml, parsing_once

RASTER_SUFFIXES = (".tif", ".tiff")
HDF5_SUFFIXES = (".h5", ".hdf", ".hdf5", ".he5")
BROWSE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
RPC_SUFFIXES = (".rpb", ".rpc", "_rpc.txt")
PACKAGE_SEPARATOR = "!"

#: GF-3 names carry the polarisation before the product number: every
#: polarisation image shares the one ``.meta.xml`` of the product.
_GF3_NAME = re.compile(r"^(GF3[A-Z]?_.+?_L\d[A-Z]?)_[A-Z]{2,4}_(L\d[A-Z]?\d+)", re.I)

SidecarReader = Callable[[Path, str], list[Evidence]]

#: How deep a walk descends and how many entries it lists before it stops:
#: a folder tree is input like any other and must not make the gate run forever.
MAX_WALK_DEPTH = 64
MAX_WALK_ENTRIES = 1_000_000

#: Control characters (a newline in a file name would forge a line of output or log).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def display_name(path: str | os.PathLike[str]) -> str:
    r"""A path as people and logs see it: undecodable bytes and control characters escaped.

    File names are bytes; a name that is not valid UTF-8 reaches Python with
    surrogate escapes, which no terminal, JSON log or report can carry.

    >>> display_name(os.fsdecode(b"scene\xff.tif"))
    'scene\\xff.tif'
    >>> display_name("a\nb.tif")
    'a\\x0ab.tif'
    """
    text = os.fspath(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def special_file_kind(path: Path) -> str | None:
    """What a path is when it is not a regular file (followed through links), or None.

    The gate never opens a FIFO, a device or a socket: reading one can hang
    forever or never end.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot be examined ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


@dataclass(frozen=True)
class Skipped:
    """A file that is not a product, and why it was passed over."""

    path: str
    reason: str


@dataclass(frozen=True)
class ProductFiles:
    """The files of one product before they are read.

    ``claims`` is evidence given with the files rather than read from them
    (what a STAC Item naming them says): it joins the product's evidence.
    """

    display: str
    main: Path
    sidecars: tuple[Path, ...]
    claims: tuple[Evidence, ...] = ()


def _lower(path: Path) -> str:
    return path.name.lower()


def _is_image(path: Path) -> bool:
    return _lower(path).endswith(RASTER_SUFFIXES + HDF5_SUFFIXES)


def _gf3_key(name: str) -> str | None:
    match = _GF3_NAME.match(name)
    return f"{match.group(1)}_{match.group(2)}".upper() if match else None


def _claims(main: Path, other: Path) -> bool:
    """Whether ``other`` is a companion of the image ``main`` (same folder).

    Companions share the image's stem (``X.xml``, ``X.rpb``, ``X.jpg``,
    ``X.tfw``, ``X.dat``), are named after the whole image name as GDAL's side
    files are (``X.tiff.aux.xml``, ``X.tiff.ovr``, ``X.tiff.msk``), or are a
    GF-3 product's one ``.meta.xml``. Each is then judged by its kind: read as
    evidence, delivered, or withheld.
    """
    name = _lower(other)
    if other == main or _is_image(other):
        return False
    stem = product_stem(main.name).lower()
    if name.startswith(_lower(main) + ".") or name in (f"{stem}_rpc.txt", f"{stem}.aux.xml"):
        return True
    if product_stem(other.name).lower() == stem:
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
        # A FIFO or device named like an image is never opened as one; named like a companion, it is
        # grouped with its image, whose reading then refuses it (hidden evidence blocks).
        for main in (f for f in siblings if _is_image(f) and special_file_kind(f) is None):
            stem = product_stem(main.name).lower()
            candidates = {*index.get(stem, ()), *index.get(f"{stem}_rpc", ()), *index.get(f"{stem}.aux", ()),
                          *index.get(_lower(main), ()), *index.get(f"{_lower(main)}.aux", ()),
                          *index.get(_gf3_key(main.name) or "", ())}
            sidecars = tuple(sorted(f for f in candidates if _claims(main, f)))
            claimed.update(sidecars)
            claimed.add(main)
            products.append(ProductFiles(label(main), main, sidecars))
    skipped = [Skipped(label(f), _skip_reason(f)) for f in sorted(files) if f not in claimed]
    return products, skipped


def _skip_reason(path: Path) -> str:
    special = special_file_kind(path)
    if special is not None:
        return f"{special}: never opened"
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


def read_product(files: ProductFiles, label: Callable[[Path], str], *, lane: int = 0) -> ProductEvidence:
    """Read every file of a product into evidence; failures become problems.

    The reading runs in rspolicy's isolated worker process
    (:mod:`rspolicy.isolation`), on ``lane``: hostile bytes reach GDAL,
    libtiff and HDF5 there, and a hang or a crash ends only this product, as
    a problem that blocks it.
    """
    try:
        return run_isolated(read_product_here, files, _labels(files, label), lane=lane)
    except IsolationError as exc:
        return ProductEvidence(path=files.display, raster=files.main, files=(files.main,), evidence=(),
                               problems=(f"{files.display}: reading the product {exc}; blocked",),
                               labels=(files.display,))


def read_products(products: Sequence[FoundProduct], *, lane: int = 0) -> list[ProductEvidence]:
    """:func:`read_product` for several products in one round trip to the isolated worker.

    A round trip costs about as much as reading a small product, so many
    small products are read a few at a time. Isolation still ends at the
    product: when the shared call fails (a crash, a hang, memory), each
    product is read again on its own, and only the one that fails again is
    blocked.
    """
    if len(products) == 1:
        return [read_product(products[0].files, products[0].label, lane=lane)]
    batch = [(p.files, _labels(p.files, p.label)) for p in products]
    try:
        return run_isolated(_read_products_here, batch, lane=lane)
    except IsolationError:
        return [read_product(p.files, p.label, lane=lane) for p in products]


def _labels(files: ProductFiles, label: Callable[[Path], str]) -> dict[Path, str]:
    """How each file of a product is named for humans (the reader takes names, not the naming function)."""
    return {f: label(f) for f in (files.main, *files.sidecars)}


def _read_products_here(batch: Sequence[tuple[ProductFiles, Mapping[Path, str]]]) -> list[ProductEvidence]:
    return [read_product_here(files, labels) for files, labels in batch]


def _claimed_kind(sidecar: Path) -> CompanionKind:
    """The kind of a companion claimed by its product key rather than its image's stem.

    A GF-3 ``meta.xml`` serves every polarisation's image: an XML file is a
    sidecar candidate, read by the readers like any other; anything else is
    of unknown kind.
    """
    name = _lower(sidecar)
    return CompanionKind.XML_SIDECAR if name.endswith(".xml") and not name.endswith(".aux.xml") \
        else CompanionKind.OTHER


def read_product_here(files: ProductFiles, labels: Mapping[Path, str]) -> ProductEvidence:
    """:func:`read_product` in the calling process (see :func:`_read_product_here`)."""
    with parsing_once():
        product = _read_product_here(files, labels)
    return replace(product, evidence=(*product.evidence, *files.claims)) if files.claims else product


def _read_product_here(files: ProductFiles, labels: Mapping[Path, str]) -> ProductEvidence:
    """:func:`read_product` in the calling process.

    Sidecar evidence comes first so that, where a sidecar and a file name
    both name the satellite, the sidecar's word is the one shown. Only the
    image, recognised sidecars and RPC files may leave with the product;
    every other companion is withheld, and those that carry georeferencing
    or pixels (world files, ``.aux.xml``, ``.ovr``, ``.msk``, browse images)
    are read as evidence first: one that cannot be read blocks the product.
    """
    evidence: list[Evidence] = []
    problems: list[str] = []
    deliver: list[Path] = [files.main]
    withheld: list[Withheld] = []
    rpcs: list[tuple[str, RPC]] = []
    transforms: list[tuple[str, Affine, str | None]] = []
    gcps: list[tuple[str, tuple[GroundControlPoint, ...], str | None]] = []
    extra: list[ExtraImage] = []
    for sidecar in files.sidecars:
        name = labels[sidecar]
        kind = companion_kind(sidecar.name, files.main.name) or _claimed_kind(sidecar)

        def hold(reason: str, sidecar: Path = sidecar, name: str = name) -> None:
            withheld.append(Withheld(sidecar, name, reason))

        try:
            special = special_file_kind(sidecar)
            if special is not None and kind is not CompanionKind.OTHER:
                # A companion of a kind that carries evidence, made unreadable: hiding evidence must not help.
                raise ProductReadError(sidecar, f"{special}: never opened, and as a {kind.value} it would be "
                                                "evidence about the product")
            if special is not None:
                hold(f"{special}: never opened")
            elif kind is CompanionKind.XML_SIDECAR:
                reader = sidecar_reader(sidecar)
                if reader is None:
                    hold(f"XML <{local_name(parse_xml(sidecar).tag)}> is not a sidecar rspolicy understands")
                else:
                    evidence.extend(reader(sidecar, name))
                    deliver.append(sidecar)
            elif kind in (CompanionKind.RPB, CompanionKind.RPC_TXT):
                rpc = parse_rpb(sidecar) if kind is CompanionKind.RPB else parse_rpc_txt(sidecar)
                rpcs.append((name, rpc))
                evidence.append(Evidence(Fact.INFO, "RPC file", name, "file", "parsed by rspolicy; its ground "
                                         "spacing is measured with the image"))
                deliver.append(sidecar)
            elif kind is CompanionKind.WORLD:
                transforms.append((name, parse_world_file(sidecar), None))
                hold("world file: read as evidence, not delivered")
            elif kind is CompanionKind.PAM:
                pam = parse_pam(sidecar)
                if pam.geotransform is not None:
                    transforms.append((name, pam.geotransform, pam.srs_wkt))
                if pam.gcps:
                    gcps.append((name, pam.gcps, pam.gcp_srs_wkt))
                if pam.rpc is not None:
                    rpcs.append((name, pam.rpc))
                hold("GDAL auxiliary file: read as evidence, not delivered")
            elif kind in (CompanionKind.OVERVIEW, CompanionKind.MASK):
                structure = inspect_tiff(sidecar)
                if structure.damage:
                    raise ProductReadError(sidecar, f"damaged image: {structure.damage[0]}")
                extra.extend(ExtraImage(name, image.where, f"external {kind.value}", image.width, image.height)
                             for image in structure.images)
                hold(f"external {kind.value} file: measured, not delivered")
            elif kind is CompanionKind.BROWSE:
                width, height = browse_size(sidecar)
                extra.append(ExtraImage(name, "image", "browse image", width, height))
                hold("browse image: measured, not delivered")
            else:
                hold("not a file rspolicy understands: not delivered")
        except ProductReadError as exc:
            problems.append(f"{name}: {exc.problem}")
            if sidecar in deliver:
                deliver.remove(sidecar)
        except Exception as exc:  # noqa: BLE001 - fail closed: a reader bug blocks the product, never crashes
            problems.append(f"{name}: unexpected error while reading ({type(exc).__name__}: {exc})")
    rebuild: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    try:
        if _lower(files.main).endswith(HDF5_SUFFIXES):
            evidence.extend(read_hdf5(files.main, files.display))
        else:
            beside = GeoreferencingBeside(tuple(rpcs), tuple(transforms), tuple(gcps))
            reading = read_geotiff(files.main, files.display, beside)
            evidence.extend(reading.evidence)
            extra.extend(reading.extra_images)
            rebuild, size = reading.rebuild, (reading.width, reading.height)
    except ProductReadError as exc:
        problems.append(f"{files.display}: {exc.problem}")
    except Exception as exc:  # noqa: BLE001 - fail closed, as above
        problems.append(f"{files.display}: unexpected error while reading ({type(exc).__name__}: {exc})")
    evidence.extend(filename_evidence(display_name(files.main.name), files.display))
    evidence.extend(measured_on_main_grid(evidence, extra, size))
    return ProductEvidence(
        path=files.display,
        raster=files.main,
        files=tuple(deliver),
        evidence=tuple(evidence),
        problems=tuple(problems),
        labels=tuple(labels[f] for f in deliver),
        withheld=tuple(withheld),
        rebuild="; ".join(rebuild) or None,
    )


def measured_on_main_grid(evidence: Sequence[Evidence], extra: Sequence[ExtraImage],
                          size: tuple[int, int] | None) -> list[Evidence]:
    """Ground spacing of images that cover the main image's ground (overviews, masks, browse images).

    Such an image spans the same ground with its own pixel count, so it is as
    many times finer than the product's finest spacing as it has more pixels
    along an axis than the main image.

    >>> main = [Evidence(Fact.GSD, 2.0, "a.tif", "geotransform")]
    >>> [e.value for e in measured_on_main_grid(main, [ExtraImage("a.tif", "IFD 1", "mask", 400, 400)], (100, 100))]
    [0.5]
    """
    out: list[Evidence] = []
    finest = min((float(e.value) for e in evidence if e.fact in (Fact.GSD, Fact.NOMINAL_RESOLUTION)
                  and isinstance(e.value, int | float) and not isinstance(e.value, bool) and e.value > 0),
                 default=None)
    for image in extra:
        field = f"{image.where} ({image.kind}, {image.width} x {image.height})"
        if size is None or finest is None:
            out.append(Evidence(Fact.INFO, "not measured", image.source, field,
                                "no main image grid to measure it against"))
            continue
        ratio = max(image.width / size[0], image.height / size[1])
        if ratio > 1.0:
            out.append(Evidence(Fact.GSD, finest / ratio, image.source, field,
                                f"{ratio:.6g} times as many pixels as the main image over the same ground"))
        else:
            out.append(Evidence(Fact.INFO, round(finest / ratio, 6), image.source, field,
                                "coarser than the main image: measured on its grid"))
    return out


def unreadable(display: str, problem: str, path: Path | None = None) -> ProductEvidence:
    """A product that could not be read at all (blocked by the decision stage)."""
    return ProductEvidence(display, None, (path,) if path else (), (), (f"{display}: {problem}",))


def walk_with_skips(directory: Path) -> tuple[list[Path], list[Skipped]]:
    """Files below a directory (special files included: grouping never opens them), and what was passed over.

    Symbolic links to folders are not followed (a link loop would never end);
    links to regular files are.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    seen = 0
    base_depth = len(directory.parts)
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        here = Path(root)
        if len(here.parts) - base_depth >= MAX_WALK_DEPTH and dirs:
            skipped.extend(Skipped(display_name(here / d), f"folder deeper than {MAX_WALK_DEPTH} levels: not walked")
                           for d in dirs)
            dirs.clear()
        for name in sorted(names):
            seen += 1
            path = here / name
            if seen > MAX_WALK_ENTRIES:
                skipped.append(Skipped(display_name(here), f"more than {MAX_WALK_ENTRIES} files: the rest of this "
                                                           "folder was not walked"))
                dirs.clear()
                break
            # Special files too: one named like a product's companion must reach that product (and block it);
            # grouping never opens one, and passes over the rest with the reason.
            found.append(path)
    return found, skipped


@dataclass(frozen=True)
class FoundProduct:
    """A product found on disk: its files, how to name them, and the folder its outputs mirror.

    Attributes
    ----------
    files
        The image and its companions.
    label
        How a file of it is named for humans (escaped display path).
    base
        The absolute folder outputs mirror (:func:`mirror_root` of every
        named path): outputs are placed at the same path relative to it.
    """

    files: ProductFiles
    label: Callable[[Path], str]
    base: Path


@dataclass(frozen=True)
class FoundPackage:
    """A delivery package found on disk, and the name its output takes relative to OUTDIR.

    ``claims`` is evidence given with the package (what a STAC Item naming it says): it joins
    the evidence of every product inside.
    """

    path: Path
    display: str
    dest: PurePath
    claims: tuple[Evidence, ...] = ()


def mirror_root(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The folder outputs are mirrored from: the deepest folder holding every named path.

    A named folder counts as itself, a named file as its folder. Outputs keep their path
    relative to this folder, so two files of the same name in different
    folders never collide, and one named folder maps straight onto OUTDIR.

    >>> str(mirror_root(["/data/a/x.tif", "/data/b/x.tif"]))
    '/data'
    """
    folders = []
    for raw in paths:
        path = Path(os.path.abspath(raw))
        folders.append(path if path.is_dir() else path.parent)
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


@dataclass(frozen=True)
class _SiblingLabel:
    """How the files of a product found through one named file are shown: relative to how it was named."""

    named: Path
    display: str

    def __call__(self, p: Path) -> str:
        return self.display if p == self.named else display_name(self.named.parent / p.name)


def discover(paths: Iterable[str | os.PathLike[str]]) -> Iterator[FoundProduct | FoundPackage | ProductEvidence
                                                                  | Skipped]:
    """What the named paths hold, before anything is read: the one discovery ``screen`` and ``enforce`` share.

    A path that does not exist or is a special file (FIFO, device, socket)
    comes out as an unreadable product (blocked when decided), never opened.
    Directories are walked (bounded, special files passed over with a
    reason); a file names the product it belongs to. Each product comes out
    once, however many of its files (or folders holding it) are named: an
    image, its sidecar and its RPC file name one product. Outputs mirror the
    named paths below their :func:`mirror_root`.

    Yields
    ------
    FoundProduct, FoundPackage, ProductEvidence or Skipped
        In the order the paths were given; within a directory, products,
        then passed-over files, then packages, each sorted by name.
    """
    named = list(paths)
    root = mirror_root([p for p in named if os.path.lexists(p)])
    seen: set[tuple[int, int] | str] = set()
    folders: dict[Path, _FolderGroups] = {}

    def first_time(path: Path) -> bool:
        try:
            st = os.stat(path)
            key: tuple[int, int] | str = (st.st_dev, st.st_ino)
        except OSError:
            key = os.path.abspath(path)
        if key in seen:
            return False
        seen.add(key)
        return True

    for raw in named:
        path = Path(raw)
        display = display_name(raw)
        if not os.path.lexists(path):
            if first_time(path):
                yield unreadable(display, "no such file or directory")
        elif path.is_dir():
            files, passed_over = walk_with_skips(path)
            packages = [f for f in files if is_package(f)]
            products, skipped = group_files([f for f in files if not is_package(f)], display_name)
            for product in products:
                if first_time(product.main):
                    yield FoundProduct(product, display_name, root)
            yield from skipped
            yield from passed_over
            for package in packages:
                if first_time(package):
                    yield FoundPackage(package, display_name(package), _dest(root, package))
        elif (kind := special_file_kind(path)) is not None:
            if first_time(path):
                yield unreadable(display, f"{kind}: never opened")
        elif is_package(path):
            if first_time(path):
                yield FoundPackage(path, display, _dest(root, path))
        elif _is_stac(path):
            if first_time(path):
                from rspolicy.stac.inputs import stac_inputs  # noqa: PLC0415 - circular: it discovers its assets

                yield from stac_inputs(path, display)
        else:
            for item in _from_single_file(path, display, root, folders):
                if isinstance(item, FoundProduct) and not first_time(item.files.main):
                    continue
                yield item


def _is_stac(path: Path) -> bool:
    from rspolicy.stac.inputs import is_stac_document  # noqa: PLC0415 - circular: it discovers its assets

    return is_stac_document(path)


def _dest(root: Path, package: Path) -> PurePath:
    return PurePath(Path(os.path.abspath(package)).relative_to(root))


def iter_products(paths: Iterable[str | os.PathLike[str]], *, jobs: int = 1) -> Iterator[ProductEvidence | Skipped]:
    """Products (and skipped files) behind the paths a user named.

    Paths may be image files, sidecars (the product they describe is
    screened), directories (walked) or delivery packages. A package's
    members exist on disk, in a private temporary directory, from the moment
    its first product is yielded until the generator moves past its last.

    Parameters
    ----------
    paths
        What to screen.
    jobs
        Products read at once, each in an isolated worker of its own (lanes
        1..jobs); the order of what is yielded does not depend on it. With
        isolation off (``RSPOLICY_ISOLATION=off``) products are read one
        after another in this process.

    Yields
    ------
    ProductEvidence or Skipped
        In the order the paths were given; within a directory or package,
        sorted by name.
    """
    found = list(discover(paths))
    products = sum(isinstance(item, FoundProduct) for item in found)
    parallel = jobs > 1 and isolation_enabled()
    lanes = jobs if parallel else 1
    # A few round trips per lane at least, so that every lane has work; at most MAX_READ_BATCH products per trip.
    size = max(1, min(MAX_READ_BATCH, products // (4 * lanes)))
    units = _batched(found, size)
    if not parallel:
        for unit in units:
            if isinstance(unit, list):
                yield from read_products(unit)
            elif isinstance(unit, FoundPackage):
                yield from _from_package(unit.path, unit.display, unit.claims)
            else:
                yield unit
        return
    yield from _read_ahead(units, jobs)


#: The most products one round trip to an isolated worker reads (see :func:`read_products`).
MAX_READ_BATCH = 16


def _batched(found: Iterable[FoundProduct | FoundPackage | ProductEvidence | Skipped],
             size: int) -> Iterator[list[FoundProduct] | FoundPackage | ProductEvidence | Skipped]:
    """Runs of up to ``size`` consecutive products as lists; everything else as it comes, in order."""
    run: list[FoundProduct] = []
    for item in found:
        if isinstance(item, FoundProduct):
            run.append(item)
            if len(run) < size:
                continue
            yield run
            run = []
        else:
            if run:
                yield run
                run = []
            yield item
    if run:
        yield run


def _read_ahead(units: Iterator[list[FoundProduct] | FoundPackage | ProductEvidence | Skipped],
                jobs: int) -> Iterator[ProductEvidence | Skipped]:
    """Runs of products read ``jobs`` at a time (a few more queued), yielded in discovery order.

    A package's members live only while its generator runs, so a package
    drains what is queued before it and is read in order on lane 0.
    """
    lanes = Lanes(jobs)

    def read(run: list[FoundProduct]) -> list[ProductEvidence]:
        with lanes.borrow() as lane:
            return read_products(run, lane=lane)

    pending: collections.deque[Future[list[ProductEvidence]] | ProductEvidence | Skipped] = collections.deque()

    def oldest() -> Iterator[ProductEvidence | Skipped]:
        head = pending.popleft()
        if isinstance(head, Future):
            yield from head.result()
        else:
            yield head

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="rspolicy-read")
    try:
        for unit in units:
            if isinstance(unit, FoundPackage):
                while pending:
                    yield from oldest()
                yield from _from_package(unit.path, unit.display, unit.claims)
                continue
            pending.append(pool.submit(read, unit) if isinstance(unit, list) else unit)
            # Bounded read-ahead: enough to keep every lane busy while the consumer works on the oldest.
            while len(pending) > 2 * jobs:
                yield from oldest()
        while pending:
            yield from oldest()
    finally:
        # Closed early (an interrupt, a consumer that stops): queued reads are dropped, and the lanes' workers
        # are killed before waiting, so a read stuck on a hostile file does not hold the caller for its limit.
        pool.shutdown(wait=False, cancel_futures=True)
        lanes.shutdown()
        pool.shutdown(wait=True)


def _from_package(path: Path, display: str, claims: tuple[Evidence, ...] = ()) -> Iterator[ProductEvidence | Skipped]:
    try:
        with opened_package(path) as (root, members):
            def label(p: Path) -> str:
                return f"{display}{PACKAGE_SEPARATOR}{display_name(p.relative_to(root).as_posix())}"

            nested = [m.local for m in members if is_package(m.local)]
            for inner in nested:
                yield Skipped(label(inner), "package inside a package: not opened (deliver packages flat)")
            products, skipped = group_files([m.local for m in members if not is_package(m.local)], label)
            if not products:
                yield unreadable(display, "package holds no product image")
            for product in products:
                yield read_product(replace(product, claims=claims), label)
            yield from skipped
    except ProductReadError as exc:
        yield unreadable(display, exc.problem, path)


@dataclass(frozen=True)
class _FolderGroups:
    """The products of one folder, indexed by the files that name them (grouped once per folder)."""

    by_image: Mapping[Path, ProductFiles]
    by_sidecar: Mapping[Path, tuple[ProductFiles, ...]]

    @classmethod
    def of(cls, folder: Path, named: Path) -> _FolderGroups:
        siblings = [f for f in folder.iterdir() if special_file_kind(f) != "a directory"] if folder.is_dir() \
            else [named]
        products, _ = group_files(siblings, display_name)
        by_sidecar: dict[Path, list[ProductFiles]] = {}
        for product in products:
            for sidecar in product.sidecars:
                by_sidecar.setdefault(sidecar, []).append(product)
        return cls({p.main: p for p in products}, {k: tuple(v) for k, v in by_sidecar.items()})


def _from_single_file(path: Path, display: str, root: Path,
                      folders: dict[Path, _FolderGroups]) -> Iterator[FoundProduct | ProductEvidence]:
    """The product a single named file belongs to (itself, or the image it describes).

    ``folders`` caches each folder's grouping, so naming every file of a
    folder of thousands of products one by one stays linear.
    """
    groups = folders.get(path.parent)
    if groups is None:
        groups = folders[path.parent] = _FolderGroups.of(path.parent, path)
    label = _SiblingLabel(path, display)
    if _is_image(path):
        owners: tuple[ProductFiles, ...] = (groups.by_image[path],) if path in groups.by_image else ()
    else:
        owners = groups.by_sidecar.get(path, ())
    for owner in owners:
        yield FoundProduct(replace(owner, display=label(owner.main)), label, root)
    if not owners:
        yield unreadable(display, f"not a product: {_skip_reason(path)}", path)
