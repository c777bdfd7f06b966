"""Shared fixtures: where the real metadata samples are, and small product builders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings

from rspolicy.model import Evidence, Fact

# scripts/mutation.py: a failing example only has to fail, not be shrunk to the smallest one.
settings.register_profile("mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate), deadline=None)

REAL_METADATA = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"


def in_ci() -> bool:
    """Whether this run is CI's, which always has ``../shared`` beside the clone."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _missing(what: str) -> None:
    """Skip a test that needs the real samples, except in CI, where their absence is a failure."""
    if in_ci():
        pytest.fail(f"CI=true but {what}: CI always has ../shared beside the clone, and these tests must run there")
    pytest.skip(f"{what} (only in the project workspace, not in users' clones)")


def real_metadata_dir() -> Path:
    """The folder of real distributor sidecars: skipped when absent, failed when absent in CI."""
    if not REAL_METADATA.is_dir():
        _missing(f"real metadata samples not present at {REAL_METADATA}")
    return REAL_METADATA


@pytest.fixture
def real_metadata() -> Path:
    """The folder of real distributor sidecars (see :func:`real_metadata_dir`)."""
    return real_metadata_dir()


def real_file(name: str) -> Path:
    """One real distributor file: skipped when this clone has no ``../shared``, failed when CI has none."""
    path = real_metadata_dir() / name
    if not path.exists():
        _missing(f"real sidecar {path} not available")
    return path


def values(evidence: list[Evidence], fact: Fact) -> list[Any]:
    """The values of one fact, in reading order."""
    return [e.value for e in evidence if e.fact is fact]
