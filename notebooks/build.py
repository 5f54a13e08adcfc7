"""Build the chapter notebooks from their sources: `python notebooks/build.py` (all) or `... src/01_*.py`.

A source `notebooks/src/NN_name.py` is in jupytext's "percent" format: cells start with `# %%` (code) or
`# %% [markdown]`, cell metadata follows as JSON values (`tags=["parameters"]`; `jupyter={"source_hidden":
true}` hides a cell's input) and `# %matplotlib inline` is the magic. jupytext reads it; the notebook
`notebooks/NN_name.ipynb` keeps only the cells, their tags and `jupyter` metadata and stable ids, without
outputs, ready to commit (tests/test_notebook_build.py checks the committed ones are built from their sources).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
CELL_METADATA = ("tags", "jupyter")  # what a source says about a cell; the rest is jupytext's bookkeeping


def notebook(source: Path) -> nbformat.NotebookNode:
    """The notebook of a percent-format source, as committed."""
    built = jupytext.read(source, fmt="py:percent")
    built.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                      "language_info": {"name": "python"}}
    for index, cell in enumerate(built.cells):
        cell.metadata = {key: value for key, value in cell.metadata.items() if key in CELL_METADATA}
        cell.id = f"{source.stem[:2]}-{index:03d}"  # stable ids: rebuilding gives the same file
    nbformat.validate(built)
    return built


def build(source: Path, folder: Path = HERE) -> Path:
    """Write the notebook of `source` into `folder` (atomically) and return its path."""
    target = folder / f"{Path(source).stem}.ipynb"
    tmp = target.with_name(f".{target.name}.tmp")
    nbformat.write(notebook(Path(source)), tmp)
    os.replace(tmp, target)
    return target


if __name__ == "__main__":
    sources = [Path(a) for a in sys.argv[1:]] or sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    for path in sources:
        print(f"{path} -> {build(path)}")
