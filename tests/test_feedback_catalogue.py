"""The catalogue of real PA2 mistakes and what the grader tells a student about each: the spec
of our feedback.

Each entry is a mistake real students make (docs/family-pa2.md, the editions' notebooks,
the seeds' code), built as a notebook in the session's main batch (the notebooks are defined
with the mutants of tests/pa2_colourization_cases.py and tests/pa2_finetune_cases.py). For each:

* `cause`: the phrase that names the cause, as a TA would (a layer of the wrong type, a
  missing BatchNorm, a hyper-parameter ignored), not only the symptom;
* a counterexample (a check that ran the student's code on an input) carries code to paste
  after "Try:", and that code runs in a kernel holding the notebook's definitions: it prints
  what came out, or raises the error the message names.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pa2_colourization_cases import COLOURIZATION_NOTEBOOKS
from pa2_finetune_cases import FINETUNE_NOTEBOOKS
from grader.engine.harvest import harvest
from grader.engine.load import load_submission
from grader.engine.reproduce import MARKER
from grader.sandbox.child import _compile

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]


@dataclass(frozen=True)
class Mistake:
    notebook: str  # its name in the main batch
    what: str  # the mistake, in a TA's words
    part: str
    check: str  # the check key (grading.check_key)
    cause: str  # the phrase its feedback must contain
    reproduction: bool = True  # a counterexample: the message ends with code to paste


CATALOGUE = [
    # -- A.1 PoolUpsampleNet ----------------------------------------------------------------
    Mistake(
        "a1_relu_before_bn",
        "ReLU before BatchNorm in each block",
        "A.1",
        "equivalence",
        "Between layer 1 and layer 2 you apply max-pooling and a ReLU where the reference applies "
        "max-pooling (the ReLU belongs after the BatchNorm, not before it)",
    ),
    Mistake(
        "a1_missing_final_conv",
        "the final Conv2d left out",
        "A.1",
        "layers",
        "Layer 9, a Conv2d, is missing: your forward calls 8 parametrised layers, the reference 9",
    ),
    Mistake(
        "a1_pool_upsample_swapped",
        "upsampling where the handout pools and pooling where it upsamples",
        "A.1",
        "layers",
        "Layer 2, a BatchNorm2d, gives an output of shape [2, 4, 64, 64] where the reference's is "
        "[2, 4, 16, 16]: check its stride and padding, and the pooling or upsampling before it",
    ),
    Mistake(
        "a1_wrong_width",
        "the third block keeps 2 * num_filters channels",
        "A.1",
        "layers",
        "Layer 5, a Conv2d, has output channels 8 where the reference has 4",
    ),
    Mistake(
        "a1_greyscale_only",
        "the first conv hard-codes 1 input channel (num_in_channels ignored)",
        "A.1",
        "params",
        "PoolUpsampleNet(kernel=3, num_filters=7, num_colours=5, num_in_channels=3) has 2,471 "
        "parameters; expected 2,597",
    ),
    Mistake(
        "a1_shared_batchnorm",
        "one BatchNorm module used in two blocks",
        "A.1",
        "layers",
        "Layer 6 runs `bn` a second time (it is also layer 2); the reference calls a layer of its "
        "own here, a BatchNorm2d",
    ),
    Mistake(
        "a1_ignores_kernel",
        "kernel hard-coded to 3",
        "A.1",
        "layers",
        "Layer 1, a Conv2d, has kernel 3 where the reference has 5",
    ),
    Mistake(
        "a1_ignores_num_colours",
        "num_colours hard-coded to 24",
        "A.1",
        "shape",
        "returned shape [1, 24, 32, 32]; expected [1, 2, 32, 32]",
    ),
    # -- B.1 ConvTransposeNet ---------------------------------------------------------------
    Mistake(
        "b1_no_batchnorm",
        "no BatchNorm layers",
        "B.1",
        "layers",
        "Layer 2 of the reference, a BatchNorm2d, is missing: your layer 2 is a Conv2d",
    ),
    Mistake(
        "b1_stride_1",
        "the first conv with stride 1",
        "B.1",
        "layers",
        "gives an output of shape [2, 4, 32, 32] where the reference's is [2, 4, 16, 16]",
    ),
    Mistake(
        "b1_output_padding_0",
        "the transposed convs without output_padding",
        "B.1",
        "shape",
        "expected [1, 2, 32, 32]",
    ),
    # -- C.1 UNet ----------------------------------------------------------------------------
    Mistake(
        "c1_upsample_conv",
        "Upsample + Conv2d where the handout has transposed convolutions",
        "C.1",
        "equivalence",
        "Layer 5 is a Conv2d where the reference has a ConvTranspose2d (the reference upsamples "
        "with a transposed convolution here",
    ),
    Mistake(
        "c1_missing_skip",
        "the first skip connection left out (the next layer shrunk to fit)",
        "C.1",
        "layers",
        "Layer 7, a ConvTranspose2d, has input channels 4 where the reference has 8 (the reference "
        "concatenates 4 channels here, as many as layer 1's output or layer 2's output or layer 5's "
        "output or layer 6's output: a skip connection?)",
    ),
    Mistake(
        "c1_missing_input_skip",
        "the input image never concatenated before the final conv",
        "C.1",
        "layers",
        "Layer 9, a Conv2d, has input channels 24 where the reference has 25 (the reference "
        "concatenates 1 channel here, as many as the input image: a skip connection?)",
    ),
    Mistake(
        "c1_skip_before_activation",
        "the skip taken before BatchNorm and ReLU",
        "C.1",
        "equivalence",
        "the input to layer 7",
    ),
    Mistake(
        "broken_unet_cell",
        "a Python 2 print in the UNet cell",
        "C.1",
        "layers",
        "`UNet` is in code cell 11 (starting `class UNet(nn.Module):`), which does not parse: line",
        reproduction=False,
    ),
    # -- D.1 fine-tuning ---------------------------------------------------------------------
    Mistake(
        "d1_prefix_selects_everything",
        "named_parameters(prefix='classifier.4') taken to select the head",
        "D.1",
        "optimizer",
        "reached the optimizer",
        reproduction=False,
    ),
    Mistake(
        "d1_weight_only",
        "only classifier.4's weight appended, not its bias",
        "D.1",
        "optimizer",
        "`classifier.4.bias` did not reach the optimizer",
        reproduction=False,
    ),
    Mistake(
        "d1_head_with_21_outputs",
        "the new head keeps the pretrained 21 classes",
        "D.1",
        "head",
        "not the 21 of the pretrained head",
        reproduction=False,
    ),
    Mistake(
        "d1_everything_frozen",
        "frozen after replacing the head, so the head is frozen too",
        "D.1",
        "frozen",
        "of the new layer are frozen: the new layer must train",
        reproduction=False,
    ),
    Mistake(
        "d1_nothing_frozen",
        "the backbone never frozen",
        "D.1",
        "frozen",
        "still trainable (requires_grad=True); freeze everything but the new layer",
        reproduction=False,
    ),
    Mistake(
        "d1_segmentation_train_missing",
        "no Part D train(args, model): only the colourization train is defined",
        "D.1",
        "optimizer",
        "the notebook defines no `train` for Part D: `train(args, model)`",
        reproduction=False,
    ),
    # -- D.2 soft IoU loss -------------------------------------------------------------------
    Mistake(
        "d2_no_softmax",
        "IoU on raw logits, no softmax",
        "D.2",
        "values",
        "compute_iou_loss gives",
    ),
    Mistake(
        "d2_background_channel",
        "the background channel 0 where the handout wants the foreground",
        "D.2",
        "values",
        "compute_iou_loss gives",
    ),
    Mistake(
        "d2_returns_iou",
        "returns the IoU, not 1 - IoU",
        "D.2",
        "properties",
        "a prediction that confidently matches the mask gives loss",
    ),
]


# The notebooks, declared again so that this file also runs alone (conftest grades each once).
_DECLARED = COLOURIZATION_NOTEBOOKS | FINETUNE_NOTEBOOKS
NOTEBOOKS = {m.notebook: _DECLARED[m.notebook] for m in CATALOGUE}


def test_the_catalogue_covers_at_least_fifteen_mistakes_of_every_part():
    assert len(CATALOGUE) >= 15
    assert {m.part for m in CATALOGUE} == {"A.1", "B.1", "C.1", "D.1", "D.2"}
    assert len({m.notebook for m in CATALOGUE}) == len(CATALOGUE)


def kernel_with(path) -> dict:
    """A namespace like the student's kernel after running the notebook's definitions."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    for st in harvest(load_submission(path)).statements:
        try:
            exec(_compile(st.source, st.cell, st.lineno), namespace)
        except Exception:
            pass  # the grader skips it too and says so
    return namespace


@pytest.mark.parametrize("mistake", CATALOGUE, ids=lambda m: m.notebook)
def test_feedback_names_the_cause_and_shows_how_to_reproduce_it(graded, main_batch, mistake):
    result = graded[mistake.notebook]
    assert mistake.check in result.failed(mistake.part), result.summary()
    text = result.feedback(mistake.part, mistake.check)
    assert mistake.cause in text, f"{mistake.notebook}: {mistake.cause!r} not in\n{text}"
    for internal in ("source_pattern", "please report this", "\\s*", "Traceback"):
        assert internal not in text, text
    if not mistake.reproduction:
        assert MARKER not in text, text
        return
    assert MARKER in text, f"{mistake.notebook}: no code to reproduce it in\n{text}"
    code = text.split(MARKER, 1)[1]
    compiled = compile(code, "<pasted>", "exec")  # pasteable as it is
    namespace = kernel_with(main_batch.folder / f"{mistake.notebook}.ipynb")
    try:
        exec(compiled, namespace)
    except Exception as exc:  # a crash reproduced: the message names that very error
        assert type(exc).__name__ in text, f"{mistake.notebook}: the code raised {exc!r}\n{text}"
