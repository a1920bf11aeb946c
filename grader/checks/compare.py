"""Compare a student's network with a reference, and say where they first differ.

Everything here is by behaviour: layers are matched by the order forward() calls them, and
values by running both networks on the same input with the same weights.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from grader.engine.proxy import Remote

# What a layer description compares; padding and stride show up through the shapes.
_COMPARED = ("in_channels", "out_channels", "kernel_size", "num_features", "in_features", "out_features")


def describe_layer(rec: dict | None) -> str:
    if rec is None:
        return "nothing"
    c = rec["config"]
    if "in_channels" in c:
        k = c.get("kernel_size")
        k = k[0] if isinstance(k, list) and len(set(k)) == 1 else k
        inner = f"{c['in_channels']}->{c['out_channels']}, kernel {k}"
        if c.get("stride") and set(c["stride"]) != {1}:
            s = c["stride"]
            inner += f", stride {s[0] if len(set(s)) == 1 else s}"
    elif "num_features" in c:
        inner = str(c["num_features"])
    elif "in_features" in c:
        inner = f"{c['in_features']}->{c['out_features']}"
    else:
        inner = ""
    return f"{rec['type']}({inner}) -> output {shape_text(rec['out_shape'])}"


def shape_text(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]" if shape is not None else "?"


def first_layer_difference(student: list[dict], reference: list[dict]) -> str | None:
    """None when both call the same kinds of parametrised layers with the same shapes; else
    the cause first (a missing, extra or repeated layer, another layer type, other channels
    or kernel, another output size), then the evidence: both layers as traced."""
    found = layer_difference(student, reference)
    return f"{found[0]}. {found[1]}" if found else None


def layer_difference(student: list[dict], reference: list[dict]) -> tuple[str, str] | None:
    """(cause, evidence) for the first layer where the traces part, or None."""
    seen: dict[str, int] = {}
    for i in range(max(len(student), len(reference))):
        s = student[i] if i < len(student) else None
        r = reference[i] if i < len(reference) else None
        repeat = seen.get(s.get("path", "?")) if s is not None else None
        if s is not None and s.get("path", "?") != "?":
            seen.setdefault(s["path"], i)
        if s is None or r is None or _signature(s) != _signature(r) or repeat is not None:
            evidence = (
                f"parametrised layer {i + 1} in forward order: expected "
                f"{describe_layer(r)}, found {describe_layer(s)}"
            )
            return layer_difference_cause(i, student, reference, repeat), evidence
    return None


def layer_difference_cause(i: int, student: list[dict], reference: list[dict], repeat) -> str:
    """Why layer i (0-based) of a student's trace is not the reference's, in the words a TA
    would use: a missing, extra, swapped or repeated layer, another type, other settings."""
    n = i + 1
    s = student[i] if i < len(student) else None
    r = reference[i] if i < len(reference) else None
    s_next = student[i + 1]["type"] if i + 1 < len(student) else None
    r_next = reference[i + 1]["type"] if i + 1 < len(reference) else None
    if repeat is not None:
        here = f"a layer of its own here, a {r['type']}" if r is not None else "no layer here"
        return (
            f"Layer {n} runs `{s['path']}` a second time (it is also layer {repeat + 1}); the "
            f"reference calls {here}"
        )
    if s is None:
        return (
            f"Layer {n}, a {r['type']}, is missing: your forward calls {len(student)} parametrised "
            f"layers, the reference {len(reference)}"
        )
    if r is None:
        return (
            f"Your forward calls an extra layer {n}, a {s['type']}, after the reference's "
            f"{len(reference)} layers"
        )
    if s["type"] != r["type"] and s_next == r["type"] and r_next == s["type"]:
        return (
            f"Layers {n} and {n + 1} come in the other order: you call a {s['type']} then a "
            f"{r['type']}, the reference a {r['type']} then a {s['type']}"
        )
    if s["type"] != r["type"] and r_next == s["type"]:
        return (
            f"Layer {n} of the reference, a {r['type']}, is missing: your layer {n} is a "
            f"{s['type']}, which the reference calls next"
        )
    if s["type"] != r["type"] and s_next == r["type"]:
        return f"Your layer {n}, a {s['type']}, is extra: your layer {n + 1} is the reference's layer {n}"
    if s["type"] != r["type"]:
        hint = _TYPE_HINTS.get((s["type"], r["type"]), "")
        return f"Layer {n} is a {s['type']} where the reference has a {r['type']}{hint}"
    differs = [
        f"{_ATTR_WORDS[attr]} {_value_text(s['config'].get(attr))} where the reference has "
        f"{_value_text(r['config'].get(attr))}"
        for attr in _COMPARED
        if attr in r["config"] and str(s["config"].get(attr)) != str(r["config"].get(attr))
    ]
    if differs:
        return f"Layer {n}, a {s['type']}, has " + " and ".join(differs) + _skip_hint(i, s, reference)
    return (
        f"Layer {n}, a {s['type']}, gives an output of shape {shape_text(s['out_shape'])} where the "
        f"reference's is {shape_text(r['out_shape'])}: check its stride and padding, and the "
        "pooling or upsampling before it"
    )


def _skip_hint(i: int, s: dict, reference: list[dict]) -> str:
    """When layer i takes fewer or more input channels than the reference's and the difference
    is what an earlier layer (or the network's input) outputs: a skip connection missing or
    extra, the usual cause in a UNet."""
    theirs, yours = reference[i]["config"].get("in_channels"), s["config"].get("in_channels")
    if not isinstance(theirs, int) or not isinstance(yours, int) or theirs == yours:
        return ""
    gap = abs(theirs - yours)
    sources = [
        (f"layer {j + 1}'s output", rec["config"].get("out_channels", rec["config"].get("num_features")))
        for j, rec in enumerate(reference[:i])
    ]
    sources.append(("the input image", reference[0]["config"].get("in_channels")))
    matching = [source for source, channels in sources if channels == gap]
    if not matching:
        return ""
    what = "concatenates" if theirs > yours else "does not concatenate"
    return (
        f" (the reference {what} {gap} channel{'s' if gap > 1 else ''} here, as many as "
        f"{' or '.join(matching)}: a skip connection?)"
    )


_TYPE_HINTS = {
    ("Conv2d", "ConvTranspose2d"): (
        " (the reference upsamples with a transposed convolution here; a Conv2d with an "
        "Upsample around it is another layer)"
    ),
    (
        "ConvTranspose2d",
        "Conv2d",
    ): " (a transposed convolution upsamples; the reference has a plain Conv2d here)",
    ("BatchNorm2d", "Conv2d"): " (is BatchNorm before the convolution instead of after it?)",
    ("Conv2d", "BatchNorm2d"): " (is a convolution where its BatchNorm should be, or the BatchNorm missing?)",
}
_ATTR_WORDS = {
    "in_channels": "input channels",
    "out_channels": "output channels",
    "kernel_size": "kernel",
    "num_features": "features",
    "in_features": "input features",
    "out_features": "output features",
}


def _value_text(value) -> str:
    if isinstance(value, list) and value and len(set(value)) == 1:
        return str(value[0])
    return str(value)


def _signature(rec: dict) -> tuple:
    return (
        rec["type"],
        tuple(rec["out_shape"] or ()),
        tuple((k, str(rec["config"].get(k))) for k in _COMPARED if k in rec["config"]),
    )


@dataclass
class Equivalence:
    matches: bool
    message: str  # why not, for a student; empty when it matches
    max_difference: float = 0.0


def weights_do_not_fit(problems: list[str], cause: str | None = None) -> Equivalence:
    # A different number of layers makes every later pairing meaningless: say only that.
    shown = problems[:1] if "parametrised layers are used" in problems[0] else problems[:3]
    evidence = "the reference's weights do not fit your layers: " + "; ".join(shown) + "."
    # The cause (a layer of another type, say) before the shapes it leads to.
    return Equivalence(False, f"{cause}; so {evidence}" if cause else evidence, float("inf"))


def _locate(student: list[dict], reference: list[dict], same) -> str:
    """Where two traces first part: `same(s_rec, r_rec, "in_value" | "out_value")`."""
    for i, (s, r) in enumerate(zip(student, reference)):
        if not same(s, r, "in_value"):
            if i == 0:
                return (
                    f"The input to the first layer, {describe_layer(r)}, already differs: "
                    "check what forward does before it."
                )
            cause = _operations_cause(i, student[i - 1], s, r)
            return (
                f"{cause}{'Layer 1 agrees' if i == 1 else f'Layers 1-{i} agree'}; the input to layer "
                f"{i + 1}, {describe_layer(r)}, "
                f"differs: check the operations between layer {i} "
                f"({describe_layer(reference[i - 1])}) and layer {i + 1} (their order, "
                "activations, pooling or upsampling, and skip connections)."
            )
        if not same(s, r, "out_value"):
            return (
                f"Layer {i + 1}, {describe_layer(r)}, gets the same input but gives a "
                "different output: check its settings (stride, padding, dilation)."
            )
    return "Every layer agrees: the difference comes after the last parametrised layer."


# What forward may do between two parametrised layers, in a student's words. ReLU commutes
# with max-pooling and nearest upsampling, so one name covers both orders.
_OPERATIONS = {
    "nothing": lambda x: x,
    "a ReLU": torch.relu,
    "max-pooling": lambda x: torch.nn.functional.max_pool2d(x, 2),
    "upsampling": lambda x: torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"),
    "max-pooling and a ReLU": lambda x: torch.relu(torch.nn.functional.max_pool2d(x, 2)),
    "upsampling and a ReLU": lambda x: torch.relu(torch.nn.functional.interpolate(x, scale_factor=2)),
}


def _operations_cause(i: int, s_prev: dict, s: dict, r: dict) -> str:
    """Which of _OPERATIONS the student and the reference apply between layers i and i+1,
    as a sentence ending in ". ", or "" when it cannot be told (a skip connection, say).
    Layer i agrees, so the student's output of it stands for the reference's: applying each
    operation to it and comparing with the reference's stored input sketch of layer i+1 tells
    what the reference does there."""
    before, after = s_prev.get("out_value"), s.get("in_value")
    if not isinstance(before, torch.Tensor) or not isinstance(after, torch.Tensor) or before.dim() != 4:
        return ""
    yours = theirs = None
    for name, operation in _OPERATIONS.items():
        try:
            value = operation(before.float())
        except RuntimeError:
            continue
        if yours is None and value.shape == after.shape and torch.allclose(value, after.float(), atol=1e-5):
            yours = name
        if theirs is None and list(value.shape) == list(r.get("in_shape") or []):
            if sketch_close(sketch(value), r.get("in_sketch")):
                theirs = name
    if yours is None or theirs is None or yours == theirs:
        return ""
    hint = ""
    if "ReLU" in yours and "ReLU" not in theirs and r["type"].startswith("BatchNorm"):
        hint = " (the ReLU belongs after the BatchNorm, not before it)"
    elif "ReLU" in theirs and "ReLU" not in yours:
        hint = " (a ReLU is missing here)"
    return (
        f"Between layer {i} and layer {i + 1} you apply {yours} where the reference applies {theirs}{hint}. "
    )


# -- comparing with stored expectations (public checks: no reference needed) ---------------
SKETCH_SIZE = 8
_MASK32 = 2**32


def sketch(tensor: torch.Tensor | None, size: int = SKETCH_SIZE) -> list[float] | None:
    """A short fingerprint of a tensor's values that can be compared with a tolerance:
    [root mean square, then `size` projections on fixed +-1/sqrt(n) directions].

    Two tensors that agree element by element agree here within about the size of their
    differences; tensors that differ differ here too (with overwhelming probability). The
    directions come from integer arithmetic, so they are the same on every machine and every
    torch version. Used to say which layer first differs without storing every activation."""
    if tensor is None:
        return None
    x = tensor.detach().reshape(-1).to(torch.float64).cpu()
    n = x.numel()
    if n == 0:
        return [0.0] * (size + 1)
    # One matrix-vector product and one conversion to Python floats (a grading sketches about
    # a thousand tensors: element-wise products and a float() per value took three times longer).
    root = math.sqrt(n)
    out = [math.sqrt(float(x.dot(x)) / n)]
    out += [v / root for v in torch.mv(_sketch_signs(n, size), x).tolist()]
    return [float(f"{v:.9g}") for v in out]


@functools.lru_cache(maxsize=64)
def _sketch_signs(n: int, size: int) -> torch.Tensor:
    """sketch's `size` fixed +-1 directions of length n, one per row (a grading sketches
    thousands of tensors of a few dozen sizes: made once per size)."""
    index = torch.arange(n, dtype=torch.int64)
    rows = []
    for j in range(size):
        h = (index * 2654435761 + (j + 1) * 40503) % _MASK32
        h = ((h ^ (h >> 16)) * 73244475) % _MASK32
        h = h ^ (h >> 16)
        rows.append(((h & 1) * 2 - 1).to(torch.float64))
    return torch.stack(rows)


def sketch_close(
    a: list[float] | None, b: list[float] | None, atol: float = 1e-4, rtol: float = 1e-4, slack: float = 10.0
) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if len(a) != len(b):
        return False
    tolerance = slack * (atol + rtol * abs(b[0]))
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def sketch_trace(records: list[dict]) -> list[dict]:
    """A trace made with keep_values=True, with each value replaced by its sketch."""
    out = []
    for rec in records:
        rec = {k: v for k, v in rec.items() if k not in ("in_value", "out_value", "path")}
        out.append(rec)
    for rec, full in zip(out, records):
        rec["in_sketch"] = sketch(full.get("in_value"))
        rec["out_sketch"] = sketch(full.get("out_value"))
    return out


def _same_as_stored(s: dict, r: dict, which: str) -> bool:
    shape = "in_shape" if which == "in_value" else "out_shape"
    value = s.get(which)
    if value is None or list(value.shape) != list(r.get(shape) or []):
        return value is None and r.get(shape) is None
    return sketch_close(sketch(value), r["in_sketch" if which == "in_value" else "out_sketch"])


def compare_with_stored(
    student: Remote,
    states: list[dict],
    x: torch.Tensor,
    variants: list[dict],
    atol: float = 1e-4,
    rtol: float = 1e-4,
    layout: dict | None = None,
) -> Equivalence:
    """Load stored per-layer `states` (forward order, computed from the reference by
    grader.public.expectations) into the student's model, run it on `x` in eval then train
    mode, and compare with stored outputs. `variants` lists every stored answer a correct solution may give:
    [{"label": str, "eval": {"output": tensor, "layers": sketch_trace}, "train": {...}}].
    `layout` ({"input", "layers"}: the reference's trace for the same hyper-parameters) lets
    a misfit of weights be explained by its cause (first_layer_difference)."""
    problems = student.load_layer_states(states, x)
    if problems:
        cause = None
        if layout is not None:  # the reference's traced layers for the same hyper-parameters
            found = layer_difference(student.forward(layout["input"], trace=True).layers, layout["layers"])
            cause = found[0] if found else None
        return weights_do_not_fit(problems, cause)
    got = {
        mode: student.forward(x, mode=mode, trace=True, keep_values=True) for mode in ("eval", "train")
    }  # eval first: train mode moves running statistics
    attempts = []
    for variant in variants:
        result = _compare_variant(got, variant, atol, rtol)
        if result.matches:
            return result
        attempts.append((result.max_difference, len(attempts), result))
    return min(attempts)[2]


def _compare_variant(got: dict, variant: dict, atol, rtol) -> Equivalence:
    for mode in ("eval", "train"):
        expected = variant[mode]["output"]
        output = got[mode].output
        if output.shape != expected.shape:
            return Equivalence(
                False,
                f"in {mode} mode the output has shape "
                f"{shape_text(list(output.shape))}, expected "
                f"{shape_text(list(expected.shape))}",
                float("inf"),
            )
        diff = (output.float() - expected).abs().max().item()
        if not torch.allclose(output.float(), expected, atol=atol, rtol=rtol):
            where = _locate(got[mode].layers, variant[mode]["layers"], _same_as_stored)
            return Equivalence(  # where (and why) first, then the evidence
                False,
                f"{where} With the reference's weights loaded, your output differs from the "
                f"reference's in {mode} mode (largest difference {diff:.3g}).",
                diff,
            )
    return Equivalence(True, "", 0.0)


# -- a trained network, judged in the parent -------------------------------------------------


class NotVerified(AssertionError):
    """The child's trained network could not be tied to a trusted network the parent can run
    (the message says why, for the student)."""


def verified_network(
    model: Remote,
    candidates: list[tuple],
    probe: torch.Tensor,
    secret_input: torch.Tensor,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> tuple[str, torch.nn.Module]:
    """The trusted network, one of `candidates` ((label, fresh module[, transform of the
    student's layer states]) in the parent: the reference and its accepted variants), that,
    given the weights the child's `model` holds now, computes what the child's network
    computes. The child reports its layer states by forward order on `probe` and its outputs
    on `secret_input`, an input it cannot know in advance, in eval then train mode; both are
    claims, and the candidate holding those states must give the same outputs here. What the
    candidate then computes on other inputs (held-out images) is the parent's own
    measurement: a child that answers held-out inputs from a lookup table, or trained
    something else than its network, earns nothing from it. NotVerified when no
    candidate fits (a network that is not the reference's function)."""
    import copy

    from grader.engine.layers import load_layer_states

    states = model.layer_states(probe)
    outputs = {mode: model.forward(secret_input, mode=mode).output for mode in ("eval", "train")}
    misfit = None
    for entry in candidates:
        label, original = entry[0], entry[1]
        # A candidate may hold its layers' weights in another order than the student's network
        # (a concatenation the other way round): its transform maps the student's to its own.
        own = entry[2](states) if len(entry) > 2 else states
        candidate = copy.deepcopy(original)
        problems, _ = load_layer_states(candidate, probe, own)
        if problems:
            misfit = misfit or problems[0]
            continue
        same = True
        for mode in ("eval", "train"):
            candidate.train(mode == "train")
            with torch.no_grad():
                expected = candidate(secret_input)
            got = outputs[mode]
            if not (
                isinstance(got, torch.Tensor)
                and got.shape == expected.shape
                and torch.allclose(got.float(), expected.float(), atol=atol, rtol=rtol)
            ):
                same = False
                break
        if same:  # a fresh copy: the train-mode probe moved its BatchNorm statistics
            trained = copy.deepcopy(original)
            load_layer_states(trained, probe, own)
            return label, trained.eval()
    why = (
        f"its trained weights do not fit the reference network ({misfit})"
        if misfit and len(candidates) == 1
        else "with its trained weights, the reference network computes other outputs than yours "
        "on a new input"
    )
    raise NotVerified(
        f"the grader could not verify this training run: {why}. Training is judged by running your "
        "trained weights in the reference network here, which needs a network that computes the "
        "reference's function (see the equivalence check)."
    )
