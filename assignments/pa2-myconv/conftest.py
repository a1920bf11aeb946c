"""Fixtures the family's check files share. Public checks reach the instructor-only one by
name (`request.getfixturevalue`) only when a secret seed is there."""

import pytest

from grader.checks import import_sibling

myconv = import_sibling(__file__, "myconv")
pa2 = myconv.pa2


@pytest.fixture
def input_channels(assignment):
    """The num_in_channels values the edition grades ([readings] input_channels)."""
    return myconv.readings.input_channels(assignment)


@pytest.fixture
def finetune_verdict(submission, reference, assignment, device, secret):
    """Instructor side: None when a few fine-tuning steps move the new layer exactly as the
    grader's own run with only classifier.4 trainable (and the same kind of new layer) does,
    else why not (PA2's machinery, this family's reference and [finetune] table)."""
    spec = assignment.data["finetune"]
    try:
        run = pa2.finetune_run(submission, spec, device, secret)
    except pa2.HeadDoesNotFit as exc:
        return f"{exc}."
    return pa2.finetune_mismatch(reference, spec, device, secret, run)


@pytest.fixture(scope="session", autouse=True)
def grader_runs_started(request, reference, assignment, device, secret):
    """Instructor side: the grader's own fine-tuning runs start before the first check."""
    pa2.start_grader_runs_for(request.session.items, reference, assignment, device, secret)
