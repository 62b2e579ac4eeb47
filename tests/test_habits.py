"""The project's habits, checked on its source (issue #29): no function over 80 lines unless its docstring
says why, and no test module inside a package (tests live in tests/)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 80
# A function may stay long where splitting it would hurt; its docstring then has a line starting with this.
LONG_MARKER = "Long because:"
# Not the project's source: tests, build outputs, training runs and state, model folders, data, hidden
# folders (.venv, .git, caches) and egg-info.
SKIP_DIRS = {"tests", "build", "runs", "train-state", "models", "data", "node_modules"}


def _source_files() -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [
            d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        ]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return sorted(files)


def _says_why(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    doc = ast.get_docstring(fn) or ""
    return any(line.strip().startswith(LONG_MARKER) for line in doc.splitlines())


def test_the_source_is_found():
    rel = {str(p.relative_to(ROOT)) for p in _source_files()}
    assert "serve/app.py" in rel and "bench/report.py" in rel
    assert not any(r.startswith(("tests/", "build/", ".venv/")) for r in rel)


def test_no_function_over_80_lines_without_its_reason():
    long = []
    for path in _source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES and not _says_why(node):
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, (
        f"functions over {MAX_LINES} lines: split them, or give the reason in the docstring"
        f" on a line starting {LONG_MARKER!r}:\n" + "\n".join(long)
    )


def test_no_test_module_inside_a_package():
    inside = [
        str(p.relative_to(ROOT))
        for p in _source_files()
        if p.name.startswith("test_") or p.name.endswith("_test.py") or p.name == "conftest.py"
    ]
    assert not inside, f"test modules outside tests/: {inside}"


def _test_files() -> list[Path]:
    return sorted((ROOT / "tests").glob("*.py"))


def test_no_private_name_imported_from_another_module():
    """A name with a leading underscore is its module's own: code elsewhere (tests included) uses a public
    name, so a module can change its insides without breaking a caller it cannot see."""
    found = []
    for path in _source_files() + _test_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
                found += [
                    f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not found, "private names imported across modules:\n" + "\n".join(found)
