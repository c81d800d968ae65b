"""Settings travel as arguments: below the `fer` entry point (cli/main.py) no module writes the environment."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("cli", "workers", "db", "reports", "fer_model")
ENTRY_POINT = Path("cli/main.py")
WRITING_METHODS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    """``os.environ``, or ``environ`` imported from os."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ" and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def environment_writes(source: str) -> list[int]:
    """The lines of ``source`` that write the process environment: ``os.environ[...] =`` (and ``del``, ``+=``),
    ``os.environ.setdefault/update/pop/...``, ``os.putenv``, ``os.unsetenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        else:
            targets = []
        if any(_is_environ(target.value if isinstance(target, ast.Subscript) else target) for target in targets):
            lines.append(node.lineno)
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Attribute) and function.attr in WRITING_METHODS and _is_environ(function.value):
                lines.append(node.lineno)
            elif isinstance(function, ast.Attribute) and function.attr in ("putenv", "unsetenv"):
                lines.append(node.lineno)
            elif isinstance(function, ast.Name) and function.id in ("putenv", "unsetenv"):
                lines.append(node.lineno)
    return sorted(lines)


def test_the_check_finds_every_kind_of_environment_write():
    source = "\n".join([
        "import os",
        "from os import environ, putenv",
        "os.environ['A'] = '1'",
        "os.environ.setdefault('B', '2')",
        "os.environ.update(C='3')",
        "os.putenv('D', '4')",
        "environ['E'] = '5'",
        "del os.environ['F']",
        "os.environ.pop('G', None)",
        "putenv('H', '6')",
        "os.environ['I'] += 'x'",
        "value = os.environ.get('J')",  # reads are fine
        "value = os.environ['K']",
    ])
    assert environment_writes(source) == [3, 4, 5, 6, 7, 8, 9, 10, 11]


def test_no_module_below_the_entry_point_writes_the_environment():
    writes = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if relative == ENTRY_POINT:
                continue
            writes += [f"{relative}:{line}" for line in environment_writes(path.read_text())]
    assert writes == [], "environment written below cli/main.py (pass the setting as an argument): " + ", ".join(writes)



def test_the_entry_point_gives_a_worker_s_processes_their_gpu_setting_and_no_other_command(monkeypatch, tmp_path):
    """`fer worker`'s pool processes share one GPU: cli/main.py sets TF_FORCE_GPU_ALLOW_GROWTH for that command."""
    import os

    from click.testing import CliRunner

    from cli.main import fer

    monkeypatch.setenv("TF_FORCE_GPU_ALLOW_GROWTH", "unset")  # recorded, so the test leaves it as it was
    monkeypatch.delenv("TF_FORCE_GPU_ALLOW_GROWTH")
    database = f"sqlite:///{tmp_path / 'fer.db'}"
    assert CliRunner().invoke(fer, ["status", "--db", database]).exit_code == 1  # no database there
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in os.environ
    assert CliRunner().invoke(fer, ["worker", "--db", "not-a-url"]).exit_code == 1
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
