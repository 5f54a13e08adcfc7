"""Render the course: execute each chapter with papermill (parameters from a profile), convert it to HTML.

Chapters are the notebooks `NN_*.ipynb` of the course's notebook folder (the repository's `notebooks/`, shipped
with the package as `vos_lab.course.chapters`; `--notebooks DIR` renders another copy), so a new chapter joins
by being there. Chapters run with the course's working folder (`vos_lab.paths.course_home`) fixed for them, so
checkpoints and cached results land in one place whatever the install. For each one the
executed notebook and its HTML go to the output folder; a chapter that fails still gets both, with the
failing cell marked by papermill, and the command exits non-zero after the table of results.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import yaml

from vos_lab.errors import VosLabError
from vos_lab.paths import HOME_VAR, chapters_dir, course_home, writable_dir
from vos_lab.profiles import PROFILES, get_profile

CHAPTER_RE = re.compile(r"^(\d{2})_\w+\.ipynb$")


@dataclass(frozen=True)
class Chapter:
    number: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Rendered:
    chapter: Chapter
    ok: bool
    minutes: float
    html: Path
    error: str = ""


def discover(folder: Path | None = None) -> list[Chapter]:
    """Every `NN_*.ipynb` of `folder` (default: the course's chapters), by number."""
    folder = chapters_dir() if folder is None else folder
    found = [Chapter(int(m.group(1)), p) for p in Path(folder).glob("*.ipynb") if (m := CHAPTER_RE.match(p.name))]
    if not found:
        raise VosLabError(f"{folder}: no chapter notebooks (NN_name.ipynb) found")
    return sorted(found, key=lambda c: c.number)


def select(chapters: list[Chapter], wanted: str | None) -> list[Chapter]:
    """The chapters named by a comma-separated list of numbers ("0,1"); all when None."""
    if not wanted:
        return chapters
    by_number = {c.number: c for c in chapters}
    picked = []
    for item in wanted.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) not in by_number:
            raise VosLabError(f"--chapters: no chapter '{item}' (have {', '.join(str(n) for n in by_number)})")
        picked.append(by_number[int(item)])
    return picked


def parse_params(items: list[str], flag: str = "--param") -> dict:
    """`NAME=VALUE` pairs, values read as YAML (so `true`, `3`, `0.1`, `null` get their types)."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise VosLabError(f"{flag} '{item}': expected NAME=VALUE")
        try:
            params[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or type(error).__name__
            raise VosLabError(f"{flag} '{item}': the value is not valid YAML ({problem}); put a string in quotes"
                              ) from None
    return params


def declared_parameters(chapter: Chapter) -> set[str]:
    """The names the chapter's `parameters` cell declares."""
    import papermill

    return set(papermill.inspect_notebook(str(chapter.path)))


def chapter_params(chapters: list[Chapter], params: dict) -> dict[Chapter, dict]:
    """The parameters each chapter gets: those it declares. One that no chapter declares is an error (a typo);
    one that only some declare is skipped for the others, with a note."""
    declared = {chapter: declared_parameters(chapter) for chapter in chapters}
    nowhere = sorted(name for name in params if not any(name in names for names in declared.values()))
    if nowhere:
        known = sorted(set().union(*declared.values()))
        raise VosLabError(f"--param {', '.join(nowhere)}: no chapter declares it (known: {', '.join(known)})")
    for chapter, names in declared.items():
        if skipped := sorted(set(params) - names):
            print(f"note: {chapter.name} does not declare {', '.join(skipped)}: not passed to it")
    return {chapter: {k: v for k, v in params.items() if k in names} for chapter, names in declared.items()}


def _error_line(error: Exception) -> str:
    """One line for the table: papermill's exception name and value, without the traceback."""
    name, value = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    return f"{name}: {value}".splitlines()[0][:160]


def to_html(notebook: Path, html: Path) -> Path:
    """Convert an executed notebook to a standalone HTML page (images embedded)."""
    import nbconvert
    import nbformat

    body, _ = nbconvert.HTMLExporter().from_notebook_node(nbformat.read(notebook, as_version=4))
    html.write_text(body, encoding="utf-8")
    return html


def render(chapter: Chapter, profile: str, out: Path, params: dict | None = None,
           progress: bool = True) -> Rendered:
    """Execute one chapter with papermill and convert it to HTML; failures are caught and reported."""
    import papermill

    executed = out / chapter.path.name
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(str(chapter.path), str(executed), parameters={"PROFILE": profile, **(params or {})},
                                   cwd=str(chapter.path.parent), progress_bar=progress, kernel_name="python3")
    except Exception as exc:  # noqa: BLE001 - every failure becomes a row of the table
        error = _error_line(exc)
    minutes = (time.perf_counter() - start) / 60
    html = out / f"{chapter.name}.html"
    if executed.is_file():
        to_html(executed, html)
    return Rendered(chapter, not error, minutes, html, error)


def format_results(results: list[Rendered]) -> str:
    """The table of chapter / status / minutes (and the error line of failed chapters)."""
    width = max(len(r.chapter.name) for r in results)
    lines = [f"{'chapter'.ljust(width)}  status  minutes", f"{'-' * width}  ------  -------"]
    for r in results:
        lines.append(f"{r.chapter.name.ljust(width)}  {'ok' if r.ok else 'FAILED':6}  {r.minutes:7.2f}")
        if not r.ok:
            lines.append(f"    {r.error}\n    see {r.html.with_suffix('.ipynb')}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=tuple(PROFILES), default="cpu", help="sizes and budgets (default: cpu)")
    parser.add_argument("--chapters", help="comma-separated chapter numbers, e.g. 0,1 (default: all)")
    parser.add_argument("--out", type=Path, default=Path("lectures"), help="output folder (default: %(default)s)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="extra notebook parameter, YAML value, repeatable (e.g. DATA_ROOT=/data/davis2017); "
                             "chapters that do not declare it skip it")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of the profile, YAML value, repeatable (e.g. train_steps=400)")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bars")
    parser.add_argument("--notebooks", type=Path, help="folder of the chapter notebooks (default: the course's)")


def run(args: argparse.Namespace) -> int:
    """The `lectures` command: render the chosen chapters, print the table, 1 when one failed."""
    chapters = select(discover(args.notebooks), args.chapters)
    overrides = parse_params(args.set, "--set")
    get_profile(args.profile, **overrides)  # checked before anything runs
    params = chapter_params(chapters, parse_params(args.param) | ({"PROFILE_SET": overrides} if overrides else {}))
    out = writable_dir(args.out)
    results = []
    # the kernels inherit the working folder: papermill runs them in the notebooks' folder, maybe an installed one
    with mock.patch.dict(os.environ, {HOME_VAR: str(course_home())}):
        for index, chapter in enumerate(chapters, start=1):
            print(f"[{index}/{len(chapters)}] {chapter.name} (profile {args.profile}) ...", flush=True)
            result = render(chapter, args.profile, out, params[chapter], progress=not args.no_progress)
            print(f"[{index}/{len(chapters)}] {chapter.name}: {'ok' if result.ok else 'FAILED'} in "
                  f"{result.minutes:.2f} min -> {result.html}", flush=True)
            results.append(result)
    print("\n" + format_results(results))
    return 0 if all(r.ok for r in results) else 1
