"""Similar code across a class: pairs of submissions that share more of their *own* code in a
graded region than independent solutions do.

For every graded region (a class or function the starter asks for, each of the assignment's
module-level regions such as a driver cell, and whatever a plugged-in region source adds),
the submissions of one edition are compared pairwise:

1. **normalise** (AST): docstrings, comments and layout go; names the student chose become `V`
   (names the starter already uses, a signature's parameters for instance, and library names
   stay); number and string literals become `NUM` and `STR`. Each statement is one *unit*
   (a compound statement's header is one, each statement of its body another), so moving
   independent statements around changes nothing.
2. **fingerprint**: the hashes (BLAKE2: the same on every machine and in every run) of the
   k-grams of each unit's tokens, *winnowed* as MOSS does (Schleimer, Wilkerson and Aiken,
   2003: the smallest hash of every window of `window` consecutive k-grams is kept).
3. **ignore what is no evidence**: fingerprints of the starter's version of the region (the
   handout's code), of the reference solution's version (every correct student converges on
   it), and those found in more than `common` of the submissions (the handout's wording; what
   MOSS's `-m` does).
4. **score** a pair: shared fingerprints / fingerprints of the smaller side, so code added to a
   copy (dead or not) does not hide it. A pair is flagged at or above `threshold` when the
   smaller side has at least `min_fingerprints` fingerprints (tiny regions prove nothing).

Why not copydetect (the MOSS-style detector on PyPI): it tokenises with Pygments (no AST, so it
cannot tell the student's names from the handout's), fingerprints character k-grams across
statement boundaries (reordered statements break them), and hashes with Python's `hash()`,
which is salted per process: the fingerprints winnowing keeps, and so the scores, change from
one run to the next. Its winnowing itself is a few lines, written here instead.

Region sources are pluggable: a source is a function `(path, loaded, assignment) -> {region
name: [Snippet, ...]}`; `REGION_SOURCES` lists the built-in ones, `register_region_source`
adds one (`grade report --region-source module:function` does it from the command line).
"""

from __future__ import annotations

import ast
import copy
import functools
import hashlib
import importlib
import itertools
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# A name given to the module-level code of definitions that the starter does not have.
ADDED_DEFINITIONS = "definitions not in the starter"
IGNORABLE = ("starter", "reference", "common")


@dataclass(frozen=True)
class Snippet:
    """Code of one region, as it stands in the submission."""

    where: str  # how a person finds it: "code cell 7 (starting `class Net(nn.Module):`)"
    source: str


@dataclass(frozen=True)
class SimilarityOptions:
    threshold: float = 0.85
    min_fingerprints: int = 6
    # Fingerprints found in more than this share of an edition's submissions (and in more
    # than `common_floor` of them) are the class's common stock, not evidence.
    common_share: float = 0.2
    common_floor: int = 4
    ignore: frozenset = frozenset(IGNORABLE)
    k: int = 12  # tokens per k-gram
    window: int = 4  # k-grams per winnowing window
    across_editions: bool = False  # compare submissions of different editions too


# -- region sources ---------------------------------------------------------------------------

RegionSource = Callable[[Path, object, object], dict[str, list[Snippet]]]


def top_level_definitions(loaded) -> list[tuple[str, Snippet]]:
    """(name, snippet) of every class and function defined at the top of a cell. In a cell
    that does not parse (the starter's classes with empty gaps, a student's Python 2 line),
    a definition runs from its `class`/`def` line to the next line that is not indented."""
    from grader.engine.harvest import Unparsable, parse_cell

    found = []
    for cell in loaded.cells:
        lines = cell.source.splitlines(keepends=True)
        try:
            tree = parse_cell(cell)
        except Unparsable:
            found += _definitions_by_indentation(cell, lines)
            continue
        for node in tree.body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                source = "".join(lines[first - 1 : node.end_lineno])
                found.append((node.name, Snippet(f"{cell.where}, line {first}", source)))
    return found


_DEFINITION_LINE = re.compile(r"(?:async\s+)?(?:class|def)\s+([A-Za-z_]\w*)")


def _definitions_by_indentation(cell, lines: list[str]) -> list[tuple[str, Snippet]]:
    found = []
    for i, line in enumerate(lines):
        match = _DEFINITION_LINE.match(line)
        if not match:
            continue
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][:1] in " \t#"):
            end += 1
        found.append((match[1], Snippet(f"{cell.where}, line {i + 1}", "".join(lines[i:end]))))
    return found


def definition_regions(path: Path, loaded, assignment) -> dict[str, list[Snippet]]:
    """One region per class or function the starter defines (every definition of that name in
    the notebook, in order), and one for the definitions the starter does not have."""
    given = starter_definition_names(assignment)
    regions: dict[str, list[Snippet]] = {}
    for name, snippet in top_level_definitions(loaded):
        key = name if given is None or name in given else ADDED_DEFINITIONS
        regions.setdefault(key, []).append(snippet)
    return regions


def assignment_regions(path: Path, loaded, assignment) -> dict[str, list[Snippet]]:
    """The assignment's module-level regions (`[regions.NAME]`: a driver cell's own lines)."""
    from grader.engine.regions import RegionNotFound, extract_region

    regions = {}
    for name, spec in (getattr(assignment, "regions", None) or {}).items():
        try:
            statements = extract_region(loaded.cells, spec)
        except RegionNotFound:
            continue
        by_cell: dict[int, list] = {}
        for st in statements:
            by_cell.setdefault(st.cell, []).append(st)
        cells = {c.index: c for c in loaded.cells}
        regions[f"region {name}"] = [
            Snippet(
                f"{cells[index].where}, line {sts[0].lineno}" if index in cells else f"code cell {index + 1}",
                "".join(st.source if st.source.endswith("\n") else st.source + "\n" for st in sts),
            )
            for index, sts in sorted(by_cell.items())
        ]
    return regions


REGION_SOURCES: list[RegionSource] = [definition_regions, assignment_regions]


def register_region_source(source: RegionSource) -> None:
    """Add a source of regions (another helper's assignment may keep graded code outside the
    notebook's definitions); it is called for every submission, starter and reference."""
    if source not in REGION_SOURCES:
        REGION_SOURCES.append(source)


def load_region_source(spec: str) -> RegionSource:
    """`module:function` (grade report --region-source)."""
    module_name, _, function = spec.partition(":")
    if not module_name or not function:
        raise ValueError(f"--region-source wants module:function, got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--region-source {spec}: {exc}") from None


def regions_of(path: Path, assignment, sources=None) -> dict[str, list[Snippet]] | None:
    """Every region of one notebook, or None when it cannot be read."""
    from grader.errors import SubmissionError
    from grader.engine.load import load_submission

    try:
        loaded = load_submission(path)
    except SubmissionError:
        return None
    regions: dict[str, list[Snippet]] = {}
    for source in sources or REGION_SOURCES:
        for name, snippets in source(Path(path), loaded, assignment).items():
            regions.setdefault(name, []).extend(snippets)
    return regions


@functools.lru_cache(maxsize=None)
def _definitions_in(path: str) -> frozenset[str] | None:
    from grader.errors import SubmissionError
    from grader.engine.load import load_submission

    try:
        return frozenset(name for name, _ in top_level_definitions(load_submission(path)))
    except SubmissionError:
        return None


def starter_definition_names(assignment) -> frozenset[str] | None:
    """The classes and functions the edition's starter defines (None: no starter installed)."""
    notebook = getattr(assignment, "template_notebook", None)
    return _definitions_in(str(notebook)) if notebook else None


def reference_notebook(assignment) -> Path | None:
    folder = getattr(assignment, "reference_folder", None)
    path = folder / assignment.notebook if folder else None
    return path if path and path.is_file() else None


# -- normalising and fingerprinting -----------------------------------------------------------


@dataclass
class Unit:
    """One statement (or a compound statement's header), normalised."""

    snippet: int  # which snippet of the region
    lines: tuple[int, int]  # its lines in the snippet, 0-based, end excluded
    text: str
    fingerprints: frozenset = frozenset()


@dataclass
class RegionCode:
    snippets: list[Snippet]
    units: list[Unit]

    @property
    def fingerprints(self) -> set[int]:
        return set().union(*(u.fingerprints for u in self.units)) if self.units else set()


def _identifiers(trees) -> set[str]:
    """Every name, argument, attribute and definition name used in `trees`."""
    found = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                found.add(node.id)
            elif isinstance(node, ast.arg):
                found.add(node.arg)
            elif isinstance(node, ast.Attribute):
                found.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(node.name)
    return found


@dataclass(frozen=True)
class Given:
    """What the starter's version of a region already names: `names` it uses (a signature's
    parameters, its own variables), of which it assigns `assigned`."""

    names: frozenset = frozenset()
    assigned: frozenset = frozenset()

    @classmethod
    def of(cls, trees) -> Given:
        assigned = {
            node.id
            for tree in trees
            for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
        }
        return cls(frozenset(_identifiers(trees)), frozenset(assigned))

    def __or__(self, other: Given) -> Given:
        return Given(self.names | other.names, self.assigned | other.assigned)


def _chosen_names(trees, given: Given) -> tuple[set[str], set[str]]:
    """The names the student chose: those bound in the region (assigned, parameters, loop
    targets, definitions, exception names) that the starter does not give, those the starter
    gives but the student assigns anew (`x = x.float()` where the starter gave `x`: from
    then on it is the student's variable), and the attributes a method sets on its instance
    (`self.conv1 = ...`)."""
    names, stored, attributes = set(), set(), set()
    for tree in trees:
        instances = {
            method.args.args[0].arg
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef)
            for method in cls.body
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)) and method.args.args
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                stored.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in instances
            ):
                attributes.add(node.attr)
    chosen = ((names | stored) - given.names) | ((stored & given.names) - given.assigned)
    return chosen, attributes - given.names


class _Normaliser(ast.NodeTransformer):
    def __init__(self, names: set[str], attributes: set[str]):
        self.names, self.attributes = names, attributes

    def _body(self, body: list) -> list:
        # Bare strings (docstrings, strings used as comments) say nothing about the code.
        kept = [
            st
            for st in body
            if not (
                isinstance(st, ast.Expr)
                and isinstance(st.value, ast.Constant)
                and isinstance(st.value.value, str)
            )
        ]
        return kept or [ast.Pass()]

    def generic_visit(self, node):
        for field_name in ("body", "orelse", "finalbody"):
            value = getattr(node, field_name, None)
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                setattr(node, field_name, self._body(value))
        return super().generic_visit(node)

    def visit_Name(self, node):
        if node.id in self.names:
            node.id = "V"
        return node

    def visit_arg(self, node):
        if node.arg in self.names:
            node.arg = "V"
        node.annotation = None
        return self.generic_visit(node)

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if node.attr in self.attributes:
            node.attr = "V"
        return node

    def _definition(self, node):
        if node.name in self.names:
            node.name = "V"
        return self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _definition

    def visit_ExceptHandler(self, node):
        if node.name in self.names:
            node.name = "V"
        return self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Name("NUM", ast.Load()), node)
        if isinstance(node.value, (str, bytes)):
            return ast.copy_location(ast.Name("STR", ast.Load()), node)
        return node

    def visit_JoinedStr(self, node):
        return ast.copy_location(ast.Name("STR", ast.Load()), node)


_BODIES = ("body", "orelse", "finalbody")


def _header(node: ast.stmt) -> str:
    """A compound statement's own line(s) (`def V(self, x):`, `for V in V:`), body left out."""
    shell = copy.copy(node)
    for name in _BODIES:
        if getattr(shell, name, None):
            setattr(shell, name, [ast.Pass()])
    if getattr(shell, "handlers", None):
        shell.handlers = [copy.copy(h) for h in shell.handlers]
        for h in shell.handlers:
            h.body = [ast.Pass()]
    if getattr(shell, "cases", None):  # match: its cases' patterns and guards
        shell.cases = [copy.copy(c) for c in shell.cases]
        for c in shell.cases:
            c.body = [ast.Pass()]
    lines = ast.unparse(shell).splitlines()
    return " ".join(line.strip() for line in lines if line.strip() != "pass")


def _units(statements, snippet: int, offset: int, out: list[Unit]) -> None:
    for st in statements:
        if isinstance(st, ast.Pass):  # also what stands for a body of docstrings only
            continue
        bodies = [getattr(st, name, None) or [] for name in _BODIES]
        bodies += [h.body for h in getattr(st, "handlers", None) or []]
        bodies += [c.body for c in getattr(st, "cases", None) or []]
        first = min([st.lineno] + [d.lineno for d in getattr(st, "decorator_list", [])]) - 1 - offset
        if not any(bodies):  # a simple statement
            out.append(Unit(snippet, (first, st.end_lineno - offset), ast.unparse(st)))
            continue
        nested = [
            s for body in bodies for s in body if isinstance(s, ast.stmt) and not isinstance(s, ast.Pass)
        ]
        end = min(s.lineno for s in nested) - 1 - offset if nested else st.end_lineno - offset
        out.append(Unit(snippet, (first, max(first + 1, end)), _header(st)))
        _units(nested, snippet, offset, out)


_TOKEN = re.compile(r"\w+|[^\w\s]")


def _hash(tokens) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(tokens).encode(), digest_size=8).digest(), "big")


def winnow(hashes: list[int], window: int) -> set[int]:
    """The smallest hash of every window of `window` consecutive hashes (all of them when
    there are fewer)."""
    if len(hashes) <= window:
        return {min(hashes)} if hashes else set()
    return {min(hashes[i : i + window]) for i in range(len(hashes) - window + 1)}


def fingerprints(text: str, k: int, window: int) -> frozenset[int]:
    tokens = _TOKEN.findall(text)
    if not tokens:
        return frozenset()
    grams = [_hash(tokens[i : i + k]) for i in range(max(1, len(tokens) - k + 1))]
    return frozenset(winnow(grams, window))


def _parse(snippet: Snippet) -> ast.Module | None:
    """The snippet's syntax tree; for one that does not parse, a tree of the lines that do
    parse one by one (a header `def f(x):` is taken with an empty body), so a cell broken by
    one line still counts with the rest."""
    source = textwrap.dedent(snippet.source)
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    body = []
    for number, line in enumerate(source.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        for attempt in (text, text + " pass"):
            try:
                statements = ast.parse(attempt).body
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                continue
            for st in statements:
                ast.increment_lineno(st, number - 1)
            body += statements
            break
    return ast.Module(body=body, type_ignores=[])


def normalise(snippets: list[Snippet], given: Given, options: SimilarityOptions) -> RegionCode:
    """The region's units: normalised statements with their fingerprints. `given`: what the
    starter's version of the region names (those names stay as they are)."""
    trees = [_parse(snippet) for snippet in snippets]
    names, attributes = _chosen_names(trees, given)
    units: list[Unit] = []
    for index, tree in enumerate(trees):
        found: list[Unit] = []
        try:
            tree = _Normaliser(names, attributes).visit(tree)
            _units(tree.body, index, 0, found)
        except (RecursionError, MemoryError):  # nested too deeply to walk (a hostile notebook)
            continue
        units += found
    for unit in units:
        unit.fingerprints = fingerprints(unit.text, options.k, options.window)
    return RegionCode(list(snippets), units)


# -- the class --------------------------------------------------------------------------------


@dataclass
class Submission:
    name: str
    path: Path
    edition: str
    assignment: object = None  # grader.editions.assignment.Assignment, when installed here


@dataclass
class Pair:
    region: str
    a: str
    b: str
    score: float
    shared: int
    sizes: tuple[int, int]
    shared_lines: tuple[list, list] = field(
        default_factory=lambda: ([], [])
    )  # per side: [(where, [(line, shared)])]

    def to_dict(self) -> dict:
        return {
            "region": self.region,
            "a": self.a,
            "b": self.b,
            "score": round(self.score, 3),
            "shared_fingerprints": self.shared,
            "fingerprints": list(self.sizes),
            "code": {
                side: [
                    {"where": where, "lines": [[text, marked] for text, marked in lines]}
                    for where, lines in blocks
                ]
                for side, blocks in zip(("a", "b"), self.shared_lines)
            },
        }


@dataclass
class SimilarityReport:
    options: SimilarityOptions
    pairs: list[Pair]
    compared: dict[str, int]  # region -> submissions with own code there
    unreadable: list[str]

    def to_dict(self) -> dict:
        o = self.options
        return {
            "threshold": o.threshold,
            "min_fingerprints": o.min_fingerprints,
            "common": {"share": o.common_share, "floor": o.common_floor},
            "ignored": sorted(o.ignore),
            "k": o.k,
            "window": o.window,
            "across_editions": o.across_editions,
            "regions": dict(sorted(self.compared.items())),
            "unreadable": sorted(self.unreadable),
            "pairs": [p.to_dict() for p in self.pairs],
        }


def _base_regions(assignment, kind: str, sources) -> dict[str, list[Snippet]]:
    path = (
        getattr(assignment, "template_notebook", None)
        if kind == "starter"
        else reference_notebook(assignment)
    )
    if not path:
        return {}
    return regions_of(Path(path), assignment, sources) or {}


def compare(
    submissions: list[Submission], options: SimilarityOptions | None = None, sources=None
) -> SimilarityReport:
    """Flag the pairs of `submissions` whose own code in a region is alike (see the module)."""
    options = options or SimilarityOptions()
    pairs: list[Pair] = []
    compared: dict[str, int] = {}
    unreadable: list[str] = []
    for region, code, own in regions_compared(submissions, options, sources, unreadable):
        compared[region] = compared.get(region, 0) + len(own)
        pairs += _flagged(region, code, own, options)
    pairs.sort(key=lambda p: (-p.score, p.region, p.a, p.b))
    return SimilarityReport(options, pairs, compared, unreadable)


def regions_compared(
    submissions: list[Submission], options: SimilarityOptions, sources=None, unreadable=None
):
    """(region, {name: RegionCode}, {name: evidence fingerprints}) for every region of every
    group of submissions compared with each other (an edition, or all of them)."""
    sources = sources or REGION_SOURCES
    bases: dict[tuple[str, str], dict[str, list[Snippet]]] = {}

    def base(assignment, kind) -> dict[str, list[Snippet]]:
        key = (assignment.name, kind)
        if key not in bases:
            bases[key] = _base_regions(assignment, kind, sources)
        return bases[key]

    groups: dict[str, list[Submission]] = {}
    for s in sorted(submissions, key=lambda s: s.name):
        groups.setdefault("" if options.across_editions else s.edition, []).append(s)
    for _, group in sorted(groups.items()):
        assignments = list({s.assignment.name: s.assignment for s in group if s.assignment}.values())
        raw: dict[str, dict[str, list[Snippet]]] = {}
        for s in group:
            regions = regions_of(s.path, s.assignment, sources)
            if regions is None:
                if unreadable is not None:
                    unreadable.append(s.name)
                continue
            for region, snippets in regions.items():
                raw.setdefault(region, {})[s.name] = snippets
        for region in sorted(raw):
            given = functools.reduce(
                Given.__or__, (_given(base(a, "starter").get(region, [])) for a in assignments), Given()
            )
            # Most submissions leave most regions as the starter has them, and many hold the
            # same text: normalise each distinct text once.
            seen: dict[tuple[str, ...], RegionCode] = {}
            code = {}
            for name, snippets in raw[region].items():
                key = tuple(snippet.source for snippet in snippets)
                if key not in seen:
                    seen[key] = normalise(snippets, given, options)
                code[name] = RegionCode(list(snippets), seen[key].units)
            ignored: set[int] = set()
            for kind in ("starter", "reference"):
                if kind in options.ignore:
                    for a in assignments:
                        if base(a, kind).get(region):
                            ignored |= normalise(base(a, kind)[region], given, options).fingerprints
            yield region, code, evidence(code, ignored, options)


def _given(snippets: list[Snippet]) -> Given:
    """What the starter's version of a region names: a student did not choose those names."""
    return Given.of([_parse(snippet) for snippet in snippets])


def evidence(
    code: dict[str, RegionCode], ignored: set[int], options: SimilarityOptions
) -> dict[str, set[int]]:
    """Each submission's fingerprints that can count as evidence: not `ignored` (the starter's,
    the reference's), and (unless asked) not common to many submissions. Submissions left
    with none are left out."""
    own = {name: c.fingerprints - ignored for name, c in code.items()}
    own = {name: f for name, f in own.items() if f}
    if "common" in options.ignore:
        counts: dict[int, int] = {}
        for f in own.values():
            for fp in f:
                counts[fp] = counts.get(fp, 0) + 1
        limit = max(options.common_floor, math.ceil(options.common_share * len(own)))
        own = {name: {fp for fp in f if counts[fp] <= limit} for name, f in own.items()}
    return own


def pair_scores(own: dict[str, set[int]], options: SimilarityOptions) -> dict[tuple[str, str], float]:
    """The score of every pair with enough code to judge (flagged or not): for measuring how
    close independent solutions come to the threshold."""
    scores = {}
    for a, b in itertools.combinations(sorted(own), 2):
        smaller = min(len(own[a]), len(own[b]))
        if smaller >= options.min_fingerprints:
            scores[(a, b)] = len(own[a] & own[b]) / smaller
    return scores


def _flagged(region: str, code: dict[str, RegionCode], own: dict[str, set[int]], options) -> list[Pair]:
    # Only pairs that share a fingerprint can score above 0: find them through an index of
    # who holds what, not by trying all n^2 pairs.
    holders: dict[int, list[str]] = {}
    for name in sorted(own):
        for fp in own[name]:
            holders.setdefault(fp, []).append(name)
    shared: dict[tuple[str, str], int] = {}
    for names in holders.values():
        for pair in itertools.combinations(names, 2):
            shared[pair] = shared.get(pair, 0) + 1
    pairs = []
    for (a, b), count in sorted(shared.items()):
        smaller = min(len(own[a]), len(own[b]))
        if smaller < options.min_fingerprints or count / smaller < options.threshold:
            continue
        common = own[a] & own[b]
        pairs.append(
            Pair(
                region,
                a,
                b,
                count / smaller,
                count,
                (len(own[a]), len(own[b])),
                (_marked(code[a], common), _marked(code[b], common)),
            )
        )
    return pairs


def _marked(code: RegionCode, common: set[int]) -> list:
    """Each snippet's lines, each marked True when it belongs to a unit with a shared
    fingerprint."""
    marked_lines: dict[int, set[int]] = {}
    for unit in code.units:
        if unit.fingerprints & common:
            marked_lines.setdefault(unit.snippet, set()).update(range(*unit.lines))
    blocks = []
    for index, snippet in enumerate(code.snippets):
        lines = textwrap.dedent(snippet.source).rstrip("\n").splitlines()
        blocks.append(
            (snippet.where, [(line, i in marked_lines.get(index, ())) for i, line in enumerate(lines)])
        )
    return blocks
