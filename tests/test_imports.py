"""Import structure, read from the source with `ast` (nothing is imported to check it).

- Ray stays thin: only the Ray executor, the job entrypoints and the cluster benchmarks
  (`e5ray/bench/cluster/`) import ray, so the
  library, the local executor and the CLI's verify/gc work where Ray is not installed.
- No import circle among e5ray's modules: a circle means two modules are one concept
  split in two, or a driver/worker boundary crossed the wrong way.

Runtime imports count wherever they are (module level or inside a function); imports
under `if TYPE_CHECKING:` do not, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "e5ray"

RAY_ALLOWED = {
    "e5ray/executors/ray.py",
    "e5ray/executors/ray_start.py",
    "e5ray/executors/ray_auth.py",
    "e5ray/executors/ray_exit.py",
}
# jobs/ are Ray job entrypoints; e5ray/bench/cluster/ benchmarks Ray itself (the `scale` subcommand).
RAY_ALLOWED_DIRS = ("jobs/", "e5ray/bench/cluster/")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """Modules `path` imports when it runs: dotted names, submodules resolved where known."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (or a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_only_the_ray_executor_and_jobs_import_ray():
    known = set(library_modules())
    offenders = []
    for path in [*PACKAGE.rglob("*.py"), *(REPO / "jobs").glob("*.py")]:
        rel = path.relative_to(REPO).as_posix()
        if rel in RAY_ALLOWED or rel.startswith(RAY_ALLOWED_DIRS):
            continue
        if any(name == "ray" or name.startswith("ray.") for name in runtime_imports(path, known)):
            offenders.append(rel)
    assert offenders == [], f"only {sorted(RAY_ALLOWED)} and {RAY_ALLOWED_DIRS} may import ray"


def test_e5ray_has_no_import_circle():
    modules = library_modules()
    known = set(modules)
    graph = {
        name: {imp for imp in runtime_imports(path, known) if imp in known and imp != name}
        for name, path in modules.items()
    }
    assert graph["e5ray.job.run"] >= {"e5ray.executors.base", "e5ray.worker.worker"}  # the graph is really read
    assert find_cycles(graph) == []


def test_the_seams_import_no_implementation():
    """The executor and sink protocols name their implementations by dotted path only,
    so choosing one never imports another (the local executor never pulls in ray)."""
    known = set(library_modules())
    for seam in ("executors/base.py", "output/sinks/base.py"):
        imported = runtime_imports(PACKAGE / seam, known)
        assert not {m for m in imported if m.startswith(("e5ray.executors.", "e5ray.output.sinks."))}, seam
