"""Enforcement: release, degrade or refuse each product according to its decision.

``enforce`` is the library call behind ``rspolicy enforce``. For each product:

* **allow**: the product's files are copied unchanged;
* **resample**: the image is degraded (:mod:`rspolicy.degrade`), its sidecars
  rewritten for the new grid (:mod:`rspolicy.sidecars`), its RPCs rescaled;
* **block**: nothing is written.

Every product is staged in a private folder inside the output directory and
screened again with the same policy before it is moved into place. A product
that would not be allowed as it is (a bug in a writer, a stale sidecar) is
deleted and blocked: nothing finer than the limit leaves. Each file is moved
into place with an atomic rename, so an error, a kill or a full disk leaves
no partial output. Inputs are never modified. Delivery packages come out as
packages holding the released and degraded members only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import rspolicy
from rspolicy.cog import write_cog
from rspolicy.degrade import DegradePlan, degrade_raster, plan_degrade
from rspolicy.errors import OutputError, ProductReadError, RSPolicyError
from rspolicy.georef import rpb_text
from rspolicy.model import Action, Decision, ProductEvidence
from rspolicy.policy import Policy
from rspolicy.readers.discover import (
    HDF5_SUFFIXES,
    Skipped,
    from_single_file,
    group_files,
    read_product,
    unreadable,
    walk,
)
from rspolicy.readers.filename import product_stem
from rspolicy.readers.package import is_package, opened_package, write_package
from rspolicy.records import file_digest, sha256_file
from rspolicy.screen import decide
from rspolicy.sidecars import GridChange, rewrite_sidecar

OutputFormat = Literal["gtiff", "cog"]
STAGE_PREFIX = ".rspolicy-stage-"


@dataclass(frozen=True)
class EnforceOptions:
    """How ``enforce`` writes.

    Attributes
    ----------
    outdir
        Where released products go (created if missing).
    policy
        The policy.
    output_format
        ``gtiff`` or ``cog`` (Cloud Optimized GeoTIFF) for degraded images.
    overwrite
        Replace existing outputs; otherwise an existing output blocks the product.
    threads
        Worker threads for degrading (default: all cores).
    """

    outdir: Path
    policy: Policy
    output_format: OutputFormat = "gtiff"
    overwrite: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class FileDigest:
    """One file read or written: its path (inside a package: ``package!member``), size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Outcome:
    """What happened to one product.

    Attributes
    ----------
    decision
        The final decision (a resample can end blocked when writing fails or
        the output does not pass its re-screen).
    outputs
        Files written: final paths (inside a package: ``package!member``),
        sizes and sha256 digests.
    inputs
        The product's files as read, labelled as in the decision, hashed
        while the product was processed (empty when nothing was processed).
    output_gsd_m
        The ground resolution of what was written (the re-screen's finding).
    notes
        What else happened (sidecars dropped, package written).
    """

    decision: Decision
    outputs: tuple[FileDigest, ...] = ()
    output_gsd_m: float | None = None
    notes: tuple[str, ...] = ()
    inputs: tuple[FileDigest, ...] = ()


def _blocked(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(decision, action=Action.BLOCK, target_gsd_m=None,
                               reasons=(*decision.reasons, reason))


@contextmanager
def _stage(outdir: Path) -> Iterator[Path]:
    stage = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=outdir))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


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
        "RSPOLICY_POLICY": f"{decision.policy.name} {decision.policy.version}",
        "RSPOLICY_POLICY_SHA256": decision.policy.sha256,
        "RSPOLICY_DECISION_ID": decision.decision_id,
        "RSPOLICY_VERSION": rspolicy.__version__,
    }


def _stage_allowed(product: ProductEvidence, stage: Path, rel: Callable[[Path], Path]) -> list[Path]:
    staged = []
    for f in product.files:
        dest = stage / rel(f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
        staged.append(dest)
    return staged


def _stage_degraded(decision: Decision, opts: EnforceOptions, stage: Path,
                    rel: Callable[[Path], Path]) -> tuple[list[Path], list[str]]:
    product = decision.product
    assert product is not None and product.raster is not None  # resample decisions always carry them
    if product.raster.name.lower().endswith(HDF5_SUFFIXES):
        raise OutputError(f"{decision.path}: degrading HDF5 products is not supported")
    plan = plan_degrade(decision, opts.policy)
    image = stage / rel(product.raster)
    image.parent.mkdir(parents=True, exist_ok=True)
    written = degrade_raster(product.raster, image.with_name(image.name + ".part"), plan,
                             tags=_provenance(decision, plan), threads=opts.threads,
                             intermediate=opts.output_format == "cog")
    if opts.output_format == "cog":
        write_cog(written.path, image, sar_mode=plan.sar_mode, threads=opts.threads)
        written.path.unlink()
    else:
        written.path.rename(image)
    staged, notes = [image], []
    change = GridChange(plan.row_factor, plan.col_factor, written.width, written.height, plan.target_gsd_m)
    for sidecar in product.files[1:]:
        dest = stage / rel(sidecar)
        name = sidecar.name.lower()
        if name.endswith(".xml") and rewrite_sidecar(sidecar, dest, change):
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
    return staged, notes


def _rescreen(staged: list[Path], stage: Path, policy: Policy) -> Decision:
    """Screen the staged copy as a recipient would."""
    products, _ = group_files(staged, lambda p: os.fspath(p.relative_to(stage)))
    if len(products) != 1:
        raise OutputError(f"staged output holds {len(products)} products, expected 1")
    return decide(read_product(products[0], lambda p: os.fspath(p.relative_to(stage))), policy)


@dataclass(frozen=True)
class _Commit:
    """Where staged files go once they pass their re-screen.

    ``place(staged, stage, digests)`` moves them and returns what was
    written; ``durable`` asks for each staged file to be flushed to disk
    first, so that the rename can never expose a file whose bytes are not yet
    on disk.
    """

    place: Callable[[list[Path], Path, list[str]], list[FileDigest]]
    durable: bool


def _process(decision: Decision, opts: EnforceOptions, rel: Callable[[Path], Path], commit: _Commit) -> Outcome:
    """Act on one decision: stage, re-screen, commit.

    The input files are hashed for the audit record on a thread of their own
    while the product is degraded: a second pass over a large input after
    the degrading would add its whole read time to the run.
    """
    product = decision.product
    if decision.action is Action.BLOCK or product is None or product.raster is None:
        return Outcome(decision)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rspolicy-digest") as hasher:
        hashed = hasher.submit(_input_digests, product)
        outcome = _act(decision, product, opts, rel, commit)
        with contextlib.suppress(OSError):
            outcome = dataclasses.replace(outcome, inputs=hashed.result())
    return outcome


def _input_digests(product: ProductEvidence) -> tuple[FileDigest, ...]:
    return tuple(FileDigest(d["path"], d["size"], d["sha256"])
                 for d in (file_digest(f, product.label(i)) for i, f in enumerate(product.files) if f.is_file()))


def _act(decision: Decision, product: ProductEvidence, opts: EnforceOptions, rel: Callable[[Path], Path],
         commit: _Commit) -> Outcome:
    try:
        # The sealer's threads finish before the stage is removed (exits run in reverse order).
        with _stage(opts.outdir) as stage, ThreadPoolExecutor(max_workers=2,
                                                              thread_name_prefix="rspolicy-seal") as sealer:
            if decision.action is Action.ALLOW:
                staged, notes = _stage_allowed(product, stage, rel), list[str]()
            else:
                staged, notes = _stage_degraded(decision, opts, stage, rel)
            # The staged bytes are final: hash them (and flush them to disk) while the re-screen
            # reads them, rather than one after the other.
            digests = [sealer.submit(sha256_file, p) for p in staged]
            flushed = [sealer.submit(_fsync, p) for p in staged] if commit.durable else []
            check = _rescreen(staged, stage, opts.policy)
            if check.action is not Action.ALLOW:
                sealer.shutdown(cancel_futures=True)  # the files are about to be deleted
                return Outcome(_blocked(decision, "the written output failed its re-screen "
                                                  f"({check.action.value}: {'; '.join(check.reasons)}); "
                                                  "it was deleted"), notes=tuple(notes))
            for flush in flushed:
                flush.result()
            outputs = commit.place(staged, stage, [d.result() for d in digests])
            return Outcome(decision, tuple(outputs), check.gsd_m, tuple(notes))
    except RSPolicyError as exc:
        return Outcome(_blocked(decision, f"{exc}; nothing was written"))
    except OSError as exc:
        return Outcome(_blocked(decision, f"{decision.path}: cannot write the output "
                                          f"({exc.strerror or exc}); nothing was written"))


def _commit_files(opts: EnforceOptions, written: dict[Path, str]) -> _Commit:
    """Move staged files into place; ``written`` remembers this run's files.

    GF-3 polarisations share one ``.meta.xml``: the second product may find it
    written already, which is fine when the bytes are the same.
    """
    def place(staged: list[Path], stage: Path, digests: list[str]) -> list[FileDigest]:
        finals = [opts.outdir / p.relative_to(stage) for p in staged]
        sizes = [p.stat().st_size for p in staged]
        for final, digest in zip(finals, digests, strict=True):
            if final in written and written[final] != digest:
                raise OutputError(f"{final}: a sidecar shared with another product was already written with "
                                  "different content (the products got different decisions)")
            if final.exists() and final not in written and not opts.overwrite:
                raise OutputError(f"{final}: output exists (use --overwrite to replace it)")
        for src, dst, digest in zip(staged, finals, digests, strict=True):
            if dst in written:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written[dst] = digest
        return [FileDigest(os.fspath(f), size, digest) for f, size, digest in zip(finals, sizes, digests, strict=True)]

    return _Commit(place, durable=True)


def _rel_to(base: Path) -> Callable[[Path], Path]:
    return lambda p: p.relative_to(base)


def enforce(paths: Iterable[str | os.PathLike[str]], opts: EnforceOptions,
            record: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Release, degrade or refuse every product behind ``paths``.

    Parameters
    ----------
    paths
        Images, sidecars, directories, delivery packages.
    opts
        Output directory, policy, format, overwrite.
    record
        Called with each outcome as soon as it is final (the audit log hook),
        so that a run stopped half-way has logged what it did. When it raises,
        the files that outcome released are removed again and the error
        propagates: nothing leaves without its record.

    Returns
    -------
    list of Outcome
        One per product.
    """
    opts.outdir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    commit = _commit_files(opts, {})

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if record is None:
            return
        try:
            record(outcome)
        except BaseException:
            # Nothing leaves unrecorded: take back what this product released.
            for written in {o.path.split("!", 1)[0] for o in outcome.outputs}:
                Path(written).unlink(missing_ok=True)
            raise

    for raw in paths:
        path, display = Path(raw), os.fspath(raw)
        if not path.exists():
            done(Outcome(decide(unreadable(display, "no such file or directory"), opts.policy)))
        elif is_package(path):
            _enforce_package(path, display, opts.outdir / path.name, opts, done)
        elif path.is_dir():
            files = walk(path)
            for package in (f for f in files if is_package(f)):
                _enforce_package(package, os.fspath(package), opts.outdir / package.relative_to(path), opts, done)
            products, _ = group_files([f for f in files if not is_package(f)], os.fspath)
            for files_ in products:
                decision = decide(read_product(files_, os.fspath), opts.policy)
                done(_process(decision, opts, _rel_to(path), commit))
        else:
            for item in from_single_file(path, display):
                if not isinstance(item, Skipped):
                    done(_process(decide(item, opts.policy), opts, _rel_to(path.parent), commit))
    return outcomes


def _enforce_package(path: Path, display: str, dest: Path, opts: EnforceOptions,
                     done: Callable[[Outcome], None]) -> None:
    """A package in, a package out: released and degraded members only."""
    try:
        with opened_package(path) as (root, members), _stage(opts.outdir) as package_stage:
            def label(p: Path) -> str:
                return f"{display}!{p.relative_to(root).as_posix()}"

            products, _ = group_files([m.local for m in members if not is_package(m.local)], label)
            if not products:
                done(Outcome(decide(unreadable(display, "package holds no product image", path), opts.policy)))
                return
            if dest.exists() and not opts.overwrite:
                for files in products:
                    decision = decide(read_product(files, label), opts.policy)
                    done(Outcome(_blocked(decision, f"{dest}: output package exists (use --overwrite)")))
                return
            released: list[tuple[Path, Outcome]] = []  # members are logged once the package is written

            def keep(staged: list[Path], stage: Path, digests: list[str]) -> list[FileDigest]:
                kept = []
                for f, digest in zip(staged, digests, strict=True):
                    target = package_stage / f.relative_to(stage)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    kept.append(FileDigest(f"{dest}!{target.relative_to(package_stage).as_posix()}",
                                           f.stat().st_size, digest))
                    os.replace(f, target)
                return kept

            for files in products:
                outcome = _process(decide(read_product(files, label), opts.policy), opts, _rel_to(root),
                                   _Commit(keep, durable=False))
                released.append((dest, outcome))
            members_out = sorted((p, p.relative_to(package_stage).as_posix())
                                 for p in package_stage.rglob("*") if p.is_file())
            try:
                if members_out:
                    write_package(members_out, dest)
            except OutputError as exc:
                released = [(d, Outcome(_blocked(o.decision, f"cannot write the output package ({exc})")))
                            if o.decision.action is not Action.BLOCK else (d, o) for d, o in released]
            for _, outcome in released:
                done(outcome)
    except ProductReadError as exc:
        done(Outcome(decide(unreadable(display, exc.problem, path), opts.policy)))
