"""The MyConv2d family's shared pieces for the hidden checks and `public_cases.py`: the models
and the tasks they are, the hyper-parameter settings and domains, the reference network of
each reading. What the public checks need too (the readings' names and the matching) is in
public/readings.py, which ships with the students' wheel.

The fine-tuning machinery (W2020's Part C is W2021's D.1 with other data) is PA2's own:
assignments/pa2/pa2.py and data.py, imported here as they are.

Check modules import this file with `grader.checks.import_sibling(__file__, "myconv")`."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import torch

from grader.checks import import_sibling

readings = import_sibling(str(Path(__file__).resolve().parent / "public" / "readings.py"), "readings")
_PA2 = str(Path(__file__).resolve().parent.parent / "pa2" / "pa2.py")
pa2 = import_sibling(_PA2, "pa2")  # fine-tuning helpers (W2021 D.1)
data = import_sibling(_PA2, "data")  # the offline colourization and segmentation sets

# The class each colourization task grades; the task is named after it.
MODELS = ("CNN", "UNet")
KERNELS = (3, 5)  # padding kernel // 2 keeps 32x32 for odd kernels; the handouts use 3
# Stored (and secret) cases: few filters; NIC 1 and 3; kernel 5 once; never 3 colours (the
# upconv2 width readings would coincide) nor 32 filters (channel numbers hard-coded for the
# notebook's defaults would pass).
SETTINGS = [(3, 4, 6, 1), (3, 5, 7, 3), (5, 3, 4, 1)]


def colour_model_params():
    return [pytest.param(name, marks=pytest.mark.grade(part=name, subject=name), id=name) for name in MODELS]


def seeded_input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def call_text(name, hp):
    return f"{name}(kernel={hp[0]}, num_filters={hp[1]}, num_colours={hp[2]}, num_in_channels={hp[3]})"


def network(reference, model: str, hp, reading: dict):
    """The reference network of `model` under `reading` (reference.ColourNet)."""
    skips = int(reading.get("skips", 0)) if model == "UNet" else 0
    return reference.ColourNet(
        *hp, batchnorm=reading["batchnorm"], upconv2_width=reading["upconv2_width"], skips=skips
    )


def reading_network(reference, model: str, hp, reading_items: tuple):
    """network() with the reading as hashable items: what the training check hands to the
    grader's helper process (pa2.reference_colourization_run) to build the reference."""
    return network(reference, model, hp, dict(reading_items))


def default_reading(model: str, assignment) -> dict:
    """The first reading the edition accepts on each axis: the training check's reference."""
    acc = readings.accepted(assignment)
    return {axis: acc[axis][0] for axis in readings.MODEL_AXES[model]}


def trained_candidates(reference, model: str, hp, assignment) -> list[tuple]:
    """Every network a correct solution may compute, for the training check's verification in
    the parent (grader.checks.verified_network): each accepted reading, in each torch.cat
    order, the latter as a transform of the student's trained weights."""
    import itertools

    acc = readings.accepted(assignment)
    found = []
    for reading in readings.readings_of(model):
        if not readings.is_accepted(reading, acc):
            continue
        cats = concatenations(model, reading, hp)
        for skip_first in itertools.product([False, True], repeat=len(cats)):
            label = ", ".join(
                filter(None, [readings.describe(reading), readings.cat_order_text(cats, skip_first)])
            )
            undo = functools.partial(readings.unpermuted_states, concatenations=cats, skip_first=skip_first)
            found.append((label, network(reference, model, hp, reading), undo))
    return found


def concatenations(model: str, structure: dict, hp) -> list[dict]:
    """Where the reference network concatenates, in forward order of its parametrised layers
    (MyConv2d, BatchNorm2d alternating): the layer that takes the concatenation, and the
    channels of the main input (first in the reference) and of the skip tensor."""
    if model != "UNet":
        return []
    _, nf, nc, nic = hp
    width = nc if structure["upconv2_width"] == "num_colours" else int(structure["upconv2_width"])
    cats = []
    if int(structure["skips"]) == 3:
        cats.append({"name": "upconv1", "layer": 6, "parts": [2 * nf, 2 * nf]})
    cats.append({"name": "upconv2", "layer": 8, "parts": [nf, nf]})
    cats.append({"name": "finalconv", "layer": 10, "parts": [width, nic]})
    return cats


def stored_on_self(class_node: ast.ClassDef) -> set[str]:
    """The attributes forward assigns on `self` (its first parameter), read from the source."""
    forward = [n for n in class_node.body if isinstance(n, ast.FunctionDef) and n.name == "forward"]
    if not forward or not forward[-1].args.args:
        return set()
    me = forward[-1].args.args[0].arg
    found = set()
    for node in ast.walk(forward[-1]):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                    found.add(t.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and len(node.args) >= 2:
            if isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
                found.add(node.args[1].value)
    return found
