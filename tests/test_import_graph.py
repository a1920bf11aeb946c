"""The grader's modules import each other without cycles, and the modules the batch
scheduler runs on stay free of torch (it is imported once, by the warm server)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from submissions import REPO

PACKAGE = REPO / "grader"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The grader modules `importer` imports anywhere in its code (module level and inside
    functions alike: a function-level import still runs, later)."""
    package = importer if is_package else importer.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import harvest` imports a module; `from .x import name`, module x.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in known and name != importer)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the grader modules it imports. Importing the package itself (`from . import
    __version__`) is left out: Python runs the package's __init__ before any of its modules,
    so it is always complete by then (test_package_init_imports_no_module checks that it
    imports none of them while it runs)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {
        name: imported_modules(ast.parse(path.read_text()), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }
    return {name: targets - {PACKAGE.name} for name, targets in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting, done = [], set()

    def visit(node):
        if node in visiting:
            return visiting[visiting.index(node) :] + [node]
        if node in done:
            return None
        visiting.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        visiting.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_the_graph_sees_the_imports():
    graph = import_graph()
    assert "grader.engine.pipeline" in graph["grader.cli"]  # a function-level import
    assert "grader.sandbox" in graph["grader.engine.pipeline"]  # a module-level one


def test_package_init_imports_no_module():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    for node in tree.body:  # module level only: a function's imports run after __init__
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith(PACKAGE.name), ast.unparse(node)
        elif isinstance(node, ast.Import):
            assert not any(alias.name.startswith(PACKAGE.name) for alias in node.names), ast.unparse(node)


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cli_and_batch_scheduler_do_not_import_torch():
    code = (
        "import grader.cli, grader.batch.scheduler, grader.batch.merge, grader.batch.slurm; "
        "import grader.classreport.verb, grader.classreport.build, grader.classreport.similarity; "
        "import grader.classreport.page; import sys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


# What only PA2 knows: an engine line naming one of these would grade PA2 alone.
PA2_WORDS = (
    "PoolUpsampleNet",
    "ConvTransposeNet",
    "UNet",
    "compute_iou_loss",
    "deeplab",
    "classifier.4",
    "cross_entropy",
    "CrossEntropy",
    "a2-cnn",
    "a2-code",
    "pa2",
    "colour",
)


def code_words(tree: ast.AST) -> list[str]:
    """Names, attributes and strings of a module's code: its docstrings and comments (which
    may cite PA2 as an example) left out."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append(node.value)
        elif isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            words.append(node.name)
    return words


def test_the_engine_knows_nothing_about_pa2():
    """Everything about PA2 lives in assignments/, reference/ and student_template/: the
    engine's code names none of its classes, files, losses or layers."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for word in code_words(ast.parse(path.read_text(encoding="utf-8"))):
            hits = [w for w in PA2_WORDS if w.lower() in word.lower()]
            if hits:
                found.append(f"{path.relative_to(REPO)}: {word[:80]!r} ({hits[0]})")
    assert not found, "\n".join(found)


# Which rooms of grader/ each room may import (docs/architecture.md shows the same, generated).
# A new edge fails here on purpose: add it if it is meant, then `make docs`.
ALLOWED_ROOMS = {
    "grader": {"student"},
    "cli": {"batch", "editions", "engine", "errors", "report", "sandbox", "verbs"},
    "verbs": {"errors"},
    "errors": set(),
    "report": set(),
    "editions": {"engine", "errors", "public"},
    "engine": {"editions", "errors", "public", "report", "sandbox"},
    "sandbox": {"engine", "errors", "grader"},
    "public": {"editions", "engine", "errors", "report", "verbs"},
    "checks": {"editions", "engine", "errors"},
    "student": {"editions", "engine", "errors", "report", "sandbox"},
    "authoring": {"editions", "engine", "errors", "grader", "public", "verbs"},
    "batch": {"classreport", "cli", "editions", "engine", "errors", "grader", "report", "sandbox", "verbs"},
    "classreport": {"batch", "editions", "engine", "errors", "report", "verbs"},
}


def test_rooms_import_only_what_they_may():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_docs
    finally:
        sys.path.remove(str(REPO / "scripts"))
    found = make_docs.rooms()
    assert set(found) == set(ALLOWED_ROOMS), f"rooms changed: {sorted(set(found) ^ set(ALLOWED_ROOMS))}"
    extra = {
        room: sorted(found[room] - ALLOWED_ROOMS[room]) for room in found if found[room] - ALLOWED_ROOMS[room]
    }
    assert not extra, f"new imports between rooms: {extra}"
