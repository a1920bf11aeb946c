"""Public checks of D.1: fine-tune DeepLabV3 with everything frozen except classifier.4.

Region 2 (the driver cell) is run against a fresh torchvision model built offline; region 1
(inside the segmentation `train(args, model)`) is run for real and stopped when it builds its
optimizer, so no data is loaded and nothing trains. What they expect (the new head, the
parameters left trainable, what reaches the optimizer) was computed from the reference and
stored as data (`expected["finetune"]`)."""

import pytest
import torch

from grader.checks import attrdict

pytestmark = pytest.mark.grade(part="D.1", visibility="visible")

# The student's train(args, model), not the colourization train(args, cnn) it shadows.
SEGMENTATION_TRAIN = r"def\s+train\s*\(\s*\w+\s*,\s*model\b|learned_parameters"
SEGMENTATION_TRAIN_WANTED = (
    "for Part D: `train(args, model)`, the fine-tuning loop that builds the optimizer from "
    "`learned_parameters` (the handout's Part D training cell, after the colourization `train`)"
)


@pytest.fixture
def spec(expected):
    return expected["finetune"]


def fresh_model(submission, spec):
    # aux_loss=True mirrors the pretrained model the notebook loads (it has an aux head).
    return submission.build_trusted(spec["model_factory"], **spec["factory_kwargs"])


def model_after_driver(submission, spec):
    model = fresh_model(submission, spec)
    return submission.run_region("driver", bindings={"model": model}, keep=["model"])["model"]


def describe_names(names, limit=3):
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def new_layer_prefixes(spec):
    """The modules whose parameters stay trainable in the reference (classifier.4.)."""
    return tuple(sorted({name.rsplit(".", 1)[0] + "." for name in spec["trainable"]}))


@pytest.mark.grade(kind="layers", points=1)
def test_head_replaced(submission, spec, assignment):
    """Driver cell: classifier[4] becomes a Conv2d from 256 channels to 2 classes"""
    head = model_after_driver(submission, spec).describe(spec["head"])
    config = head["config"]
    # The edition says which kernel sizes its handout's "appropriate kernel size" admits.
    kernels = assignment.data.get("finetune", {}).get("head_kernel_sizes")
    found = f"{head['type']}({config.get('in_channels', '?')} -> {config.get('out_channels', '?')})"
    assert head["type"] == spec["head_type"], (
        f"model.classifier[4] is a {head['type']}; expected nn.{spec['head_type']}."
    )
    assert config["in_channels"] == spec["head_in_channels"], (
        f"model.classifier[4] is {found}; it must take the {spec['head_in_channels']} channels "
        "the layer before it produces."
    )
    assert config["out_channels"] == spec["num_classes"], (
        f"model.classifier[4] is {found}; it must output {spec['num_classes']} classes "
        "(flower and background), not the 21 of the pretrained head."
    )
    kernel = config.get("kernel_size")
    if kernels and isinstance(kernel, list) and (len(set(kernel)) != 1 or kernel[0] not in kernels):
        sizes = " or ".join(f"{k}x{k}" for k in kernels)
        raise AssertionError(
            f"model.classifier[4] has a {'x'.join(map(str, kernel))} kernel; this assignment takes a "
            f"{sizes} kernel for the new layer (the layer it replaces is 1x1)."
        )


@pytest.mark.grade(kind="freezing", points=2)
def test_only_head_trainable(submission, spec, request):
    """Driver cell: every parameter is frozen except those of classifier.4"""
    params = model_after_driver(submission, spec).parameters()
    head = new_layer_prefixes(spec)
    ignored = tuple(spec["ignored_prefixes"])
    trainable_outside = [
        p["name"]
        for p in params
        if p["requires_grad"] and not p["name"].startswith(head) and not p["name"].startswith(ignored)
    ]
    frozen_head = [p["name"] for p in params if p["name"].startswith(head) and not p["requires_grad"]]
    problems = []
    if trainable_outside:
        problems.append(
            f"{describe_names(trainable_outside)} "
            f"{'is' if len(trainable_outside) == 1 else 'are'} still trainable "
            "(requires_grad=True); freeze everything but the new layer"
        )
    if frozen_head:
        problems.append(
            f"{describe_names(frozen_head)} of the new layer "
            f"{'is' if len(frozen_head) == 1 else 'are'} frozen: the new layer must "
            "train (freeze before replacing the layer, or unfreeze it after)"
        )
    if not any(p["name"].startswith(head) for p in params):
        problems.append(f"the model has no parameters under {spec['head']}")
    assert not problems, "; ".join(problems) + "."
    # The requires_grad flags above are what the child says. On the instructor's side (a
    # secret seed and the reference are there) the grader also checks the behaviour: a few
    # fine-tuning steps must move the new layer exactly as its own run with only classifier.4
    # trainable does (pa2.finetune_mismatch; docs/security.md, "Forged answers").
    if request.getfixturevalue("secret") is not None:
        problem = request.getfixturevalue("finetune_verdict")  # ../conftest.py
        assert problem is None, problem


@pytest.mark.grade(kind="shape", points=1)
def test_segmentation_output_shape(submission, spec):
    """Driver cell: the model's 'out' has shape [B, 2, H, W]"""
    model = model_after_driver(submission, spec)
    x = torch.randn(*spec["input_shape"], generator=torch.Generator().manual_seed(0))
    got = list(model.forward(x, mode="eval", output_key=spec["output_key"]).output.shape)
    expected = spec["output_shape"]
    assert got == expected, (
        f"model(x)['out'] for x of shape {spec['input_shape']} has shape {got}; expected {expected}."
    )


@pytest.mark.grade(kind="freezing", points=2)
def test_optimizer_gets_only_head(submission, spec):
    """train(args, model): exactly classifier.4's weight and bias reach the optimizer"""
    model = fresh_model(submission, spec)
    # The model as a correct driver cell leaves it, so this grades region 1 on its own.
    model.set_submodule(
        spec["head"],
        f"torch.nn:{spec['head_type']}",
        spec["head_in_channels"],
        spec["num_classes"],
        kernel_size=1,
        trainable_prefixes=list(new_layer_prefixes(spec)),
    )
    found = submission.call_until_optimizer(
        "train",
        [attrdict(spec["train_args"]), model],
        model,
        source_pattern=SEGMENTATION_TRAIN,
        wanted=SEGMENTATION_TRAIN_WANTED,
    )
    assert found["reached"], (
        "train(args, model) returned without building an optimizer; it "
        "should build torch.optim.Adam(learned_parameters, ...)."
    )
    names = [
        p["name"] or f"a tensor of shape {p['shape']} that is not a model parameter" for p in found["params"]
    ]
    wanted = spec["optimizer_parameters"]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    missing = [n for n in wanted if n not in names]
    # aux_classifier is not used by the notebook's training (PA2 facts: it may be ignored);
    # `'classifier.4' in name` also picks aux_classifier.4, which is harmless there.
    ignored = tuple(spec["ignored_prefixes"])
    extra = [n for n in dict.fromkeys(names) if n not in wanted and not n.startswith(ignored)]
    problems = []
    if not names:
        problems.append(
            "the optimizer got no parameters at all: fill learned_parameters with "
            "classifier.4's weight and bias"
        )
    elif missing:
        problems.append(f"{' and '.join(f'`{n}`' for n in missing)} did not reach the optimizer")
    if extra:
        problems.append(
            f"{len(extra)} other parameter{'s' if len(extra) > 1 else ''} reached the "
            f"optimizer: {describe_names(extra)}; only classifier.4 should be learned"
        )
    if duplicates:
        problems.append(f"{describe_names(duplicates)} reached the optimizer more than once")
    assert not problems, "; ".join(problems) + "."
