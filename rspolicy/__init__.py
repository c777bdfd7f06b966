"""rspolicy: screen, degrade and log Earth-observation products before export.

The library API mirrors the command line::

    >>> import rspolicy
    >>> decisions = rspolicy.screen(["scene.tif"])          # doctest: +SKIP
    >>> decisions[0].action                                  # doctest: +SKIP
    <Action.RESAMPLE: 'resample'>
"""

from rspolicy.errors import (
    AuditLogError,
    OutputError,
    PolicyError,
    ProductReadError,
    ResampleError,
    RSPolicyError,
    UnsafePackageError,
)
from rspolicy.model import (
    Action,
    Classification,
    Decision,
    Evidence,
    Fact,
    PolicyRef,
    ProductClass,
    ProductEvidence,
    Resolution,
)

__version__ = "0.1.0"

__all__ = [
    "Action",
    "AuditLogError",
    "Classification",
    "Decision",
    "Evidence",
    "Fact",
    "OutputError",
    "PolicyError",
    "PolicyRef",
    "ProductClass",
    "ProductEvidence",
    "ProductReadError",
    "RSPolicyError",
    "Resolution",
    "ResampleError",
    "UnsafePackageError",
    "__version__",
]
