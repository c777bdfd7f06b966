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
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal

from rasterio.rpc import RPC

import rspolicy
from rspolicy.cog import write_cog
from rspolicy.degrade import DegradePlan, degrade_raster, plan_degrade, rebuild_raster
from rspolicy.errors import OutputError, ProductReadError, RSPolicyError
from rspolicy.georef import rpb_text
from rspolicy.model import Action, Decision, Evidence, Fact, ProductClass, ProductEvidence, Strength
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
from rspolicy.records import file_digest, sha256_file
from rspolicy.screen import decide
from rspolicy.sidecars import GridChange, rewrite_sidecar

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
    """

    decision: Decision
    outputs: tuple[FileDigest, ...] = ()
    output_gsd_m: float | None = None
    notes: tuple[str, ...] = ()
    inputs: tuple[FileDigest, ...] = ()


class _FatalError(Exception):
    """A failure after the record was written: the run stops (never turned into a block)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _blocked(decision: Decision, reason: str) -> Decision:
    return dataclasses.replace(decision, action=Action.BLOCK, target_gsd_m=None,
                               reasons=(*decision.reasons, reason))


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
        "RSPOLICY_POLICY": f"{decision.policy.name} {decision.policy.version}",
        "RSPOLICY_POLICY_SHA256": decision.policy.sha256,
        "RSPOLICY_DECISION_ID": decision.decision_id,
        "RSPOLICY_VERSION": rspolicy.__version__,
        **_class_tag(decision),
    }


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
                   rel: Callable[[Path], Path]) -> tuple[list[Path], list[str]]:
    product = decision.product
    assert product is not None  # allowed decisions always carry their product
    staged, notes = [], _withheld_notes(product)
    for f in product.files:
        dest = stage / rel(f)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f == product.raster and product.rebuild is not None:
            tags = {"RSPOLICY_DECISION_ID": decision.decision_id, "RSPOLICY_VERSION": rspolicy.__version__,
                    "RSPOLICY_POLICY": f"{decision.policy.name} {decision.policy.version}",
                    "RSPOLICY_POLICY_SHA256": decision.policy.sha256, **_class_tag(decision)}
            part = dest.with_name(dest.name + ".part")
            rebuild_raster(f, part, tags=tags, threads=opts.threads, rpcs=companion_rpcs(product))
            part.rename(dest)
            notes.append(f"rebuilt by rspolicy's writer: {product.rebuild}")
        else:
            shutil.copy2(f, dest)
        staged.append(dest)
    return staged, notes


def _stage_degraded(decision: Decision, opts: EnforceOptions, stage: Path,
                    rel: Callable[[Path], Path]) -> tuple[list[Path], list[str]]:
    product = decision.product
    assert product is not None and product.raster is not None  # resample decisions always carry them
    if product.raster.name.lower().endswith(HDF5_SUFFIXES):
        raise OutputError(f"{decision.path}: degrading HDF5 products is not supported")
    rpcs = companion_rpcs(product)
    plan = plan_degrade(decision, opts.policy, rpcs=rpcs)
    image = stage / rel(product.raster)
    image.parent.mkdir(parents=True, exist_ok=True)
    written = degrade_raster(product.raster, image.with_name(image.name + ".part"), plan,
                             tags=_provenance(decision, plan), threads=opts.threads,
                             intermediate=opts.output_format == "cog", rpcs=rpcs)
    if opts.output_format == "cog":
        write_cog(written.path, image, sar_mode=plan.sar_mode, threads=opts.threads)
        written.path.unlink()
    else:
        written.path.rename(image)
    staged, notes = [image], _withheld_notes(product)
    change = GridChange.of(plan, written)
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


def _rescreen(staged: list[Path], stage: Path, decision: Decision, policy: Policy) -> Decision:
    """Screen the staged copy as a recipient would, knowing the class that was decided."""
    products, _ = group_files(staged, lambda p: os.fspath(p.relative_to(stage)))
    if len(products) != 1:
        raise OutputError(f"staged output holds {len(products)} products, expected 1")
    product = read_product(products[0], lambda p: os.fspath(p.relative_to(stage)))
    if decision.product_class is not ProductClass.UNKNOWN:
        product = dataclasses.replace(product, evidence=(*product.evidence, decided_class_hint(decision)))
    return decide(product, policy)


#: One staged file and where it goes, relative to the output folder (or package).
_Move = tuple[Path, PurePath]


@dataclass(frozen=True)
class _Commit:
    """Where staged files go once they pass their re-screen.

    ``plan(staged, stage, digests)`` checks the destinations and returns the
    outputs as they will be and the moves to make; ``release(outcome,
    moves)`` records the outcome and then makes the moves. ``durable`` asks
    for each staged file to be flushed to disk first, so that the record can
    never name bytes that are not on disk yet.
    """

    plan: Callable[[list[Path], Path, list[str]], tuple[list[FileDigest], list[_Move]]]
    release: Callable[[Outcome, list[_Move]], None]
    durable: bool


def _process(decision: Decision, opts: EnforceOptions, out: OutputFolder, rel: Callable[[Path], Path],
             commit: _Commit) -> Outcome:
    """Act on one decision: stage, re-screen, record, place.

    The input files are hashed for the audit record on a thread of their own
    while the product is degraded: a second pass over a large input after
    the degrading would add its whole read time to the run.
    """
    product = decision.product
    if decision.action is Action.BLOCK or product is None or product.raster is None:
        return Outcome(decision)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rspolicy-digest") as hasher:
        hashed = hasher.submit(_input_digests, product)
        outcome = _act(decision, product, opts, out, rel, commit, hashed)
        if not outcome.inputs:
            outcome = dataclasses.replace(outcome, inputs=_inputs(hashed))
    return outcome


def _inputs(hashed: Future[tuple[FileDigest, ...]]) -> tuple[FileDigest, ...]:
    try:
        return hashed.result()
    except OSError:
        return ()  # the record hashes them itself, or says why it cannot


def _input_digests(product: ProductEvidence) -> tuple[FileDigest, ...]:
    return tuple(FileDigest(d["path"], d["size"], d["sha256"])
                 for d in (file_digest(f, product.label(i)) for i, f in enumerate(product.files) if f.is_file()))


def _act(decision: Decision, product: ProductEvidence, opts: EnforceOptions, out: OutputFolder,
         rel: Callable[[Path], Path], commit: _Commit, hashed: Future[tuple[FileDigest, ...]]) -> Outcome:
    try:
        # The sealer's threads finish before the stage is removed (exits run in reverse order).
        with out.stage() as stage, ThreadPoolExecutor(max_workers=2, thread_name_prefix="rspolicy-seal") as sealer:
            if decision.action is Action.ALLOW:
                staged, notes = _stage_allowed(decision, opts, stage, rel)
            else:
                staged, notes = _stage_degraded(decision, opts, stage, rel)
            # The staged bytes are final: hash them (and flush them to disk) while the re-screen
            # reads them, rather than one after the other.
            digests = [sealer.submit(sha256_file, p) for p in staged]
            flushed = [sealer.submit(_fsync, p) for p in staged] if commit.durable else []
            check = _rescreen(staged, stage, decision, opts.policy)
            if check.action is not Action.ALLOW:
                sealer.shutdown(cancel_futures=True)  # the files are about to be deleted
                return Outcome(_blocked(decision, "the written output failed its re-screen "
                                                  f"({check.action.value}: {'; '.join(check.reasons)}); "
                                                  "it was deleted"), notes=tuple(notes))
            for flush in flushed:
                flush.result()
            outputs, moves = commit.plan(staged, stage, [d.result() for d in digests])
            outcome = Outcome(decision, tuple(outputs), check.gsd_m, tuple(notes), _inputs(hashed))
            commit.release(outcome, moves)
            return outcome
    except _FatalError:
        raise
    except RSPolicyError as exc:
        return Outcome(_blocked(decision, f"{exc}; nothing was written"))
    except OSError as exc:
        return Outcome(_blocked(decision, f"{decision.path}: cannot write the output "
                                          f"({exc.strerror or exc}); nothing was written"))


class _Run:
    """One ``enforce`` run: its output folder, its hooks, and what it has recorded and placed."""

    def __init__(self, opts: EnforceOptions, out: OutputFolder, record: Callable[[Outcome], None] | None,
                 released: Callable[[Outcome], None] | None) -> None:
        self.opts = opts
        self.out = out
        self._record = record
        self._released = released
        self.outcomes: list[Outcome] = []
        self._recorded: set[str] = set()
        # GF-3 polarisations share one .meta.xml: the second product may find it
        # written by this run already, which is fine when the bytes are the same.
        self._written: dict[PurePath, str] = {}

    def record(self, outcome: Outcome) -> None:
        """Write the outcome's record; a failure stops the run (wrapped so no handler turns it into a block)."""
        self._recorded.add(outcome.decision.decision_id)
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

    def place(self, moves: list[_Move], what: str) -> None:
        """Make recorded moves; a failure now leaves a record the next run reconciles."""
        try:
            for src, dst in moves:
                self.out.place(src, dst)
        except (OSError, RSPolicyError) as exc:
            raise _FatalError(OutputError(f"{what}: recorded but could not be moved into place "
                                     f"({getattr(exc, 'strerror', None) or exc}); the next run with this log "
                                     "records that it was not released")) from exc

    def done(self, outcome: Outcome) -> None:
        """A final outcome: recorded now unless its release recorded it already."""
        if outcome.decision.decision_id not in self._recorded:
            self.record(outcome)
        self.outcomes.append(outcome)

    def files_commit(self) -> _Commit:
        """Commit for products released as loose files into the output folder."""
        def plan(staged: list[Path], stage: Path, digests: list[str]) -> tuple[list[FileDigest], list[_Move]]:
            rels = [PurePath(p.relative_to(stage)) for p in staged]
            outputs, moves = [], []
            for src, rel, digest in zip(staged, rels, digests, strict=True):
                if _already_written(self._written, rel, digest, os.fspath(self.out.final(rel))):
                    pass
                elif self.out.lexists(rel) and not self.opts.overwrite:
                    raise OutputError(f"{self.out.final(rel)}: output exists (use --overwrite to replace it)")
                else:
                    moves.append((src, rel))
                outputs.append(FileDigest(os.fspath(self.out.final(rel)), src.stat().st_size, digest))
            return outputs, moves

        def release(outcome: Outcome, moves: list[_Move]) -> None:
            self.record(outcome)
            self.place(moves, outcome.decision.path)
            for o in outcome.outputs:
                self._written[PurePath(Path(o.path).relative_to(self.out.root))] = o.sha256
            self.released(outcome)

        return _Commit(plan, release, durable=True)


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
        raise OutputError(f"{shown}: a sidecar shared with another product was already written with different "
                          "content (the products got different decisions)")
    return True


def _rel_to(base: Path) -> Callable[[Path], Path]:
    return lambda p: p.relative_to(base)


def enforce(paths: Iterable[str | os.PathLike[str]], opts: EnforceOptions,
            record: Callable[[Outcome], None] | None = None, *,
            released: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Release, degrade or refuse every product behind ``paths``.

    Parameters
    ----------
    paths
        Images, sidecars, directories, delivery packages.
    opts
        Output directory, policy, format, overwrite.
    record
        The audit log hook, called once per product with its final outcome.
        For a product that releases files it is called **before** the files
        are moved into place, with the paths, sizes and sha256 they will
        have: when it raises, nothing of that product is placed and the
        error propagates (the run stops). Blocked products are recorded as
        soon as they are decided, so a run stopped half-way has logged what
        it did.
    released
        Called after every file of a recorded outcome is in place (for a
        package: after the package file is). A run killed between ``record``
        and ``released`` leaves a record whose files may be absent.

    Returns
    -------
    list of Outcome
        One per product.

    Raises
    ------
    OutputError
        When the output folder cannot be created or opened, or recorded
        files could not be moved into place.
    Exception
        Whatever ``record`` or ``released`` raised.
    """
    with OutputFolder(opts.outdir) as out:
        out.remove_stale_stages()
        run = _Run(opts, out, record, released)
        try:
            _enforce_all(paths, opts, out, run)
        except _FatalError as fatal:
            raise fatal.error from None
    return run.outcomes


def _enforce_all(paths: Iterable[str | os.PathLike[str]], opts: EnforceOptions, out: OutputFolder,
                 run: _Run) -> None:
    commit = run.files_commit()
    for item in discover(paths):
        if isinstance(item, FoundProduct):
            decision = decide(read_product(item.files, item.label), opts.policy)
            run.done(_process(decision, opts, out, _rel_to(item.base), commit))
        elif isinstance(item, FoundPackage):
            _enforce_package(item.path, item.display, item.dest, opts, run)
        elif not isinstance(item, Skipped):
            run.done(Outcome(decide(item, opts.policy)))


def _enforce_package(path: Path, display: str, dest: PurePath, opts: EnforceOptions, run: _Run) -> None:
    """A package in, a package out: released and degraded members only.

    Members are staged into a private folder; the package is written there,
    hashed, every member's record written (with the package file's own
    digest), and only then is the package renamed into place.
    """
    out = run.out
    final = out.final(dest)
    try:
        with opened_package(path) as (root, members), out.stage() as package_stage:
            def label(p: Path) -> str:
                return f"{display}{PACKAGE_SEPARATOR}{display_name(p.relative_to(root).as_posix())}"

            products, _ = group_files([m.local for m in members if not is_package(m.local)], label)
            if not products:
                run.done(Outcome(decide(unreadable(display, "package holds no product image", path), opts.policy)))
                return
            try:
                refusal = (f"{final}: output package exists (use --overwrite)"
                           if out.lexists(dest) and not opts.overwrite else None)
            except OutputError as exc:
                refusal = f"{exc}; nothing was written"
            if refusal is not None:
                for files in products:
                    run.done(Outcome(_blocked(decide(read_product(files, label), opts.policy), refusal)))
                return
            member_root = package_stage / "members"
            member_root.mkdir()

            kept: dict[PurePath, str] = {}

            def plan(staged: list[Path], stage: Path, digests: list[str]) -> tuple[list[FileDigest], list[_Move]]:
                rels = [PurePath(f.relative_to(stage)) for f in staged]
                moves = []
                for src, rel, digest in zip(staged, rels, digests, strict=True):
                    if not _already_written(kept, rel, digest, f"{final}!{rel.as_posix()}"):
                        moves.append((src, rel))
                return ([FileDigest(f"{final}!{r.as_posix()}", f.stat().st_size, d)
                         for f, r, d in zip(staged, rels, digests, strict=True)], moves)

            def keep(outcome: Outcome, moves: list[_Move]) -> None:
                for src, rel in moves:
                    target = member_root / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, target)
                for o in outcome.outputs:
                    kept[PurePath(o.path.split("!", 1)[1])] = o.sha256

            outcomes = [_process(decide(read_product(files, label), opts.policy), opts, out, _rel_to(root),
                                 _Commit(plan, keep, durable=False))
                        for files in products]
            members_out = sorted((p, p.relative_to(member_root).as_posix())
                                 for p in member_root.rglob("*") if p.is_file())
            package_file = package_stage / dest.name
            try:
                if members_out:
                    write_package(members_out, package_file)
            except OutputError as exc:
                outcomes = [Outcome(_blocked(o.decision, f"cannot write the output package ({exc})"))
                            if o.decision.action is not Action.BLOCK else o for o in outcomes]
                members_out = []
            if members_out:
                package_digest = FileDigest(os.fspath(final), package_file.stat().st_size, sha256_file(package_file))
                outcomes = [dataclasses.replace(o, outputs=(*o.outputs, package_digest)) if o.outputs else o
                            for o in outcomes]
            for outcome in outcomes:
                run.record(outcome)
            if members_out:
                run.place([(package_file, dest)], os.fspath(final))
                for outcome in outcomes:
                    if outcome.outputs:
                        run.released(outcome)
            for outcome in outcomes:
                run.done(outcome)
    except ProductReadError as exc:
        run.done(Outcome(decide(unreadable(display, exc.problem, path), opts.policy)))
