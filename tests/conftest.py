"""Shared fixtures: the real DAVIS-2016 dev data when present, small synthetic DAVIS folders otherwise.

The session (and the notebook kernels nbval starts, which inherit the environment) works in a temporary
course folder ($VOS_LAB_HOME), so nothing is written into the repository: the session fails if it finds new
files in the repository's checkpoints/, runs/ or lectures/ at its end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from vos_lab.paths import HOME_VAR

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = REPOSITORY.parent / "shared" / "data"
COURSE_OUTPUTS = ("checkpoints", "runs", "lectures", "zoo")  # what the chapters and `make course` write in a checkout
_home = pytest.StashKey[Path]()
_outputs = pytest.StashKey[set]()

torch.set_num_threads(1)


def course_outputs() -> set[Path]:
    """Every file and folder under the repository's course outputs."""
    return {path for name in COURSE_OUTPUTS for path in (REPOSITORY / name).rglob("*")} | {
        REPOSITORY / name for name in COURSE_OUTPUTS if (REPOSITORY / name).exists()}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_home] = Path(tempfile.mkdtemp(prefix="vos_lab-home-"))
    config.stash[_outputs] = course_outputs()
    os.environ[HOME_VAR] = str(config.stash[_home])


def pytest_sessionfinish(session: pytest.Session) -> None:
    new = sorted(course_outputs() - session.config.stash[_outputs])
    if new:
        print(f"\nerror: the tests wrote into the repository: {', '.join(str(p) for p in new[:5])}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash[_home], ignore_errors=True)


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
