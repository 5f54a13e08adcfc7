"""The committed notebooks are what jupytext builds from their percent-format sources, without outputs."""

import importlib.util
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted((NOTEBOOKS / "src").glob("[0-9][0-9]_*.py"))


def _build_module():
    spec = importlib.util.spec_from_file_location("notebook_build", NOTEBOOKS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cells(notebook) -> list[tuple]:
    return [(c.cell_type, c.source, c.metadata.get("tags", []), c.metadata.get("jupyter", {})) for c in notebook.cells]


def test_every_notebook_has_a_source():
    assert len(SOURCES) >= 4
    assert [p.stem for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))] == [p.stem for p in SOURCES]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_matches_its_source_without_outputs(source, tmp_path):
    committed = nbformat.read(NOTEBOOKS / f"{source.stem}.ipynb", as_version=4)
    assert _cells(committed) == _cells(jupytext.read(source)), f"run: python notebooks/build.py {source.name}"
    assert [c for c in committed.cells if c.get("outputs") or c.get("execution_count")] == []
    assert [i for i, c in enumerate(committed.cells) if "parameters" in c.metadata.get("tags", [])] == [1], \
        "papermill's parameters cell: the second one"
    built = _build_module().build(source, tmp_path)
    assert built.read_bytes() == (NOTEBOOKS / built.name).read_bytes(), "rebuilding gives the same file"
