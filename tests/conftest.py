"""Shared fixtures: the real DAVIS-2016 dev data when present, small synthetic DAVIS folders otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def davis2016_root() -> Path:
    """../shared/data/davis2016-dev (14 real DAVIS-2016 sequences); the test skips when it is absent."""
    root = SHARED_DATA / "davis2016-dev"
    if not (root / "ImageSets").is_dir():
        pytest.skip(f"real DAVIS data not found at {root}")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A small synthetic DAVIS-2017 folder: 2 sequences x 8 frames of 96x160, 3 objects."""
    from vos_lab.data.synthetic import write_synthetic_davis

    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_davis(root, sequences=2, frames=8, height=96, width=160, seed=0, objects=3)
    return root
