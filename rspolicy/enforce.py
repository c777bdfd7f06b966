"""Enforcement: release, degrade or refuse each product according to its decision.

``enforce`` is the library call behind ``rspolicy enforce``. For each product:

* **allow**: the product's files are copied unchanged (an image that cannot
  leave byte for byte is rebuilt pixel-exact by rspolicy's writer); files
  withheld by discovery never leave;
* **resample**: the image is degraded (:mod:`rspolicy.degrade`), its sidecars
  rewritten for the new grid (:mod:`rspolicy.sidecars`), its RPCs rescaled;
* **block**: nothing is written.

Every product is staged in a private folder inside the output directory and
screened again with the same policy (told the class that was decided) before
it is moved into place. A product that would not be allowed as it is (a bug in
a writer, a stale sidecar) is deleted and blocked: nothing finer than the
limit leaves.

Release order: once the staged files have passed their re-screen and are
hashed and flushed to disk, the audit record (with the final paths, sizes and
digests) is written first, and only then are the files renamed into place; a
record that cannot be written stops the run with nothing placed. A kill
between the two leaves a record whose files are absent; the next run with the
same log reconciles it (:func:`rspolicy.records.pending_releases`).

Writes stay inside the output directory: it is resolved once, and every
sub-folder is opened relative to it without following symbolic links, so a
link planted inside it cannot redirect an output. Inputs are never modified.
Delivery packages come out as packages holding the released and degraded
members only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import Any, Literal

from rasterio.rpc import RPC

import rspolicy
from rspolicy.cog import write_cog
from rspolicy.degrade import DegradePlan, degrade_raster, plan_degrade, rebuild_raster
from rspolicy.errors import (
    OutputError,
    PolicyError,
    ProductReadError,
    ResampleError,
    RSPolicyError,
    UnsupportedProductError,
)
from rspolicy.georef import rpb_text
from rspolicy.isolation import IsolationError, Lanes, Limits, isolation_enabled, run_isolated
from rspolicy.masking import raster_pixel_mask
from rspolicy.model import Action, Decision, Evidence, Fact, ProductClass, ProductEvidence, Request, Strength
from rspolicy.policy import Policy
from rspolicy.readers.companions import CompanionKind, companion_kind, parse_pam, parse_rpb, parse_rpc_txt
from rspolicy.readers.discover import (
    HDF5_SUFFIXES,
    PACKAGE_SEPARATOR,
    FoundPackage,
    FoundProduct,
    Skipped,
    discover,
    display_name,
    group_files,
    read_product,
    unreadable,
)
from rspolicy.readers.filename import product_stem
from rspolicy.readers.geotiff import CLASS_TAG
from rspolicy.readers.package import is_package, opened_package, write_package
from rspolicy.records import BatchHistory, PriorDecision, sha256_file
from rspolicy.results import FileDigest, ProductResult, Result
from rspolicy.screen import decide
from rspolicy.sidecars import GridChange, rewrite_sidecar, stamp_obligations

OutputFormat = Literal["gtiff", "cog"]
STAGE_PREFIX = ".rspolicy-stage-"
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class EnforceOptions:
    """How ``enforce`` writes.

    Attributes
    ----------
    outdir
        Where released products go (created if missing, then resolved once).
    policy
        The policy.
    output_format
        ``gtiff`` or ``cog`` (Cloud Optimized GeoTIFF) for degraded images.
    force
        Redo products an earlier run completed, and replace existing outputs;
        otherwise a completed product is skipped, and an output that is
        already there (and not recorded as this batch's) fails the product.
    threads
        Threads inside one product (default: all cores).
    jobs
        Products processed at once, each in a worker process (default 1).
    creation_options
        GDAL creation options for degraded images (``--co``), over the
        defaults (the source's compression kept).
    resume_scope
        What else makes a rerun "the same command" (recipient, purpose):
        part of every product's batch key.
    product_seconds
        Wall-clock limit for one product in its worker process (reading,
        deciding, degrading, re-screening); past it the worker is killed and
        the product fails.
    request
        Recipient, purpose, approval and release time every product is
        decided for (and re-screened for).
    stac
        Write a STAC Item beside every released product
        (:mod:`rspolicy.stac`); it leaves with the product and is recorded
        among its outputs.
    """

    outdir: Path
    policy: Policy
    output_format: OutputFormat = "gtiff"
    force: bool = False
    threads: int | None = None
    jobs: int = 1
    creation_options: Mapping[str, str] = field(default_factory=dict)
    resume_scope: tuple[str, ...] = ()
    product_seconds: float = 6 * 3600.0
    request: Request = field(default_factory=Request)
    stac: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to one product.

    Attributes
    ----------
    decision
        The final decision (a resample can end blocked when the output does
        not pass its re-screen); None for a skipped product and for one
        whose worker died before deciding.
    outputs
        Files released: absolute final paths (inside a package:
        ``package!member``, followed by the package file itself), sizes and
        sha256 digests.
    inputs
        The product's files as read, labelled as in the decision, hashed
        while the product was processed (empty when nothing was processed).
    output_gsd_m
        The ground resolution of what was written (the re-screen's finding).
    notes
        What else happened (sidecars dropped, files withheld, image rebuilt).
    failure
        Why rspolicy could not complete the product (nothing was released),
        or None.
    prior
        For a skipped product: the earlier run's decision.
    path
        The product's display path when there is no decision.
    key, member, members
        The product's batch key (for resuming), its name inside a package,
        and how many products that package held.
    bytes_in, seconds
        Size of its inputs, and time spent on it.
    masked_fraction
        For a masked product: the share of its pixels set to nodata.
    """

    decision: Decision | None
    outputs: tuple[FileDigest, ...] = ()
    output_gsd_m: float | None = None
    notes: tuple[str, ...] = ()
    inputs: tuple[FileDigest, ...] = ()
    failure: str | None = None
    prior: PriorDecision | None = None
    path: str = ""
    key: str = ""
    member: str = ""
    members: int = 1
    bytes_in: int = 0
    seconds: float = 0.0
    masked_fraction: float | None = None

    @property
    def result(self) -> Result:
        """How the product ended."""
        if self.prior is not None:
            return Result.SKIPPED
        if self.failure is not None or self.decision is None:
            return Result.FAILED
        return _RESULTS[self.decision.action]

    @property
    def display(self) -> str:
        """The product's display path."""
        return self.decision.path if self.decision is not None else self.path

    @property
    def reason(self) -> str:
        """The reason that decided (a failure's cause; for a skipped product, the earlier decision's)."""
        if self.prior is not None:
            return f"completed by an earlier run (decision {self.prior.decision_id}): {self.prior.why}"
        if self.failure is not None:
            return self.failure
        return self.decision.why if self.decision is not None else ""

    @property
    def batch(self) -> dict[str, str | int]:
        """The ``batch`` entry of its audit record."""
        entry: dict[str, str | int] = {"key": self.key} if self.key else {}
        if self.key and self.member:
            entry.update(member=self.member, members=self.members)
        return entry

    def to_result(self) -> ProductResult:
        """The product's line in reports and progress displays."""
        d, p = self.decision, self.prior
        if p is not None:
            return ProductResult(self.display, self.result, self.reason, p.decision_id, p.product_class, None,
                                 p.gsd_m, p.target_gsd_m, p.output_gsd_m,
                                 tuple(FileDigest(path, size, sha) for path, size, sha in p.outputs),
                                 self.bytes_in, self.seconds)
        return ProductResult(self.display, self.result, self.reason,
                             d.decision_id if d is not None else None,
                             d.product_class.value if d is not None else None,
                             d.satellite if d is not None else None,
                             d.gsd_m if d is not None else None, d.target_gsd_m if d is not None else None,
                             self.output_gsd_m, self.outputs, self.bytes_in, self.seconds)


#: A decision never carries REFER (a referral blocks, or is approved and decided by the other rules);
#: were one to, it would not leave.
_RESULTS = {Action.ALLOW: Result.RELEASED, Action.RESAMPLE: Result.DEGRADED, Action.MASK: Result.DEGRADED,
            Action.REFER: Result.BLOCKED, Action.BLOCK: Result.BLOCKED}


class _FatalError(Exception):
    """A failure after the record was written: the run stops (never turned into a block)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _blocked(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(decision, action=Action.BLOCK, target_gsd_m=None, mask_zones=(),
                               reasons=(*decision.reasons, reason), deciding_reason=reason)


class OutputFolder:
    """The output directory, resolved once; every write below it refuses symbolic links.

    Parameters
    ----------
    path
        The directory the user chose (created with its parents if missing; a
        link the user named is followed once, here).

    Raises
    ------
    OutputError
        When it cannot be created or opened.
    """

    def __init__(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
            self.root = path.resolve(strict=True)
            self._fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create or open the output folder "
                              f"({exc.strerror or exc})") from None

    def close(self) -> None:
        """Release the folder's descriptor."""
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def final(self, rel: PurePath) -> Path:
        """The absolute path an output relative to the folder gets."""
        return self.root / rel

    @contextmanager
    def folder(self, rel: PurePath, *, create: bool) -> Iterator[int]:
        """A descriptor of the sub-folder ``rel``, each component opened without following links.

        Raises
        ------
        OutputError
            A component is a symbolic link, not a folder, or ``..``.
        FileNotFoundError
            A component is missing and ``create`` is False.
        """
        opened: list[int] = []
        fd = self._fd
        try:
            for depth, name in enumerate(rel.parts):
                if name in ("", ".", "..") or "/" in name:
                    raise OutputError(f"{self.root / rel}: output path component {name!r} is not allowed")
                try:
                    sub = os.open(name, _FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                    sub = self._open_component(name, fd, rel, depth)
                except OSError as exc:
                    raise self._refused(rel, depth, exc) from None
                opened.append(sub)
                fd = sub
            yield fd
        finally:
            for sub in opened:
                os.close(sub)

    def _open_component(self, name: str, fd: int, rel: PurePath, depth: int) -> int:
        try:
            return os.open(name, _FOLDER_FLAGS, dir_fd=fd)
        except OSError as exc:
            raise self._refused(rel, depth, exc) from None

    def _refused(self, rel: PurePath, depth: int, exc: OSError) -> OutputError:
        where = self.root.joinpath(*rel.parts[:depth + 1])
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return OutputError(f"{where}: is a symbolic link or not a folder; rspolicy does not write through it")
        return OutputError(f"{where}: cannot open the output folder ({exc.strerror or exc})")

    def lexists(self, rel: PurePath) -> bool:
        """Whether anything (a link included, never followed) is at ``rel``."""
        try:
            with self.folder(rel.parent, create=False) as fd:
                os.stat(rel.name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def place(self, src: Path, rel: PurePath) -> None:
        """Rename ``src`` (in a stage of this folder) to ``rel``; a link at ``rel`` is replaced, not followed."""
        with self.folder(rel.parent, create=True) as fd:
            os.replace(src, rel.name, dst_dir_fd=fd)
            # The rename is durable before the run moves on (some file systems cannot sync a folder).
            with contextlib.suppress(OSError):
                os.fsync(fd)

    @contextmanager
    def stage(self) -> Iterator[Path]:
        """A private staging folder directly inside the output folder, removed afterwards."""
        # The pid in the name tells a later run whether the stage's owner is still running.
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=self.root))
        try:
            yield stage
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def remove_stale_stages(self) -> list[str]:
        """Remove staging folders left behind by runs that are no longer running (killed).

        Returns
        -------
        list of str
            The names removed.
        """
        removed = []
        with os.scandir(self._fd) as entries:
            for entry in entries:
                if not entry.name.startswith(STAGE_PREFIX) or not entry.is_dir(follow_symlinks=False):
                    continue
                owner = entry.name[len(STAGE_PREFIX):].split("-", 1)[0]
                if owner.isdigit() and _running(int(owner)):
                    continue  # another run writing into the same folder
                shutil.rmtree(self.root / entry.name, ignore_errors=True)
                removed.append(entry.name)
        return removed


def other_runs(outdir: Path) -> list[int]:
    """Process ids of other ``enforce`` runs staging into ``outdir`` right now.

    While a run has recorded a release it has not finished, its stage folder
    exists; reconciling then would wrongly declare that release failed.
    """
    try:
        names = os.listdir(outdir)
    except OSError:
        return []
    pids = {int(owner) for owner in (n[len(STAGE_PREFIX):].split("-", 1)[0] for n in names
                                     if n.startswith(STAGE_PREFIX)) if owner.isdigit()}
    return sorted(pid for pid in pids if pid != os.getpid() and _running(pid))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _provenance(decision: Decision, plan: DegradePlan) -> dict[str, str]:
    return {
        "RSPOLICY_SOURCE_GSD_M": f"{decision.gsd_m!r}",
        "RSPOLICY_TARGET_GSD_M": f"{plan.target_gsd_m!r}",
        "RSPOLICY_OUTPUT_GSD_M": f"{min(plan.output_x_m, plan.output_y_m)!r}",
        "RSPOLICY_FACTORS": f"row {plan.row_factor}, col {plan.col_factor}",
        "RSPOLICY_RESAMPLING": f"area-average{f' ({plan.sar_mode})' if plan.sar_mode else ''}",
        **_decision_tags(decision),
    }


def _decision_tags(decision: Decision) -> dict[str, str]:
    """What every image rspolicy writes says about the decision it was written under."""
    return {"RSPOLICY_POLICY": f"{decision.policy.name} {decision.policy.version}",
            "RSPOLICY_POLICY_SHA256": decision.policy.sha256, "RSPOLICY_DECISION_ID": decision.decision_id,
            "RSPOLICY_VERSION": rspolicy.__version__, **_class_tag(decision), **_release_tags(decision)}


def _release_tags(decision: Decision) -> dict[str, str]:
    """What every image rspolicy writes says about its release: masks, approval, obligations."""
    tags = dict(decision.obligations.tags())
    if decision.mask_zones:
        tags["RSPOLICY_MASKED_ZONES"] = ", ".join(z.name for z in decision.mask_zones)
    if decision.request is not None and decision.request.approval:
        tags["RSPOLICY_APPROVAL"] = decision.request.approval
    return tags


def _class_tag(decision: Decision) -> dict[str, str]:
    """The decided class, for the output's re-screen (an unknown class is never written as a claim)."""
    known = decision.product_class is not ProductClass.UNKNOWN
    return {CLASS_TAG: decision.product_class.value} if known else {}


def companion_rpcs(product: ProductEvidence) -> RPC | None:
    """The RPCs rspolicy parsed beside the image (``.rpb``, ``_rpc.txt``, else a GDAL ``.aux.xml``), if any.

    GDAL is never let near these files; the writers get the parsed values
    and use them when the image holds none of its own.
    """
    if product.raster is None:
        return None
    main = product.raster.name
    candidates = [*product.files[1:], *(w.path for w in product.withheld)]
    for wanted in (CompanionKind.RPB, CompanionKind.RPC_TXT, CompanionKind.PAM):
        for path in candidates:
            if companion_kind(path.name, main) is not wanted:
                continue
            if wanted is CompanionKind.RPB:
                return parse_rpb(path)
            if wanted is CompanionKind.RPC_TXT:
                return parse_rpc_txt(path)
            pam_rpc = parse_pam(path).rpc
            if pam_rpc is not None:
                return pam_rpc
    return None


def _withheld_notes(product: ProductEvidence) -> list[str]:
    return [f"withheld: {w.label}: {w.reason}" for w in product.withheld]


def _stage_allowed(decision: Decision, opts: EnforceOptions, stage: Path,
                   rel: Callable[[Path], Path]) -> tuple[list[Path], list[str], float | None]:
    product = decision.product
    assert product is not None  # allowed decisions always carry their product
    staged, notes = [], _withheld_notes(product)
    obligations = decision.obligations
    for f in product.files:
        dest = stage / rel(f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        hdf5 = f.name.lower().endswith(HDF5_SUFFIXES)
        if f == product.raster and not hdf5 and (product.rebuild is not None or obligations):
            part = _scratch(stage)
            rebuild_raster(f, part, tags=_decision_tags(decision), threads=opts.threads, rpcs=companion_rpcs(product))
            part.rename(dest)
            notes.append(f"rebuilt by rspolicy's writer: {product.rebuild}" if product.rebuild is not None else
                         "rebuilt pixel-exact by rspolicy's writer to carry the policy's obligations in its tags")
        elif f == product.raster and hdf5 and obligations:
            shutil.copy2(f, dest)
            stamp_hdf5(dest, _release_tags(decision))
            notes.append("the policy's obligations added as attributes of the file's root group")
        elif obligations and f.name.lower().endswith(".xml") and stamp_obligations(f, dest, obligations):
            notes.append(f"{f.name}: the policy's obligations added")
        else:
            shutil.copy2(f, dest)
        staged.append(dest)
    return staged, notes, None


def _scratch(stage: Path) -> Path:
    """A fresh ASCII file name in the stage for GDAL to write to (it cannot take a name that is not UTF-8).

    Renamed to the product's own name once written.
    """
    return stage / f".rspolicy-{uuid.uuid4().hex}.part.tif"


def stamp_hdf5(path: Path, tags: Mapping[str, str]) -> None:
    """Add text attributes to the root group of an HDF5 file (a staged copy, never an input)."""
    import h5py  # noqa: PLC0415 - only HDF5 releases under a policy with obligations need it

    with h5py.File(path, "r+") as handle:
        for key, value in tags.items():
            handle.attrs[key] = value


def _stage_degraded(decision: Decision, opts: EnforceOptions, stage: Path,
                    rel: Callable[[Path], Path]) -> tuple[list[Path], list[str], float | None]:
    product = decision.product
    assert product is not None and product.raster is not None  # resample decisions always carry them
    if product.raster.name.lower().endswith(HDF5_SUFFIXES):
        raise UnsupportedProductError(f"{decision.path}: degrading HDF5 products is not supported")
    rpcs = companion_rpcs(product)
    plan = plan_degrade(decision, opts.policy, rpcs=rpcs)
    if decision.mask_zones:
        plan = dataclasses.replace(plan, mask=raster_pixel_mask(product.raster, [z.wkt for z in decision.mask_zones],
                                                                rpcs=rpcs))
    image = stage / rel(product.raster)
    image.parent.mkdir(parents=True, exist_ok=True)
    written = degrade_raster(product.raster, _scratch(stage), plan,
                             tags=_provenance(decision, plan), threads=opts.threads,
                             intermediate=opts.output_format == "cog", rpcs=rpcs,
                             creation_options=opts.creation_options)
    if decision.mask_zones and not written.masked_fraction:
        # A footprint put the product over the zone, yet its georeferencing places no pixel there: the
        # evidence disagrees on where the pixels lie, so no mask can be trusted.
        raise ProductReadError(decision.path, f"evidence places the product over zone "
                                              f"{', '.join(z.name for z in decision.mask_zones)}, but its "
                                              "georeferencing places no pixel inside it: it cannot be masked "
                                              "reliably")
    if opts.output_format == "cog":
        cog = _scratch(stage)
        write_cog(written.path, cog, sar_mode=plan.sar_mode, threads=opts.threads)
        written.path.unlink()
        cog.rename(image)
    else:
        written.path.rename(image)
    staged, notes = [image], _withheld_notes(product)
    change = GridChange.of(plan, written)
    for sidecar in product.files[1:]:
        dest = stage / rel(sidecar)
        name = sidecar.name.lower()
        if name.endswith(".xml") and rewrite_sidecar(sidecar, dest, change):
            if decision.obligations:
                stamp_obligations(dest, dest, decision.obligations)
            staged.append(dest)
        elif name.endswith(".rpb") and written.rpcs is not None:
            dest.write_text(rpb_text(written.rpcs), encoding="ascii")
            staged.append(dest)
        else:
            notes.append(f"{sidecar.name} not delivered with the degraded product: it describes the original grid "
                         "and rspolicy cannot rewrite it")
    if written.rpcs is not None and not any(p.name.lower().endswith(".rpb") for p in staged):
        rpb = image.with_name(product_stem(image.name) + ".rpb")
        rpb.write_text(rpb_text(written.rpcs), encoding="ascii")
        staged.append(rpb)
    if written.masked_fraction is not None:
        notes.append(f"masked zone {', '.join(z.name for z in decision.mask_zones)}: "
                     f"{written.masked_fraction:.4%} of the pixels set to nodata")
    return staged, notes, written.masked_fraction


def decided_class_hint(decision: Decision) -> Evidence:
    """The decision's class as a strong class hint for the re-screen of its output.

    A degraded complex SLC averaged to intensity no longer shows it is SAR;
    the decision knows. Hints inside the output never loosen this: the
    strictest-of logic applies, and a conflicting strong hint makes the
    output's class unknown, which blocks it.
    """
    return Evidence(Fact.CLASS_HINT, decision.product_class.value, f"rspolicy decision {decision.decision_id}",
                    "product_class", "the class decided for the product this output was written from",
                    Strength.STRONG)


def _rescreen(staged: list[Path], stage: Path, decision: Decision, policy: Policy,
              request: Request | None = None) -> Decision:
    """Screen the staged copy as a recipient would, knowing the class that was decided."""
    products, _ = group_files(staged, lambda p: os.fspath(p.relative_to(stage)))
    if len(products) != 1:
        raise OutputError(f"staged output holds {len(products)} products, expected 1")
    product = read_product(products[0], lambda p: os.fspath(p.relative_to(stage)))
    if decision.product_class is not ProductClass.UNKNOWN:
        product = dataclasses.replace(product, evidence=(*product.evidence, decided_class_hint(decision)))
    return decide(product, policy, request if request is not None else decision.request)


def rescreen_passes(check: Decision, decision: Decision) -> bool:
    """Whether a staged output's re-screen lets it leave.

    It must be allowed as it is, or asked only to mask zones whose pixels the
    output already has as nodata (a zone still overlaps the masked image's
    footprint), at no finer a resolution.
    """
    if check.action is Action.ALLOW:
        return True
    masked = {z.name for z in decision.mask_zones}
    return (check.action is Action.MASK and check.target_gsd_m is None and bool(masked)
            and {z.name for z in check.mask_zones} <= masked)


#: One staged file and where it goes, relative to the output folder (or package).
_Move = tuple[Path, PurePath]

#: Errors that mean the gate refuses the product (blocked); any other failure means rspolicy could not
#: complete it (failed), which is never a policy decision.
_REFUSALS = (ProductReadError, ResampleError, PolicyError, UnsupportedProductError)


@dataclass(frozen=True)
class _Staged:
    """One product's outcome as it will be once placed, and the staged files to move (loose products)."""

    outcome: Outcome
    moves: tuple[_Move, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """One work item done by a worker: staged inside the output folder, not yet recorded or placed.

    The parent process records each outcome, then moves the staged files
    into place: a worker never writes the audit log or an output's final name.

    Attributes
    ----------
    items
        One per product (a package: one per member).
    stage
        The staging folder to remove once placed (None when nothing was staged).
    package
        A package's staged file and its destination relative to OUTDIR.
    """

    items: tuple[_Staged, ...]
    stage: Path | None = None
    package: tuple[Path, PurePath] | None = None


@dataclass(frozen=True)
class WorkContext:
    """What every worker needs (picklable, sent once per worker).

    Attributes
    ----------
    opts
        The run's options.
    root
        The output folder, resolved by the parent.
    owner
        The parent's pid: stage folders are named after it, so that a later
        run can tell a live run's stages from a killed one's.
    fingerprint
        What makes a rerun "the same command": policy, output folder,
        format, creation options and the request.
    prior
        Products earlier runs completed (:func:`rspolicy.records.completed_products`).
    """

    opts: EnforceOptions
    root: Path
    owner: int
    fingerprint: str
    prior: BatchHistory = dataclasses.field(default_factory=BatchHistory)


#: How far a release time may lie ahead of this machine's clock (clock skew between hosts).
RELEASE_TIME_SKEW = timedelta(minutes=5)


def check_release_time(request: Request) -> None:
    """Refuse a release time later than now: what ``enforce`` releases leaves now.

    Raises
    ------
    PolicyError
        Naming the time, when it is more than :data:`RELEASE_TIME_SKEW` ahead.
    """
    now = datetime.now(UTC)
    if request.at > now + RELEASE_TIME_SKEW:
        raise PolicyError(f"--at: {request.at.isoformat(timespec='seconds')} is later than now "
                          f"({now.isoformat(timespec='seconds')}): enforce releases now, and a later time would "
                          "make the data look older than it is when it leaves (screen may look ahead)")


def resume_scope(policy: Policy, request: Request, *, explicit_time: bool = False) -> tuple[str, ...]:
    """What of a request makes a rerun "the same command".

    The recipient, purpose and approval; and the release time when it was
    given or the policy tests the age of the data (a product too fresh
    yesterday is decided again today).
    """
    scope = [str(request.recipient or ""), request.purpose or "", request.approval or ""]
    if explicit_time or policy.uses_time:
        scope.append(request.at.isoformat())
    return tuple(scope)


def run_fingerprint(opts: EnforceOptions, root: Path) -> str:
    """The part of every product's batch key that names the command rather than the product."""
    command: dict[str, Any] = {"policy": opts.policy.ref.sha256, "outdir": os.fspath(root),
                               "format": opts.output_format, "co": sorted(opts.creation_options.items()),
                               "scope": list(opts.resume_scope)}
    if opts.stac:
        # Only when asked for, so that the keys of runs without Items stay what they were.
        command["stac"] = True
    return _sha256_json(command)


def _sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def batch_key(fingerprint: str, inputs: Iterable[tuple[str, str]]) -> str:
    """A product's key in the log for resuming: the command's fingerprint and its inputs' paths and sha256."""
    return _sha256_json({"run": fingerprint, "inputs": sorted(inputs)})


def _new_stage(ctx: WorkContext) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{ctx.owner}-", dir=ctx.root))


def _failure_text(path: str, exc: BaseException) -> str:
    if isinstance(exc, OutputError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{path}: cannot write the output ({where}{exc.strerror})"
    return f"{path}: {type(exc).__name__}: {exc}"


def _stage_one(decision: Decision, ctx: WorkContext, stage: Path,
               rel: Callable[[Path], Path], inputs: tuple[FileDigest, ...], final: Callable[[PurePath], str],
               durable: bool, source_href: str) -> _Staged:
    """Stage, re-screen, hash (and flush) one allowed or degraded product. Never raises for the product.

    ``source_href`` is the source's file (a package member's: the package), for a STAC Item's
    ``derived_from`` link.
    """
    opts = ctx.opts
    try:
        # The sealer's threads finish before the caller removes the stage.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rspolicy-seal") as sealer:
            if decision.action is Action.ALLOW:
                staged, notes, masked = _stage_allowed(decision, opts, stage, rel)
            else:
                staged, notes, masked = _stage_degraded(decision, opts, stage, rel)
            # The staged bytes are final: hash them (and flush them to disk) while the re-screen
            # reads them, rather than one after the other.
            digests = [sealer.submit(sha256_file, p) for p in staged]
            flushed = [sealer.submit(_fsync, p) for p in staged] if durable else []
            check = _rescreen(staged, stage, decision, opts.policy, opts.request)
            if not rescreen_passes(check, decision):
                sealer.shutdown(cancel_futures=True)  # the files are about to be deleted
                return _Staged(Outcome(_blocked(decision, "the written output failed its re-screen "
                                                          f"({check.action.value}: {'; '.join(check.reasons)}); "
                                                          "it was deleted"), notes=tuple(notes), inputs=inputs))
            for flush in flushed:
                flush.result()
            rels = [PurePath(p.relative_to(stage)) for p in staged]
            outputs = tuple(FileDigest(final(r), p.stat().st_size, d.result())
                            for p, r, d in zip(staged, rels, digests, strict=True))
            moves = tuple(zip(staged, rels, strict=True))
            if opts.stac:
                item = _stage_stac_item(decision, ctx, staged, outputs, inputs, check.gsd_m, masked, source_href)
                if durable:
                    _fsync(item)
                rel_item = PurePath(item.relative_to(stage))
                outputs = (*outputs, FileDigest(final(rel_item), item.stat().st_size, sha256_file(item)))
                moves = (*moves, (item, rel_item))
            return _Staged(Outcome(decision, outputs, check.gsd_m, tuple(notes), inputs, masked_fraction=masked),
                           moves)
    except _REFUSALS as exc:
        return _Staged(Outcome(_blocked(decision, f"{exc}; nothing was written"), inputs=inputs))
    except Exception as exc:  # noqa: BLE001 - whatever else stops the writing is a failure, not a decision
        return _Staged(Outcome(decision, inputs=inputs, failure=f"{_failure_text(decision.path, exc)}; "
                                                                "nothing was written"))


def _stage_stac_item(decision: Decision, ctx: WorkContext, staged: Sequence[Path], outputs: Sequence[FileDigest],
                     inputs: Sequence[FileDigest], output_gsd_m: float | None, masked: float | None,
                     source_href: str) -> Path:
    """Write the product's STAC Item into the stage, beside its image, and return its path."""
    from rspolicy.stac import ReleasedFile, item_path_for, stac_item, write_stac_item  # noqa: PLC0415

    item = item_path_for(staged[0])
    if os.path.lexists(item):
        raise OutputError(f"{decision.path}: the product already has a file named {item.name}, where its STAC "
                          "Item would go")
    product = decision.product
    main_label = product.label(0) if product is not None else decision.path
    source = next((d for d in inputs if d.path == main_label), None)
    degraded_cog = ctx.opts.output_format == "cog" and decision.action is not Action.ALLOW
    document = stac_item(decision, [ReleasedFile(p, d) for p, d in zip(staged, outputs, strict=True)], item,
                         output_gsd_m=output_gsd_m, source_href=source_href, source=source,
                         masked_fraction=masked, cog=degraded_cog)
    write_stac_item(document, item)
    return item


def _digests(files: Iterable[Path], label: Callable[[Path], str]) -> tuple[FileDigest, ...]:
    return tuple(FileDigest(label(f), f.stat().st_size, sha256_file(f)) for f in files if f.is_file())


def prepare(item: FoundProduct | FoundPackage | ProductEvidence, ctx: WorkContext) -> Prepared:
    """Do one work item up to the point where only recording and placing remain (runs in a worker).

    Skips a product an earlier run completed, decides the others, stages
    what may leave and re-screens it. Never raises for a product: every
    problem ends as a blocked or failed outcome.
    """
    started = time.monotonic()
    if isinstance(item, FoundPackage):
        prepared = _prepare_package(item, ctx)
    elif isinstance(item, FoundProduct):
        prepared = _prepare_product(item, ctx)
    else:
        key = batch_key(ctx.fingerprint, [("unreadable:" + item.path, "; ".join(item.problems))])
        prior = _completed(ctx, key, item.path)
        prepared = Prepared(tuple(_Staged(o) for o in prior) if prior else
                            (_Staged(Outcome(decide(item, ctx.opts.policy, ctx.opts.request), key=key)),))
    seconds = time.monotonic() - started
    return dataclasses.replace(prepared, items=tuple(
        dataclasses.replace(s, outcome=dataclasses.replace(s.outcome, seconds=seconds / max(1, len(prepared.items))))
        for s in prepared.items))


def _completed(ctx: WorkContext, key: str, path: str, bytes_in: int = 0) -> tuple[Outcome, ...]:
    """Skipped outcomes (one per product) of an item an earlier run completed with its outputs intact, else ()."""
    done = ctx.prior.done.get(key, {})
    if ctx.opts.force or not done or any(p.members > len(done) for p in done.values()):
        return ()
    if any(p.missing_outputs() for p in done.values()):
        return ()
    share = bytes_in // len(done)
    return tuple(Outcome(None, path=p.path if member else path, prior=p, key=key, member=member,
                         bytes_in=share) for member, p in done.items())


def _claims_keyed(claims: Sequence[Evidence]) -> list[tuple[str, str]]:
    """What a catalogue says about the files, as part of the batch key: a changed claim is decided again."""
    if not claims:
        return []
    return [("claims", _sha256_json([(e.fact.value, repr(e.value), e.source, e.field) for e in claims]))]


def _prepare_product(item: FoundProduct, ctx: WorkContext) -> Prepared:
    files = (item.files.main, *item.files.sidecars)
    rel = _rel_to(item.base)
    try:
        hashed = _digests(files, item.label)
        keyed = [(rel(f).as_posix(), d.sha256) for f, d in zip(files, hashed, strict=True)]
        key = batch_key(ctx.fingerprint, [*keyed, *_claims_keyed(item.files.claims)])
    except (OSError, ValueError):
        hashed, key = (), ""  # unreadable: the read stage says why, and blocks
    bytes_in = sum(d.size for d in hashed)
    prior = _completed(ctx, key, item.files.display, bytes_in) if key else ()
    if prior:
        return Prepared(tuple(_Staged(o) for o in prior))
    decision = decide(read_product(item.files, item.label), ctx.opts.policy, ctx.opts.request)
    product = decision.product
    by_label = {d.path: d for d in hashed}
    inputs = tuple(by_label[product.label(i)] for i, _ in enumerate(product.files)
                   if product.label(i) in by_label) if product is not None else ()
    if decision.action is Action.BLOCK or product is None or product.raster is None:
        return Prepared((_Staged(Outcome(decision, inputs=inputs, key=key, bytes_in=bytes_in)),))
    try:
        stage = _new_stage(ctx)
    except OSError as exc:
        return Prepared((_Staged(Outcome(decision, inputs=inputs, key=key, bytes_in=bytes_in,
                                         failure=f"{_failure_text(decision.path, exc)}; nothing was written")),))
    staged = _stage_one(decision, ctx, stage, rel, inputs, lambda r: os.fspath(ctx.root / r), durable=True,
                        source_href=os.path.abspath(item.files.main))
    if not staged.moves:
        shutil.rmtree(stage, ignore_errors=True)
        stage = None  # type: ignore[assignment]
    staged = dataclasses.replace(staged, outcome=dataclasses.replace(staged.outcome, key=key, bytes_in=bytes_in))
    return Prepared((staged,), stage)


def _prepare_package(item: FoundPackage, ctx: WorkContext) -> Prepared:
    """A package in, a package out (staged): released and degraded members only."""
    final = ctx.root / item.dest
    opts = ctx.opts
    try:
        package_digest = _digests([item.path], lambda _p: item.display)
        key = batch_key(ctx.fingerprint, [(item.dest.as_posix(), package_digest[0].sha256),
                                          *_claims_keyed(item.claims)])
    except (OSError, ValueError, IndexError):
        package_digest, key = (), ""
    bytes_in = sum(d.size for d in package_digest)
    prior = _completed(ctx, key, item.display, bytes_in) if key else ()
    if prior:
        return Prepared(tuple(_Staged(o) for o in prior))
    try:
        stage = _new_stage(ctx)
    except OSError as exc:
        return Prepared((_Staged(Outcome(None, path=item.display, key=key, bytes_in=bytes_in,
                                         failure=f"{_failure_text(item.display, exc)}; nothing was written")),))
    try:
        with opened_package(item.path) as (root, members):
            label = _PackageLabel(item.display, root)
            products, _ = group_files([m.local for m in members if not is_package(m.local)], label)
            if not products:
                decision = decide(unreadable(item.display, "package holds no product image", item.path), opts.policy,
                                  opts.request)
                shutil.rmtree(stage, ignore_errors=True)
                return Prepared((_Staged(Outcome(decision, inputs=package_digest, key=key, bytes_in=bytes_in)),))
            member_root = stage / "members"
            member_root.mkdir()
            kept: dict[PurePath, str] = {}
            outcomes: list[Outcome] = []
            for files in products:
                decision = decide(read_product(replace(files, claims=item.claims), label), opts.policy,
                                  opts.request)
                product = decision.product
                # A member's record names its own files as ``package!member`` (as screen's does), not the package.
                inputs = _digests(product.files, label) if product is not None else package_digest
                if decision.action is Action.BLOCK or product is None or product.raster is None:
                    outcomes.append(Outcome(decision, inputs=inputs))
                    continue
                with tempfile.TemporaryDirectory(dir=stage) as member_stage:
                    staged = _stage_one(decision, ctx, Path(member_stage), _rel_to(root), inputs,
                                        lambda r: f"{final}!{r.as_posix()}", durable=False,
                                        source_href=os.path.abspath(item.path))
                    outcome = staged.outcome
                    # _stage_one lists the moves and the outputs in the same order, one per staged file.
                    placed = list(zip(staged.moves, outcome.outputs, strict=True))
                    try:
                        # Every conflict is looked for before anything moves: a member leaves whole or not at all.
                        moves = [(src, rel) for (src, rel), out in placed
                                 if not _already_written(kept, rel, out.sha256, out.path)]
                    except _SharedSidecarConflictError as exc:
                        outcome = Outcome(_blocked(decision, f"{exc}; nothing was written"), inputs=inputs)
                    else:
                        for src, rel in moves:
                            target = member_root / rel
                            target.parent.mkdir(parents=True, exist_ok=True)
                            os.replace(src, target)
                        for (_, rel), out in placed:
                            kept[rel] = out.sha256
                outcomes.append(outcome)
            members_out = sorted((p, p.relative_to(member_root).as_posix())
                                 for p in member_root.rglob("*") if p.is_file())
            package_file = stage / item.dest.name
            if members_out:
                try:
                    write_package(members_out, package_file)
                    written = FileDigest(os.fspath(final), package_file.stat().st_size, sha256_file(package_file))
                except (OSError, RSPolicyError) as exc:
                    outcomes = [dataclasses.replace(o, outputs=(), failure=f"cannot write the output package "
                                                                           f"({_failure_text(item.display, exc)})")
                                if o.outputs else o for o in outcomes]
                    members_out = []
                else:
                    outcomes = [dataclasses.replace(o, outputs=(*o.outputs, written)) if o.outputs else o
                                for o in outcomes]
    except ProductReadError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        decision = decide(unreadable(item.display, exc.problem, item.path), opts.policy, opts.request)
        return Prepared((_Staged(Outcome(decision, inputs=package_digest, key=key, bytes_in=bytes_in)),))
    except Exception as exc:  # noqa: BLE001 - unpacking or writing failed: nothing of the package leaves
        shutil.rmtree(stage, ignore_errors=True)
        return Prepared((_Staged(Outcome(None, path=item.display, key=key, bytes_in=bytes_in,
                                         failure=f"{_failure_text(item.display, exc)}; nothing was written")),))
    share = bytes_in // max(1, len(outcomes))
    items = tuple(_Staged(dataclasses.replace(o, key=key, member=o.decision.path if o.decision else "",
                                              members=len(outcomes), bytes_in=share)) for o in outcomes)
    if not members_out:
        shutil.rmtree(stage, ignore_errors=True)
        return Prepared(items)
    return Prepared(items, stage, (package_file, item.dest))


@dataclass(frozen=True)
class _PackageLabel:
    """How a package member is shown: ``package!member``."""

    display: str
    root: Path

    def __call__(self, p: Path) -> str:
        return f"{self.display}{PACKAGE_SEPARATOR}{display_name(p.relative_to(self.root).as_posix())}"


class _SharedSidecarConflictError(OutputError):
    """A sidecar two products share was already written with other bytes: the products got different decisions."""


def _already_written(written: dict[PurePath, str], rel: PurePath, digest: str, shown: str) -> bool:
    """Whether this run already placed ``rel`` with these bytes (a sidecar two products share).

    Raises
    ------
    OutputError
        When it placed different bytes there: the products got different
        decisions, and one sidecar cannot describe both.
    """
    if rel not in written:
        return False
    if written[rel] != digest:
        raise _SharedSidecarConflictError(f"{shown}: a sidecar shared with another product was already written with "
                                     "different content (the products got different decisions)")
    return True


def _rel_to(base: Path) -> Callable[[Path], Path]:
    return _RelativeTo(base)


@dataclass(frozen=True)
class _RelativeTo:
    base: Path

    def __call__(self, p: Path) -> Path:
        return Path(os.path.abspath(p)).relative_to(self.base)


class _Run:
    """The parent's side of a run: the only writer of the audit log and of final output names."""

    def __init__(self, opts: EnforceOptions, out: OutputFolder, record: Callable[[Outcome], None] | None,
                 released: Callable[[Outcome], None] | None, progress: Callable[[Outcome], None] | None,
                 prior: BatchHistory) -> None:
        self.opts = opts
        self._prior = prior
        self.out = out
        self._record = record
        self._released = released
        self._progress = progress
        self.outcomes: list[Outcome] = []
        # GF-3 polarisations share one .meta.xml: the second product may find it
        # written by this run already, which is fine when the bytes are the same.
        self._written: dict[PurePath, str] = {}

    def record(self, outcome: Outcome) -> None:
        """Write the outcome's record; a failure stops the run (wrapped so no handler turns it into a block)."""
        if self._record is None:
            return
        try:
            self._record(outcome)
        except Exception as exc:
            raise _FatalError(exc) from exc

    def released(self, outcome: Outcome) -> None:
        """Report that every file of a recorded outcome is in place."""
        if self._released is None:
            return
        try:
            self._released(outcome)
        except Exception as exc:
            raise _FatalError(exc) from exc

    def place(self, moves: Iterable[_Move], what: str) -> None:
        """Make recorded moves; a failure now leaves a record the next run reconciles."""
        try:
            for src, dst in moves:
                self.out.place(src, dst)
        except (OSError, RSPolicyError) as exc:
            raise _FatalError(OutputError(f"{what}: recorded but could not be moved into place "
                                          f"({getattr(exc, 'strerror', None) or exc}); the next run with this log "
                                          "records that it was not released")) from exc

    def finish(self, outcome: Outcome) -> None:
        """An outcome is final: recorded (unless skipped), counted, shown."""
        if outcome.result is not Result.SKIPPED:
            self.record(outcome)
        self._count(outcome)

    def _count(self, outcome: Outcome) -> None:
        """A final outcome (recorded already): kept for the caller and shown."""
        self.outcomes.append(outcome)
        if self._progress is not None:
            self._progress(outcome)

    def commit(self, prepared: Prepared) -> None:
        """Record and place what a worker prepared, then remove its stage."""
        try:
            if prepared.package is not None:
                self._commit_package(prepared, *prepared.package)
            else:
                for staged in prepared.items:
                    self._commit_loose(staged)
        finally:
            if prepared.stage is not None:
                shutil.rmtree(prepared.stage, ignore_errors=True)

    def _commit_loose(self, staged: _Staged) -> None:
        outcome = staged.outcome
        if not staged.moves:
            self.finish(outcome)
            return
        assert outcome.decision is not None
        moves = []
        try:
            for (src, rel), out in zip(staged.moves, outcome.outputs, strict=True):
                if _already_written(self._written, rel, out.sha256, out.path):
                    continue
                if self.out.lexists(rel) and not self.opts.force and not self._ours(out.path):
                    raise OutputError(f"{out.path}: output exists and is not one this log recorded as released "
                                      "for this product (use --force to replace it)")
                moves.append((src, rel))
        except _SharedSidecarConflictError as exc:
            self.finish(Outcome(_blocked(outcome.decision, f"{exc}; nothing was written"), inputs=outcome.inputs,
                                key=outcome.key, bytes_in=outcome.bytes_in, seconds=outcome.seconds))
            return
        except OutputError as exc:
            self.finish(dataclasses.replace(outcome, outputs=(), failure=f"{exc}; nothing was written"))
            return
        self.record(outcome)
        self.place(moves, outcome.decision.path)
        for (_, rel), out in zip(staged.moves, outcome.outputs, strict=True):
            self._written[rel] = out.sha256
        self.released(outcome)
        self._count(outcome)

    def _ours(self, path: str) -> bool:
        """Whether ``path`` is a file this log recorded and nobody changed since (a rerun may replace it)."""
        return self._prior.still_ours(path)

    def _commit_package(self, prepared: Prepared, package_file: Path, dest: PurePath) -> None:
        outcomes = [s.outcome for s in prepared.items]
        final = os.fspath(self.out.final(dest))
        try:
            exists = self.out.lexists(dest) and not self.opts.force and not self._ours(final)
            refusal = f"{self.out.final(dest)}: output package exists (use --force to replace it)" if exists else None
        except OutputError as exc:
            refusal = str(exc)
        if refusal is not None:
            for o in outcomes:
                self.finish(dataclasses.replace(o, outputs=(), failure=f"{refusal}; nothing was written")
                            if o.outputs else o)
            return
        for o in outcomes:
            self.record(o)
        self.place([(package_file, dest)], os.fspath(self.out.final(dest)))
        for o in outcomes:
            if o.outputs:
                self.released(o)
            self._count(o)


def _crashed(item: FoundProduct | FoundPackage | ProductEvidence, exc: BaseException) -> Prepared:
    """The outcome of a work item whose worker died or raised: failed, nothing written."""
    path = item.files.display if isinstance(item, FoundProduct) else \
        item.display if isinstance(item, FoundPackage) else item.path
    text = " ".join(str(exc).split()) or type(exc).__name__
    return Prepared((_Staged(Outcome(None, path=path, failure=f"{path}: the worker handling it stopped "
                                                              f"({type(exc).__name__}: {text}); nothing was "
                                                              "written")),))


WorkItem = FoundProduct | FoundPackage | ProductEvidence


def work_items(paths: Iterable[str | os.PathLike[str]]) -> list[WorkItem]:
    """The products and packages behind ``paths``, each once (non-product files are left out)."""
    return [item for item in discover(paths) if not isinstance(item, Skipped)]


def item_bytes(item: WorkItem) -> int:
    """Size of a work item's input files (for progress)."""
    files: Iterable[Path] = (item.files.main, *item.files.sidecars) if isinstance(item, FoundProduct) else \
        (item.path,) if isinstance(item, FoundPackage) else ()
    total = 0
    for f in files:
        with contextlib.suppress(OSError):
            total += f.stat().st_size
    return total


def enforce(paths: Iterable[str | os.PathLike[str]] | Sequence[WorkItem], opts: EnforceOptions,
            record: Callable[[Outcome], None] | None = None, *,
            released: Callable[[Outcome], None] | None = None,
            progress: Callable[[Outcome], None] | None = None,
            prior: BatchHistory | None = None,
            executor: Executor | None = None,
            stop: threading.Event | None = None) -> list[Outcome]:
    """Release, degrade or refuse every product behind ``paths``.

    Parameters
    ----------
    paths
        Images, sidecars, directories, delivery packages (or the work items
        :func:`work_items` found in them).
    opts
        Output directory, policy, format, force, jobs.
    record
        The audit log hook, called once per product that was not skipped,
        with its final outcome (``outcome.result`` says whether it is a
        decision or a failure). For a product that releases files it is
        called **before** the files are moved into place, with the paths,
        sizes and sha256 they will have: when it raises, nothing of that
        product is placed and the error propagates (the run stops).
    released
        Called after every file of a recorded outcome is in place (for a
        package: after the package file is). A run killed between ``record``
        and ``released`` leaves a record whose files may be absent.
    progress
        Called once per product when its outcome is final, skipped ones included.
    prior
        Products earlier runs completed (:func:`rspolicy.records.completed_products`
        of the log): skipped when their inputs, the policy and the command
        are the same and their outputs are intact, unless ``opts.force``.
    executor
        Where work items run: None runs ``opts.jobs`` worker processes
        (in this process when 1). A ``dask.distributed.Client`` (or any
        object with ``submit`` whose futures work with
        :func:`concurrent.futures.as_completed`-style ``as_completed``) can
        be given instead; see :mod:`rspolicy.scaleout`.
    stop
        When set (a signal), no further item is started; items in flight
        are finished and recorded.

    Returns
    -------
    list of Outcome
        One per product, in the order they finished.

    Raises
    ------
    PolicyError
        When the request's release time is in the future: ``enforce``
        releases now, and a later time would make the data look older than
        it is when it leaves (only ``screen`` may look ahead).
    OutputError
        When the output folder cannot be created or opened, or recorded
        files could not be moved into place.
    Exception
        Whatever ``record`` or ``released`` raised.
    """
    check_release_time(opts.request)
    items = list(paths)
    work: list[WorkItem] = [i for i in items if isinstance(i, FoundProduct | FoundPackage | ProductEvidence)]
    named = [i for i in items if not isinstance(i, FoundProduct | FoundPackage | ProductEvidence)]
    if named:
        work.extend(work_items(named))
    with OutputFolder(opts.outdir) as out:
        out.remove_stale_stages()
        run = _Run(opts, out, record, released, progress, prior or BatchHistory())
        ctx = WorkContext(opts, out.root, os.getpid(), run_fingerprint(opts, out.root), prior or BatchHistory())
        dispatched = _dispatch(work, ctx, executor, stop or threading.Event())
        ordered = _in_order(dispatched)
        try:
            for prepared in ordered:
                run.commit(prepared)
        except _FatalError as fatal:
            raise fatal.error from None
        finally:
            # Now, not when a traceback that holds them is collected: the worker processes end with the run.
            ordered.close()
            dispatched.close()
    return run.outcomes


def _in_order(done: Iterator[tuple[int, Prepared]]) -> Generator[Prepared, None, None]:
    """Items in the order they were named, whatever order they finished in.

    The log then reads the same whatever ``--jobs`` or the scheduler, and
    which of two products sharing a sidecar meets the other's bytes is
    decided by the input, not by timing.
    """
    waiting: dict[int, Prepared] = {}
    expected = 0
    for index, prepared in done:
        waiting[index] = prepared
        while expected in waiting:
            yield waiting.pop(expected)
            expected += 1
    for index in sorted(waiting):  # after a stop: whatever finished
        yield waiting.pop(index)


def _dispatch(work: Sequence[WorkItem], ctx: WorkContext, executor: Executor | None,
              stop: threading.Event) -> Generator[tuple[int, Prepared], None, None]:
    if executor is not None:
        from rspolicy.scaleout import run_on  # noqa: PLC0415 - only a scale-out run needs it
        yield from run_on(executor, work, ctx, stop)
        return
    jobs = ctx.opts.jobs or 1
    if not isolation_enabled():
        for index, item in enumerate(work):
            if stop.is_set():
                return
            try:
                yield index, prepare(item, ctx)
            except Exception as exc:  # noqa: BLE001 - one item's bug never ends the batch
                yield index, _crashed(item, exc)
        return
    yield from _in_processes(work, ctx, jobs, stop)


def _prepare_isolated(item: WorkItem, ctx: WorkContext, lane: int) -> Prepared:
    """Prepare one item in lane ``lane``'s worker process: a crash, a hang or a leak there ends only this item."""
    limits = Limits(seconds=ctx.opts.product_seconds, memory_bytes=None)
    try:
        return run_isolated(prepare, item, ctx, limits=limits, lane=lane, nested=True)
    except IsolationError as exc:
        return _crashed(item, exc)


def _in_processes(work: Sequence[WorkItem], ctx: WorkContext, jobs: int,
                  stop: threading.Event) -> Iterator[tuple[int, Prepared]]:
    """Run items in ``jobs`` worker processes (isolation lanes 1..jobs), each driven by a thread of this process.

    Each worker is forked from this process when the run starts (so it
    shares its loaded libraries) and stopped when the run ends; it runs one
    item at a time within the per-product time limit. A worker that
    crashes, hangs or runs out of memory fails its item only and is
    replaced for the next one; a worker whose parent dies ends too. At most
    two items per worker are started ahead, so that a stop is honoured soon.
    """
    lanes = Lanes(jobs)

    def one(item: WorkItem) -> Prepared:
        with lanes.borrow() as lane:
            return _prepare_isolated(item, ctx, lane)

    pending = list(reversed(list(enumerate(work))))
    in_flight: dict[Future[Prepared], tuple[int, WorkItem]] = {}
    threads = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="rspolicy-lane")
    try:
        while pending or in_flight:
            while pending and len(in_flight) < 2 * jobs and not stop.is_set():
                index, item = pending.pop()
                in_flight[threads.submit(one, item)] = (index, item)
            if not in_flight:
                break
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                index, item = in_flight.pop(future)
                try:
                    yield index, future.result()
                except Exception as exc:  # noqa: BLE001 - one item's bug never ends the batch
                    yield index, _crashed(item, exc)
    finally:
        # The workers are a snapshot of this process taken for this run: the next run forks its own.
        # Killed first, so that a run stopped at once (a second signal) does not wait for items in flight.
        lanes.shutdown()
        threads.shutdown(wait=True, cancel_futures=True)
