"""Hidden check of D.2, compute_iou_loss(pred, gt, SMOOTH=1e-6): properties that need no
reference, on logits and masks drawn by hypothesis. The value and gradient checks are public
(public/test_public_iou_loss.py): they compare with values stored from the reference."""

import pytest
from hypothesis import assume, example, given, strategies as st

from grader.checks import import_sibling

pa2 = import_sibling(__file__, "pa2")
# How a loss is called and its answer read: one place, the public checks (the students' copy).
_public = import_sibling(__file__, "public/test_public_iou_loss")
as_tensors, paste, student_loss = _public.as_tensors, _public.paste, _public.student_loss

pytestmark = pytest.mark.grade(part="D.2")

LOGITS = st.sampled_from([-30.0, -4.0, -1.0, -0.25, 0.0, 0.5, 2.0, 30.0])


@st.composite
def batches(draw, max_side=4):
    """(pred logits [B, 2, H, W] as nested lists, gt mask [B, H, W] as nested lists)."""
    b, h, w = draw(st.integers(1, 3)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    fill = draw(st.sampled_from(["mixed", "all background", "all foreground"]))
    bit = {"mixed": st.integers(0, 1), "all background": st.just(0), "all foreground": st.just(1)}[fill]
    gt = [[[draw(bit) for _ in range(w)] for _ in range(h)] for _ in range(b)]
    pred = [[[[draw(LOGITS) for _ in range(w)] for _ in range(h)] for _ in range(2)] for _ in range(b)]
    return pred, gt


@pytest.fixture
def loss_name(submission):
    name = submission.first_defining_name(*pa2.IOU_LOSS_NAMES)
    if name is None:
        submission.require(pa2.IOU_LOSS_NAMES[0])  # raises with the reason (does not parse, not defined, ...)
    return name


@st.composite
def masks_with_foreground(draw):
    _, gt = draw(batches())
    assume(any(v for img in gt for row in img for v in row))
    return gt


# On the instructor's side the drawn inputs change with the grading's secret seed; these shapes
# are tried by every grading, so the common shape bugs fail every time: a height or width of 1
# (a `squeeze()` that also drops it, then broadcasts against the mask or cannot) and one image.
ONE_ROW = (
    [[[1, 0, 1]], [[0, 1, 1]]],
    ([[[[2.0, -1.0, 0.5]], [[-1.0, 2.0, 0.0]]]] * 2, [[[0, 1, 1]], [[1, 1, 0]]]),
)
ONE_COLUMN = (
    [[[1], [0], [1]], [[0], [1], [1]]],
    ([[[[2.0], [-1.0], [0.5]], [[-1.0], [2.0], [0.0]]]] * 2, [[[0], [1], [1]], [[1], [1], [0]]]),
)
ONE_IMAGE = (
    [[[1, 0], [0, 1]]],
    ([[[[0.5, -4.0], [2.0, 0.0]], [[-0.25, 30.0], [-30.0, 1.0]]]], [[[1, 1], [0, 0]]]),
)


@pytest.mark.grade(kind="loss", points=1)
@given(gt=masks_with_foreground(), case=batches())
@example(gt=ONE_COLUMN[0], case=ONE_COLUMN[1])
@example(gt=ONE_ROW[0], case=ONE_ROW[1])
@example(gt=ONE_IMAGE[0], case=ONE_IMAGE[1])
def test_loss_properties(submission, loss_name, gt, case):
    """Loss is finite, in [0, 1], ~0 for a confident match and ~1 for a confident opposite"""
    sign = [[[1.0 if v else -1.0 for v in row] for row in img] for img in gt]
    match = [
        [[[-20 * s for s in row] for row in img], [[20 * s for s in row] for row in img]] for img in sign
    ]
    opposite = [[img[1], img[0]] for img in match]
    low = student_loss(submission, loss_name, match, gt)
    assert low < 0.01, (
        f"a prediction that confidently matches the mask gives loss {low:.4f}; "
        f"expected close to 0 (is it 1 - IoU, on the foreground channel 1, after a "
        f"softmax?). Try:\n{paste(match, gt, loss_name)}"
    )
    high = student_loss(submission, loss_name, opposite, gt)
    assert high > 0.99, (
        f"a prediction confidently opposite to the mask gives loss {high:.4f}; "
        f"expected close to 1. Try:\n{paste(opposite, gt, loss_name)}"
    )
    pred, gt2 = case
    value = student_loss(submission, loss_name, pred, gt2)
    assert 0.0 <= value <= 1.0 + 1e-6, (
        f"the loss is {value:.4f}, outside [0, 1] (a missing softmax?). Try:\n{paste(pred, gt2, loss_name)}"
    )
