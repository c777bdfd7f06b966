"""rspolicy: screen, degrade and log Earth-observation products before export.

The library API mirrors the command line: :func:`rspolicy.screen.screen` is
``rspolicy screen``, :func:`rspolicy.enforce.enforce` is ``rspolicy enforce``.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> from rspolicy.screen import screen
    >>> folder = Path(tempfile.mkdtemp())
    >>> with rasterio.open(folder / "scene-PAN.tif", "w", driver="GTiff", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32650", transform=from_origin(448000, 4417000, 0.3, 0.3)) as f:
    ...     f.write(np.zeros((1, 64, 64), "uint16"))
    >>> [(d.product_class.value, d.gsd_m, d.action, d.target_gsd_m) for d in screen([folder])]
    [('panchromatic', 0.3, <Action.RESAMPLE: 'resample'>, 0.5)]
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
