"""The readings of the MyConv2d handouts, and how a submission's network is matched to them.

The handouts (W2020 and W2019) leave points open that real notebooks answer differently: where
BatchNorm sits around the pooling, how many filters `upconv2` has, how many skip connections
the UNet has. Each is an *axis* with named *readings*; the stored expectations hold the
reference network of every combination, and each edition's `[readings]` table says which it
accepts (docs/family-myconv.md). Feedback names the reading a network matched, or the
nearest accepted one and where the network departs from it.

Public: shipped with the students' wheel next to the public checks, so it holds no reference
code, only names, descriptions and the comparison logic the checks share.
"""

from __future__ import annotations

import contextlib
import itertools

import torch

from grader.checks import StudentCodeError, first_layer_difference, shape_text, sketch, sketch_close

# axis -> {reading: what it means, in a TA's words}. The first reading of each axis is the
# family's canonical one (the reference network's).
AXES = {
    "batchnorm": {
        "after-pooling": "BatchNorm after the pooling (MyConv2d, MaxPool2d, BatchNorm2d, ReLU)",
        "before-pooling": "BatchNorm before the pooling (MyConv2d, BatchNorm2d, ReLU, MaxPool2d)",
    },
    "upconv2_width": {
        "num_colours": "upconv2 with num_colours filters (finalconv from num_colours)",
        "3": "upconv2 with 3 filters, as RegressionCNN's (finalconv from 3 channels)",
    },
    "skips": {
        "3": "three skip connections (out2 into upconv1, out1 into upconv2, the input into finalconv)",
        "2": "two skip connections (out1 into upconv2, the input into finalconv; none into upconv1)",
    },
}
MODEL_AXES = {"CNN": ("batchnorm", "upconv2_width"), "UNet": ("batchnorm", "upconv2_width", "skips")}
# The axes that change the layers' shapes, i.e. which weights fit; batchnorm does not.
STRUCTURE_AXES = ("upconv2_width", "skips")
INPUT_CHANNELS = (1, 3)  # what `train` passes: 1 (greyscale), 3 (super-resolution input)
CONV_TYPES = ("MyConv2d", "Conv2d")  # nn.Conv2d computes the same: only the type check tells


def readings_of(model: str) -> list[dict]:
    """Every reading of `model`'s network, the canonical one first."""
    axes = MODEL_AXES[model]
    return [dict(zip(axes, values)) for values in itertools.product(*(list(AXES[a]) for a in axes))]


def structures_of(model: str) -> list[dict]:
    axes = [a for a in MODEL_AXES[model] if a in STRUCTURE_AXES]
    return [dict(zip(axes, values)) for values in itertools.product(*(list(AXES[a]) for a in axes))]


def _edition_file(assignment) -> str:
    return f"assignments/{assignment.name}/assignment.toml"


def accepted(assignment) -> dict[str, list[str]]:
    """The readings this edition gives full marks, per axis (its `[readings]` table, merged
    over the family's, which lists every reading)."""
    table = assignment.data.get("readings", {})
    out = {}
    for axis, known in AXES.items():
        chosen = [str(v) for v in table.get(axis, list(known))]
        unknown = [v for v in chosen if v not in known]
        if unknown or not chosen:
            raise ValueError(
                f"{_edition_file(assignment)}: [readings] {axis}: "
                f"{'unknown reading ' + repr(unknown[0]) if unknown else 'no reading accepted'} "
                f"(known: {', '.join(known)})"
            )
        out[axis] = chosen
    return out


def input_channels(assignment) -> list[int]:
    """The num_in_channels values this edition grades (a course decision where the notebook
    itself only ever passes 1)."""
    chosen = list(assignment.data.get("readings", {}).get("input_channels", INPUT_CHANNELS))
    if not chosen or any(c not in INPUT_CHANNELS for c in chosen):
        raise ValueError(
            f"{_edition_file(assignment)}: [readings] input_channels: {chosen!r} (choose from 1 and 3)"
        )
    return chosen


def is_accepted(reading: dict, acc: dict) -> bool:
    return all(str(value) in acc[axis] for axis, value in reading.items())


def describe(reading: dict) -> str:
    return "; ".join(AXES[axis][str(reading[axis])] for axis in AXES if axis in reading)


def refused(reading: dict, acc: dict) -> str:
    """Why an edition does not accept `reading`: its axes that the edition leaves out."""
    parts = []
    for axis in (a for a in AXES if a in reading):
        value = reading[axis]
        if str(value) not in acc[axis]:
            wanted = " or ".join(AXES[axis][v] for v in acc[axis])
            parts.append(f"{AXES[axis][str(value)]}, where this course asks for {wanted}")
    return "; ".join(parts)


def accepted_text(model: str, acc: dict) -> str:
    return " or ".join(describe(r) for r in readings_of(model) if is_accepted(r, acc))


# -- layer traces ------------------------------------------------------------------------------
def normalised(records: list[dict]) -> list[dict]:
    """A student's trace with nn.Conv2d shown as MyConv2d (they compute the same; the type
    check says which was used) and square kernels as one number, as MyConv2d stores them."""
    out = []
    for rec in records:
        rec = dict(rec, config=dict(rec.get("config") or {}))
        if rec["type"] in CONV_TYPES:
            rec["type"] = "MyConv2d"
            k = rec["config"].get("kernel_size")
            if isinstance(k, list) and k and len(set(k)) == 1:
                rec["config"]["kernel_size"] = k[0]
        out.append(rec)
    return out


def _upsampling_free(student: list[dict], reference: list[dict]) -> list[dict]:
    """BatchNorm before or after a nearest Upsample(x2) computes the same (upsampling keeps
    each channel's mean and variance), so either output size is taken for it."""
    out = []
    for i, rec in enumerate(student):
        ref = reference[i] if i < len(reference) else None
        if ref is not None and rec.get("out_shape") in (ref.get("alt_out_shapes") or []):
            rec = dict(rec, out_shape=ref["out_shape"], in_shape=ref.get("in_shape"))
        out.append(rec)
    return out


def layer_difference(student: list[dict], reference: list[dict]) -> str | None:
    return first_layer_difference(_upsampling_free(student, reference), reference)


def agreeing_layers(student: list[dict], reference: list[dict]) -> int:
    """How many layers, from the first, agree in type, settings and output shape."""
    student = _upsampling_free(student, reference)
    keys = ("in_channels", "out_channels", "kernel_size", "num_features")
    n = 0
    for s, r in zip(student, reference):
        same = (
            s["type"] == r["type"]
            and s.get("out_shape") == r.get("out_shape")
            and all(str(s["config"].get(k)) == str(r["config"].get(k)) for k in keys if k in r["config"])
        )
        if not same:
            break
        n += 1
    return n


def nearest(model: str, per_reading: list[dict], acc: dict, score) -> dict:
    """The accepted reading that `score(entry)` ranks highest; on a tie the one the edition
    lists first (its `[readings]` order: its default reading first)."""
    candidates = [e for e in per_reading if is_accepted(e["reading"], acc)] or per_reading

    def rank(entry):
        chosen = entry["reading"].items()
        return sum(acc[a].index(str(v)) if str(v) in acc[a] else len(acc[a]) for a, v in chosen)

    return max(candidates, key=lambda e: (score(e), -rank(e)))


# -- equivalence ---------------------------------------------------------------------------------
def permuted_states(states: list[dict], concatenations: list[dict], skip_first: tuple) -> list[dict]:
    """The layer states for a network whose torch.cat calls put the skip tensor first where
    `skip_first` says so: the weight's input-channel blocks swap places, which computes the
    same function on the swapped concatenation. (The reference puts the skip tensor second.)"""
    if not any(skip_first):
        return states
    out = [dict(s) for s in states]
    for cat, first in zip(concatenations, skip_first):
        if first:
            layer, main = cat["layer"], cat["parts"][0]
            weight = out[layer]["weight"]
            out[layer]["weight"] = torch.cat([weight[:, main:], weight[:, :main]], dim=1)
    return out


def unpermuted_states(states: list[dict], concatenations: list[dict], skip_first: tuple) -> list[dict]:
    """permuted_states undone: the layer states of a network that puts the skip tensor first
    where `skip_first` says so, as the reference (skip tensor second) holds them."""
    if not any(skip_first):
        return states
    out = [dict(s) for s in states]
    for cat, first in zip(concatenations, skip_first):
        if first:
            layer, skip = cat["layer"], cat["parts"][1]
            weight = out[layer]["weight"]
            out[layer]["weight"] = torch.cat([weight[:, skip:], weight[:, :skip]], dim=1)
    return out


def cat_order_text(concatenations: list[dict], skip_first: tuple) -> str:
    if not concatenations:
        return ""
    said = [
        f"{c['name']}: skip tensor {'first' if f else 'second'}" for c, f in zip(concatenations, skip_first)
    ]
    return "torch.cat orders " + ", ".join(said)


def _difference(got: torch.Tensor, want: torch.Tensor) -> float:
    if list(got.shape) != list(want.shape):
        return float("inf")
    return float((got.float() - want).abs().max())


def search(student, case: dict, stop=None, atol: float = 1e-4, rtol: float = 1e-4) -> dict:
    """Load every stored structure's weights (in every torch.cat order) into the student's
    network and compare its outputs with each reading's, until `stop(reading)` says a match
    is enough. Returns {"matches": [...], "attempts": [...], "misfits": [...]}: matched and
    unmatched (reading, torch.cat order) entries, and the structures whose weights did not fit."""
    x = case["input"]
    matches, attempts, misfits = [], [], []
    for structure in case["structures"]:
        problems = student.load_layer_states(structure["states"], x)
        if problems:
            misfits.append({"structure": structure, "problems": problems})
            continue
        cats = structure["concatenations"]
        for n, skip_first in enumerate(itertools.product([False, True], repeat=len(cats))):
            if n:  # the first order's weights are loaded already
                student.load_layer_states(permuted_states(structure["states"], cats, skip_first), x)
            # eval first: train mode moves the running statistics
            got = {mode: student.forward(x, mode=mode).output for mode in ("eval", "train")}
            for variant in structure["variants"]:
                worst = max(_difference(got[m], variant[m]["output"]) for m in ("eval", "train"))
                close = all(
                    list(got[m].shape) == list(variant[m]["output"].shape)
                    and torch.allclose(got[m].float(), variant[m]["output"], atol=atol, rtol=rtol)
                    for m in ("eval", "train")
                )
                entry = {
                    "reading": variant["reading"],
                    "skip_first": skip_first,
                    "difference": worst,
                    "structure": structure,
                    "variant": variant,
                }
                (matches if close else attempts).append(entry)
                if close and stop is not None and stop(variant["reading"]):
                    return {"matches": matches, "attempts": attempts, "misfits": misfits}
    return {"matches": matches, "attempts": attempts, "misfits": misfits}


def where_it_differs(student, structure: dict, variant: dict, skip_first: tuple, x) -> str:
    """Which layer of the student's network first gives another output than the reading's
    reference, with its weights loaded (the torch.cat order the student uses). Outputs are
    compared, not inputs: a concatenation in the other order feeds a layer the same values
    in another order."""
    states = permuted_states(structure["states"], structure["concatenations"], skip_first)
    student.load_layer_states(states, x)
    for mode in ("eval", "train"):
        got = student.forward(x, mode=mode, trace=True, keep_values=True)
        want = variant[mode]["layers"]
        if _difference(got.output, variant[mode]["output"]) <= 1e-4:
            continue
        for i, (s, r) in enumerate(zip(got.layers, want)):
            value = s.get("out_value")
            if value is None or list(value.shape) != list(r.get("out_shape") or []):
                return f"layer {i + 1} ({r['type']}) gives an output of another shape in {mode} mode"
            if not sketch_close(sketch(value), r.get("out_sketch")):
                if i == 0:
                    return (
                        f"the first layer's output already differs in {mode} mode: check what "
                        "forward does before it"
                    )
                agree = "layer 1 agrees" if i == 1 else f"layers 1-{i} agree"
                return (
                    f"{agree}; layer {i + 1} ({r['type']}, output "
                    f"{shape_text(r['out_shape'])}) gives another output in {mode} mode: check what "
                    f"forward does between layer {i} and layer {i + 1} (their order, activations, "
                    "pooling or upsampling, skip connections) and the layer's own settings"
                )
        return f"every layer agrees in {mode} mode; the output differs after the last layer"
    return "the outputs agree"


# -- W2019's given forward -------------------------------------------------------------------------
def attribute_hint(assignment, model: str, message: str) -> str:
    """A given forward calls fixed attribute names (`[attributes]` in the edition): when the
    student's network lacks one, say which names the given code needs."""
    names = assignment.data.get("attributes", {}).get(model) or []
    if not any(f"attribute '{n}'" in message for n in names):
        return ""
    listed = ", ".join(f"self.{n}" for n in names)
    return f" The given {model}.forward calls {listed}: __init__ must define blocks with exactly these names."


@contextlib.contextmanager
def hinted(assignment, model: str):
    """Requests inside: a crash for want of a name the given forward calls says which names."""
    try:
        yield
    except StudentCodeError as exc:
        hint = attribute_hint(assignment, model, str(exc))
        if not hint:
            raise
        error = exc
    else:
        return
    raise type(error)(str(error) + hint)  # outside `except`: no chained context
