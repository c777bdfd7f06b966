"""The batch step with its audit log, as one library call: what ``rspolicy enforce`` runs.

:func:`rspolicy.enforce.enforce` releases, degrades or refuses products and
calls hooks; :func:`logged_enforce` wires those hooks to an audit log exactly
as the command does: a decision (or failure) record before a product's files
are moved into place, a ``released`` record after, a ``reconcile`` record for
an earlier run killed in between, and products an earlier run completed with
this log skipped. The command adds only its display, signals and report.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rspolicy.audit import AuditLog, iter_records
from rspolicy.enforce import EnforceOptions, Outcome, WorkItem, enforce, other_runs
from rspolicy.records import (
    BatchHistory,
    Requester,
    completed_products,
    decision_record,
    display_text,
    failure_record,
    reconcile_releases,
    released_record,
)
from rspolicy.results import Result


def logged_enforce(items: Iterable[str | os.PathLike[str]] | Sequence[WorkItem], opts: EnforceOptions,
                   log: AuditLog, requester: Requester, *,
                   progress: Callable[[Outcome], None] | None = None,
                   notice: Callable[[str], None] | None = None,
                   stop: threading.Event | None = None,
                   scheduler: str | None = None) -> list[Outcome]:
    """Run the batch step into ``opts.outdir``, recording every outcome in ``log``.

    Parameters
    ----------
    items
        Paths, or the work items :func:`rspolicy.enforce.work_items` found.
    opts
        Output folder, policy, request, format, jobs.
    log
        The open audit log (the caller closes it).
    requester
        Operator, host, recipient and purpose written into each record.
    progress
        Called once per product when its outcome is final.
    notice
        Called with one line for what an operator should know before the
        run starts: records of an earlier run reconciled, or another run
        writing into the same folder (so nothing is reconciled).
    stop
        When set, no further product is started.
    scheduler
        ``local`` or a Dask scheduler address: products run on Dask workers.

    Returns
    -------
    list of Outcome
        One per product, in the order they finished.
    """

    def record(outcome: Outcome) -> None:
        inputs = [i.to_dict() for i in outcome.inputs]
        if outcome.result is Result.FAILED:
            log.append(failure_record(outcome.display, outcome.reason, requester, decision=outcome.decision,
                                      inputs=inputs, batch=outcome.batch))
            return
        assert outcome.decision is not None
        log.append(decision_record(outcome.decision, requester, command="enforce",
                                   outputs=[o.to_dict() for o in outcome.outputs],
                                   output_gsd_m=outcome.output_gsd_m, notes=outcome.notes, inputs=inputs,
                                   batch=outcome.batch, masked_fraction=outcome.masked_fraction))

    def released(outcome: Outcome) -> None:
        assert outcome.decision is not None
        log.append(released_record(outcome.decision.decision_id, outcome.decision.path, requester))

    tell = notice or (lambda _line: None)
    outdir = Path(opts.outdir)
    # A run killed between a record and its renames left records whose files are absent:
    # say so in the log before this run adds its own.
    busy = other_runs(outdir)
    if busy:
        tell(f"note: not reconciling the log: another run (pid {', '.join(map(str, busy))}) is writing into "
             f"{display_text(str(outdir))}")
    for rec in ([] if busy else reconcile_releases(log, outdir, requester)):
        if rec.get("event") == "reconcile":
            tell(display_text(f"reconciled: decision {rec['decision_id']} was recorded but not released "
                              f"({', '.join(rec['absent'] + rec['differs'])})"))
    files = [f for f in log.files() if f.exists()]
    prior = BatchHistory() if opts.force or not files else completed_products(iter_records(files))
    if scheduler:
        from rspolicy.scaleout import dask_client  # noqa: PLC0415 - dask is an optional extra

        with dask_client(scheduler, opts.jobs) as client:
            return enforce(items, opts, record, released=released, progress=progress, prior=prior,
                           executor=client, stop=stop)
    return enforce(items, opts, record, released=released, progress=progress, prior=prior, stop=stop)
