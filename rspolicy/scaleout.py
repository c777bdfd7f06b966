"""Scale-out on dask.distributed: workers read, decide and stage; the client alone records and places.

``rspolicy enforce --scheduler local|ADDRESS`` runs a batch on a Dask
cluster: a :class:`distributed.LocalCluster` of worker processes on this
machine, or an existing cluster's scheduler. Each work item (a product or a
package) is :func:`rspolicy.enforce.prepare`-d on a worker, which stages
its outputs in the shared output folder; the client then writes the audit
record and renames the staged files into place, exactly as a local run
does. So the log stays one linear chain written by one process, and the
record-before-release order holds whatever the workers do.

What must be shared with the workers: the input paths and the output folder
(the same paths on every host: a shared file system), and the policy (it
travels inside the work context, already loaded). The audit log stays on
the client's host.

dask.distributed is imported only when a scale-out run asks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rspolicy.enforce import Prepared, WorkContext, WorkItem, _crashed, prepare
from rspolicy.errors import RSPolicyError

__all__ = ["SchedulerError", "dask_client", "run_on"]


class SchedulerError(RSPolicyError, ConnectionError):
    """The Dask scheduler cannot be started or reached."""


@contextmanager
def dask_client(scheduler: str, workers: int) -> Iterator[Any]:
    """A Dask client for ``local`` (a LocalCluster of ``workers`` processes on loopback) or a scheduler address.

    Raises
    ------
    SchedulerError
        dask.distributed is not installed, or the scheduler cannot be reached.
    """
    try:
        from distributed import Client, LocalCluster  # noqa: PLC0415 - heavy, and only for scale-out
    except ImportError as exc:
        raise SchedulerError(f"--scheduler needs dask.distributed ({exc}); install rspolicy[dask]") from None
    try:
        if scheduler == "local":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None)
            client = Client(cluster)
        else:
            cluster = None
            client = Client(scheduler, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler {scheduler} ({exc})") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_on(client: Any, work: Sequence[WorkItem], ctx: WorkContext,
           stop: threading.Event) -> Iterator[tuple[int, Prepared]]:
    """Prepare every item on the client's cluster, yielding each (with its index in ``work``) as it completes.

    At most two items per worker thread are in flight, so that a stop (a
    signal) is honoured soon and a large batch does not flood the scheduler.
    A worker that dies or an item that raises fails that item only.
    """
    from distributed import as_completed  # noqa: PLC0415

    shared = client.scatter(ctx, broadcast=True)
    slots = max(1, 2 * sum(client.nthreads().values()))
    pending = list(reversed(list(enumerate(work))))
    owners: dict[Any, tuple[int, WorkItem]] = {}
    queue = as_completed()

    def submit_more() -> None:
        while pending and len(owners) < slots and not stop.is_set():
            index, item = pending.pop()
            future = client.submit(prepare, item, shared, pure=False)
            owners[future] = (index, item)
            queue.add(future)

    submit_more()
    for future in queue:
        index, item = owners.pop(future)
        try:
            yield index, future.result()
        except Exception as exc:  # noqa: BLE001 - a dead worker or a bug fails this item, never the batch
            yield index, _crashed(item, exc)
        submit_more()
