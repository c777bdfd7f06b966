"""Shared fixtures: where the real metadata samples are, small product builders, and a private home per test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import Phase, settings

from rspolicy.model import Evidence, Fact

# scripts/mutation.py: a failing example only has to fail, not be shrunk to the smallest one.
settings.register_profile("mutation", phases=(Phase.explicit, Phase.reuse, Phase.generate), deadline=None)
# No per-example deadline: it is a timed assertion, which fails a loaded machine rather than a defect
# (speed is measured in benchmarks/).
settings.register_profile("rspolicy", deadline=None)
if settings.get_current_profile_name() == "default":  # --hypothesis-profile=NAME (mutation runs) keeps its own
    settings.load_profile("rspolicy")

#: Environment variables that tell rspolicy where the user's config file and audit log are, or how to key it.
#: Every test runs with these pointing into its own ``tmp_path`` (or unset): see :func:`_private_home`.
HOME_VARIABLES = ("HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "RSPOLICY_LOG", "RSPOLICY_LOG_KEY")
#: Those variables as the test run found them, before any test replaced them: the user's real ones.
REAL_ENVIRON = {"HOME": os.path.expanduser("~")} | {name: os.environ[name] for name in HOME_VARIABLES
                                                     if name in os.environ}

REAL_METADATA = Path(__file__).resolve().parents[2] / "shared" / "real_metadata"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture(autouse=True)
def _private_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reads the user's config file or writes to the user's audit log.

    ``$HOME`` is a fresh empty folder of its own (outside ``tmp_path``, which tests walk),
    the config file is looked for under ``tmp_path/config`` and the default log is
    ``tmp_path/state/rspolicy/decisions.jsonl`` (neither created: a test sees whether a
    command made them); ``$RSPOLICY_LOG`` and ``$RSPOLICY_LOG_KEY`` are unset. Subprocesses
    started with ``os.environ`` inherit the same.
    """
    home, config, state, log, key = HOME_VARIABLES
    monkeypatch.setenv(home, str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv(config, str(tmp_path / "config"))
    monkeypatch.setenv(state, str(tmp_path / "state"))
    monkeypatch.delenv(log, raising=False)
    monkeypatch.delenv(key, raising=False)


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
