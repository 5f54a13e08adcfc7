"""Build the chapter notebooks from their sources: `python notebooks/build.py` (all) or `... src/01_*.py`.

A source `notebooks/src/NN_name.py` is a Python file in the "percent" format: cells start with a line
`# %%` (code) or `# %% [markdown]` (markdown, every line prefixed by "# "); `# %% tags=["parameters"]`
adds tags, `# %% collapsed` hides a cell's input (solutions), and `# %matplotlib ...` becomes the
magic. The notebook `notebooks/NN_name.ipynb` is written without outputs or execution counts, ready to
commit.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
HEADER = re.compile(r"^# %%(?P<markdown> \[markdown\])?(?P<collapsed> collapsed)?(?: tags=(?P<tags>\[.*\]))?\s*$")


def parse(text: str) -> list:
    cells, current = [], None
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            tags = json.loads(match["tags"]) if match["tags"] else []
            current = {"markdown": bool(match["markdown"]), "lines": [], "tags": tags,
                       "collapsed": bool(match["collapsed"])}
            cells.append(current)
        elif current is not None:
            current["lines"].append(line)
    notebook_cells = []
    for cell in cells:
        lines = cell["lines"]
        while lines and not lines[-1].strip():
            lines.pop()
        if cell["markdown"]:
            source = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines)
            node = nbformat.v4.new_markdown_cell(source)
        else:
            lines = [line[2:] if line.startswith("# %matplotlib") else line for line in lines]  # magics
            node = nbformat.v4.new_code_cell("\n".join(lines))
        if cell["tags"]:
            node.metadata["tags"] = cell["tags"]
        if cell["collapsed"]:
            node.metadata["jupyter"] = {"source_hidden": True}
        notebook_cells.append(node)
    return notebook_cells


def build(source: Path) -> Path:
    notebook = nbformat.v4.new_notebook(cells=parse(source.read_text()))
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for index, cell in enumerate(notebook.cells):
        cell.id = f"{source.stem[:2]}-{index:03d}"  # stable ids: rebuilding gives the same file
    nbformat.validate(notebook)
    target = HERE / f"{source.stem}.ipynb"
    nbformat.write(notebook, target)
    return target


if __name__ == "__main__":
    sources = [Path(a) for a in sys.argv[1:]] or sorted((HERE / "src").glob("[0-9][0-9]_*.py"))
    for path in sources:
        print(f"{path} -> {build(path)}")
