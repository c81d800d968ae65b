"""The packages import one another in one direction: no circle between cli, reports, db, fer_model and the rooms of
workers (its top-level modules, the library API, and each sub-package), counting imports inside functions too; and
every import of a project module inside a function says why it is there."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("cli", "db", "fer_model", "reports", "workers")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. workers.queue.tasks
    target: str  # the module imported from, e.g. workers.chunks.work
    line: int
    in_function: bool
    commented: bool  # a comment on its line, or just above the group of imports it belongs to


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolved(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a relative ``from . import`` names."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def project_imports() -> Iterator[Import]:
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            source = path.read_text()
            lines = source.splitlines()
            tree = ast.parse(source)
            module = _module_name(path)
            import_lines = {line for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)}
            yield from _imports(tree, module, path.name == "__init__.py", lines, import_lines, in_function=False)


def _imports(node: ast.AST, module: str, is_package: bool, lines: list[str], import_lines: set[int],
             in_function: bool) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            targets = [alias.name for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            base = _resolved(child, module, is_package) if child.level else child.module or ""
            # `from workers import archive` imports the module workers.archive; `from workers import Archive` a name.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in _MODULES else base for alias in child.names]
        else:
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from _imports(child, module, is_package, lines, import_lines, inside)
            continue
        for target in dict.fromkeys(targets):
            if target.split(".")[0] in PACKAGES:
                yield Import(module, target, child.lineno, in_function, _commented(child, lines, import_lines))


def _commented(node: ast.stmt, lines: list[str], import_lines: set[int]) -> bool:
    if any("#" in lines[line - 1] for line in range(node.lineno, (node.end_lineno or node.lineno) + 1)):
        return True
    above = node.lineno - 1  # 1-based number of the line above
    while above >= 1 and (not lines[above - 1].strip() or above in import_lines):
        above -= 1
    return above >= 1 and lines[above - 1].strip().startswith("#")


def _all_modules() -> set[str]:
    return {_module_name(path) for package in PACKAGES for path in (REPO_ROOT / package).rglob("*.py")}


_MODULES = _all_modules()
_SUB_PACKAGES = {name for name in _MODULES if name.count(".") == 1 and name.startswith("workers.")
                 and (REPO_ROOT / "workers" / name.split(".")[1] / "__init__.py").is_file()}


def room(module: str) -> str:
    """The node a module belongs to: a sub-package of workers (workers.queue, ...), else its top-level package
    (workers for workers' own top-level modules)."""
    parts = module.split(".")
    if len(parts) >= 2 and ".".join(parts[:2]) in _SUB_PACKAGES:
        return ".".join(parts[:2])
    return parts[0]


def import_graph() -> dict[str, dict[str, list[str]]]:
    """room -> room it imports -> the imports that make that edge ("module:line -> target")."""
    graph: dict[str, dict[str, list[str]]] = {}
    for found in project_imports():
        source, target = room(found.module), room(found.target)
        graph.setdefault(source, {})
        if source != target:
            graph[source].setdefault(target, []).append(f"{found.module}:{found.line} -> {found.target}")
    return graph


def find_cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One circle of rooms (first room repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for successor in sorted(graph.get(node, {})):
            if state.get(successor) == "open":
                return path[path.index(successor):] + [successor]
            if successor not in state:
                found = visit(successor)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_circles_and_only_circles():
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {}}) is None
    assert find_cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": [], "c": []}, "b": {"c": []}, "c": {}}) is None


def test_the_comment_check_reads_the_import_s_line_and_the_comment_above_its_group():
    source = "\n".join([
        "def f():",
        "    from db import reads",
        "",
        "def g():",
        "    # the reason",
        "    import os",
        "",
        "    from db import writes",
        "    from db import models  # the reason",
        "",
        "def h():",
        '    """A docstring is not a reason."""',
        "    from db import scopes",
    ])
    tree = ast.parse(source)
    import_lines = {node.lineno for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))}
    found = {item.line: item.commented for item in _imports(tree, "cli.x", False, source.splitlines(), import_lines,
                                                             in_function=False) if item.in_function}
    assert found == {2: False, 8: True, 9: True, 13: False}


def test_the_graph_sees_every_room_and_imports_inside_functions():
    graph = import_graph()
    assert {"cli", "db", "fer_model", "reports", "workers", "workers.chunks", "workers.jobs", "workers.queue",
            "workers.serving", "workers.vision"} <= set(graph)
    # workers.archive renders HTML pages with reports/ only inside the call that builds one
    assert any("workers.archive" in edge and "reports.html" in edge for edge in graph["workers"]["reports"])
    assert room("workers.queue.celery_app") == "workers.queue" and room("workers.archive") == "workers"


def test_no_package_imports_in_a_circle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        edges = [f"{a} -> {b}: {', '.join(graph[a][b])}" for a, b in zip(cycle, cycle[1:])]
        raise AssertionError("packages import one another in a circle:\n" + "\n".join(edges))


def test_every_import_of_a_project_module_inside_a_function_says_why():
    """An import inside a function hides a dependency; it is there for a reason (a heavy library that only some
    calls need, a start-up kept fast), stated in a comment on its line or just above its group of imports."""
    silent = [f"{found.module}:{found.line} imports {found.target}" for found in project_imports()
              if found.in_function and not found.commented]
    assert silent == []
