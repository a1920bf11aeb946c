"""PA2-specific pieces shared by the checks: which model is which part, the hyper-parameter
domains the handout allows, and the reference networks to compare against.

Check modules import it with `grader.editions.assignment.import_sibling(__file__, "pa2")`."""

import functools
import itertools
import json

import pytest
import torch
from hypothesis import example

from grader.checks import offload, recipe_key, recipe_object, run_training

COLOUR_MODELS = {
    # name: (part, kernels the handout's fixed padding allows)
    "PoolUpsampleNet": ("A.1", (3, 5)),  # padding = kernel // 2 keeps 32x32 for odd kernels
    "ConvTransposeNet": ("B.1", (3,)),  # padding 1, output_padding 1: only kernel 3 fits
    "UNet": ("C.1", (3,)),
}


def colour_model_params():
    return [
        pytest.param(name, marks=pytest.mark.grade(part=part, subject=name), id=part)
        for name, (part, _) in COLOUR_MODELS.items()
    ]


INPUT_CHANNELS = (1, 3)  # greyscale or colour input: train() passes either as num_in_channels
ALL_KERNELS = tuple(sorted({k for _, kernels in COLOUR_MODELS.values() for k in kernels}))


def each_kernel_and_input(kernels, input_channels, **fixed):
    """Decorator for a hidden check drawn by hypothesis with `kernel` and `num_in_channels`
    arguments: every grading tries each pair first (explicit examples, with `fixed` for the
    other arguments: the smallest values, those hypothesis would shrink a failure to; a check
    skips with `assume` the pairs its model does not allow), then draws the rest from the
    secret seed.

    Why: drawn inputs change with the secret seed, and a network right only for greyscale input
    passed when no draw happened to give num_in_channels=3: about one grading in 500."""

    def decorate(test):
        for kernel in kernels:
            for channels in input_channels:
                test = example(kernel=kernel, num_in_channels=channels, **fixed)(test)
        return test

    return decorate


# Fixed settings for the layer, parameter and equivalence checks: the notebook's defaults
# (kernel 3, 24 colours, greyscale) with few filters, and a colour-input variant.
FIXED_SETTINGS = [(3, 4, 24, 1), (3, 7, 5, 3)]


def fixed_settings(name):
    """The stored (and secret) cases' hyper-parameters for `name`: FIXED_SETTINGS, plus one
    setting per other kernel the handout allows it, so that every check built on these cases
    varies every hyper-parameter it depends on (a network that ignores `kernel` loses them)."""
    first = FIXED_SETTINGS[0]
    extra = [(k, 5, 7, first[3]) for k in COLOUR_MODELS[name][1] if k != first[0]]
    return FIXED_SETTINGS + extra


# What D.2's loss may be called: v1.0 of the notebook used the second name.
IOU_LOSS_NAMES = ("compute_iou_loss", "compute_IoU_loss")
# The readings of the handout's IoU an edition may accept ([iou] accepted_variants), and the
# reference's function for each.
IOU_READINGS = {"whole batch": "compute_iou_loss", "per image": "compute_iou_loss_per_image"}


def reference_variants(reference, name, hp):
    """Every reference network a correct solution may be equivalent to."""
    if name != "UNet":
        return [("", getattr(reference, name)(*hp))]
    out = []
    for order in itertools.product([False, True], repeat=2):
        torch.manual_seed(0)
        label = ", ".join(
            f"skip tensor {'first' if o else 'second'} in torch.cat {i + 1}" for i, o in enumerate(order)
        )
        out.append((label, reference.UNetSkipOrder(*hp, skip_first=order)))
    return out


def seeded_input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def call_text(name, hp):
    return f"{name}(kernel={hp[0]}, num_filters={hp[1]}, num_colours={hp[2]}, num_in_channels={hp[3]})"


# -- the colourization training check's reference run ---------------------------------------
COLOURIZATION_BUDGET = {  # per device: training set size, steps, batch size
    "cpu": {"n": 64, "steps": 30, "batch_size": 16},
    "cuda": {"n": 512, "steps": 200, "batch_size": 64},
}
COLOURIZATION_LR = 0.01


def colourization_run(device) -> dict:
    """run_training's settings for the colourization training check, the child's run and the
    reference's alike."""
    budget = COLOURIZATION_BUDGET[device]
    return dict(
        steps=budget["steps"], batch_size=budget["batch_size"], lr=COLOURIZATION_LR, seed=0, device=device
    )


def reference_colourization_run(build, device):
    """The reference network trained as the colourization check trains the student's (a
    future of its report and its trained weights), in the grader's helper process
    (grader.engine.offload) while the student's network trains in the child. `build`:
    (module, name of a function or class in it, its arguments), which builds the reference
    network; built there from seed 0. It depends on nothing secret: the helper keeps it for
    every grading of a batch."""
    module, function, args = build
    return offload(_reference_colourization_run, module, function, tuple(args), device)


def build_reference_network(build):
    """The reference network `build` names ((module, function or class name, arguments)),
    built from seed 0: in the helper, which trains it, and in the grading process, which loads
    the trained weights into it."""
    module, function, args = build
    torch.manual_seed(0)
    return getattr(module, function)(*args)


@functools.lru_cache(maxsize=16)
def _reference_colourization_run(module, function, args, device):
    model = build_reference_network((module, function, args))
    grey, labels, _ = _data().colourization_set(COLOURIZATION_BUDGET[device]["n"])
    report = run_training(model, grey, labels, torch.nn.CrossEntropyLoss(), **colourization_run(device))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"report": report, "state": state}


# -- D.1 fine-tuning, verified by the grader -------------------------------------------------
# One fixed batch: with the backbone frozen, fitting the head is a smooth problem on fixed
# features, so a correct set-up's loss falls steadily within a few steps.
FINETUNE = {
    "cpu": {"n": 4, "size": 64, "steps": 8, "batch_size": 4, "lr": 0.01},
    "cuda": {"n": 16, "size": 128, "steps": 20, "batch_size": 16, "lr": 0.01},
}


def _data():
    from grader.checks import import_sibling

    return import_sibling(__file__, "data")


# The new layer is described by its settings as a hashable tuple: the grader builds the same
# layer in the parent, starts it from its own weights and reproduces the fine-tuning.
ONE_BY_ONE = (("bias", True), ("dilation", (1, 1)), ("groups", 1), ("kernel_size", (1, 1)),
              ("out_channels", 2), ("padding", (0, 0)), ("stride", (1, 1)))  # fmt: skip


def head_names(spec, head=ONE_BY_ONE):
    names = [f"{spec['head']}.weight"]
    return names + [f"{spec['head']}.bias"] if dict(head)["bias"] else names


def build_head(spec, head=ONE_BY_ONE):
    """The new layer, in the parent, as the student's driver cell made it, with its values
    left unset (the caller gives it the grader's): it draws nothing from torch's global
    random state, which one of the grader's runs may be using in another thread."""
    layer = torch.nn.Conv2d(spec["head_in_channels"], device="meta", **dict(head))
    # Fresh storage per parameter (Module.to_empty would take torch's reference
    # implementations, whose first use imports sympy: half a second).
    for name, value in list(layer.named_parameters(recurse=False)):
        setattr(layer, name, torch.nn.Parameter(torch.empty(value.shape)))
    return layer


def starting_head(spec, secret, head=ONE_BY_ONE):
    """The new layer's starting weights, chosen by the grader from the secret seed."""
    g = torch.Generator().manual_seed((secret or 0) % 2**63)
    layer = build_head(spec, head)
    names = head_names(spec, head)
    # Scaled so the new layer's outputs start the same size whatever its kernel.
    values = {names[0]: torch.randn(*layer.weight.shape, generator=g) * 0.05 / head_area(head) ** 0.5}
    if len(names) > 1:
        values[names[1]] = torch.randn(*layer.bias.shape, generator=g) * 0.05
    return values


class HeadDoesNotFit(AssertionError):
    """The student's classifier[4] is not a Conv2d the grader can build too (it checks the
    fine-tuning by reproducing it with the same layer)."""


def head_settings(spec, described: dict) -> tuple:
    """The student's new layer as a settings tuple, from what the child describes of it (a
    claim: the reproduction then shows whether the layer behaves so)."""
    config, params = described["config"], described["parameters"]
    if described["type"] != "Conv2d":
        raise HeadDoesNotFit(
            f"the grader checks fine-tuning by reproducing it with the same new layer, and "
            f"model.classifier[4] is a {described['type']}, not an nn.Conv2d"
        )
    if config.get("in_channels") != spec["head_in_channels"]:
        raise HeadDoesNotFit(
            f"model.classifier[4] is a Conv2d from {config.get('in_channels')} channels; the layer "
            f"before it gives {spec['head_in_channels']}"
        )

    def pair(value):
        return tuple(value) if isinstance(value, list) else value

    try:
        head = (("bias", "bias" in params),) + tuple(
            (key, pair(config[key]))
            for key in ("dilation", "groups", "kernel_size", "out_channels", "padding", "stride")
        )
        layer = build_head(spec, head)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise HeadDoesNotFit(f"model.classifier[4] has settings the grader cannot rebuild ({exc})")
    shapes = {f"{spec['head']}.{n}": list(p.shape) for n, p in layer.named_parameters()}
    if shapes != {f"{spec['head']}.{n}": v for n, v in params.items()}:
        raise HeadDoesNotFit("model.classifier[4]'s parameters do not have the shapes its settings give")
    return head


def finetune_run(submission, spec, device, secret) -> dict:
    """Fine-tuning steps of the model the student's driver cell leaves, in the child, from
    the grader's starting head: the child's report and the head's final values (claims).
    Run once per submission and seed; the D.1 checks that need it share it."""
    runs = submission.__dict__.setdefault("_pa2_finetune_runs", {})
    key = (device, secret)
    if key not in runs:
        try:
            runs[key] = _finetune_run(submission, spec, device, secret)
        except Exception as exc:  # every check that asks gets the same failure
            runs[key] = exc
    run = runs[key]
    if isinstance(run, Exception):
        raise type(run)(str(run))
    return run


def _finetune_run(submission, spec, device, secret) -> dict:
    b = FINETUNE[device]
    images, masks, raw = _data().segmentation_set(b["n"], b["size"])
    model = submission.build_trusted(spec["model"])
    model = submission.run_region("driver", bindings={"model": model}, keep=["model"])["model"]
    head = head_settings(spec, model.describe(spec["head"]))
    model.set_parameters(starting_head(spec, secret, head))
    report = train_in_child(model, images, masks, "torch.nn.CrossEntropyLoss", device, head)
    final = model.get_parameters(head_names(spec, head))
    return {"report": report, "final": final, "raw": raw, "masks": masks, "head": head}


def head_area(head) -> int:
    """Inputs per output of the new layer's kernel (9 for a 3x3)."""
    kh, kw = dict(head)["kernel_size"]
    return kh * kw


def finetune_lr(device, head=ONE_BY_ONE) -> float:
    """A larger kernel sums more inputs: its outputs move that many times more per step, so
    the step is that many times smaller (a correct 3x3 head's loss oscillated at 1x1's rate)."""
    return FINETUNE[device]["lr"] / head_area(head)


def train_in_child(model, images, masks, loss, device, head=ONE_BY_ONE):
    """The fine-tuning steps every Part D training check runs in the child (FINETUNE's
    budget); `loss`: "torch.nn.CrossEntropyLoss" or the name of the student's loss function."""
    b = FINETUNE[device]
    return model.train(
        images,
        masks,
        loss=loss,
        steps=b["steps"],
        batch_size=b["batch_size"],
        lr=finetune_lr(device, head),
        device=device,
        output_key="out",
        timeout=180,
    )


def model_key(spec) -> str:
    """The [finetune] model's recipe as hashable text: what the cached runs below are keyed by
    (they build the model from it)."""
    return recipe_key(spec["model"])


def _library_model(recipe):
    """The [finetune] model (`recipe`: model_key) as the child's build_trusted makes it (seed
    0): a copy of the one the warm server prebuilt ([checks] prebuild), made for each run and
    not kept (the runs are few, cached per seed, and the model is a hundred MB)."""
    return recipe_object(json.loads(recipe), seed=0)


def reference_model_with_starting_head(reference, recipe, spec, secret, head=ONE_BY_ONE):
    """In the parent: the library model (`recipe`: model_key) as the child's build_trusted
    makes it (seed 0), with the reference's freezing, the student's kind of new layer
    (`head`, by default the reference's 1x1) and the grader's starting head."""
    model = reference.replace_head_and_freeze(_library_model(recipe))
    if head != ONE_BY_ONE:
        model.set_submodule(spec["head"], build_head(spec, head))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in starting_head(spec, secret, head).items():
            params[name].copy_(value)
    return model


def train_in_parent(reference, recipe, device, secret, spec, loss_fn, head=ONE_BY_ONE):
    """The grader's own fine-tuning run: the same library model, the reference's freezing,
    the student's kind of new layer, the same starting head, data, seed and loop as the
    child's, on one thread as in the child. Returns (model, the training report)."""
    from grader.checks import run_training

    b = FINETUNE[device]
    images, masks, _ = _data().segmentation_set(b["n"], b["size"])
    model = reference_model_with_starting_head(reference, recipe, spec, secret, head)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_training(
            model,
            images,
            masks,
            loss_fn,
            b["steps"],
            b["batch_size"],
            finetune_lr(device, head),
            seed=0,
            device=device,
            output_key="out",
            track_changes=False,
        )
    finally:
        torch.set_num_threads(threads)
    return model, report


# -- the grader's own runs, in its helper process ------------------------------------------
# They build the library model: they run in the grader's helper process (grader.engine.offload),
# forked from the sandbox's warm server, which has torchvision imported. The grading process
# never imports it, and the runs, which depend on the secret seed only, start with the first
# check (start_grader_runs) and are done by the time Part D's checks need them. Each function
# here returns a future; the helper caches every run per seed (a batch shares one seed).
def start_grader_runs(reference, spec, device, secret, freezing=True, iou=True, readings=()) -> None:
    """Start what D.1's freezing check (`freezing`) and D.2's fine-tuning check (`iou`) will
    need; called once per grading before any check runs (the family's conftest.py).
    `readings`: the other readings of IoU the edition accepts, whose runs D.2 asks for only
    on the seeds where they decide; started last, so that the helper does them while the
    checks go on instead of while D.2 waits."""
    if freezing:
        reproduce_finetune(reference, spec, device, secret)
    if iou:
        held_out_head_input(reference, spec, device, secret)
        reference_iou_finetune(reference, spec, device, secret)
        for reading in readings:
            if reading != "whole batch":
                reference_iou_finetune(reference, spec, device, secret, reading)


# The checks that need them, by function name.
FREEZING_CHECKS = {"test_only_head_trainable", "test_finetune_trains_only_head"}
IOU_FINETUNE_CHECK = "test_finetune_with_iou_loss"


def start_grader_runs_for(items, reference, assignment, device, secret) -> None:
    """start_grader_runs for what a grading's checks (`items`, pytest's) will ask for: on the
    instructor's side only (a secret seed), and only for the fine-tuning checks it runs."""
    if secret is None or reference is None or "finetune" not in assignment.data:
        return
    names = {getattr(item, "originalname", item.name) for item in items}
    freezing, iou = bool(names & FREEZING_CHECKS), IOU_FINETUNE_CHECK in names
    if freezing or iou:
        readings = assignment.data.get("iou", {}).get("accepted_variants", ())
        start_grader_runs(reference, assignment.data["finetune"], device, secret, freezing, iou, readings)


def reproduce_finetune(reference, spec, device, secret, head=ONE_BY_ONE):
    """The head's final values after the grader's own cross-entropy run with only the new
    layer trainable (what D.1's freezing leads to), a future. Depends on the submission only
    through the kind of new layer: cached per seed and layer."""
    return offload(_reproduce_finetune, reference, model_key(spec), device, secret, spec_items(spec), head)


@functools.lru_cache(maxsize=4)
def _reproduce_finetune(reference, recipe, device, secret, spec_items, head):
    spec = dict(spec_items)
    model, _ = train_in_parent(reference, recipe, device, secret, spec, torch.nn.CrossEntropyLoss(), head)
    params = dict(model.named_parameters())
    return {name: params[name].detach().cpu().clone() for name in head_names(spec, head)}


def finetune_mismatch(reference, spec, device, secret, run) -> str | None:
    """None when the new layer ended where the grader's own run (only classifier.4
    trainable) leaves it; else why not. If anything else trained, the features feeding the
    layer moved, and so did its weights: requires_grad flags and "changed" lists the child
    reports cannot hide that."""
    head = run.get("head", ONE_BY_ONE)
    want = reproduce_finetune(reference, spec, device, secret, head).result()
    steps = FINETUNE[device]["steps"]
    for name, value in want.items():
        mine = run["final"].get(name)
        if not (
            isinstance(mine, torch.Tensor)
            and mine.shape == value.shape
            and torch.allclose(mine.float(), value, rtol=1e-3, atol=1e-4)
        ):
            return (
                f"after {steps} fine-tuning steps from the grader's starting weights, {name} "
                "is not where the grader's own run with only classifier.4 trainable leaves "
                "it: some other parameter trained too (whatever the requires_grad flags say), "
                "or the new layer did not."
            )
    return None


def held_out_set(device, secret):
    """Segmentation images and masks the child never trains on, from the secret seed."""
    b = FINETUNE[device]
    images, masks, _ = _data().segmentation_set(b["n"], b["size"], seed=1 + (secret or 0) % 2**31)
    return images, masks


def held_out_head_input(reference, spec, device, secret):
    """What reaches the new layer on the held-out set (a future): the frozen model up to
    classifier[3], in train mode (batch statistics, as in training) with dropout off, so that
    it is the same each time it is computed. Nothing before the new layer trains, so it is the
    same for every submission: computed once per seed."""
    return offload(_held_out_head_input, reference, model_key(spec), device, secret, spec_items(spec))


@functools.lru_cache(maxsize=4)
def _held_out_head_input(reference, recipe, device, secret, spec_items):
    spec = dict(spec_items)
    model = reference_model_with_starting_head(reference, recipe, spec, secret)
    images, _ = held_out_set(device, secret)
    model.train()
    # ASPP's projection ends in Dropout(0.5): in train mode it would draw a new mask from
    # torch's global random state each time, and a held-out score computed twice (the
    # student's head, the grader's own run) would differ by more than the tolerance.
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()
    head_path, _, index = spec["head"].rpartition(".")
    before_head = torch.nn.Sequential(*list(model.get_submodule(head_path).children())[: int(index)])
    with torch.no_grad():
        return before_head(model.backbone(images)["out"])


def held_out_outputs(reference, device, secret, spec, head_values, head=ONE_BY_ONE):
    """The model's 'out' on the held-out set with the new layer holding `head_values`,
    computed here (as DeepLabV3's forward does: the new layer, then bilinear upsampling to
    the image size). The child's own answer on these images is never used: a lookup table
    could give it without any training."""
    features = held_out_head_input(reference, spec, device, secret).result()
    return head_outputs(spec, features, head_values, device, head)


def head_outputs(spec, features, head_values, device, head=ONE_BY_ONE):
    """The new layer holding `head_values` on `features` (held_out_head_input's), upsampled to
    the image size: held_out_outputs, and the grader's own runs scored the same way."""
    layer = build_head(spec, head)
    own = dict(layer.named_parameters())
    prefix = spec["head"] + "."
    with torch.no_grad():
        for name, value in head_values.items():
            own[name.removeprefix(prefix)].copy_(value)
        size = FINETUNE[device]["size"]
        return torch.nn.functional.interpolate(
            layer(features), size=(size, size), mode="bilinear", align_corners=False
        )


def held_out_iou_before_training(reference, spec, device, secret):
    """The reference's IoU loss on the held-out set for the frozen model with the grader's
    starting head, before any training."""
    _, masks = held_out_set(device, secret)
    out = held_out_outputs(reference, device, secret, spec, starting_head(spec, secret))
    return float(reference.compute_iou_loss(out, masks))


def reference_iou_finetune(reference, spec, device, secret, reading="whole batch"):
    """The grader's own run with the reference's IoU loss (of the given reading, IOU_READINGS)
    from the same secret starting head (a future): its loss curve and its IoU loss (whole
    batch) on the held-out set afterwards, i.e. what a correct loss of that reading reaches.
    On a random-weight (offline) backbone both vary with the starting head: on some seeds the
    curve falls by under 2% and the 4 held-out images do not improve. Cached per seed and
    reading."""
    return offload(
        _reference_iou_finetune, reference, model_key(spec), device, secret, spec_items(spec), reading
    )


@functools.lru_cache(maxsize=4)
def _reference_iou_finetune(reference, recipe, device, secret, spec_items, reading):
    spec = dict(spec_items)
    model, report = train_in_parent(
        reference, recipe, device, secret, spec, getattr(reference, IOU_READINGS[reading])
    )
    # Scored exactly as the student's trained head is (held_out_outputs): the same features
    # (this process's cached ones) through the new layer. A forward of the whole model here
    # drew its own dropout mask, and on some seeds the reference notebook itself then fell
    # short of its own run by more than the tolerance.
    params = dict(model.named_parameters())
    trained = {name: params[name].detach().cpu() for name in head_names(spec)}
    features = _held_out_head_input(reference, recipe, device, secret, spec_items)
    out = head_outputs(spec, features, trained, device)
    _, held_masks = held_out_set(device, secret)
    return {"losses": list(report["losses"]), "held_out": float(reference.compute_iou_loss(out, held_masks))}


def spec_items(spec):
    """The hashable part of the assignment's [finetune] table (a cache key)."""
    return tuple(sorted((k, v) for k, v in spec.items() if isinstance(v, (str, int, float))))
