"""Short training runs, as W2021's (assignments/pa2/test_training.py): a network can have the
right shapes and still not learn. Each colourization network trains from a fixed seed on
PA2's small offline set next to the reference network of the edition's first accepted
reading, and the verdict rests on the grader's own loss, with the trained weights run in a
network of an accepted reading, on secret held-out images. W2020's
C.2 fine-tuning run is PA2's D.1 run on this family's reference and data."""

from pathlib import Path

import pytest

from grader.checks import import_sibling

myconv = import_sibling(__file__, "myconv")
# W2021's training checks (budget, bar, verification in the parent), used as they are.
pa2_training = import_sibling(str(Path(__file__).resolve().parent.parent / "pa2" / "pa2.py"), "test_training")

pytestmark = pytest.mark.grade(kind="training")

SETTING = (3, 8, 24, 1)  # kernel, num_filters, num_colours, num_in_channels


@pytest.mark.parametrize("name", myconv.colour_model_params())
@pytest.mark.grade(points=1)
def test_colourization_learns(submission, reference, assignment, device, feedback, secret, name):
    """Short training run: every layer learns and the loss falls like the reference's"""
    reading = tuple(sorted(myconv.default_reading(name, assignment).items()))
    build = (myconv, "reading_network", (reference, name, SETTING, reading))
    candidates = myconv.trained_candidates(reference, name, SETTING, assignment)
    pa2_training.colourization_verdict(submission, name, SETTING, build, candidates, device, secret, feedback)


@pytest.mark.grade(part="head", points=1)
def test_finetune_trains_only_head(submission, assignment, reference, device, feedback, secret):
    """Fine-tuning steps after the driver cell: frozen weights stay bit-identical, classifier.4 changes, the loss falls"""  # noqa: E501 (the check's name)
    spec = assignment.data["finetune"]
    pa2_training.finetune_head_verdict(submission, spec, reference, device, secret, feedback)
