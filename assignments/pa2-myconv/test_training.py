"""Short training runs, as W2021's (assignments/pa2/test_training.py): a network can have the
right shapes and still not learn. Each colourization network trains from a fixed seed on
PA2's small offline set next to the reference network of the edition's first accepted
reading, and the verdict rests on the grader's own loss on secret held-out images. W2020's
C.2 fine-tuning run is PA2's D.1 run on this family's reference and data."""

from pathlib import Path

import numpy as np
import pytest
import torch

from grader.checks import import_sibling, prediction_grid, run_training

myconv = import_sibling(__file__, "myconv")
pa2, data = myconv.pa2, myconv.data
# W2021's judgement of a training run (its budget, bar and curve criteria), used as it is.
pa2_training = import_sibling(str(Path(__file__).resolve().parent.parent / "pa2" / "pa2.py"), "test_training")

pytestmark = pytest.mark.grade(kind="training")

BUDGET = pa2_training.BUDGET
SETTING = (3, 8, 24, 1)  # kernel, num_filters, num_colours, num_in_channels
LR = pa2_training.LR
FACTOR = pa2_training.FACTOR
judge_curve, held_out_loss = pa2_training.judge_curve, pa2_training.held_out_loss


@pytest.mark.parametrize("name", myconv.colour_model_params())
@pytest.mark.grade(points=1)
def test_colourization_learns(submission, reference, assignment, device, feedback, secret, name):
    """Short training run: every layer learns and the loss falls like the reference's"""
    budget = BUDGET[device]
    grey, labels, colours = data.colourization_set(budget["n"])
    run = dict(steps=budget["steps"], batch_size=budget["batch_size"], lr=LR, seed=0, device=device)
    torch.manual_seed(0)
    reading = myconv.default_reading(name, assignment)
    ref_model = myconv.network(reference, name, SETTING, reading)
    ref = run_training(ref_model, grey, labels, torch.nn.CrossEntropyLoss(), **run)
    model = submission.build(name, *SETTING)
    got = model.train(grey, labels, loss="torch.nn.CrossEntropyLoss", timeout=120, **run)
    # The verdict rests on what the grader measures: the trained network's outputs on secret
    # held-out images (train mode: batch statistics, as in training), scored here against the
    # reference trained the same way. The child's report only explains a failure.
    held_grey, held_labels, _ = data.colourization_held_out(budget["n"], 1 + (secret or 0) % 2**31, labels)
    out = model.forward(held_grey, mode="train").output
    expected_shape = [budget["n"], SETTING[2], 32, 32]
    assert list(out.shape) == expected_shape, (
        f"after training, the network's output on new images has shape {list(out.shape)}; "
        f"expected {expected_shape}."
    )
    ref_model.train()
    with torch.no_grad():
        ref_held = held_out_loss(ref_model(held_grey), held_labels)
    held = held_out_loss(out, held_labels)
    feedback(f"Trained {run['steps']} steps on {device} in {got['seconds']:.1f} s.")
    feedback.image(
        f"{name}: greyscale input, your colourization, the reference's, the truth",
        prediction_grid(
            {
                "input": [g[0].numpy() for g in grey[:4]],
                "yours": [colours[p.long().numpy()] for p in got["predictions"]],
                "reference": [colours[p.long().numpy()] for p in ref["predictions"]],
                "truth": [colours[t.numpy()] for t in labels[:4]],
            },
            {"yours": got["losses"], "reference": ref["losses"]},
            cmap="gray",
        ),
    )
    never = [n for n in got["unchanged"] if got["requires_grad"].get(n)]
    assert not never, (
        f"{', '.join(never[:4])} never changed during training: the layer "
        "holding it is not used in forward (or its output is not used)."
    )
    judge_curve(got, ref["losses"])
    bar = FACTOR * ref_held
    assert np.isfinite(held) and held <= bar, (
        f"on {budget['n']} images it did not train on, your trained network's loss is "
        f"{held:.3f}, the reference's {ref_held:.3f} (pass: at most {bar:.3f}); it learned "
        "too little to colourize new images."
    )


@pytest.mark.grade(part="head", points=1)
def test_finetune_trains_only_head(submission, assignment, reference, device, feedback, secret):
    """Fine-tuning steps after the driver cell: frozen weights stay bit-identical, classifier.4 changes, the loss falls"""  # noqa: E501 (the check's name)
    spec = assignment.data["finetune"]
    try:
        run = pa2.finetune_run(submission, spec, device, secret)
    except pa2.HeadDoesNotFit:
        # Another head shape (a 3x3 kernel): the grader cannot reproduce the run, so the
        # child's own report decides (docs/security.md says what that leaves open).
        run = pa2.finetune_run_as_is(submission, spec, device)
    got = run["report"]
    pa2_training.segmentation_picture(
        "DeepLabV3 after fine-tuning with your freezing (cross-entropy)",
        run["raw"],
        got,
        run["masks"],
        feedback,
    )
    head = spec["head"] + "."
    ignored = tuple(spec["ignored_prefixes"])
    moved = [n for n in got["changed"] if not n.startswith(head) and not n.startswith(ignored)]
    assert not moved, (
        f"{', '.join(moved[:3])}{' and others' if len(moved) > 3 else ''} changed "
        "during fine-tuning: they should be frozen."
    )
    still = [n for n in got["unchanged"] if n.startswith(head)]
    assert not still, f"{', '.join(still)} did not change during fine-tuning: the new layer must train."
    judge_curve(got, drop=0.02)
    if run.get("reproducible", True):
        problem = pa2.finetune_mismatch(reference, spec, device, secret, run)
        assert problem is None, problem
