"""The shape of the package, read from the source: the tree is the architecture diagram.

- Every subpackage of the library says in its docstring what lives there and what it may
  import, and the import-linter layers contract (pyproject.toml, checked by `lint-imports`
  in the README's test command) names every one of them, so none escapes the layering.
- One concept per module and functions that read as a story: no library module over 300
  lines, no function over 60. Benchmarks (`e5ray.bench`) and test tooling (`e5ray.testing`)
  stand apart and are not held to this.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "e5ray"
APART = ("bench", "testing")  # not the library: nothing in it imports them
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def library_files() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.relative_to(PACKAGE).parts[0] not in APART]


def subpackages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py") if p.parent.name not in APART)


def layered_names() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return {name.strip() for layer in layers for name in layer.split("|")}


def test_every_subpackage_says_what_it_holds_and_what_it_may_import():
    assert len(subpackages()) >= 8  # the package really is layered
    for name in subpackages():
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text())) or ""
        assert "import" in doc.lower(), f"e5ray/{name}/__init__.py does not say what it may import"


def test_the_layers_contract_names_every_subpackage_and_top_level_module():
    top_modules = [p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"]
    expected = {f"e5ray.{name}" for name in [*subpackages(), *top_modules]}
    assert layered_names() == expected


def test_no_library_module_is_over_300_lines():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines()) for p in library_files()}
    assert {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_library_function_is_over_60_lines():
    long = {}
    for path in library_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO).as_posix()}:{node.name}"] = lines
    assert long == {}


def test_the_size_checks_can_fail(tmp_path):
    """The walkers above really see modules and functions (a check that sees nothing passes)."""
    assert len(library_files()) > 60
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def too_long():\n{body}\n")
    (node,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
    assert node.end_lineno - node.lineno + 1 == MAX_FUNCTION_LINES + 1
