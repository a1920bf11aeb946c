"""Find an assignment edition and read its description.

An *edition* is what one course offering hands out and grades (`pa2-w2023`). Editions of one
assignment share almost everything, so the shared part is a *family*:

    assignments/<family>/family.toml     what every edition shares: regions, limits, data the
                                         checks read (e.g. [finetune]), the reference module
    assignments/<family>/test_*.py       the checks; each names the family *task* it grades
    assignments/<family>/public/         public checks and their stored expectations
    reference/<family>/<module>.py       the reference solution (trusted parent only)

    assignments/<edition>/assignment.toml   the edition: its notebook, its parts (id, title,
                                            points, and which family task each part is),
                                            how to recognise its notebooks ([detect])
    reference/<edition>/                    its master notebook and reference notebook
    student_template/<edition>/             the starter notebook students get

A family's task is named by the id its first edition gave it (PA2: W2021's "A.1" ... "D.2").
An edition without `family` is self-contained: its folder holds the checks too, and its parts'
ids are the tasks. The folders are found next to the `grader` package in a source checkout,
or as the installed packages `grader_assignments`, `grader_reference` and `grader_templates`.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grader.editions.detect import EditionSigns, parse_signs
from grader.editions.roots import data_root
from grader.errors import AssignmentError, SubmissionError, UsageError
from grader.engine.provided import provided_definitions
from grader.engine.regions import RegionSpec

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

EDITION_FILE = "assignment.toml"
FAMILY_FILE = "family.toml"

# What the engine reads from an edition's file, and from a part. A family may add tables of
# its own (read by its checks); an edition may override those too, but nothing else.
EDITION_KEYS = {
    "name", "family", "title", "notebook", "reference_module", "parts", "not_graded",
    "detect", "harvest", "regions", "limits", "public", "files", "file_regions", "checks",
}  # fmt: skip
FAMILY_KEYS = {
    "name",
    "title",
    "reference_module",
    "default_edition",
    "harvest",
    "regions",
    "limits",
    "public",
    "files",
    "file_regions",
    "checks",
}
PART_KEYS = {"id", "title", "task", "points"}
REQUIRED_PART_KEYS = ("id", "title")


def available() -> list[str]:
    """The installed editions' names."""
    root = data_root("assignments")
    if root is None:
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{EDITION_FILE}"))


@dataclass(frozen=True)
class Part:
    id: str
    title: str
    task: str  # the family task this part grades (its id when there is no family)
    points: float | None = None  # None: the checks' own points


@dataclass
class Assignment:
    name: str
    title: str
    folder: Path  # where the checks are: the family's folder, or the edition's own
    edition_folder: Path
    family: str | None
    parts: list[Part]
    regions: dict[str, RegionSpec]
    limits: dict
    pure_calls: tuple[str, ...]
    reference_module: str
    detect: EditionSigns = field(default_factory=EditionSigns)
    data: dict = field(default_factory=dict)  # everything else, for the checks
    # Files besides the notebook, and the regions in them (grader.engine.files, grader.engine.fileregions).
    files: dict = field(default_factory=dict)
    file_regions: dict = field(default_factory=dict)

    # -- where things are ---------------------------------------------------------------
    @property
    def notebook(self) -> str:
        return self.data.get("notebook", "submission.ipynb")

    @property
    def reference_folder(self) -> Path | None:
        """reference/<edition>/: the master and the reference notebook (instructor only)."""
        return _edition_path("reference", self.name)

    @property
    def module_path(self) -> Path | None:
        """The reference module: the family's, shared by its editions. None where no
        reference material is installed (a student's wheel)."""
        root = data_root("reference")
        return root / (self.family or self.name) / self.reference_module if root else None

    @property
    def has_reference(self) -> bool:
        return self.module_path is not None and self.module_path.is_file()

    @property
    def template_folder(self) -> Path:
        root = data_root("student_template") or Path(__file__).resolve().parents[2] / "student_template"
        return root / self.name

    @property
    def template_notebook(self) -> Path | None:
        path = self.template_folder / self.notebook
        return path if path.is_file() else None

    @property
    def check_folders(self) -> list[Path]:
        """Where the checks are: the family's folder, and an edition's own checks (those that
        truly differ from the family's) when it has any."""
        own = self.edition_folder != self.folder and any(self.edition_folder.glob("test_*.py"))
        return [self.folder, self.edition_folder] if own else [self.folder]

    @property
    def secret_paths(self) -> list[Path]:
        """What a submission must never read: the checks and the reference material."""
        module_folder = self.module_path.parent if self.module_path else None
        paths = [self.folder, self.edition_folder, module_folder, self.reference_folder]
        return list(dict.fromkeys(p for p in paths if p is not None and p.exists()))

    def load_reference(self):
        """Import the reference solution (parent only); None when it is not installed."""
        if not self.has_reference:
            return None
        name = f"_grader_reference_{(self.family or self.name).replace('-', '_')}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, self.module_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    # -- parts --------------------------------------------------------------------------
    def part_of_task(self, task: str) -> Part | None:
        return next((p for p in self.parts if p.task == task), None)

    def edition_marks(self, marks: dict) -> dict | None:
        """A check's `grade` marks as this edition reports them: its part id for the family's
        task, and its points scaled so that the part's checks add up to the part's points.
        None when the edition does not have the check's task (W2023 has no Part D)."""
        task = str(marks.get("part", ""))
        part = self.part_of_task(task)
        if part is None:
            return None if self.family else dict(marks)
        mapped = dict(marks, part=part.id, task=task)
        if part.points is not None:
            total = self.task_weights().get(task)
            if not total:
                raise AssignmentError(
                    f"{self.edition_folder / EDITION_FILE}: part {part.id} gives points, but the "
                    f"stored check list of {self.folder.name} has no checks of task {task} "
                    f"(run `grade build-public {self.name}`)"
                )
            mapped["points"] = float(marks.get("points", 1)) * part.points / total
        return mapped

    def task_weights(self) -> dict[str, float]:
        """The checks' own points per task over a full grading (public and hidden checks, as
        `grade build-public` stored them): what an edition's part points are spread over."""
        from grader.public.store import stored_task_weights

        return dict(stored_task_weights(self.folder))


def _edition_path(kind: str, name: str) -> Path | None:
    root = data_root(kind)
    folder = root / name if root else None
    return folder if folder and folder.is_dir() else None


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise AssignmentError(f"{path}: not valid TOML ({exc})")


def _unknown(path: Path, where: str, keys, known) -> None:
    extra = sorted(set(keys) - set(known))
    if extra:
        raise AssignmentError(
            f"{path}: unknown key {extra[0]!r} in {where} (known: {', '.join(sorted(known))})"
        )


def _merge(base: dict, override: dict) -> dict:
    """Tables merge key by key; anything else in `override` replaces `base`'s."""
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _parts(path: Path, raw, family: str | None) -> list[Part]:
    if not isinstance(raw, list) or not raw:
        raise AssignmentError(f"{path}: no [[parts]]: an edition grades at least one part")
    parts = []
    for i, entry in enumerate(raw, 1):
        _unknown(path, f"[[parts]] {i}", entry, PART_KEYS)
        missing = [k for k in REQUIRED_PART_KEYS if k not in entry]
        if missing:
            raise AssignmentError(f"{path}: [[parts]] {i} has no {missing[0]!r}")
        if family and "task" not in entry:
            raise AssignmentError(
                f"{path}: [[parts]] {i} ({entry['id']}) has no 'task' (which {family} task it is)"
            )
        points = entry.get("points")
        if points is not None and (not isinstance(points, (int, float)) or points < 0):
            raise AssignmentError(f"{path}: [[parts]] {i} ({entry['id']}): points must be a number >= 0")
        parts.append(Part(str(entry["id"]), str(entry["title"]), str(entry.get("task", entry["id"])), points))
    ids = [p.id for p in parts]
    tasks = [p.task for p in parts]
    for label, values in (("id", ids), ("task", tasks)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise AssignmentError(f"{path}: two parts have the {label} {twice[0]!r}")
    return parts


def load_assignment(name: str | None = None) -> Assignment:
    """An installed edition by name; without a name, the only one installed (use
    `for_submission` to choose by a notebook's content)."""
    names = available()
    if name is None:
        if len(names) != 1:
            raise UsageError(f"choose an assignment with --assignment ({', '.join(names)})")
        name = names[0]
    if name not in names:
        raise UsageError(f"unknown assignment {name!r}; installed: {', '.join(names) or 'none'}")
    return _load(name)


def for_submission(path, name: str | None = None, loaded=None, ask_when_unclear: bool = True):
    """The one rule for which edition grades a submission, used by `grade NB`, batches and
    check(): returns (the edition, Detection: which and why, the loaded submission or None).
    The notebook is read once here (`loaded`, or its SubmissionError when it cannot be used),
    and the load stage grades that same reading.

    `name` (--assignment) decides; else the notebook's own header and headings do
    (grader.editions.detect). A notebook that cannot be read, or where nothing tells, is
    graded as its family's default edition (so an unusable one still fails every check it
    would have had). Two editions fitting equally: the person chooses (EditionUnclear), or,
    where nobody can be asked (a batch), the family's default edition if it is one of them,
    else the first by name, with a note: never a choice that depends on the other
    submissions."""
    from grader.editions.detect import Detection, EditionUnclear, NoEditionFound, detect

    if loaded is None:
        loaded = _read(path)
    if name is not None:
        return load_assignment(name), Detection(name, "chosen with --assignment"), _usable(loaded)
    editions = [load_assignment(n) for n in available()]
    try:
        if isinstance(loaded, SubmissionError):
            if len(editions) == 1:
                detection = Detection(editions[0].name, "the only installed edition")
            else:
                raise loaded
        else:
            detection = detect(loaded, editions)
    except EditionUnclear as exc:
        if ask_when_unclear:
            raise
        default = _default_edition(Path(path), editions)
        chosen = default if default in exc.candidates else sorted(exc.candidates)[0]
        detection = Detection(
            chosen, "the edition is unclear", f"The edition is unclear ({exc}); graded as {chosen}."
        )
    except (NoEditionFound, SubmissionError) as exc:
        default = _default_edition(Path(path), editions)
        if default is None:
            raise
        why = "nothing in it tells the edition" if isinstance(exc, NoEditionFound) else "it cannot be read"
        detection = Detection(default, f"{why}: its family's default edition")
    return load_assignment(detection.name), detection, _usable(loaded)


def _read(path):
    """The submission's notebook, loaded, or the SubmissionError saying why it cannot be."""
    from grader.engine.files import notebook_of
    from grader.engine.load import load_submission

    try:
        return load_submission(notebook_of(Path(path)))
    except SubmissionError as exc:
        return exc


def _usable(loaded):
    return None if isinstance(loaded, SubmissionError) else loaded


def _default_edition(path: Path, editions: list[Assignment]) -> str | None:
    """The edition that reports a notebook nothing tells: its family's `default_edition`.
    With several families installed, the default whose notebook has the submission's file
    name, else the first family's (by name), so the choice never depends on the machine."""
    names = {a.name for a in editions}
    by_family = {a.family or a.name: a.data.get("default_edition") for a in editions}
    defaults = [by_family[f] for f in sorted(by_family) if by_family[f] in names]
    if not defaults:
        return None
    named = [d for d in defaults if next(a for a in editions if a.name == d).notebook == path.name]
    return (named or defaults)[0]


def _load(name: str) -> Assignment:
    return read_edition(data_root("assignments") / name)


@functools.lru_cache(maxsize=None)
def read_edition(edition_folder: Path) -> Assignment:
    """The edition described in `edition_folder`/assignment.toml, with its family's shared
    description merged in; every mistake in either file stops here, naming file and key."""
    name = edition_folder.name
    path = edition_folder / EDITION_FILE
    edition = _read_toml(path)
    family_name = edition.get("family")
    family: dict = {}
    folder = edition_folder
    if family_name:
        folder = edition_folder.parent / family_name
        family_path = folder / FAMILY_FILE
        if not family_path.is_file():
            raise AssignmentError(f"{path}: family {family_name!r} has no {family_path}")
        family = _read_toml(family_path)
        # Besides the engine's keys a family may only add tables (read by its own checks).
        _unknown(
            family_path,
            "the family",
            family,
            FAMILY_KEYS | {k for k, v in family.items() if isinstance(v, dict)},
        )
        if family.get("name", family_name) != family_name:
            raise AssignmentError(
                f"{family_path}: name {family['name']!r} is not the folder's name {family_name!r}"
            )
        family_own = set(family) - FAMILY_KEYS
        _unknown(path, "the edition", edition, EDITION_KEYS | family_own)
    else:  # self-contained: its own tables are for its checks
        own_tables = {k for k, v in edition.items() if isinstance(v, dict)}
        _unknown(path, "the edition", edition, EDITION_KEYS - {"family"} | own_tables)
    if edition.get("name", name) != name:
        raise AssignmentError(f"{path}: name {edition['name']!r} is not the folder's name {name!r}")
    if "notebook" not in edition:
        raise AssignmentError(f"{path}: no 'notebook' (the file name students hand in)")
    parts = _parts(path, edition.get("parts"), family_name)
    not_graded = edition.get("not_graded", [])
    if not isinstance(not_graded, list) or not all(isinstance(x, str) for x in not_graded):
        raise AssignmentError(f"{path}: not_graded must be a list of texts (the parts not graded yet)")
    data = _merge({k: v for k, v in family.items() if k != "name"}, edition)
    from grader.engine.files import read_specs

    files, file_regions = read_specs(path, data)
    provided_definitions(data.get("harvest", {}).get("provided"), f"{path}: [harvest.provided]")
    assignment = Assignment(
        name=name,
        title=data.get("title", name),
        folder=folder,
        edition_folder=edition_folder,
        family=family_name,
        parts=parts,
        regions={k: RegionSpec.from_dict(k, v) for k, v in data.get("regions", {}).items()},
        limits=data.get("limits", {}),
        pure_calls=tuple(data.get("harvest", {}).get("pure_calls", ())),
        reference_module=data.get("reference_module", "solution.py"),
        detect=parse_signs(path, edition.get("detect", {})),
        data=data,
        files=files,
        file_regions=file_regions,
    )
    from grader.public.store import stored_task_weights

    known_tasks = set(stored_task_weights(folder))
    if known_tasks:
        for part in parts:
            if part.task not in known_tasks:
                raise AssignmentError(
                    f"{path}: part {part.id} is task {part.task!r}, which no check of "
                    f"{folder.name} grades (tasks: {', '.join(sorted(known_tasks))})"
                )
    return assignment


def import_sibling(file: str, name: str):
    """Import `name`.py from the folder of `file` (an assignment's shared helpers), without
    putting that folder on sys.path."""
    path = Path(file).resolve().parent / f"{name}.py"
    key = f"_grader_sibling_{abs(hash(str(path)))}_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


SHARED_FOLDER = "shared"  # assignments/shared/: helper modules several families' checks import


def import_shared(name: str):
    """Import `name`.py from assignments/shared/public/ (helpers public checks may use: they
    ship with the student's wheel) or else assignments/shared/ (instructor-side helpers)."""
    root = data_root("assignments")
    folders = [root / SHARED_FOLDER / "public", root / SHARED_FOLDER] if root else []
    for folder in folders:
        if (folder / f"{name}.py").is_file():
            return import_sibling(str(folder / "__init__.py"), name)
    raise ModuleNotFoundError(
        f"no shared check helper {name!r} in {', '.join(map(str, folders)) or 'assignments/'}"
    )
