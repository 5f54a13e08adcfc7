"""The `lectures` command: chapter discovery, papermill execution, HTML, the table and the exit status."""

import argparse
from pathlib import Path

import nbformat
import pytest

from vos_lab.course.lectures import Chapter, discover, format_results, parse_params, render, run, select
from vos_lab.errors import VosLabError
from vos_lab.paths import chapters_dir


def _notebook(path: Path, *cells: str, parameters: str = "PROFILE = None\nX = 1") -> Path:
    first = nbformat.v4.new_code_cell(parameters)
    first.metadata["tags"] = ["parameters"]
    notebook = nbformat.v4.new_notebook(cells=[first] + [nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_discover_finds_numbered_chapters_in_order(tmp_path: Path):
    for name in ("01_b.ipynb", "00_a.ipynb", "notes.ipynb", "10_c.ipynb", "00_a.py"):
        (tmp_path / name).write_text("{}")
    assert [c.path.name for c in discover(tmp_path)] == ["00_a.ipynb", "01_b.ipynb", "10_c.ipynb"]
    assert [c.name for c in select(discover(tmp_path), "10, 0")] == ["10_c", "00_a"]
    with pytest.raises(VosLabError, match="no chapter '7'"):
        select(discover(tmp_path), "0,7")
    with pytest.raises(VosLabError, match="no chapter notebooks"):
        discover(tmp_path / "missing")


def test_the_course_has_chapters_0_and_1():
    names = [c.name for c in discover()]
    assert names[:2] == ["00_task_data_metric", "01_correspondence_propagation"]


def test_params_are_yaml_typed():
    assert parse_params(["A=true", "B=3", "C=0.5", "D=null", "E=/data/x"]) == {
        "A": True, "B": 3, "C": 0.5, "D": None, "E": "/data/x"}
    with pytest.raises(VosLabError, match="expected NAME=VALUE"):
        parse_params(["oops"])


def test_param_that_is_not_yaml_is_one_error_line(tmp_path: Path, capsys):
    from vos_lab.cli import main

    assert main(["lectures", "--param", "DATA_ROOT=[unclosed", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --param 'DATA_ROOT=[unclosed': the value is not valid YAML (")
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_render_ok_and_failure_with_table_and_exit_status(tmp_path: Path, capsys):
    good = Chapter(0, _notebook(tmp_path / "00_good.ipynb", "assert PROFILE == 'smoke' and X == 2\nprint('fine')"))
    bad = Chapter(1, _notebook(tmp_path / "01_bad.ipynb", "x = 1", "assert x == 2, 'the failing check'"))
    out = tmp_path / "out"
    out.mkdir()
    ok = render(good, "smoke", out, {"X": 2}, progress=False)
    assert ok.ok and ok.html.is_file() and "fine" in ok.html.read_text()
    failed = render(bad, "smoke", out, progress=False)
    assert not failed.ok and "AssertionError: the failing check" in failed.error
    assert failed.html.is_file()  # the failing cell is visible in the executed notebook and its HTML
    executed = nbformat.read(out / "01_bad.ipynb", as_version=4)
    assert any(o.get("ename") == "AssertionError" for c in executed.cells for o in c.get("outputs", []))
    table = format_results([ok, failed])
    assert "00_good" in table and "FAILED" in table and "minutes" in table


def _chapter0_head(folder: Path, *cells: str) -> Path:
    """The real parameters and setup cells of chapter 0, then `cells`."""
    chapter0 = nbformat.read(chapters_dir() / "00_task_data_metric.ipynb", as_version=4)
    index = next(i for i, c in enumerate(chapter0.cells) if "parameters" in c.metadata.get("tags", []))
    setup_cell = next(c for c in chapter0.cells[index:] if "setup(globals())" in c.source)
    chapter0.cells = [chapter0.cells[index], setup_cell] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(chapter0, folder / "00_head.ipynb")
    return folder / "00_head.ipynb"


def _args(folder: Path, param: list[str] = (), overrides: list[str] = ()) -> argparse.Namespace:
    return argparse.Namespace(profile="smoke", chapters=None, out=folder / "out", param=list(param),
                              set=list(overrides), no_progress=True, notebooks=folder)


@pytest.mark.slow
def test_wrong_parameter_of_a_chapter_names_it(tmp_path: Path):
    """Papermill given a misspelt parameter: the chapter's setup cell fails and names it."""
    failed = render(Chapter(0, _chapter0_head(tmp_path)), "smoke", tmp_path, {"SEEED": 1}, progress=False)
    assert not failed.ok and "unknown parameter SEEED" in failed.error


def test_a_parameter_no_chapter_declares_is_an_error_before_anything_runs(tmp_path: Path):
    _notebook(tmp_path / "00_a.ipynb", "x = 1")
    with pytest.raises(VosLabError, match="--param SEEED: no chapter declares it"):
        run(_args(tmp_path, ["SEEED=1"]))
    with pytest.raises(VosLabError, match="unknown profile field"):
        run(_args(tmp_path, overrides=["steps=3"]))
    with pytest.raises(VosLabError, match="train_steps"):
        run(_args(tmp_path, overrides=["train_steps=-3"]))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_parameters_and_profile_fields_reach_the_chapters_that_declare_them(tmp_path: Path, capsys):
    _notebook(tmp_path / "01_x.ipynb", "assert X == 2", parameters="PROFILE = None\nX = 1")
    _notebook(tmp_path / "02_y.ipynb", "assert 'X' not in globals() and Y == 1", parameters="PROFILE = None\nY = 1")
    _chapter0_head(tmp_path, "assert lab.profile.name == 'smoke' and lab.profile.train_steps == 3")
    assert run(_args(tmp_path, ["X=2"], ["train_steps=3"])) == 0
    out = capsys.readouterr().out
    assert "note: 02_y does not declare PROFILE_SET, X" in out and "note: 00_head does not declare X" in out
