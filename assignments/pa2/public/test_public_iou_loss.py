"""Public checks of D.2: compute_iou_loss(pred, gt, SMOOTH=1e-6), the soft IoU loss.

The values are compared with the reference's on fixed logits and masks stored as data
(`expected["iou"]`). The handout does not say whether IoU is taken over the whole batch or
per image and averaged: both readings are stored, and the check says which one it found."""

import pytest
import torch

from grader.checks import StudentCodeError, reproducible

pytestmark = pytest.mark.grade(part="D.2", visibility="visible")


@pytest.fixture
def loss_name(submission, expected):
    names = expected["iou"]["names"]
    name = submission.first_defining_name(*names)
    if name is None:
        submission.require(names[0])  # raises with the reason (does not parse, not defined, ...)
    return name


def as_tensors(pred, gt):
    return torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.long)


def paste(pred, gt, name):
    return f"pred = torch.tensor({pred})\ngt = torch.tensor({gt})\n{name}(pred, gt)"


def student_loss(submission, name, pred, gt, grad=False):
    pred_t, gt_t = as_tensors(pred, gt)
    with reproducible(paste(pred, gt, name)):
        result = submission.call(name, pred_t, gt_t, grad_wrt=[0] if grad else [])
    out = result["output"]
    assert hasattr(out, "shape"), f"{name} returned {out!r}, not a tensor. Try:\n{paste(pred, gt, name)}"
    assert out.numel() == 1, (
        f"{name} returned a tensor of shape {list(out.shape)}; the loss must be a single number. "
        f"Try:\n{paste(pred, gt, name)}"
    )
    return (out.reshape(()).item(), result["grads"][0]) if grad else out.reshape(()).item()


@pytest.mark.grade(kind="loss", points=2)
def test_matches_reference(submission, expected, loss_name, feedback):
    """Loss values match the reference on fixed logits and masks"""
    iou = expected["iou"]
    probe = iou["probe"]
    got = student_loss(submission, loss_name, probe["pred"], probe["gt"])
    found = [k for k in iou["accepted"] if abs(probe["values"][k] - got) <= 1e-4]
    assert found, (
        f"{loss_name} gives {got:.6f} here; expected "
        + " or ".join(f"{probe['values'][k]:.6f} (IoU {k})" for k in iou["accepted"])
        + f". Try:\n{paste(probe['pred'], probe['gt'], loss_name)}"
    )
    reading = found[0]
    crashed = None
    for case in iou["cases"]:  # smallest first
        try:
            got = student_loss(submission, loss_name, case["pred"], case["gt"])
        except StudentCodeError as exc:
            crashed = crashed or exc
            continue
        want = case["values"][reading]
        assert abs(got - want) <= 1e-4 + 1e-4 * abs(want), (
            f"{loss_name} gives {got:.6f}, the reference {want:.6f} (IoU {reading}). "
            f"Try:\n{paste(case['pred'], case['gt'], loss_name)}"
        )
    if crashed:  # a wrong value is reported first; then a crash
        raise crashed  # its message ends with the code that reproduces it (student_loss)
    feedback(f"IoU is taken {'over the ' if reading == 'whole batch' else ''}{reading}.")


@pytest.mark.grade(kind="loss", points=1)
def test_gradient_reaches_pred(submission, expected, loss_name):
    """Gradients flow from the loss back to the logits"""
    probe = expected["iou"]["probe"]
    _, grad = student_loss(submission, loss_name, probe["pred"], probe["gt"], grad=True)
    assert grad is not None, (
        f"{loss_name}'s result is not connected to pred (no gradient "
        "reaches it): avoid .detach(), .item(), argmax or numpy inside."
    )
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0, (
        f"the gradient of {loss_name} with respect to pred is zero or not finite."
    )
    # Instructor side only (secret probes): the gradient must agree with how the values change,
    # along a secret direction and along the gradient itself (a central difference of two
    # more calls), so a gradient cannot be made up without a function behind it.
    for probe in expected["iou"].get("gradient_probes", []):
        pred, gt = probe["pred"], probe["gt"]
        _, grad = student_loss(submission, loss_name, pred, gt, grad=True)
        assert grad is not None and grad.shape == torch.Size(torch.tensor(pred).shape), (
            f"{loss_name} gives no gradient of pred's shape. Try:\n{paste(pred, gt, loss_name)}"
        )
        for direction in (torch.tensor(probe["direction"]), grad / (grad.norm() + 1e-12)):
            step = 1e-3  # small: a loss without softmax curves sharply near an empty union
            ahead = (torch.tensor(pred) + step * direction).tolist()
            behind = (torch.tensor(pred) - step * direction).tolist()
            slope = (
                student_loss(submission, loss_name, ahead, gt)
                - student_loss(submission, loss_name, behind, gt)
            ) / (2 * step)
            claimed = float((grad * direction).sum())
            assert abs(slope - claimed) <= 1e-3 + 0.2 * abs(slope), (
                f"the gradient {loss_name} reports does not match how its value changes: along "
                f"a direction the loss changes at {slope:.6f} per unit, the gradient says "
                f"{claimed:.6f}. Try:\n{paste(pred, gt, loss_name)}"
            )
