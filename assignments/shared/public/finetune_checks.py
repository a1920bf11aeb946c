"""Public checks of fine-tuning a library segmentation model: replace its head with a new
layer for the task's classes and freeze everything else (a module-level driver cell), and
hand only the new layer's parameters to the optimizer (inside the notebook's
`train(args, model)`). Several assignment families grade this the same way; each names the
parts it reports them under:

    finetune = import_shared("finetune_checks")             # grader.checks
    (test_head_replaced, test_only_head_trainable, test_segmentation_output_shape,
     test_optimizer_gets_only_head) = finetune.public_checks("D.1", "D.1", handout_part="Part D")
    spec = finetune.spec

The driver region is run against a fresh library model built offline; the training function
is run for real and stopped when it builds its optimizer, so no data is loaded and nothing
trains. What they expect (the new head, the parameters left trainable, what reaches the
optimizer) was computed from the reference and stored as data (`expected["finetune"]`).
The family's conftest.py provides `finetune_verdict` (the instructor side's reproduction of a
fine-tuning run). An edition may restrict the new layer's kernel with
`[finetune] head_kernels = [1]` (any kernel when absent)."""

import json

import pytest
import torch

from grader.checks import attrdict

# The student's train(args, model), not the colourization train(args, cnn) it shadows.
SEGMENTATION_TRAIN = r"def\s+train\s*\(\s*\w+\s*,\s*model\b|learned_parameters"


def wanted_train(handout_part: str) -> str:
    """Which `train` the optimizer check needs, in the student's words."""
    return (
        f"for {handout_part}: `train(args, model)`, the fine-tuning loop that builds the optimizer from "
        f"`learned_parameters` (the handout's {handout_part} training cell, after the colourization `train`)"
    )


@pytest.fixture
def spec(expected):
    return expected["finetune"]


def fresh_model(submission, spec):
    # The model the assignment's [finetune] recipe describes (grader.engine.recipes): the notebook's
    # DeepLabV3 module tree, aux head included, with random weights.
    return submission.build_trusted(spec["model"])


def model_after_driver(submission, spec):
    """The model as the student's driver cell leaves it, made once for the checks that only
    look at it (head, flags, output shape)."""

    def make():
        model = fresh_model(submission, spec)
        return submission.run_region("driver", bindings={"model": model}, keep=["model"])["model"]

    return submission.shared(("model after the driver cell", json.dumps(spec["model"], sort_keys=True)), make)


def describe_names(names, limit=3):
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def new_layer_prefixes(spec):
    """The modules whose parameters stay trainable in the reference (classifier.4.)."""
    return tuple(sorted({name.rsplit(".", 1)[0] + "." for name in spec["trainable"]}))


def _kernel(config):
    k = config.get("kernel_size")
    return k[0] if isinstance(k, list) and len(set(k)) == 1 else k


def public_checks(driver: str, optimizer: str, handout_part: str):
    """The four checks, marked with the parts they grade: `driver` for the driver cell's
    head and freezing, `optimizer` for what train(args, model) hands its optimizer;
    `handout_part` names the handout's fine-tuning part in feedback ("Part D")."""

    @pytest.mark.grade(part=driver, kind="layers", points=1)
    def test_head_replaced(submission, spec, assignment):
        """Driver cell: classifier[4] becomes a Conv2d from 256 channels to 2 classes"""
        head = model_after_driver(submission, spec).describe(spec["head"])
        config = head["config"]
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
        kernels = assignment.data.get("finetune", {}).get("head_kernels")
        if kernels:
            assert _kernel(config) in kernels, (
                f"model.classifier[4] has a {_kernel(config)}x{_kernel(config)} kernel; this course asks "
                f"for {' or '.join(f'{k}x{k}' for k in kernels)} (the layer it replaces is 1x1)."
            )

    @pytest.mark.grade(part=driver, kind="freezing", points=2)
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
        # fine-tuning steps must move the new layer exactly as its own run with only the new
        # layer trainable does (docs/security.md, "Forged answers").
        if request.getfixturevalue("secret") is not None:
            problem = request.getfixturevalue("finetune_verdict")  # the family's conftest.py
            assert problem is None, problem

    @pytest.mark.grade(part=driver, kind="shape", points=1)
    def test_segmentation_output_shape(submission, spec):
        """Driver cell: the model's 'out' has shape [B, 2, H, W]"""
        model = model_after_driver(submission, spec)
        x = torch.randn(*spec["input_shape"], generator=torch.Generator().manual_seed(0))
        got = list(model.forward(x, mode="eval", output_key=spec["output_key"]).output.shape)
        expected = spec["output_shape"]
        assert got == expected, (
            f"model(x)['out'] for x of shape {spec['input_shape']} has shape {got}; expected {expected}."
        )

    @pytest.mark.grade(part=optimizer, kind="freezing", points=2)
    def test_optimizer_gets_only_head(submission, spec):
        """train(args, model): exactly classifier.4's weight and bias reach the optimizer"""
        model = fresh_model(submission, spec)
        # The model as a correct driver cell leaves it, so this grades the region on its own.
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
            wanted=wanted_train(handout_part),
        )
        assert found["reached"], (
            "train(args, model) returned without building an optimizer; it "
            "should build torch.optim.Adam(learned_parameters, ...)."
        )
        names = [
            p["name"] or f"a tensor of shape {p['shape']} that is not a model parameter"
            for p in found["params"]
        ]
        wanted = spec["optimizer_parameters"]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        missing = [n for n in wanted if n not in names]
        # aux_classifier is not used by the notebook's training (it may be ignored);
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

    return (
        test_head_replaced,
        test_only_head_trainable,
        test_segmentation_output_shape,
        test_optimizer_gets_only_head,
    )
