"""The architecture's arrows, read from the imports: no app imports another app, the framework
names no app, the model server imports nothing of the training code, and the benchmarks use
public names only."""

import ast
from pathlib import Path

import pytest

from apps import APP_NAMES
from tests.conftest import REPO_ROOT


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for every import in a file; `import a.b` gives ("a.b", [])."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, `from a import b` counted as both a and a.b."""
    return {module for name, names in imports(path)
            for module in (name, *(f"{name}.{item}" for item in names))}


def python_files(folder: str) -> list[Path]:
    return sorted((REPO_ROOT / folder).rglob("*.py"))


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "apps" and parts[1] in APP_NAMES else None


@pytest.mark.parametrize("name", APP_NAMES)
def test_no_app_imports_another_app(name):
    others = {app_of(module) for module in imported_modules(REPO_ROOT / "apps" / f"{name}.py")}
    assert others <= {None, name}, f"apps/{name}.py imports apps {others - {None, name}}"


def test_the_framework_names_no_app():
    for path in python_files("apps/core"):
        apps = {app_of(module) for module in imported_modules(path)} - {None}
        assert not apps, f"{path.relative_to(REPO_ROOT)} imports apps {apps}"


def test_the_server_imports_nothing_of_the_training_code():
    for path in python_files("serving"):
        training = {module for module in imported_modules(path)
                    if module.split(".")[0] in ("apps", "zoo")}
        assert not training, f"{path.relative_to(REPO_ROOT)} imports {training}"


def test_the_benchmarks_use_public_names_only():
    for path in python_files("bench"):
        for module, names in imports(path):
            private = [part for part in [*module.split("."), *names] if part.startswith("_")]
            assert not private, f"{path.relative_to(REPO_ROOT)} imports {module}: {private}"
        tree = ast.parse(path.read_text())
        reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                   and node.attr.startswith("_") and not node.attr.startswith("__")
                   and isinstance(node.value, ast.Name) and node.value.id != "self"}
        assert not reached, f"{path.relative_to(REPO_ROOT)} reaches into {reached}"


def test_the_check_sees_an_import_of_another_app(tmp_path):
    """The checks above would pass on files they cannot read: one that breaks them is caught."""
    offending = tmp_path / "offending.py"
    offending.write_text("from apps.mnist import load_data\nimport apps.vision\n")
    assert {app_of(module) for module in imported_modules(offending)} - {None} == {"mnist",
                                                                                 "vision"}
