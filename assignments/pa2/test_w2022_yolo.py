"""Hidden check of W2022's D.2 (utils/loss.py): the class loss on predictions and targets
drawn by hypothesis, against the reference's statements run in the same harness in the
grader's process. The stored and secret cases are public/test_public_w2022_yolo.py's."""

import math
import random

import pytest
import torch
from hypothesis import example, given, strategies as st

from grader.checks import import_sibling, with_reproduction

w2022_yolo = import_sibling(__file__, "w2022_yolo")
_public = import_sibling(__file__, "public/test_public_w2022_yolo")
harness = _public.harness

pytestmark = pytest.mark.grade(part="W2022.D.2")


class ReferenceLoss:
    """The reference's class loss and the feedback's small example (a short repr: hypothesis
    prints a failing example's arguments)."""

    def __init__(self, reference, assignment):
        self.reference, self.assignment = reference, assignment
        self.paste = w2022_yolo.paste_case(reference, assignment)

    def __call__(self, p, targets, hyp):
        return w2022_yolo.reference_loss(self.reference, self.assignment, p, targets, hyp)["items"]

    def __repr__(self):
        return "ReferenceLoss()"


@pytest.fixture(scope="module")
def reference_loss(reference, assignment):
    return ReferenceLoss(reference, assignment)


def each_hyp(test):
    """Every grading tries each set of hyper-parameters once, whatever its secret seed draws:
    a loss right only under some of them (no pos_weight is right with cls_pw 1) fails every time."""
    for label in sorted(w2022_yolo.HYPS):
        test = example(seed=7, batch=2, grids=(8, 4, 2), count=5, label=label)(test)
    return test


@pytest.mark.grade(kind="loss", points=1)
@each_hyp
@given(
    seed=st.integers(0, 2**20),
    batch=st.integers(1, 3),
    grids=st.sampled_from([(8, 4, 2), (4, 2, 1), (16, 8, 4)]),
    count=st.integers(0, 8),
    label=st.sampled_from(sorted(w2022_yolo.HYPS)),
)
def test_class_loss_on_drawn_inputs(submission, reference_loss, seed, batch, grids, count, label):
    """utils/loss.py: the loss items match the reference's on drawn predictions and targets"""
    hyp = w2022_yolo.HYPS[label]
    p = harness.predictions(seed, batch, grids)
    targets = w2022_yolo.random_targets(random.Random(seed), batch, count)
    want = reference_loss(p, targets, hyp)
    yolo = {"paste": reference_loss.paste}
    got = _public.student_loss(submission, yolo, p, targets, hyp)["items"]
    assert _public.close(got, want), with_reproduction(
        f"With {label}, {count} targets in {batch} images and detection grids {grids}, the loss "
        f"items (box, objectness, class) are {_items(got)}, the reference's {_items(want)}.",
        _public.loss_paste(submission, reference_loss.paste),
    )


def _items(values) -> str:
    if not isinstance(values, torch.Tensor):
        return repr(values)
    return "(" + ", ".join("nan" if math.isnan(v) else f"{v:.6f}" for v in values.reshape(-1).tolist()) + ")"
