"""Hidden check of A.1 PoolUpsampleNet, B.1 ConvTransposeNet and C.1 UNet: the output shape
over hyper-parameters and batch sizes drawn by hypothesis from the whole domain the handout
allows, every kernel and input-channel count always among them. The layer, parameter-count
and equivalence checks are public (public/): they compare with data stored from the
reference, so students run them before submitting."""

import pytest
from hypothesis import assume, given, strategies as st

from grader.checks import import_sibling
from grader.checks import reproducible, shape_text, with_reproduction

pa2 = import_sibling(__file__, "pa2")
MODELS = pa2.colour_model_params()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="shape", points=1)
@pa2.each_kernel_and_input(pa2.ALL_KERNELS, pa2.INPUT_CHANNELS, num_filters=1, num_colours=2, batch=1)
@given(
    kernel=st.sampled_from(pa2.ALL_KERNELS),
    num_filters=st.integers(1, 12),
    num_colours=st.integers(2, 24),
    num_in_channels=st.sampled_from(pa2.INPUT_CHANNELS),
    batch=st.integers(1, 4),
)
def test_output_shape(submission, name, kernel, num_filters, num_colours, num_in_channels, batch):
    """Output shape for hyper-parameters and batch sizes the handout allows"""
    assume(kernel in pa2.COLOUR_MODELS[name][1])  # the handout's padding fits only these
    hp = (kernel, num_filters, num_colours, num_in_channels)
    x = pa2.seeded_input((batch, num_in_channels, 32, 32))
    expected = [batch, num_colours, 32, 32]
    code = (
        f"model = {pa2.call_text(name, hp)}\n"
        f"print(model(torch.randn({', '.join(map(str, x.shape))})).shape)  # expected {expected}"
    )
    with reproducible(code):
        got = list(submission.build(name, *hp).forward(x).output.shape)
    assert got == expected, with_reproduction(
        f"{pa2.call_text(name, hp)} on an input of shape {shape_text(list(x.shape))} returned "
        f"shape {shape_text(got)}; expected {shape_text(expected)} "
        f"([batch, num_colours, 32, 32]).",
        code,
    )
