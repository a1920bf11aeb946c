"""Public checks of W2022's Part D, graded from the student's YOLOv3 files (not the notebook).

D.1 (train.py): the loop `for k, v in model.named_parameters():` in `train` must leave
requires_grad False exactly on the parameters of the layers in `freeze` (`model.0.` to
`model.9.` for the notebook's `--freeze 10`) and True on every other. D.2 (utils/loss.py):
`BCEcls` in `ComputeLoss.__init__` and the `lcls` update in `__call__` must give the class
loss the handout describes.

The grader runs neither file. Their regions run in the sandbox inside yolo_harness.py (a
stand-in network with the tree's 222 parameter names; a ComputeLoss written from the
handout), and the verdicts are taken here, in the grader's process:

* D.1 by behaviour: after the loop the harness takes one gradient step; here the grader
  computes, with no student code, where each parameter starts and where that step leaves it
  when it trains. A parameter that did not move was frozen, one that moved as computed here
  trained; requires_grad flags the child reports decide nothing.
* D.2 against the reference's loss items, stored as data, under hyper-parameters that make
  the usual mistakes visible (with the defaults, cls_pw 1 and no label smoothing, a missing
  pos_weight gives the reference's value exactly).
"""

import contextlib
import functools
import math
from pathlib import Path

import pytest
import torch

from grader.checks import StudentCodeError, import_sibling, reproducible, with_reproduction

harness = import_sibling(__file__, "yolo_harness")
HARNESS = Path(__file__).with_name("yolo_harness.py")


@pytest.fixture
def yolo(expected):
    return expected["w2022_yolo"]


# -- D.1 --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _step(seed):
    return harness.step_reference(seed)


def behaviour(after: dict, seed: int) -> tuple[list, list, list]:
    """(frozen, trained, otherwise changed) parameter names, from the values after the step."""
    before, trained = _step(seed)
    frozen, moved, other = [], [], []
    for name, start in before.items():
        value = after.get(name)
        if not isinstance(value, torch.Tensor) or value.shape != start.shape or value.dtype != start.dtype:
            other.append(name)
        elif torch.equal(value, start):
            frozen.append(name)
        elif torch.allclose(value, trained[name], rtol=1e-6, atol=1e-9):
            moved.append(name)
        else:
            other.append(name)
    return frozen, moved, other


def layer_count(names: set, all_names: list) -> int | None:
    """m when `names` are exactly the parameters of model.0 ... model.(m-1), else None."""
    for m in range(0, 30):
        prefixes = tuple(f"model.{x}." for x in range(m))
        if names == {n for n in all_names if n.startswith(prefixes)}:
            return m
    return None


def listed(names, limit=3) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def sample_names(names: list, expected: set, wrong: list) -> list:
    """A few parameter names for pasted code, in the model's order: up to three the loop got
    wrong, the last one to freeze and the first one to train."""
    keep = set(wrong[:3])
    keep |= {n for n in (max((n for n in names if n in expected), default=None, key=names.index),
                         next((n for n in names if n not in expected), None)) if n}  # fmt: skip
    return [n for n in names if n in keep]


def freeze_paste(region, freeze: int, names: list, expected: set) -> str:
    """Code a student can run anywhere: their loop over a few named parameters."""
    flags = {n: n not in expected for n in names}
    body = region.source()
    return (
        "import logging\nimport torch\n\n"
        "LOGGER = logging.getLogger('yolo')\n"
        f"names = {names!r}\n"
        "params = {k: torch.nn.Parameter(torch.zeros(1)) for k in names}\n\n\n"
        "class Model:  # stands for the YOLOv3 Model: the loop only needs named_parameters()\n"
        "    def named_parameters(self):\n"
        "        return iter(params.items())\n\n\n"
        "model = Model()\n"
        f"freeze = [f'model.{{x}}.' for x in range({freeze})]  # train() builds it from --freeze {freeze}\n"
        f"# your {region.where}:\n{body}\n"
        "print('got:     ', {k: v.requires_grad for k, v in params.items()})\n"
        f"print('expected:', {flags!r})"
    )


def check_freezing(submission, yolo, cases):
    region = submission.regions.get("freeze_loop")
    names = yolo["parameters"]
    for case in cases:
        freeze, expected = case["freeze"], set(case["frozen"])
        paste = freeze_paste(region, freeze, sample_names(names, expected, []), expected) if region else ""
        with reproducible(paste) if paste else contextlib.nullcontext():
            out = submission.transplant(HARNESS, "freeze_step", ["freeze_loop"], freeze, case["seed"])
        frozen, _, other = behaviour(out.get("after", {}), case["seed"])
        where = f"{region.where}, with --freeze {freeze}"
        assert not other, with_reproduction(
            f"{where}: the loop changed the values of {listed(other)}; it should only set requires_grad.",
            paste,
        )
        got = set(frozen)
        if got == expected:
            continue
        wrong = [n for n in names if (n in got) != (n in expected)]
        paste = freeze_paste(region, freeze, sample_names(names, expected, wrong), expected)
        m = layer_count(got, names)
        if not got:
            cause = (
                f"no parameter is frozen: all {len(names)} still train. Set `v.requires_grad = False` "
                "for each parameter whose name starts with one of the prefixes in `freeze` (e.g. "
                "`any(x in k for x in freeze)`) and True for the others; `k in freeze` compares the "
                "whole name with 'model.0.' and never matches, and `v.requires_grad_ = False` only "
                "makes a new attribute"
            )
        elif got == set(names):
            cause = (
                f"every parameter is frozen; only those of model.0 to model.{freeze - 1} "
                f"({len(expected)} of {len(names)}) should be"
            )
        elif m is not None:
            cause = (
                f"the loop froze model.0 to model.{m - 1} (the first {m} layers), not the {freeze} "
                "layers in `freeze`: build the test from `freeze` rather than a fixed number"
            )
        else:
            should_train = [n for n in names if n in got and n not in expected]
            should_freeze = [n for n in names if n in expected and n not in got]
            parts = []
            if should_freeze:
                parts.append(f"{listed(should_freeze)} still train{'s' if len(should_freeze) == 1 else ''}")
            if should_train:
                parts.append(f"{listed(should_train)} {'is' if len(should_train) == 1 else 'are'} frozen too")
            cause = "; ".join(parts)
        raise AssertionError(
            with_reproduction(
                f"{where}: {cause}. {len(got)} of {len(names)} parameters were frozen, {len(expected)} "
                "should be.",
                paste,
            )
        )


@pytest.mark.grade(part="W2022.D.1", kind="freezing", points=1, visibility="visible")
def test_freezes_the_backbone(submission, yolo):
    """train.py: `--freeze 10` freezes model.0 to model.9 and nothing else"""
    check_freezing(submission, yolo, [c for c in yolo["freeze"] if c["freeze"] == 10])


@pytest.mark.grade(part="W2022.D.1", kind="freezing", points=1, visibility="visible")
def test_freezes_what_freeze_lists(submission, yolo):
    """train.py: other --freeze values freeze exactly the layers in `freeze`"""
    check_freezing(submission, yolo, [c for c in yolo["freeze"] if c["freeze"] != 10])


# -- D.2 --------------------------------------------------------------------------------------
# What a class loss equal to a known wrong version's means (keys: w2022_yolo.VARIANTS).
CAUSES = {
    "no_pos_weight": "BCEcls has no pos_weight: pass pos_weight=torch.tensor([h['cls_pw']], device=device)",
    "obj_pos_weight": "BCEcls uses the objectness weight h['obj_pw']; the class loss's is h['cls_pw']",
    "weight_not_pos_weight": (
        "BCEcls gets h['cls_pw'] as `weight`, which scales every term; `pos_weight` weighs only "
        "the positive (true-class) terms"
    ),
    "sum_reduction": "BCEcls sums over the elements; the loss is their mean (the default reduction)",
    "bce_on_sigmoid": (
        "nn.BCELoss on sigmoid probabilities has no positive weight (and PyTorch refuses it under "
        "CUDA autocast, which train.py uses): use nn.BCEWithLogitsLoss on the logits ps[:, 5:]"
    ),
    "last_layer_only": (
        "lcls keeps only the last detection layer's loss: add each layer's to it (`lcls += ...`)"
    ),
    "slice_4": "the class logits are ps[:, 5:]; ps[:, 4] is the objectness",
    "slice_first_80": "the class logits are ps[:, 5:]; the first five columns are x, y, w, h and objectness",
    "unsmoothed_targets": (
        "the targets are not `t`: use t, which holds cp at the true class and cn elsewhere (label smoothing)"
    ),
    "scaled_twice": "the class loss is multiplied by h['cls'] twice: __call__ scales lcls after the loop",
    "not_added": "lcls stays 0: the class loss is never added to it",
}
CRASH_CAUSES = [
    (
        "zero-dimensional tensor",
        "`lcls = ...` replaces lcls by a number: add each layer's loss with `lcls += ...`",
    ),
    ("'NoneType' object is not callable", "BCEcls is still None: define it with nn.BCEWithLogitsLoss(...)"),
    ("'NoneType' object has no attribute", "BCEcls is still None: define it with nn.BCEWithLogitsLoss(...)"),
    (
        "has no attribute 'reduction'",
        "with fl_gamma > 0 BCEcls is wrapped in FocalLoss, which needs a loss module (nn.BCEWithLogitsLoss)",
    ),
    ("pos_weight", "pos_weight must be a tensor: torch.tensor([h['cls_pw']], device=device)"),
    ("must be the same as input size", "the logits and the targets differ in shape: use ps[:, 5:] and t"),
    ("must match the size", "the logits and the targets differ in shape: use ps[:, 5:] and t"),
]


def known_cause(lcls: float, variants: dict, criterion: dict) -> str | None:
    """The cause of a class loss equal to a known wrong version's, in CAUSES's order. A missing
    pos_weight and BCELoss on sigmoids give the same number: what BCEcls is tells them apart."""
    for key, cause in CAUSES.items():
        if key == "bce_on_sigmoid" and criterion.get("type") != "BCELoss":
            continue
        if key == "no_pos_weight" and criterion.get("type") == "BCELoss":
            continue
        if key in variants and math.isclose(lcls, variants[key], rel_tol=1e-4, abs_tol=1e-6):
            return cause
    return None


def loss_paste(submission, paste) -> str:
    """Code a student can run anywhere: their two statements on two matched predictions of one
    detection layer, with the discriminating hyper-parameters."""
    criterion, update = submission.regions.get("cls_criterion"), submission.regions.get("cls_update")
    if criterion is None or update is None:
        return ""
    hyp = {k: paste["hyp"][k] for k in sorted(paste["hyp"])}
    return (
        "import torch\nimport torch.nn as nn\n\n"
        f"h = {hyp!r}\n"
        "device = torch.device('cpu')\n\n\n"
        "class Loss:  # stands for ComputeLoss\n    pass\n\n\n"
        "self = Loss()\n"
        "self.hyp, self.nc = h, 80\n"
        "self.cp, self.cn = 1.0 - 0.5 * h['label_smoothing'], 0.5 * h['label_smoothing']\n"
        f"# your {criterion.where}:\n{criterion.source()}\n"
        "self.BCEcls = BCEcls\n"
        f"# two predictions matched to targets of classes {paste['classes'][0]} and {paste['classes'][1]}:\n"
        "ps = torch.linspace(-4, 4, 170).reshape(2, 85)\n"
        f"n, i, tcls = 2, 0, [torch.tensor({paste['classes']!r})]\n"
        "t = torch.full_like(ps[:, 5:], self.cn)\n"
        "t[range(n), tcls[i]] = self.cp\n"
        "lcls = torch.zeros(1)\n"
        f"# your {update.where}:\n{update.source()}\n"
        f"print(lcls, 'expected tensor([{paste['expected']:.4f}])')"
    )


def student_loss(submission, yolo, p, targets, hyp, grad=False) -> dict:
    paste = loss_paste(submission, yolo["paste"])
    try:
        with reproducible(paste) if paste else contextlib.nullcontext():
            return submission.transplant(
                HARNESS, "class_loss", ["cls_criterion", "cls_update"], p, targets, hyp, grad=grad
            )
    except StudentCodeError as exc:
        text = str(exc)
        cause = next((why for pattern, why in CRASH_CAUSES if pattern in text.split("\nTry:", 1)[0]), None)
        if cause is None:
            raise
        raise type(exc)(f"{cause}. {text}") from None


def close(got, want) -> bool:
    return (
        isinstance(got, torch.Tensor)
        and got.shape == want.shape
        and bool(torch.isfinite(got).all())
        and torch.allclose(got.double(), want.double(), rtol=1e-4, atol=1e-6)
    )


@pytest.mark.grade(part="W2022.D.2", kind="loss", points=2, visibility="visible")
def test_class_loss_matches(submission, yolo):
    """utils/loss.py: ComputeLoss's class loss (lcls) and total loss match the reference"""
    for case in yolo["loss"]:
        p = harness.predictions(case["p_seed"])
        out = student_loss(submission, yolo, p, case["targets"], case["hyp"])
        items, want = out.get("items"), case["items"]
        if close(items, want) and close(out.get("loss"), case["loss"]):
            continue
        got = float(items[2]) if isinstance(items, torch.Tensor) and items.numel() == 3 else math.nan
        criterion = out.get("criterion") or {}
        cause = known_cause(got, case["variants"], criterion)
        other = ""
        if isinstance(items, torch.Tensor) and items.numel() == 3 and not close(items[:2], want[:2]):
            other = " The box and objectness losses differ too: lines other than lcls's changed them."
        found = (
            f" (BCEcls is {criterion.get('type')}, reduction {criterion.get('reduction')!r}, "
            f"pos_weight {criterion.get('pos_weight')})"
            if criterion
            else ""
        )
        message = (
            f"{cause + '. ' if cause else ''}With {case['label']}, lcls (after the scaling by h['cls']) is "
            f"{got:.6f}, the reference's {float(want[2]):.6f}{found}.{other}"
        )
        raise AssertionError(with_reproduction(message, loss_paste(submission, yolo["paste"])))


@pytest.mark.grade(part="W2022.D.2", kind="loss", points=1, visibility="visible")
def test_class_loss_gradient(submission, yolo):
    """utils/loss.py: the class loss's gradient reaches the class logits ps[:, 5:]"""
    case = next(c for c in yolo["loss"] if c["hyp"].get("label_smoothing"))
    p = harness.predictions(case["p_seed"])
    out = student_loss(submission, yolo, p, case["targets"], case["hyp"], grad=True)
    grads = out.get("grad") or []
    sums = [float(g.abs().sum()) if isinstance(g, torch.Tensor) else 0.0 for g in grads]
    want = case["grad_sums"]
    # Whether it reaches the logits of each layer with matched targets, not its size: a loss
    # with wrong values already fails the check above.
    assert len(sums) == len(want) and all((a > 0) == (b > 0) for a, b in zip(sums, want)), (
        f"With {case['label']}, no gradient reaches the class logits ps[:, 5:] of "
        f"{'any detection layer' if not any(sums) else 'every detection layer'} with matched targets "
        f"(summed magnitudes per layer: {', '.join(f'{s:.4g}' for s in sums) or 'none'}; the reference's: "
        f"{', '.join(f'{s:.4g}' for s in want)}): compute the class loss from ps[:, 5:] itself (no "
        ".detach(), .item() or numpy) and add it to lcls, so that training learns the classes."
    )
    # Instructor side (secret probes): the reported gradient must agree with how the reported
    # loss changes along a secret direction (a central difference of two more calls).
    for probe in yolo.get("gradient_probes", []):
        p = harness.predictions(probe["p_seed"])
        out = student_loss(submission, yolo, p, probe["targets"], probe["hyp"], grad=True)
        grads = out.get("grad") or []
        direction = probe["direction"]
        assert len(grads) == len(direction) and all(
            isinstance(g, torch.Tensor) and g.shape == d.shape for g, d in zip(grads, direction)
        ), f"With {probe['label']}, no gradient of the class logits' shape came back."
        claimed = float(sum((g.double() * d.double()).sum() for g, d in zip(grads, direction)))
        step = 1e-2  # float32 losses: a smaller step drowns the slope in rounding

        def moved(sign):
            q = [x.clone() for x in p]
            for x, d in zip(q, direction):
                x[..., 5:] += sign * step * d
            value = student_loss(submission, yolo, q, probe["targets"], probe["hyp"])["loss"]
            return float(value.reshape(-1)[0])

        slope = (moved(1) - moved(-1)) / (2 * step)
        assert abs(slope - claimed) <= 1e-3 + 0.05 * abs(slope), (
            f"With {probe['label']}, the gradient does not match how the loss changes: along a "
            f"direction the loss changes at {slope:.6f} per unit, the gradient says {claimed:.6f}."
        )
