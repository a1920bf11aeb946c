"""Public checks' stored expectations on disk: where they are, how they are written and read
back (JSON with sorted keys, plus plain tensors read only with torch.load(weights_only=True)),
whether they are current (their fingerprint), and whether two builds are the same within
floating-point noise. Torch-free at import: assignments are loaded with it."""

from __future__ import annotations

import functools
import hashlib
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


# -- storing ---------------------------------------------------------------------------------
def serialize(data: dict, readable: bool = True) -> tuple[str, dict]:
    """(JSON text, {key: tensor}): tensors become {"$tensor": key}, keyed by their path.
    `readable`: indented, keys sorted (the stored files, read in reviews); else compact, which
    json writes five times faster (roundtrip's text is never seen)."""
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
    if readable:
        text = json.dumps(tree, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    else:
        text = json.dumps(tree, allow_nan=False)
    return text, dict(sorted(tensors.items()))


def tensor_bytes(tensors: dict) -> bytes:
    import torch

    # Saved to a buffer, not a path: torch names the archive inside after the file it
    # writes, and a buffer always gets the same name.
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()


def write(data: dict, folder: Path) -> list[Path]:
    from grader.report.writers import atomic_write

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
    text, tensors = serialize(data, readable=False)
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
