"""What PA2's public checks compare with: computed from the reference solution by
`grade build-public pa2-w2021` (grader.public.expectations), which stores the result as data in
`public/expected.json` and `public/tensors.pt`. Students receive that data, never this file's
inputs (the reference) nor the hidden checks.

`build(reference, assignment)` returns plain data: dicts, lists, numbers, strings and tensors.
It must be deterministic (the engine seeds torch and runs it on one thread).
"""

from __future__ import annotations

import random

import torch

from grader.checks import build_recipe, import_sibling
from grader.checks import sketch_trace
from grader.checks import layer_config, layer_state, load_layer_states, ordered_layers, trace

pa2 = import_sibling(__file__, "pa2")
w2022_yolo = import_sibling(__file__, "w2022_yolo")

# The logits the hidden D.2 checks draw from, and the two-image probe whose two readings of
# IoU (whole batch, per image) differ.
LOGITS = [-30.0, -4.0, -1.0, -0.25, 0.0, 0.5, 2.0, 30.0]
PROBE_PRED = [
    [[[0.0, 1.0], [2.0, -1.0]], [[1.0, 0.0], [-1.0, 3.0]]],
    [[[0.0, 0.0], [0.5, 0.0]], [[2.0, -2.0], [0.0, 1.0]]],
]
PROBE_GT = [[[1, 1], [0, 1]], [[0, 0], [1, 0]]]
IOU_CASES = 48


def build(reference, assignment, seed=None) -> dict:
    """The stored cases (seed None), or fresh ones drawn from a grading's secret seed."""
    if seed is not None:
        return challenge(reference, assignment, seed)
    return {
        "colour": {name: colour_model(reference, name) for name in pa2.COLOUR_MODELS},
        "finetune": finetune(reference, assignment),
        "iou": iou(reference, assignment),
        "w2022_yolo": w2022_yolo.cases(reference, assignment),
    }


# -- A.1, B.1, C.1 -----------------------------------------------------------------------
def colour_model(reference, name) -> dict:
    settings = []
    for hp in pa2.fixed_settings(name):
        x = pa2.seeded_input((2, hp[3], 32, 32))
        model = getattr(reference, name)(*hp)
        out, records = trace(model, (x,))
        settings.append(
            {
                "hp": list(hp),
                "call": pa2.call_text(name, hp),
                "input": x,
                "layers": [_public_record(r) for r in records],
                "output_shape": list(out.shape),
                "parameters": sum(p.numel() for p in model.parameters()),
            }
        )
    equivalence = [
        equivalence_case(reference, name, hp, input_seed=1, weight_seed=100 + k, batchnorm_seed=200 + k)
        for k, hp in enumerate(pa2.fixed_settings(name))
    ]
    return {"part": pa2.COLOUR_MODELS[name][0], "settings": settings, "equivalence": equivalence}


def equivalence_case(reference, name, hp, input_seed, weight_seed, batchnorm_seed) -> dict:
    """An input, the reference's layer states in forward order (its weights from
    `weight_seed`, its batch-norm statistics perturbed), and the output of every accepted
    reference variant with those states, in eval and train mode."""
    x = pa2.seeded_input((3, hp[3], 32, 32), seed=input_seed)
    torch.manual_seed(weight_seed)
    source = getattr(reference, name)(*hp)
    _perturb_batchnorm(source, seed=batchnorm_seed)
    states = [layer_state(m) for m in ordered_layers(source.eval(), (x,))]
    variants = []
    for label, model in pa2.reference_variants(reference, name, hp):
        problems, _ = load_layer_states(model, x, states)
        if problems:
            raise RuntimeError(f"{name} variant {label!r}: {problems}")
        entry = {"label": label}
        for mode in ("eval", "train"):  # eval first: train mode moves the running statistics
            model.train(mode == "train")
            with torch.no_grad():
                out, records = trace(model, (x,), keep_values=True)
            entry[mode] = {"output": out, "layers": sketch_trace(records)}
        variants.append(entry)
    return {
        "hp": list(hp),
        "call": pa2.call_text(name, hp),
        "input": x,
        "states": states,
        "variants": variants,
    }


# -- secret challenges (instructor side) -----------------------------------------------------
def challenge(reference, assignment, seed: int) -> dict:
    """Cases the child cannot know in advance: the same kinds as the stored ones, with inputs
    and weights (and IoU logits and masks) drawn from `seed`, which the grading parent draws
    from os.urandom. grader.public.expectations appends them to the stored cases, so a public check passes
    on the instructor side only if it passes on these too. Same hyper-parameters and shapes
    as the stored cases: an honest notebook gets the same verdict on both."""
    rng = random.Random(seed)
    colour = {}
    for name in pa2.COLOUR_MODELS:
        colour[name] = {
            "equivalence": [
                equivalence_case(reference, name, hp, *(rng.randrange(1, 2**31) for _ in range(3)))
                for hp in pa2.fixed_settings(name)
            ]
        }
    cases = _iou_cases(reference, assignment, random.Random(rng.randrange(2**31)), count=16)
    fresh = {
        "colour": colour,
        "iou": {"cases": cases, "gradient_probes": _gradient_probes(rng.randrange(2**31))},
    }
    if any(p.task.startswith("W2022.") for p in assignment.parts):  # only W2022 grades them
        fresh["w2022_yolo"] = w2022_yolo.challenge(reference, assignment, rng.randrange(2**31))
    return fresh


def _gradient_probes(seed: int, count: int = 2) -> list:
    """Logits, a mask and a direction: the gradient the child reports must agree with how its
    loss values change along the direction (a central difference the parent takes itself
    with two more calls), so a gradient cannot be made up without the function behind it."""
    g = torch.Generator().manual_seed(seed)
    probes = []
    for _ in range(count):
        # The stored probe's shape: the gradient check is about gradients, and a loss that
        # breaks on other shapes fails the value checks on both sides already.
        b, h, w = 2, 2, 2
        pred = torch.randn(b, 2, h, w, generator=g) * 1.5
        gt = torch.randint(0, 2, (b, h, w), generator=g)
        gt[0, 0, 0] = 1  # some foreground: the soft union is never about 0
        direction = torch.randn(b, 2, h, w, generator=g)
        probes.append(
            {"pred": pred.tolist(), "gt": gt.tolist(), "direction": (direction / direction.norm()).tolist()}
        )
    return probes


def _public_record(record: dict) -> dict:
    # The reference's attribute names (`path`) are not needed by any check.
    return {k: record[k] for k in ("type", "config", "in_shape", "out_shape")}


def _perturb_batchnorm(model, seed):
    """BatchNorm starts as weight 1, bias 0, mean 0, variance 1, where it commutes with pooling
    and upsampling in eval mode; other values make the stored outputs see its position."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=g) + 0.5)


# -- D.1 ---------------------------------------------------------------------------------
def finetune(reference, assignment) -> dict:
    spec = assignment.data["finetune"]
    model = reference.replace_head_and_freeze(build_recipe(spec["model"]))
    ignored = tuple(spec["ignored_prefixes"])
    names = {id(p): n for n, p in model.named_parameters()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith(ignored)]
    learned = [names[id(p)] for p in reference.select_learned_parameters(model)]
    head = model.get_submodule(spec["head"])
    shape = [2, 3, 64, 64]
    with torch.no_grad():
        out = model.eval()(torch.randn(*shape, generator=torch.Generator().manual_seed(0)))["out"]
    config = layer_config(head)
    return {
        "model": spec["model"],
        "head": spec["head"],
        "head_type": type(head).__name__,
        "head_in_channels": config["in_channels"],
        "num_classes": config["out_channels"],
        "ignored_prefixes": list(ignored),
        "trainable": trainable,
        "optimizer_parameters": learned,
        "train_args": spec["train_args"],
        "input_shape": shape,
        "output_key": "out",
        "output_shape": list(out.shape),
    }


# -- D.2 ---------------------------------------------------------------------------------
def _readings(reference, assignment):
    readings = {name: getattr(reference, function) for name, function in pa2.IOU_READINGS.items()}
    accepted = [r for r in assignment.data["iou"]["accepted_variants"] if r in readings]

    def values(pred, gt):
        p, g = torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.long)
        return {r: float(readings[r](p, g)) for r in accepted}

    return accepted, values


def _iou_cases(reference, assignment, rng, count=IOU_CASES) -> list:
    _, values = _readings(reference, assignment)
    cases = [{"pred": pred, "gt": gt, "values": values(pred, gt)} for pred, gt in _iou_inputs(rng, count)]
    # Smallest first, so the first failing case shown to a student is a small one.
    cases.sort(key=lambda c: (_numel(c["gt"]), len(c["gt"]), len(c["gt"][0]), str(c)))
    return cases


def iou(reference, assignment) -> dict:
    accepted, values = _readings(reference, assignment)
    return {
        "names": list(pa2.IOU_LOSS_NAMES),
        "accepted": accepted,
        "probe": {"pred": PROBE_PRED, "gt": PROBE_GT, "values": values(PROBE_PRED, PROBE_GT)},
        "cases": _iou_cases(reference, assignment, random.Random(2021)),
    }


def _numel(gt) -> int:
    return len(gt) * len(gt[0]) * len(gt[0][0])


def _iou_inputs(rng, count):
    """Logits and masks from the domain the hidden checks draw from: 1-3 images of 1-4 x 1-4
    pixels, masks mixed, all background or all foreground. Cases whose soft union is about 0
    are left out (there SMOOTH alone decides the value)."""
    shapes = [(1, 1, 2), (1, 2, 1), (2, 1, 3), (2, 3, 1), (1, 1, 1)]  # H == 1 and W == 1
    while len(shapes) < count * 2:
        shapes.append((rng.randint(1, 3), rng.randint(1, 4), rng.randint(1, 4)))
    found = []
    for k, (b, h, w) in enumerate(shapes):
        fill = ["mixed", "all background", "all foreground"][k % 3]
        bit = {"mixed": lambda: rng.randint(0, 1), "all background": lambda: 0, "all foreground": lambda: 1}[
            fill
        ]
        gt = [[[bit() for _ in range(w)] for _ in range(h)] for _ in range(b)]
        pred = [
            [[[rng.choice(LOGITS) for _ in range(w)] for _ in range(h)] for _ in range(2)] for _ in range(b)
        ]
        p = torch.softmax(torch.tensor(pred), 1)[:, 1]
        g = torch.tensor(gt, dtype=torch.float32)
        if float((p + g - p * g).sum()) > 1e-2:
            found.append((pred, gt))
        if len(found) == count:
            break
    return found
