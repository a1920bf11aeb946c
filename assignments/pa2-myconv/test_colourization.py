"""Hidden checks of the CNN and the UNet: the output shape over hyper-parameters and batch
sizes drawn by hypothesis from the edition's domain (every kernel and input-channel count
always among them); and W2019's Part E contract, that forward keeps out1 ... out5 on the
module for `plot_activation`. The layer, parameter-count,
MyConv2d and equivalence checks are public (public/)."""

import ast

import pytest
from hypothesis import assume, given, strategies as st

from grader.checks import import_sibling, reproducible, shape_text, with_reproduction

myconv = import_sibling(__file__, "myconv")
MODELS = myconv.colour_model_params()


INPUT_CHANNELS = (1, 3)  # all an edition may grade; [readings] input_channels says which it does


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="shape", points=1)
@myconv.pa2.each_kernel_and_input(myconv.KERNELS, INPUT_CHANNELS, num_filters=1, num_colours=2, batch=1)
@given(
    kernel=st.sampled_from(myconv.KERNELS),
    num_filters=st.integers(1, 12),
    num_colours=st.integers(2, 24),
    num_in_channels=st.sampled_from(INPUT_CHANNELS),
    batch=st.integers(1, 4),
)
def test_output_shape(
    submission, request, input_channels, name, kernel, num_filters, num_colours, num_in_channels, batch
):
    """Output shape for hyper-parameters and batch sizes the handout allows"""
    assume(num_in_channels in input_channels)
    hp = (kernel, num_filters, num_colours, num_in_channels)
    x = myconv.seeded_input((batch, num_in_channels, 32, 32))
    expected = [batch, num_colours, 32, 32]
    code = (
        f"model = {myconv.call_text(name, hp)}\n"
        f"print(model(torch.randn({', '.join(map(str, x.shape))})).shape)  # expected {expected}"
    )
    with reproducible(code), myconv.readings.hinted(request.getfixturevalue("assignment"), name):
        got = list(submission.build(name, *hp).forward(x).output.shape)
    assert got == expected, with_reproduction(
        f"{myconv.call_text(name, hp)} on an input of shape {shape_text(list(x.shape))} returned "
        f"shape {shape_text(got)}; expected {shape_text(expected)} "
        f"([batch, num_colours, 32, 32]).",
        code,
    )


ACTIVATIONS = [f"out{i}" for i in range(1, 6)]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.grade(subject=n), id=n) for n in myconv.MODELS]
)
@pytest.mark.grade(part="activations", kind="layers", points=1)
def test_forward_keeps_activations(submission, name):
    """forward keeps self.out1 ... self.out5, which plot_activation reads"""
    hp = myconv.SETTINGS[0]
    x = myconv.seeded_input((2, hp[3], 32, 32))
    code = (
        f"model = {myconv.call_text(name, hp)}\n"
        f"model(torch.randn(2, {hp[3]}, 32, 32))\nprint(model.out5.shape)"
    )
    with reproducible(code):
        submission.build(name, *hp).forward(x)  # it runs and returns a tensor
    # What forward stores is read from the notebook's own text, in the grader's process.
    definitions = [
        node
        for statement in submission.harvest.statements
        if name in statement.defines
        for node in ast.parse(statement.source).body
        if isinstance(node, ast.ClassDef) and node.name == name
    ]
    stored = myconv.stored_on_self(definitions[-1]) if definitions else set()
    missing = [a for a in ACTIVATIONS if a not in stored]
    assert not missing, with_reproduction(
        f"{name}.forward does not keep {', '.join('self.' + a for a in missing)}: Part E's "
        f"plot_activation calls the model and then reads {name.lower()}.out1 ... out5, the outputs "
        "of the five blocks (the starter's hints: self.out1 = ...).",
        code,
    )
