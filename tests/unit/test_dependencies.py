"""Every third-party package tuneproof imports is a declared runtime dependency, and no more than needed."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Imported only inside a try that reports its absence (train/tracking.py): an opt-in, not a dependency.
OPTIONAL = {"mlflow"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _imported(folder: Path) -> set[str]:
    return {n for path in folder.rglob("*.py") for n in _imported_file(path)}


def _imported_file(path: Path) -> set[str]:
    if path.suffix != ".py":
        return set()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in {"tuneproof", "benchmarks"}}


def _distributions(modules: set[str]) -> set[str]:
    owners = metadata.packages_distributions()
    return {_name(d) for m in modules for d in owners.get(m, [m])}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_package_the_code_imports_is_declared() -> None:
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    # Federated runs live in their own environment (flwr's pins conflict with the serving stack's):
    # what only tuneproof/federated imports may come from the `federated` extra instead.
    federated = {_name(r) for r in project["optional-dependencies"]["federated"]}
    everywhere_else = {
        n
        for path in (ROOT / "tuneproof").iterdir()
        if path.name != "federated"
        for n in (_imported(path) if path.is_dir() else _imported_file(path))
    }
    needed = _distributions(everywhere_else - OPTIONAL)
    assert needed - declared == set()
    only_federated = _distributions(_imported(ROOT / "tuneproof" / "federated")) - needed
    assert "flwr" in only_federated
    assert only_federated - declared - federated == set()


def test_the_flower_environment_installs_the_declared_flwr() -> None:
    pin = next(r for r in _project()["optional-dependencies"]["federated"] if _name(r) == "flwr")
    assert f'"{pin}"' in (ROOT / "scripts" / "setup_flower.sh").read_text()
    assert "setup_flower.sh" in (ROOT / "scripts" / "setup.sh").read_text()


def test_benchmark_only_packages_are_an_extra_not_a_runtime_dependency() -> None:
    project = _project()
    runtime = {_name(r) for r in project["dependencies"]}
    bench = {_name(r) for r in project["optional-dependencies"]["bench"]}
    only_benchmarks = _distributions(_imported(ROOT / "benchmarks")) - _distributions(
        _imported(ROOT / "tuneproof")
    )
    assert "trl" in only_benchmarks and "trl" in bench and "trl" not in runtime
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r'pip install -q -e "\.\[[^]]*\bbench\b[^]]*\]"', setup)
