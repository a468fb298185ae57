"""Shared fixtures: real faces that the repository may ship, and ../shared/data when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """NASA's public-domain portrait of Eileen Collins (512×512 RGB), shipped inside scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (CI has it); tests that need it are skipped on a fresh machine without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data at {SHARED_DATA}, which is absent on this machine")
    return SHARED_DATA
