"""Public checks of A.1 PoolUpsampleNet, B.1 ConvTransposeNet and C.1 UNet.

They need no reference solution: everything they compare with was computed from it once and
stored as data (`expected`: see public_cases.py and grader/public/). Students run these same
checks on the same data before submitting; the real grading runs them too."""

import pytest

from grader.checks import compare_with_stored, first_layer_difference, reproducible, with_reproduction

MODELS = [
    pytest.param(name, marks=pytest.mark.grade(part=part, subject=name), id=part)
    for name, part in (("PoolUpsampleNet", "A.1"), ("ConvTransposeNet", "B.1"), ("UNet", "C.1"))
]

pytestmark = pytest.mark.grade(visibility="visible")


def layers_code(call: str, input_shape) -> str:
    """Code that prints the network's layers in forward order with their output shapes."""
    return (
        f"model = {call}\n"
        "for layer in model.modules():\n"
        "    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)):\n"
        "        layer.register_forward_hook(lambda layer, inputs, out: print(layer, tuple(out.shape)))\n"
        f"model(torch.randn({', '.join(map(str, input_shape))}))"
    )


def parameters_code(call: str, want: int) -> str:
    return f"model = {call}\nprint(sum(p.numel() for p in model.parameters()))  # the reference: {want}"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="layers", points=1)
def test_layer_shapes(submission, expected, name):
    """Conv, transposed conv and batch-norm layers, in forward order, with their output shapes"""
    for case in expected["colour"][name]["settings"]:
        code = layers_code(case["call"], list(case["input"].shape))
        with reproducible(code):
            got = submission.build(name, *case["hp"]).forward(case["input"], trace=True).layers
        difference = first_layer_difference(got, case["layers"])
        assert difference is None, with_reproduction(f"{case['call']}: {difference}.", code)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="params", points=1)
def test_parameter_count(submission, expected, name):
    """Number of parameters"""
    for case in expected["colour"][name]["settings"]:
        want = case["parameters"]
        code = parameters_code(case["call"], want)
        with reproducible(code):
            got = submission.build(name, *case["hp"]).parameter_count()
        assert got == want, with_reproduction(
            f"{case['call']} has {got:,} parameters; expected {want:,} "
            f"({got - want:+,}). Check the channel counts of each layer and that no layer is "
            "missing or extra.",
            code,
        )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="equivalence", points=2)
def test_same_function_as_reference(submission, expected, name):
    """Same outputs as the reference with the reference's weights (train and eval mode)"""
    layouts = {tuple(c["hp"]): c for c in expected["colour"][name]["settings"]}
    for case in expected["colour"][name]["equivalence"]:
        # The reference's weights are not the student's to see: the code shows their layers in
        # forward order, which is where the message says they depart from the reference.
        code = layers_code(case["call"], list(case["input"].shape))
        with reproducible(code):
            model = submission.build(name, *case["hp"])
            layout = layouts.get(tuple(case["hp"]))  # to name the cause when the weights do not fit
            result = compare_with_stored(
                model, case["states"], case["input"], case["variants"], layout=layout
            )
        assert result.matches, with_reproduction(f"{case['call']}: {result.message}", code)
