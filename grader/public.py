"""Public checks: the checks a student can run before the deadline, without the reference.

An assignment keeps them in `assignments/<name>/public/`, as pytest files like any other
check, with one difference: they never use the `reference` fixture. What they compare with was
computed from the reference once, by the assignment's own `public_cases.py` (its `build(
reference, assignment)` says WHAT to compute), and stored as data next to them:

    public/expected.json   everything but tensors (sorted keys, fixed formatting)
    public/tensors.pt      the tensors, a flat {key: tensor} written by torch.save and read
                           back only with torch.load(weights_only=True)

`grade build-public NAME` (grader.buildpublic) writes both (this module: HOW to run it and
store the result). The same build twice gives the same bytes. The checks get the data through
the `expected` fixture.

The instructor's grading runs the public checks and the hidden ones (the other check files);
a student's installation (`grade release`) has no reference and no hidden checks, and the
engine then runs the public checks alone, on the same data, so the verdict of a public check
is the same on both sides. The list of hidden checks (names and points, never their inputs)
is stored too, so a student can be told what the real grading adds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import math
from pathlib import Path

PUBLIC_DIR = "public"
EXPECTED_FILE = "expected.json"
TENSOR_FILE = "tensors.pt"
FORMAT = 1
DEFAULT_CASES = "public_cases.py"


# -- where things are -----------------------------------------------------------------------
def public_folder(assignment) -> Path:
    return assignment.folder / PUBLIC_DIR


@functools.lru_cache(maxsize=None)
def stored_task_weights(checks_folder: Path) -> dict[str, float]:
    """The checks' own points per task over a full grading, from the check lists `grade
    build-public` stored (public and hidden): what an edition's part points are spread over.
    Empty before the first build. Torch-free: assignments are loaded with it."""
    path = checks_folder / PUBLIC_DIR / EXPECTED_FILE
    if not path.is_file():
        return {}
    checks = json.loads(path.read_text(encoding="utf-8")).get("checks", {})
    totals: dict[str, float] = {}
    for key in ("public", "hidden"):
        for c in checks.get(key) or []:
            totals[c["part"]] = totals.get(c["part"], 0.0) + float(c["points"])
    return totals


def has_public_checks(assignment) -> bool:
    folder = public_folder(assignment)
    return folder.is_dir() and any(folder.glob("test_*.py"))


def cases_file(assignment) -> Path:
    name = assignment.data.get("public", {}).get("cases", DEFAULT_CASES)
    return assignment.folder / name


def fingerprint(assignment) -> str | None:
    """A digest of what the expectations are computed from: the reference module and the
    reference files beside it (the reference's copies of files students hand in with the
    notebook), and the assignment's description and helper modules, its public checks' too
    (not the check files).
    None without the reference. Stored with the expectations, so stale ones are noticed."""
    if not assignment.has_reference:
        return None
    files = [assignment.module_path]
    files += sorted(p for p in assignment.module_path.parent.glob("*.py") if p != assignment.module_path)
    helpers = list(assignment.folder.iterdir()) + list(public_folder(assignment).glob("*.py"))
    files += sorted(
        p for p in helpers if p.is_file() and p.suffix in (".py", ".toml") and not p.name.startswith("test_")
    )
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


# -- computing -------------------------------------------------------------------------------
def compute(assignment, reference, challenge_seed: int | None = None) -> dict:
    """Run the assignment's `build(reference, assignment)` deterministically (seeded, one
    thread) and wrap its result (grader.buildpublic adds the lists of checks).
    With `challenge_seed`, `build(reference, assignment, seed=...)` makes the secret cases
    instead (see Expectations)."""
    import torch

    path = cases_file(assignment)
    if not path.is_file():
        raise FileNotFoundError(
            f"{assignment.name} has no {path.name} saying what its public checks compare with"
        )
    name = f"_grader_public_cases_{assignment.name.replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        if challenge_seed is None:
            cases = module.build(reference, assignment)
        else:
            cases = module.build(reference, assignment, seed=challenge_seed)
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(state)
    data = {
        "format": FORMAT,
        # The checks' folder: a family's stored files serve every edition of it alike.
        "assignment": assignment.folder.name,
        "fingerprint": fingerprint(assignment),
        "cases": cases,
        "generated_by": "grade build-public",
    }
    return data


# -- storing ---------------------------------------------------------------------------------
def serialize(data: dict) -> tuple[str, dict]:
    """(JSON text, {key: tensor}): tensors become {"$tensor": key}, keyed by their path."""
    import torch

    tensors: dict = {}

    def walk(value, path):
        if isinstance(value, torch.Tensor):
            key = "/".join(path)
            tensors[key] = value.detach().to("cpu").contiguous().clone()
            return {"$tensor": key}
        if isinstance(value, dict):
            return {str(k): walk(v, path + [str(k)]) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, path + [str(i)]) for i, v in enumerate(value)]
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{'/'.join(path)}: {value} cannot be stored")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"{'/'.join(path)}: cannot store a {type(value).__name__}")

    tree = walk(data, [])
    text = json.dumps(tree, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    return text, dict(sorted(tensors.items()))


def tensor_bytes(tensors: dict) -> bytes:
    import torch

    # Saved to a buffer, not a path: torch names the archive inside after the file it
    # writes, and a buffer always gets the same name.
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def write(data: dict, folder: Path) -> list[Path]:
    from .report import atomic_write

    text, tensors = serialize(data)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, tensor_path = folder / EXPECTED_FILE, folder / TENSOR_FILE
    raw = tensor_bytes(tensors)
    tmp = tensor_path.with_name(f".{TENSOR_FILE}.tmp")
    tmp.write_bytes(raw)
    tmp.replace(tensor_path)
    atomic_write(json_path, text)
    return [json_path, tensor_path]


def read(folder: Path) -> dict:
    """The stored expectations with their tensors in place. Tensors are read with
    torch.load(weights_only=True): plain tensors only, never arbitrary objects."""
    import torch

    json_path, tensor_path = folder / EXPECTED_FILE, folder / TENSOR_FILE
    tree = json.loads(json_path.read_text(encoding="utf-8"))
    if tree.get("format") != FORMAT:
        raise ValueError(f"{json_path}: format {tree.get('format')!r}, this grader reads {FORMAT}")
    tensors = torch.load(tensor_path, map_location="cpu", weights_only=True) if tensor_path.is_file() else {}
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise ValueError(f"{tensor_path}: not a flat dictionary of tensors")
    return resolve(tree, tensors)


_READ: dict = {}


def read_once(folder: Path) -> dict:
    """read(folder), kept while the files stay the same (check() in a student's kernel reads
    them at every call; a batch worker at every submission). The checks only read it."""
    stamp = tuple(
        (s.st_mtime_ns, s.st_size) if s else None
        for s in (
            (folder / name).stat() if (folder / name).exists() else None
            for name in (EXPECTED_FILE, TENSOR_FILE)
        )
    )
    key = str(folder.resolve())
    if _READ.get(key, (None,))[0] != stamp:
        _READ[key] = (stamp, read(folder))
    return _READ[key][1]


def resolve(tree, tensors: dict):
    def walk(value):
        if isinstance(value, dict):
            if set(value) == {"$tensor"}:
                key = value["$tensor"]
                if key not in tensors:
                    raise ValueError(f"stored expectations refer to a missing tensor {key!r}")
                return tensors[key]
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return walk(tree)


def roundtrip(data: dict) -> dict:
    """What reading the stored files would give (JSON types, tensors cloned)."""
    text, tensors = serialize(data)
    return resolve(json.loads(text), tensors)


# -- comparing stored and fresh builds ---------------------------------------------------------
# The stored numbers were computed by the reference on the machine that built them; another
# CPU or BLAS build rounds differently (a train-mode layer sketch came out -0.102952017 on one
# machine, -0.102950888 on another). The checks compare at 1e-4, so stored expectations that
# agree within these tolerances give every check the same verdict: they are "the same".
SAME_RTOL = 1e-4
SAME_ATOL = 1e-5


def differences(stored, fresh, path: str = "") -> list[str]:
    """Where two expectation trees (JSON values, tensors) differ beyond floating-point noise;
    each entry is a path such as `cases/A.1/sketch/3`. Empty when they are the same."""
    import torch

    if isinstance(stored, torch.Tensor) or isinstance(fresh, torch.Tensor):
        same = (
            isinstance(stored, torch.Tensor)
            and isinstance(fresh, torch.Tensor)
            and stored.dtype == fresh.dtype
            and stored.shape == fresh.shape
            and torch.allclose(stored.double(), fresh.double(), rtol=SAME_RTOL, atol=SAME_ATOL)
        )
        return [] if same else [path or "/"]
    if isinstance(stored, bool) or isinstance(fresh, bool):  # bool is an int: compare exactly
        return [] if type(stored) is type(fresh) and stored == fresh else [path or "/"]
    if isinstance(stored, float) or isinstance(fresh, float):
        close = (
            isinstance(stored, (int, float))
            and isinstance(fresh, (int, float))
            and math.isclose(stored, fresh, rel_tol=SAME_RTOL, abs_tol=SAME_ATOL)
        )
        return [] if close else [path or "/"]
    if isinstance(stored, dict) and isinstance(fresh, dict):
        if sorted(stored) != sorted(fresh):
            return [path or "/"]
        return [d for k in sorted(stored) for d in differences(stored[k], fresh[k], f"{path}/{k}")]
    if isinstance(stored, list) and isinstance(fresh, list):
        if len(stored) != len(fresh):
            return [path or "/"]
        return [d for i, (a, b) in enumerate(zip(stored, fresh)) for d in differences(a, b, f"{path}/{i}")]
    return [] if stored == fresh else [path or "/"]


def keep_stored(stored, fresh):
    """`fresh` with every value that `stored` already holds within floating-point noise (see
    differences) taken from `stored`: a rebuild on another machine then rewrites only what
    really changed, and the stored files' history shows it."""
    if not differences(stored, fresh):
        return stored
    if isinstance(stored, dict) and isinstance(fresh, dict) and sorted(stored) == sorted(fresh):
        return {k: keep_stored(stored[k], fresh[k]) for k in fresh}
    if isinstance(stored, list) and isinstance(fresh, list) and len(stored) == len(fresh):
        return [keep_stored(a, b) for a, b in zip(stored, fresh)]
    return fresh


def is_current(assignment) -> bool:
    folder = public_folder(assignment)
    try:
        stored = json.loads((folder / EXPECTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return stored.get("fingerprint") == fingerprint(assignment)


# -- grading ---------------------------------------------------------------------------------
class Expectations:
    """The stored expectations, loaded when a check first asks. With the reference installed
    and the stored files out of date (the reference or the cases changed since the last
    `grade build-public`), they are computed afresh from the reference, with a note.

    Secret challenges (trust model, rule 2): the stored cases are public, so a submission
    could answer them from a lookup table. On the instructor side, `challenge_seed` (drawn by
    the grading from os.urandom) makes the assignment's `build(..., seed=...)` draw fresh
    inputs and weights of the same kinds, computed here from the reference; every list of
    cases gets them appended, so a public check passes only if it passes on both. A student's
    side has no reference and no seed: the stored cases alone, with the same verdict for
    honest code."""

    def __init__(self, assignment, reference=None, challenge_seed: int | None = None):
        self.assignment = assignment
        self.reference = reference
        self.challenge_seed = challenge_seed
        self.notes: list[str] = []
        self.seconds = 0.0  # spent computing them ahead of the checks (grader.checkrun)
        self._data: dict | None = None
        self._cases: dict | None = None

    def data(self) -> dict:
        if self._data is None:
            folder = public_folder(self.assignment)
            stored = read_once(folder) if (folder / EXPECTED_FILE).is_file() else None
            if self.reference is not None and (
                stored is None or stored.get("fingerprint") != fingerprint(self.assignment)
            ):
                self.notes.append(
                    f"the public expectations in {folder} are out of date or missing: they were "
                    "computed from the reference for this grading; run `grade build-public "
                    f"{self.assignment.name}` to store them for students"
                )
                stored = roundtrip(compute(self.assignment, self.reference))
            if stored is None:
                raise RuntimeError(f"no stored expectations in {folder}")
            self._data = stored
        return self._data

    def cases(self) -> dict:
        if self._cases is None:
            cases = self.data()["cases"]
            if self.reference is not None and self.challenge_seed is not None:
                fresh = _challenge_cases(self.assignment, self.reference, self.challenge_seed)
                cases = with_challenges(cases, fresh)
            self._cases = cases
        return self._cases

    def stored_checks(self) -> dict:
        """{"public": [...], "hidden": [...]} from the stored files (empty when unreadable)."""
        try:
            tree = json.loads((public_folder(self.assignment) / EXPECTED_FILE).read_text())
            return tree.get("checks") or {}
        except (OSError, ValueError):
            return {}


_CHALLENGES: dict = {}


def _challenge_cases(assignment, reference, seed: int) -> dict:
    """The secret cases of one seed, computed once per process: a batch shares one seed, so
    its workers pay for them once (the checks only read them; the child gets copies)."""
    key = (assignment.name, id(reference), seed)
    if key not in _CHALLENGES:
        _CHALLENGES.clear()  # a new seed: the old cases are not needed again
        _CHALLENGES[key] = roundtrip(compute(assignment, reference, challenge_seed=seed))["cases"]
    return _CHALLENGES[key]


def with_challenges(stored, fresh):
    """`stored` with every list that `fresh` also has extended by fresh's items (stored ones
    first, so a failure on them reads as on a student's side), and fresh's keys that stored
    lacks added (kinds of cases only the instructor's side has)."""
    if isinstance(stored, dict) and isinstance(fresh, dict):
        merged = {k: with_challenges(v, fresh[k]) if k in fresh else v for k, v in stored.items()}
        merged.update({k: v for k, v in fresh.items() if k not in stored})
        return merged
    if isinstance(stored, list) and isinstance(fresh, list):
        return stored + fresh
    return stored


def public_only(assignment, options) -> bool:
    """Whether a grading with these options runs the public checks alone: asked for, or no
    reference solution installed (a student's installation)."""
    return bool(getattr(options, "public_only", False)) or not assignment.has_reference


def check_targets(assignment, public_only: bool) -> list[Path]:
    from .errors import UsageError

    if not public_only:
        return assignment.check_folders
    if not has_public_checks(assignment):
        raise UsageError(
            f"the reference solution of {assignment.name} is not installed and "
            "the assignment has no public checks to run without it"
        )
    return [public_folder(assignment)]


def public_only_note(expectations: Expectations, ran: list) -> str:
    """What a student's run says: only public checks ran; which hidden ones the real grading
    adds (names and points only)."""
    points = sum(c.max_score for c in ran)
    lines = [
        f"No reference solution is installed here, so only the public checks ran "
        f"({len(ran)} checks, {points_text(points)})."
    ]
    hidden = expectations.stored_checks().get("hidden")
    if hidden:
        hidden = edition_view(expectations.assignment, hidden)
    if hidden:
        total = sum(c["points"] for c in hidden)
        lines.append(
            f"The real grading also runs {len(hidden)} hidden checks worth "
            f"{points_text(total)} (their inputs are not published):"
        )
        lines += [f"  - {c['name']} ({c['kind']}, {points_text(c['points'])})" for c in hidden]
    elif hidden is not None:
        lines.append("The real grading runs no other checks.")
    return "\n".join(lines)


def edition_view(assignment, stored: list[dict]) -> list[dict]:
    """Stored check entries (the family's tasks and the checks' own points) as this edition
    names and scores them; the checks of tasks it does not grade left out."""
    from .results import display_name

    out = []
    for entry in stored:
        marks = assignment.edition_marks({"part": entry["part"], "points": entry["points"]})
        if marks is None:
            continue
        title = entry.get("title")
        name = display_name(title, marks["part"], entry.get("subject")) if title else entry["name"]
        out.append(dict(entry, name=name, part=marks["part"], points=marks["points"]))
    return out


def points_text(x) -> str:
    from .results import points

    return f"{points(x)} point{'' if x == 1 else 's'}"
