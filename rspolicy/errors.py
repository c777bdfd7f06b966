"""The one error hierarchy of rspolicy.

Every error rspolicy raises on purpose derives from :class:`RSPolicyError`.
Like rasterio, the specific errors are also mixed with the builtin they
resemble, so that ``except OSError`` or ``except ValueError`` in a caller's
processing chain keeps working.
"""

from __future__ import annotations

from pathlib import Path


class RSPolicyError(Exception):
    """Root of every error raised by rspolicy."""


class ProductReadError(RSPolicyError, OSError):
    """A product, or one of its files, cannot be read or understood.

    Parameters
    ----------
    path
        The file at fault.
    problem
        One line saying what is wrong with it.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class UnsafePackageError(ProductReadError):
    """A delivery package holds a member that must not be extracted."""


class PolicyError(RSPolicyError, ValueError):
    """A policy file is missing, malformed or inconsistent."""


class ResampleError(RSPolicyError, ValueError):
    """The resampling kernel was given arguments it cannot honour."""


class OutputError(RSPolicyError, OSError):
    """An output cannot be written (exists, unwritable, failed the re-screen)."""


class AuditLogError(RSPolicyError, OSError):
    """The audit log cannot be read, written or verified."""


class ReportError(RSPolicyError, ValueError):
    """A batch report cannot be written as asked (unknown format, a value that cannot be serialised)."""


class UnsupportedProductError(RSPolicyError, ValueError):
    """rspolicy cannot produce a compliant output for this product (e.g. degrading HDF5): it is blocked."""


class StacError(RSPolicyError, ValueError):
    """A STAC Item does not validate, or a STAC document cannot be used as input."""
