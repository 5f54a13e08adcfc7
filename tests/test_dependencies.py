"""Declared dependencies: everything the package, the scripts, the tests and the notebooks import is declared
in pyproject.toml and installed (`pip install -e ".[dev]"`), so a missing package fails here instead of a
test skipping; one cv2 provider, the one the reference metric package requires; and environment.yml
installs the same."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SOURCES = [*(ROOT / "vos_lab").rglob("*.py"), *(ROOT / "data_scripts").rglob("*.py"), *(ROOT / "tests").glob("*.py"),
           *(ROOT / "notebooks").rglob("*.py")]
LOCAL = {"vos_lab"} | {path.stem for path in SOURCES}  # helpers, conftest, solutions ...
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def requirements(*extras: str) -> list[Requirement]:
    """The core dependencies and those of `extras`, with vos_lab[...] self-references expanded."""
    found = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in extras:
        for requirement in map(Requirement, PROJECT["optional-dependencies"][extra]):
            if canonicalize_name(requirement.name) == canonicalize_name(PROJECT["name"]):
                found += requirements(*requirement.extras)
            else:
                found.append(requirement)
    return found


DEV = {canonicalize_name(r.name): r for r in requirements("dev")}


def imports(path: Path) -> set[tuple[str, bool]]:
    """(top-level module, whether the file skips when it is missing) of each absolute import and each
    pytest.importorskip call in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name, False) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add((node.module, False))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip":
            found.add((node.args[0].value, True))
    return {(name.split(".")[0], skips) for name, skips in found}


def test_every_declared_package_is_installed():
    problems = []
    for name, requirement in DEV.items():
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{requirement} is not installed")
            continue
        if not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement}: {version} is installed")
    assert not problems, problems


def test_every_import_is_declared_and_never_skipped():
    providers = metadata.packages_distributions()
    problems = []
    for path in SOURCES:
        for module, skips in sorted(imports(path)):
            if module in LOCAL or module in sys.stdlib_module_names:
                continue
            where = f"{path.relative_to(ROOT)}: {module}"
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            if not dists & DEV.keys():
                problems.append(f"{where} is not declared (installed by {sorted(dists) or 'nothing'})")
            if skips:
                problems.append(f"{where}: import it instead of importorskip (a missing package must fail)")
    assert not problems, problems


def test_one_cv2_provider_the_one_the_reference_requires():
    ours = OPENCV & DEV.keys()
    assert len(ours) == 1, ours
    required = {canonicalize_name(Requirement(text).name) for name in DEV for text in metadata.requires(name) or []
                if not Requirement(text).marker} & OPENCV
    assert required <= ours, f"a dependency requires {required}: two wheels would install cv2 over each other"
    installed = {canonicalize_name(d) for d in metadata.packages_distributions()["cv2"]}
    assert installed == ours, f"cv2 is installed by {sorted(installed)}; uninstall all but {ours}"


def test_conda_environment_installs_what_pyproject_and_the_makefile_do():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    assert [d.split("=")[0] for d in conda] == ["python", "pip"], "every other package comes from pyproject.toml"
    makefile = (ROOT / "Makefile").read_text()
    pins = re.findall(r"\b(torch(?:vision)?==[\w.]+)", makefile)
    assert pins and pip == [*pins, "-e .[dev]"] and '-e ".[dev]"' in makefile
