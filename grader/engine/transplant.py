"""Transplanting: a submission's statements run inside trusted code, never in their own file.

Some student code lives in the middle of a file the grader must not run as a whole (a loop
body in a training script whose module level downloads data, a statement inside a class
whose other methods fail on current libraries). grader.engine.fileregions takes just those
statements out; an assignment ships a *harness*, a self-contained Python source that plays
the surroundings, and calls each region where the original file had it:

    regions["freeze_loop"](scope)   # runs the region's statements with `scope` as their globals

A region sees exactly the names in `scope` (plus builtins and its file's own top-level
imports, run first; one that fails is skipped) and leaves its bindings there, so
`lcls += ...` updates the harness's `lcls` and `BCEcls = ...` can be read back.

The sandbox child runs the harness with the student's regions (`run_in_child`, request
`transplant`); the parent may run the same harness with the reference's regions
(`compile_regions` on trusted statements). Torch-free.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import traceback

FILE_PREFIX = "<file "  # code objects of file regions are named "<file utils/loss.py>"


def code_name(file: str) -> str:
    return f"{FILE_PREFIX}{file}>"


def compile_statement(source: str, file: str, lineno: int):
    """One statement (or block) taken from inside a function, still indented as in its file,
    compiled with the file's line numbers: tracebacks point at `file` line N."""
    text = source if not source[:1].isspace() else "if 1:\n" + source
    tree = ast.parse(text)
    if text is not source:
        tree.body = tree.body[0].body
        ast.increment_lineno(tree, lineno - 2)
    else:
        ast.increment_lineno(tree, lineno - 1)
    return compile(tree, code_name(file), "exec")


class Region:
    """A region's statements, compiled once; calling it runs them in `scope`."""

    def __init__(self, name: str, statements: list[dict], imports: list[dict] = ()):
        self.name = name
        self.imports = [compile_statement(s["source"], s["file"], s["lineno"]) for s in imports]
        self.codes = [compile_statement(s["source"], s["file"], s["lineno"]) for s in statements]

    def __call__(self, scope: dict) -> dict:
        scope.setdefault("__builtins__", builtins)
        for code in self.imports:
            try:
                exec(code, scope)
            except Exception:  # the file's own modules (utils.metrics, ...) are not there
                pass
        for code in self.codes:
            exec(code, scope)
        return scope


def compile_regions(regions: dict) -> dict[str, Region]:
    """{name: {"statements": [...], "imports": [...]}} (as grader.engine.fileregions sends them) to
    callables."""
    return {name: Region(name, r["statements"], r.get("imports", [])) for name, r in regions.items()}


_HARNESSES: dict[str, dict] = {}


def load_harness(source: str, filename: str) -> dict:
    """The harness's namespace, executed once per source text."""
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _HARNESSES:
        namespace = {"__name__": f"_harness_{key[:12]}", "__builtins__": builtins}
        exec(compile(source, f"<harness {filename}>", "exec"), namespace)
        _HARNESSES[key] = namespace
    return _HARNESSES[key]


def run_in_child(source: str, filename: str, entry: str, regions: dict, args: list, kwargs: dict) -> dict:
    """The child's side of a `transplant` request: {"result": what entry(regions, *args,
    **kwargs) returned} or {"error": {type, message, where}} when it raised, `where` being the
    innermost line of a region ("utils/loss.py line 150")."""
    function = load_harness(source, filename)[entry]
    try:
        compiled = compile_regions(regions)
    except SyntaxError as exc:  # the extractor parsed it, so only a region made by hand
        return {"error": {"type": "SyntaxError", "message": str(exc.msg), "where": None}}
    try:
        return {"result": function(compiled, *args, **kwargs)}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt raised by student code too
        return {"error": describe(exc)}


def describe(exc: BaseException) -> dict:
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(FILE_PREFIX):
            where = f"{frame.filename[len(FILE_PREFIX) : -1]} line {frame.lineno}"
    lines = str(exc).strip().splitlines()
    message = lines[0] if lines else ""
    if isinstance(exc, SystemExit):
        message = f"the code called exit({exc.code!r})"
    return {"type": type(exc).__name__, "message": message[:500], "where": where}
