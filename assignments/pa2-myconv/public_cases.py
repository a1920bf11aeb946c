"""What the MyConv2d family's public checks compare with: computed from the reference by
`grade build-public pa2-w2020` (either edition: one build serves both) and stored as data in
`public/expected.json` and `public/tensors.pt`.

Every reading of the handouts is stored (public/readings.py lists them), whichever an
edition accepts, so that a course changes its `[readings]` without a rebuild and feedback can
name the reading a network matches even where the course does not accept it.

`build(reference, assignment)` returns plain data; with `seed` it draws the secret
challenges instead (fresh inputs, weights and batch-norm statistics of the same kinds).
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from grader.checks import import_sibling
from grader.checks import layer_state, load_layer_states, ordered_layers, sketch_trace, trace

myconv = import_sibling(__file__, "myconv")
readings = myconv.readings
# W2020's Part C is W2021's D.1 with other data: PA2's own description of the head and of
# what reaches the optimizer, run on this family's reference wrappers and [finetune] table.
pa2_cases = import_sibling(str(Path(__file__).resolve().parent.parent / "pa2" / "pa2.py"), "public_cases")


def build(reference, assignment, seed=None) -> dict:
    if seed is not None:
        return challenge(reference, seed)
    return {
        "colour": {model: colour_model(reference, model) for model in myconv.MODELS},
        "finetune": pa2_cases.finetune(reference, assignment),
    }


def colour_model(reference, model) -> dict:
    settings = []
    for hp in myconv.SETTINGS:
        x = myconv.seeded_input((2, hp[3], 32, 32))
        per_reading = []
        for reading in readings.readings_of(model):
            net = myconv.network(reference, model, hp, reading)
            out, records = trace(net, (x,))
            per_reading.append(
                {
                    "reading": reading,
                    "layers": [_public_record(r) for r in records],
                    "parameters": sum(p.numel() for p in net.parameters()),
                }
            )
        settings.append(
            {
                "hp": list(hp),
                "call": myconv.call_text(model, hp),
                "input": x,
                "output_shape": [2, hp[2], 32, 32],
                "readings": per_reading,
            }
        )
    equivalence = [
        equivalence_case(reference, model, hp, input_seed=1, weight_seed=100 + k, batchnorm_seed=200 + k)
        for k, hp in enumerate(myconv.SETTINGS)
    ]
    return {"settings": settings, "equivalence": equivalence}


def equivalence_case(reference, model, hp, input_seed, weight_seed, batchnorm_seed) -> dict:
    """For each structure (the readings that change layer shapes): the reference's layer
    states in forward order (weights from `weight_seed`, batch-norm statistics perturbed), the
    concatenations, and each batch-norm reading's outputs with those states, eval and train."""
    x = myconv.seeded_input((2, hp[3], 32, 32), seed=input_seed)
    structures = []
    for structure in readings.structures_of(model):
        canonical = dict(structure, batchnorm="after-pooling")
        torch.manual_seed(weight_seed)
        source = myconv.network(reference, model, hp, canonical)
        _perturb_batchnorm(source, seed=batchnorm_seed)
        states = [layer_state(m) for m in ordered_layers(source.eval(), (x,))]
        variants = []
        for batchnorm in readings.AXES["batchnorm"]:
            reading = dict(structure, batchnorm=batchnorm)
            net = myconv.network(reference, model, hp, reading)
            problems, _ = load_layer_states(net, x, states)
            if problems:
                raise RuntimeError(f"{model} {reading}: {problems}")
            entry = {"reading": {a: reading[a] for a in readings.MODEL_AXES[model]}}
            for mode in ("eval", "train"):  # eval first: train mode moves the running statistics
                net.train(mode == "train")
                with torch.no_grad():
                    out, records = trace(net, (x,), keep_values=True)
                entry[mode] = {"output": out, "layers": sketch_trace(records)}
            variants.append(entry)
        structures.append(
            {
                "structure": structure,
                "states": states,
                "concatenations": myconv.concatenations(model, structure, hp),
                "variants": variants,
            }
        )
    return {"hp": list(hp), "call": myconv.call_text(model, hp), "input": x, "structures": structures}


def challenge(reference, seed: int) -> dict:
    """Secret cases of the same kinds and hyper-parameters as the stored ones (so honest code
    gets the same verdict), with inputs, weights and statistics the child cannot know."""
    rng = random.Random(seed)
    return {
        "colour": {
            model: {
                "equivalence": [
                    equivalence_case(reference, model, hp, *(rng.randrange(1, 2**31) for _ in range(3)))
                    for hp in myconv.SETTINGS
                ]
            }
            for model in myconv.MODELS
        }
    }


def _public_record(record: dict) -> dict:
    """A traced layer as stored: the reference's attribute names (`path`) are left out. A
    BatchNorm2d next to an Upsample may sit on either side of it (nearest upsampling keeps
    each channel's mean and variance, so both compute the same): its other output size is
    stored as an alternative."""
    out = {k: record[k] for k in ("type", "config", "in_shape", "out_shape")}
    if record["type"] == "BatchNorm2d" and record["path"].startswith("upconv"):
        b, c, h, w = record["out_shape"]
        before_upsampling = record["path"].endswith(".1")  # MyConv2d, BatchNorm2d, ReLU, Upsample
        other = [b, c, h * 2, w * 2] if before_upsampling else [b, c, h // 2, w // 2]
        out["alt_out_shapes"] = [other]
    return out


def _perturb_batchnorm(model, seed):
    """BatchNorm starts as weight 1, bias 0, mean 0, variance 1, where it commutes with pooling
    in eval mode; other values (positive scales) make the stored outputs see its position in
    train mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=g) + 0.5)
                module.bias.copy_(torch.randn(n, generator=g) * 0.1)
                module.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                module.running_var.copy_(torch.rand(n, generator=g) + 0.5)
