"""A non-editable install (`pip install .`) finds its chapters and solutions and renders a lecture."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package installed (not linked) into a fresh folder, as `pip install .` would, from a copy of the
    sources (so no build/ folder left in the repository can leak stale files into it)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for name in ("vos_lab", "notebooks"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, cwd=source)
    return target


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(installed)}
    env.pop("VOS_LAB_HOME", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_installed_copy_finds_chapters_and_solutions(installed: Path, tmp_path: Path):
    code = ("import vos_lab, vos_lab.paths as p; from vos_lab.course.exercises import solution; "
            "from vos_lab.course.lectures import discover; "
            "print(vos_lab.__file__); print(p.is_source_checkout()); print(p.course_home()); "
            "print(','.join(c.name for c in discover())); print(solution(1, 'context_frames')(5, 2))")
    result = _run(installed, tmp_path, "-c", code)
    assert result.returncode == 0, result.stderr
    where, source, home, chapters, answer = result.stdout.split("\n")[:5]
    assert where.startswith(str(installed))  # the installed copy, not the repository
    assert source == "False" and Path(home) == tmp_path.resolve()
    assert chapters.split(",")[:2] == ["00_task_data_metric", "01_correspondence_propagation"]
    assert answer == "[0, 3, 4]"


@pytest.mark.slow
def test_installed_copy_renders_a_lecture(installed: Path, tmp_path: Path):
    result = _run(installed, tmp_path, "-m", "vos_lab", "lectures", "--profile", "smoke", "--chapters", "0",
                  "--out", "lectures", "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "lectures" / "00_task_data_metric.html").stat().st_size > 10_000
    assert not (installed / "vos_lab" / "course" / "chapters" / "checkpoints").exists()
