"""Hidden check of A.1 PoolUpsampleNet, B.1 ConvTransposeNet and C.1 UNet: the output shape
over hyper-parameters and batch sizes drawn by hypothesis from the whole domain the handout
allows. The layer, parameter-count and equivalence checks are public (public/): they compare
with data stored from the reference, so students run them before submitting."""

import pytest
from hypothesis import given, strategies as st

from grader.checks import import_sibling
from grader.checks import reproducible, shape_text, with_reproduction

pa2 = import_sibling(__file__, "pa2")
MODELS = pa2.colour_model_params()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="shape", points=1)
@given(data=st.data())
def test_output_shape(submission, name, data):
    """Output shape for hyper-parameters and batch sizes the handout allows"""
    hp = data.draw(pa2.hyper_parameters(name), label="hyper-parameters")
    batch = data.draw(st.integers(1, 4), label="batch size")
    x = pa2.seeded_input((batch, hp[3], 32, 32))
    expected = [batch, hp[2], 32, 32]
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
