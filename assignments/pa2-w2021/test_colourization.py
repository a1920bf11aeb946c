"""A.1 PoolUpsampleNet, B.1 ConvTransposeNet, C.1 UNet: the same four checks for each."""
import pytest
import torch
from hypothesis import given, strategies as st

from grader.assignment import import_sibling
from grader.compare import compare_with_weights, first_layer_difference, shape_text
from grader.layers import trace

pa2 = import_sibling(__file__, "pa2")
MODELS = pa2.colour_model_params()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="shape", points=1)
@given(data=st.data())
def test_output_shape(submission, name, data):
    """Output shape for hyper-parameters and batch sizes the handout allows"""
    hp = data.draw(pa2.hyper_parameters(name), label="hyper-parameters")
    batch = data.draw(st.integers(1, 4), label="batch size")
    model = submission.build(name, *hp)
    x = pa2.seeded_input((batch, hp[3], 32, 32))
    got = list(model.forward(x).output.shape)
    expected = [batch, hp[2], 32, 32]
    assert got == expected, (
        f"{pa2.call_text(name, hp)} on an input of shape {shape_text(list(x.shape))} returned "
        f"shape {shape_text(got)}; expected {shape_text(expected)} "
        f"([batch, num_colours, 32, 32]).")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="layers", points=1)
def test_layer_shapes(submission, reference, name):
    """Conv, transposed conv and batch-norm layers, in forward order, with their output shapes"""
    for hp in pa2.FIXED_SETTINGS:
        x = pa2.seeded_input((2, hp[3], 32, 32))
        got = submission.build(name, *hp).forward(x, trace=True).layers
        _, expected = trace(getattr(reference, name)(*hp), (x,))
        difference = first_layer_difference(got, expected)
        assert difference is None, f"{pa2.call_text(name, hp)}: {difference}."


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="params", points=1)
def test_parameter_count(submission, reference, name):
    """Number of parameters"""
    for hp in pa2.FIXED_SETTINGS:
        got = submission.build(name, *hp).parameter_count()
        expected = sum(p.numel() for p in getattr(reference, name)(*hp).parameters())
        assert got == expected, (
            f"{pa2.call_text(name, hp)} has {got:,} parameters; expected {expected:,} "
            f"({got - expected:+,}). Check the channel counts of each layer and that no layer is "
            "missing or extra.")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="equivalence", points=2)
def test_same_function_as_reference(submission, reference, name):
    """Same outputs as the reference with the reference's weights (train and eval mode)"""
    for hp in pa2.FIXED_SETTINGS:
        x = pa2.seeded_input((3, hp[3], 32, 32), seed=1)
        model = submission.build(name, *hp)
        attempts = []
        for label, ref_model in pa2.reference_variants(reference, name, hp):
            result = compare_with_weights(model, ref_model, x)
            if result.matches:
                break
            attempts.append((result.max_difference, label, result.message))
        else:
            _, label, message = min(attempts)
            assert False, f"{pa2.call_text(name, hp)}: {message}"
