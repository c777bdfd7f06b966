"""What a batch did: one outcome per product, their totals, and the exit status.

``enforce`` ends every product in exactly one :class:`Result`:

* ``released``: allowed, its files left as they were (or rebuilt pixel-exact);
* ``degraded``: resampled to the policy's target and released;
* ``blocked``: the policy (or the gate's fail-closed rules) kept it back;
* ``failed``: rspolicy could not complete (I/O, permissions, disk full, an
  output already there): not a policy decision, and never logged as one;
* ``skipped``: an earlier run already completed it (same inputs, same policy,
  outputs present and intact).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class Result(enum.StrEnum):
    """How one product ended in a batch."""

    RELEASED = "released"
    DEGRADED = "degraded"
    BLOCKED = "blocked"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class FileDigest:
    """One file read or written: its path (inside a package: ``package!member``), size and sha256."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def is_package_member(path: str, released: Iterable[str]) -> bool:
    """Whether ``path`` is a member (``package!member``) of a package file among ``released``.

    The package is a released path followed by ``!``, not whatever comes
    before the first ``!``: the output folder's own name may hold one.

    >>> is_package_member("/out!1/p.tar.gz!a.tif", ["/out!1/p.tar.gz", "/out!1/p.tar.gz!a.tif"])
    True
    >>> is_package_member("/out!1/a.tif", ["/out!1/a.tif"])
    False
    """
    return any(path.startswith(p + "!") for p in released)


@dataclass(frozen=True)
class ProductResult:
    """The end of one product in a batch, as reports and progress displays show it.

    Attributes
    ----------
    path
        The product's display path (escaped).
    result
        Its outcome.
    reason
        The reason that decided (for a failure, what failed).
    decision_id
        The decision's id (for a skipped product, the earlier decision's).
    product_class, satellite
        As decided, when known.
    gsd_m, target_gsd_m, output_gsd_m
        Source resolution, the policy's target, and what was written (metres).
    outputs
        Files released, with sizes and sha256.
    bytes_in
        Size of the product's input files.
    seconds
        Wall-clock time spent on it.
    """

    path: str
    result: Result
    reason: str
    decision_id: str | None = None
    product_class: str | None = None
    satellite: str | None = None
    gsd_m: float | None = None
    target_gsd_m: float | None = None
    output_gsd_m: float | None = None
    outputs: tuple[FileDigest, ...] = ()
    bytes_in: int = 0
    seconds: float = 0.0

    @property
    def bytes_out(self) -> int:
        """Bytes released (a package's members are counted once, as the package file)."""
        paths = [o.path for o in self.outputs]
        return sum(o.size for o in self.outputs if not is_package_member(o.path, paths))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping (the report's entry for this product)."""
        return {
            "path": self.path,
            "outcome": self.result.value,
            "decision_id": self.decision_id,
            "class": self.product_class,
            "satellite": self.satellite,
            "gsd_m": self.gsd_m,
            "target_gsd_m": self.target_gsd_m,
            "output_gsd_m": self.output_gsd_m,
            "reason": self.reason,
            "outputs": [o.to_dict() for o in self.outputs],
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class BatchSummary:
    """Totals of a batch.

    Attributes
    ----------
    counts
        Products per outcome (every :class:`Result` present, zero included).
    bytes_in, bytes_out
        Bytes read and released.
    seconds
        Wall-clock time of the whole batch.
    """

    counts: Mapping[Result, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0

    @classmethod
    def of(cls, results: Iterable[ProductResult], seconds: float) -> BatchSummary:
        """Sum up results.

        >>> s = BatchSummary.of([ProductResult("a.tif", Result.BLOCKED, "too fine", bytes_in=10)], 1.5)
        >>> s.counts[Result.BLOCKED], s.counts[Result.RELEASED], s.bytes_in
        (1, 0, 10)
        """
        counts = dict.fromkeys(Result, 0)
        bytes_in = bytes_out = 0
        for r in results:
            counts[r.result] += 1
            bytes_in += r.bytes_in
            bytes_out += r.bytes_out
        return cls(counts, bytes_in, bytes_out, seconds)

    @property
    def total(self) -> int:
        """Number of products."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping: one count per outcome, then the totals."""
        return {**{r.value: self.counts.get(r, 0) for r in Result}, "products": self.total,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out, "seconds": round(self.seconds, 3)}


#: Exit statuses of ``rspolicy enforce``.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 4


def batch_exit_status(results: Iterable[Result]) -> int:
    """The exit status of a batch: 1 when any product failed, else 4 when any was blocked, else 0.

    A failure outranks a block: the batch did not complete, and a rerun is needed.

    >>> batch_exit_status([Result.RELEASED, Result.DEGRADED, Result.SKIPPED])
    0
    >>> batch_exit_status([Result.BLOCKED, Result.RELEASED])
    4
    >>> batch_exit_status([Result.BLOCKED, Result.FAILED])
    1
    """
    seen = set(results)
    if Result.FAILED in seen:
        return EXIT_FAILED
    if Result.BLOCKED in seen:
        return EXIT_BLOCKED
    return EXIT_OK
