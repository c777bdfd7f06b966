"""The library's entry points, one per verb, with the command line's defaults.

``screen_products`` is ``rspolicy screen``, ``enforce_products`` is
``rspolicy enforce`` (audit log included), ``load_policy`` picks a policy as
``--policy`` does, and ``area_average`` is the resampling kernel. They are
re-exported at the top of the package: ``rspolicy.enforce_products(...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from rspolicy.audit import AuditLog, open_audit_log
from rspolicy.batch import logged_enforce
from rspolicy.config import load_config
from rspolicy.enforce import EnforceOptions, Outcome, check_release_time, resume_scope, work_items
from rspolicy.model import Decision, Recipient, Request
from rspolicy.policy import Policy, load_policy, request_from
from rspolicy.records import Requester, decision_record
from rspolicy.screen import iter_screen

PathsLike = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]

#: ``log=`` value that records nothing (a caller that keeps its own records).
NO_LOG: Literal[False] = False


def _paths(paths: PathsLike) -> list[str | os.PathLike[str]]:
    return [paths] if isinstance(paths, str | os.PathLike) else list(paths)


def _policy(policy: Policy | str | os.PathLike[str] | None) -> Policy:
    """The policy as ``--policy`` picks it: given, else the config file's, else cnsa-2022."""
    if isinstance(policy, Policy):
        return policy
    return load_policy(policy if policy is not None else load_config().policy)


def _open_log(log: str | os.PathLike[str] | Literal[False] | None, *, required: bool) -> AuditLog | None:
    if log is False:
        return None
    return open_audit_log(log, required=required)


def screen_products(paths: PathsLike, policy: Policy | str | os.PathLike[str] | None = None, *,
                    recipient: str | Recipient | None = None, purpose: str | None = None,
                    approval: str | None = None, at: str | datetime | None = None, jobs: int = 1,
                    log: str | os.PathLike[str] | Literal[False] | None = None,
                    operator: str | None = None) -> list[Decision]:
    """Screen products and return one decision per product, as ``rspolicy screen`` does.

    Parameters
    ----------
    paths
        One path or several: images, sidecars, folders, delivery packages.
    policy
        A loaded policy, a policy name or file; None: the config file's
        policy, else ``cnsa-2022``.
    recipient, purpose, approval, at
        The request, as ``--recipient CC[:ORG]``, ``--purpose``,
        ``--approval REF`` and ``--at TIME`` (default: released now).
    jobs
        Products read at once, each in an isolated worker process.
    log
        Record every decision in this audit log; None: the log
        ``$RSPOLICY_LOG`` or the config file names, if any (as the command);
        False: record nothing.
    operator
        Who decides (default: the OS user), for the records.

    Returns
    -------
    list of Decision
        Non-product files are left out.

    Raises
    ------
    PolicyError
        The policy or the request cannot be used.
    AuditLogError
        The audit log cannot be opened or written.

    Examples
    --------
    >>> import rspolicy, tempfile, numpy as np, rasterio
    >>> from pathlib import Path
    >>> from rasterio.transform import from_origin
    >>> scene = Path(tempfile.mkdtemp()) / "scene-PAN.tif"
    >>> with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint16",
    ...                    crs="EPSG:32650", transform=from_origin(448000, 4417000, 0.3, 0.3)) as f:
    ...     f.write(np.ones((1, 64, 64), "uint16"))
    >>> [(d.action.value, d.target_gsd_m, d.rule) for d in rspolicy.screen_products(scene, log=False)]
    [('resample', 0.5, 'cnsa-2022/panchromatic')]
    """
    loaded = _policy(policy)
    request = request_from(recipient, purpose, approval, at)
    decisions: list[Decision] = []
    audit = _open_log(log, required=False)
    requester = Requester.current(operator=operator, recipient=None if recipient is None else str(recipient),
                                  purpose=purpose)
    try:
        for item in iter_screen(_paths(paths), loaded, jobs=jobs, request=request):
            if isinstance(item, Decision):
                decisions.append(item)
                if audit is not None:
                    # While the product's files (a package member's too) are still on disk to be hashed.
                    audit.append(decision_record(item, requester, command="screen"))
    finally:
        if audit is not None:
            audit.close()
    return decisions


def enforce_products(paths: PathsLike, outdir: str | os.PathLike[str],
                     policy: Policy | str | os.PathLike[str] | None = None, *,
                     recipient: str | Recipient | None = None, purpose: str | None = None,
                     approval: str | None = None, at: str | datetime | None = None,
                     log: str | os.PathLike[str] | Literal[False] | None = None, operator: str | None = None,
                     jobs: int = 1, output_format: Literal["gtiff", "cog"] = "gtiff", force: bool = False,
                     creation_options: Mapping[str, str] | None = None,
                     scheduler: str | None = None, stac: bool = False) -> list[Outcome]:
    """Release, degrade or refuse every product behind ``paths`` into ``outdir``, as ``rspolicy enforce`` does.

    Every outcome is recorded in the audit log exactly as the command
    records it (a decision or failure record before a product's files are
    moved into place, a ``released`` record after; products an earlier run
    with this log completed are skipped), unless ``log=False``.

    Parameters
    ----------
    paths
        Images, sidecars, folders, delivery packages.
    outdir
        Where released products go (created when missing).
    policy
        A loaded policy, a policy name or file; None: the config file's, else ``cnsa-2022``.
    recipient, purpose, approval, at
        The request (``at`` may not be later than now: what is released leaves now).
    log
        The audit log; None: ``$RSPOLICY_LOG``, the config file's, else
        ``~/.local/state/rspolicy/decisions.jsonl`` (as the command); False:
        record nothing and skip nothing.
    operator
        Who decides (default: the OS user), for the records.
    jobs, output_format, force, creation_options, scheduler
        As ``--jobs``, ``--format``, ``--force``, ``--co`` and ``--scheduler``.
    stac
        As ``--stac``: a STAC Item beside every released product (:mod:`rspolicy.stac`).

    Returns
    -------
    list of rspolicy.enforce.Outcome
        One per product: ``outcome.result`` is released, degraded, blocked, failed or skipped.

    Raises
    ------
    PolicyError
        The policy or the request cannot be used.
    OutputError
        The output folder cannot be created or used.
    AuditLogError
        The audit log cannot be opened or written (the run stops).

    Examples
    --------
    A 0.3 m panchromatic scene leaves degraded to 0.5 m, with its STAC Item:

    >>> import rspolicy, tempfile, numpy as np, rasterio
    >>> from pathlib import Path
    >>> from rasterio.transform import from_origin
    >>> work = Path(tempfile.mkdtemp())
    >>> (work / "in").mkdir()
    >>> with rasterio.open(work / "in" / "scene-PAN.tif", "w", driver="GTiff", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32650", transform=from_origin(448000, 4417000, 0.3, 0.3)) as d:
    ...     d.write(np.ones((1, 64, 64), "uint16"))
    >>> (outcome,) = rspolicy.enforce_products(work / "in", work / "out", log=work / "decisions.jsonl", stac=True)
    >>> outcome.result.value, outcome.decision.target_gsd_m, outcome.output_gsd_m
    ('degraded', 0.5, 0.5)
    >>> sorted(Path(f.path).name for f in outcome.outputs)
    ['scene-PAN.stac.json', 'scene-PAN.tif']
    """
    loaded = _policy(policy)
    request = request_from(recipient, purpose, approval, at)
    check_release_time(request)
    cores = os.cpu_count() or 1
    opts = EnforceOptions(outdir=Path(outdir), policy=loaded, output_format=output_format, force=force,
                          threads=max(1, cores // jobs), jobs=jobs, creation_options=dict(creation_options or {}),
                          request=request, stac=stac,
                          resume_scope=resume_scope(loaded, request, explicit_time=at is not None))
    items = work_items(_paths(paths))
    audit = _open_log(log, required=True)
    if audit is None:
        from rspolicy.enforce import enforce  # noqa: PLC0415 - only the unlogged path needs the bare call

        return enforce(items, opts)
    requester = Requester.current(operator=operator, recipient=None if recipient is None else str(recipient),
                                  purpose=purpose)
    with audit:
        return logged_enforce(items, opts, audit, requester, scheduler=scheduler)


__all__ = ["NO_LOG", "Request", "enforce_products", "load_policy", "screen_products"]
