"""rspolicy: screen, degrade and log Earth-observation products before export.

The library API mirrors the command line, one entry point per verb:
:func:`screen_products` is ``rspolicy screen``, :func:`enforce_products` is
``rspolicy enforce`` (recording to the audit log as the command does),
:func:`load_policy` picks a policy as ``--policy`` does, and
:func:`area_average` is the resampling kernel. They load on first use, so
``import rspolicy`` stays light.

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> import rspolicy
    >>> folder = Path(tempfile.mkdtemp())
    >>> with rasterio.open(folder / "scene-PAN.tif", "w", driver="GTiff", width=64, height=64, count=1,
    ...                    dtype="uint16", crs="EPSG:32650", transform=from_origin(448000, 4417000, 0.3, 0.3)) as f:
    ...     f.write(np.zeros((1, 64, 64), "uint16"))
    >>> decisions = rspolicy.screen_products(folder, log=False)
    >>> [(d.product_class.value, d.gsd_m, d.action, d.target_gsd_m) for d in decisions]
    [('panchromatic', 0.3, <Action.RESAMPLE: 'resample'>, 0.5)]
"""

from typing import TYPE_CHECKING, Any

from rspolicy.errors import (
    AuditLogError,
    OutputError,
    PolicyError,
    ProductReadError,
    ResampleError,
    RSPolicyError,
    StacError,
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

if TYPE_CHECKING:
    from rspolicy.api import enforce_products, screen_products
    from rspolicy.policy import load_policy
    from rspolicy.resample import area_average

#: Entry points loaded on first use (they bring GDAL, pyproj and numpy with them).
_LAZY = {"screen_products": "rspolicy.api", "enforce_products": "rspolicy.api", "load_policy": "rspolicy.policy",
         "area_average": "rspolicy.resample"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rspolicy' has no attribute {name!r}")


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
    "StacError",
    "UnsafePackageError",
    "__version__",
    "area_average",
    "enforce_products",
    "load_policy",
    "screen_products",
]
