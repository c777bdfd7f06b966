"""Shared fixtures: where the real metadata samples are, and small product builders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rspolicy.model import Evidence, Fact

REAL_METADATA = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture
def real_metadata() -> Path:
    """The folder of real distributor sidecars, or a skip when this clone has none."""
    if not REAL_METADATA.is_dir():
        pytest.skip(f"real metadata samples not present at {REAL_METADATA} (only in the project workspace)")
    return REAL_METADATA


def real_file(name: str) -> Path:
    """One real distributor file, or a skip when this clone has no ``../shared``."""
    path = REAL_METADATA / name
    if not path.exists():
        pytest.skip(f"real sidecar {path} not available (needs the shared real_metadata folder)")
    return path


def values(evidence: list[Evidence], fact: Fact) -> list[Any]:
    """The values of one fact, in reading order."""
    return [e.value for e in evidence if e.fact is fact]
