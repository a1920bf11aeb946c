"""W2022 Part D on the instructor's side: the reference's statements, the known wrong ones,
and the cases the public checks compare with (public_cases.build stores them; with a seed
they are a grading's secret challenges). The reference statements come from the reference
files reference/pa2/w2022_train.py and w2022_loss.py, taken out by the same extractor as a
student's (grader.engine.fileregions) and run in the same harness (public/yolo_harness.py), in the
parent: they are trusted code.

Never shipped to students: the wrong variants below are one edit away from the answer."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import torch

from grader.checks import import_sibling
from grader.engine.fileregions import extract
from grader.engine.files import read_specs
from grader.engine.transplant import compile_regions

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

harness = import_sibling(__file__, "public/yolo_harness")

REFERENCE_FILES = {"train": "w2022_train.py", "loss": "w2022_loss.py"}
# The edition names its files and regions; the family's stored cases are built from any
# edition's grading, so they are read from W2022's description itself.
EDITION = "pa2-w2022"


@functools.lru_cache(maxsize=1)
def file_specs() -> tuple[dict, dict]:
    """W2022's [files] and [file_regions] (grader.engine.files.read_specs), from the installed
    editions (a checkout's assignments/ or the package grader_assignments)."""
    from grader.editions.assignment import EDITION_FILE, data_root

    path = data_root("assignments") / EDITION / EDITION_FILE
    with open(path, "rb") as f:
        return read_specs(path, tomllib.load(f))


# The handout's run (`--freeze 10`), a smaller and a larger value (the tree's help text says
# 24 freezes "all"; the stand-in has 29 layers, so 24 leaves the last head layers training).
STORED_FREEZE = [(10, 0), (3, 1), (24, 2)]

# Hyper-parameters under which the usual mistakes change the class loss: with the handout's
# defaults (cls_pw 1, no label smoothing) a missing pos_weight and BCELoss on sigmoids give
# the reference's value exactly. obj_pw differs from cls_pw and 1 so that taking the wrong
# one shows; fl_gamma > 0 wraps BCEcls in the focal loss, which needs a real loss module.
HYPS = {
    "the handout's defaults": {},
    "cls_pw 2.5, label smoothing 0.1": {"cls_pw": 2.5, "obj_pw": 1.5, "label_smoothing": 0.1},
    "cls_pw 0.6, label smoothing 0.2, focal loss (fl_gamma 1.5)": {
        "cls_pw": 0.6,
        "obj_pw": 1.5,
        "label_smoothing": 0.2,
        "fl_gamma": 1.5,
    },
}
DISCRIMINATING = "cls_pw 2.5, label smoothing 0.1"

# Known wrong versions of the two D.2 statements: (BCEcls statement or None for the
# reference's, lcls statement or None). The public check names the cause of a value that
# equals one of theirs (CAUSES in public/test_public_w2022_yolo.py, same keys).
VARIANTS = {
    "no_pos_weight": ("BCEcls = nn.BCEWithLogitsLoss()", None),
    "obj_pos_weight": (
        "BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h['obj_pw']], device=device))",
        None,
    ),
    "weight_not_pos_weight": (
        "BCEcls = nn.BCEWithLogitsLoss(weight=torch.tensor([h['cls_pw']], device=device))",
        None,
    ),
    "sum_reduction": (
        "BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h['cls_pw']]), reduction='sum')",
        None,
    ),
    "bce_on_sigmoid": ("BCEcls = nn.BCELoss()", "lcls += self.BCEcls(ps[:, 5:].sigmoid(), t)"),
    "last_layer_only": (None, "lcls = self.BCEcls(ps[:, 5:], t).reshape(1)"),
    "slice_4": (None, "lcls += self.BCEcls(ps[:, 4:-1], t)"),
    "slice_first_80": (None, "lcls += self.BCEcls(ps[:, :80], t)"),
    "unsmoothed_targets": (
        None,
        "lcls += self.BCEcls(ps[:, 5:], torch.nn.functional.one_hot(tcls[i], self.nc).to(ps.dtype))",
    ),
    "scaled_twice": (None, "lcls += self.BCEcls(ps[:, 5:], t) * self.hyp['cls']"),
    "not_added": (None, "lcls += 0"),
}


def reference_regions(reference, assignment) -> dict:
    """The three regions of the reference files, as wire dicts (grader.engine.fileregions)."""
    folder = Path(reference.__file__).parent
    files, regions = file_specs()
    out = {}
    for name, spec in regions.items():
        text = (folder / REFERENCE_FILES[spec.file]).read_text(encoding="utf-8")
        out[name] = extract(text, files[spec.file].name, spec).to_wire()
    return out


def _variant_regions(base: dict, key: str) -> dict:
    criterion, update = VARIANTS[key]
    regions = dict(base)
    for name, source in (("cls_criterion", criterion), ("cls_update", update)):
        if source is not None:
            regions[name] = {
                "statements": [{"file": "variant", "lineno": 1, "source": source}],
                "imports": [],
            }
    return regions


_COMPILED: dict = {}


def _compiled(reference, assignment):
    """The reference's regions and each variant's, compiled once per reference module."""
    key = (id(reference), assignment.family or assignment.name)
    if key not in _COMPILED:
        base = reference_regions(reference, assignment)
        variants = {k: compile_regions(_variant_regions(base, k)) for k in VARIANTS}
        _COMPILED[key] = (compile_regions(base), variants)
    return _COMPILED[key]


@functools.cache
def _grader_loss_model():
    """The loss model of the grader's own loss computations: the reference's and the known
    wrong variants', trusted statements that only read it (ComputeLoss takes its device, its
    Detect layer and `hyp`, which each computation sets). One, not one per computation: the
    secret challenges build 36, which took half a second of every W2022 grading."""
    return harness.build_model(0)


def reference_loss(reference, assignment, p, targets, hyp, grad=False) -> dict:
    regions, _ = _compiled(reference, assignment)
    return harness.class_loss(regions, p, targets, hyp, grad=grad, model=_grader_loss_model())


def frozen_names(reference, assignment, freeze: int) -> list[str]:
    """What the reference loop freezes for `--freeze freeze` (in the parent)."""
    regions = compile_regions({"freeze_loop": reference_regions(reference, assignment)["freeze_loop"]})
    flags = harness.freeze_step(regions, freeze, 0)["flags"]
    return [name for name, trains in flags.items() if not trains]


def random_targets(rng: random.Random, batch: int, count: int) -> torch.Tensor:
    rows = []
    for _ in range(count):
        w, h = rng.uniform(0.05, 0.6), rng.uniform(0.05, 0.6)
        rows.append([rng.randrange(batch), rng.randrange(harness.NUM_CLASSES), rng.uniform(0.05, 0.95),
                     rng.uniform(0.05, 0.95), w, h])  # fmt: skip
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def loss_case(reference, assignment, label, p_seed, targets) -> dict:
    """Predictions (from `p_seed`: harness.predictions makes them alike on both sides), targets,
    the reference's loss items, how much gradient reaches the class logits of each layer, and
    the class loss of each known wrong variant."""
    hyp = HYPS[label]
    p = harness.predictions(p_seed)
    want = reference_loss(reference, assignment, p, targets, hyp, grad=True)
    _, variants = _compiled(reference, assignment)
    values = {}
    for key, regions in variants.items():
        try:
            values[key] = float(
                harness.class_loss(regions, p, targets, hyp, model=_grader_loss_model())["items"][2]
            )
        except Exception:  # a variant that crashes here: the crash itself says what is wrong
            continue
    return {
        "label": label,
        "hyp": dict(hyp),
        "p_seed": p_seed,
        "targets": targets,
        "items": want["items"],
        "loss": want["loss"],
        "grad_sums": [float(g.abs().sum()) if g is not None else 0.0 for g in want["grad"]],
        "variants": values,
    }


def paste_case(reference, assignment) -> dict:
    """The small example feedback's code builds (two matched predictions, one layer): its
    class loss with the discriminating hyper-parameters, before the scaling by h['cls']."""
    hyp = harness.DEFAULT_HYP | HYPS[DISCRIMINATING]
    regions, _ = _compiled(reference, assignment)
    loss = harness.LossHarness(harness.loss_model(hyp, _grader_loss_model()), regions)
    ps = torch.linspace(-4, 4, 2 * harness.OUTPUTS).reshape(2, harness.OUTPUTS)
    t = torch.full_like(ps[:, 5:], loss.cn)
    t[range(2), [3, 17]] = loss.cp
    scope = {"self": loss, "ps": ps, "t": t, "n": 2, "i": 0, "tcls": [torch.tensor([3, 17])],
             "lcls": torch.zeros(1), "torch": torch, "nn": torch.nn}  # fmt: skip
    regions["cls_update"](scope)
    return {"hyp": hyp, "classes": [3, 17], "expected": float(scope["lcls"].reshape(-1)[0])}


def cases(reference, assignment) -> dict:
    """The stored cases of both parts."""
    targets = torch.tensor(
        [
            [0, 3, 0.5, 0.5, 0.3, 0.4],
            [1, 17, 0.3, 0.6, 0.2, 0.2],
            [1, 0, 0.7, 0.2, 0.5, 0.3],
            [0, 79, 0.2, 0.8, 0.1, 0.15],
        ]
    )
    return {
        "freeze": [
            {"freeze": f, "seed": s, "frozen": frozen_names(reference, assignment, f)}
            for f, s in STORED_FREEZE
        ],
        "loss": [loss_case(reference, assignment, label, k, targets) for k, label in enumerate(HYPS)],
        "paste": paste_case(reference, assignment),
        "parameters": harness.parameter_names(),
    }


def challenge(reference, assignment, seed: int) -> dict:
    """Secret cases: the notebook's --freeze 10 and another value with steps from secret
    seeds; class-loss cases with secret predictions and targets under each hyper-parameter
    set; gradient probes along a secret direction."""
    rng = random.Random(seed)
    other = rng.choice([f for f in range(1, 29) if f != 10])
    freeze = [
        {"freeze": f, "seed": rng.randrange(1, 2**31), "frozen": frozen_names(reference, assignment, f)}
        for f in (10, other)
    ]
    loss = []
    for label in HYPS:
        targets = random_targets(rng, 2, rng.randint(3, 8))
        loss.append(loss_case(reference, assignment, label, rng.randrange(2**31), targets))
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    probes = []
    for case in loss[1:]:
        p = harness.predictions(case["p_seed"])
        direction = [torch.randn(x[..., 5:].shape, generator=g) for x in p]
        norm = torch.sqrt(sum((d**2).sum() for d in direction))
        probe = {k: case[k] for k in ("label", "hyp", "p_seed", "targets")}
        probes.append(dict(probe, direction=[d / norm for d in direction]))
    return {"freeze": freeze, "loss": loss, "gradient_probes": probes}
