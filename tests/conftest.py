"""Shared fixtures: where the real metadata samples are, and small product builders."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_METADATA = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def real_metadata() -> Path:
    """The folder of real distributor sidecars, or a skip when this clone has none."""
    if not REAL_METADATA.is_dir():
        pytest.skip(f"real metadata samples not present at {REAL_METADATA} (only in the project workspace)")
    return REAL_METADATA
