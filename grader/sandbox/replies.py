"""What the parent accepts from a child: every answer is checked against what its request can
legitimately return, before anything uses it (docs/design.md, trust model, rule 6).

A child can patch its own request handlers and send anything the wire format can carry. A
reply that does not fit (another type, dtype, shape or count than the request allows, or more
bytes than it can need) fails that request as the student's error, and the parent replaces the
child. Sizes are bounded twice: the frame's byte count before it is read (`byte_limit`), then
each value's count and shape (`check`). So a 2 KB reply cannot make the parent draw 2,000
pictures, and a 5 GB one is never read.
"""

from __future__ import annotations

import math

import torch

# The most of each kind of entry any honest answer holds (a notebook's names, a model's
# parameters, a network's layer calls, problems listed by a request).
MAX_TEXT = 2000
MAX_NAMES = 20_000
MAX_PARAMETERS = 20_000
MAX_LAYER_CALLS = 5_000
MAX_PROBLEMS = 200
MAX_DIMS = 8
MAX_CONFIG_ITEMS = 40
PREVIEW = 4  # predictions a training run returns (grader.engine.training.run_training's preview)

# Frame bytes: a fixed allowance for the JSON and small tensors, plus a multiple of what the
# request itself carries (an output may be some times larger than its input, never 64 times).
BASE_REPLY_BYTES = 32 * 2**20
REPLY_BYTES_PER_REQUEST_BYTE = 64
MAX_REPLY_BYTES = 512 * 2**20


class Malformed(Exception):
    """The reply is not one the request can have (the message says what is wrong)."""


def tensor_bytes(value) -> int:
    """Bytes of every tensor inside a request's payload."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def byte_limit(payload: dict) -> int:
    """The largest frame a reply to this request may be."""
    return min(MAX_REPLY_BYTES, BASE_REPLY_BYTES + REPLY_BYTES_PER_REQUEST_BYTE * tensor_bytes(payload))


# -- small checks ---------------------------------------------------------------------------------


def _fail(what: str, why: str):
    raise Malformed(f"{what}: {why}")


def text(value, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        _fail(what, f"a {type(value).__name__}, not text")
    if len(value) > limit:
        _fail(what, f"{len(value)} characters, more than {limit}")
    return value


def flag(value, what: str) -> bool:
    if not isinstance(value, bool):
        _fail(what, f"a {type(value).__name__}, not true/false")
    return value


def count(value, what: str, limit: int = 2**62) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        _fail(what, "not a count")
    return value


def number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _fail(what, f"a {type(value).__name__}, not a number")
    return float(value)


def listing(value, what: str, limit: int) -> list:
    if not isinstance(value, list):
        _fail(what, f"a {type(value).__name__}, not a list")
    if len(value) > limit:
        _fail(what, f"{len(value)} entries, more than {limit}")
    return value


def mapping(value, what: str, keys=None, limit: int = MAX_NAMES) -> dict:
    if not isinstance(value, dict):
        _fail(what, f"a {type(value).__name__}, not a mapping")
    if len(value) > limit:
        _fail(what, f"{len(value)} entries, more than {limit}")
    if keys is not None and set(value) != set(keys):
        _fail(what, f"fields {sorted(value)[:10]}, expected {sorted(keys)}")
    return value


def shape(value, what: str) -> list[int]:
    listing(value, what, MAX_DIMS)
    return [count(d, what) for d in value]


def tensor(value, what: str, kinds: str = "any", shape_is=None, max_elements: int | None = None):
    """A tensor of the right kind ("float", "integer", "any"), and when given, of this exact
    shape or at most this many elements."""
    if not isinstance(value, torch.Tensor):
        _fail(what, f"a {type(value).__name__}, not a tensor")
    if kinds == "float" and not value.dtype.is_floating_point:
        _fail(what, f"dtype {value.dtype}, not floating point")
    if kinds == "integer" and (value.dtype.is_floating_point or value.dtype == torch.bool):
        _fail(what, f"dtype {value.dtype}, not integer")
    if shape_is is not None and list(value.shape) != list(shape_is):
        _fail(what, f"shape {list(value.shape)[:MAX_DIMS]}, expected {list(shape_is)}")
    if max_elements is not None and value.numel() > max_elements:
        _fail(what, f"{value.numel()} elements, more than {max_elements}")
    return value


def names(value, what: str, limit: int = MAX_NAMES) -> list[str]:
    return [text(n, what, 500) for n in listing(value, what, limit)]


def config(value, what: str) -> dict:
    mapping(value, what, limit=MAX_CONFIG_ITEMS)
    for key, item in value.items():
        text(key, what, 100)
        if isinstance(item, list):
            listing(item, what, MAX_DIMS)
            for v in item:
                number(v, what)
        elif isinstance(item, str):
            text(item, what, 200)
        elif not isinstance(item, (int, float)):
            _fail(what, f"setting {key!r} is a {type(item).__name__}")
    return value


def _request_elements(payload: dict) -> int:
    return max(1, tensor_bytes(payload))


# -- one check per request ------------------------------------------------------------------------


def _construct(payload, result):
    mapping(result, "the answer", {"type", "is_module"})
    text(result["type"], "the object's type", 200)
    flag(result["is_module"], "is_module")


def _build_trusted(payload, result):
    mapping(result, "the answer", {"type"})
    text(result["type"], "the object's type", 200)


def _layer_records(value, what: str, keep_values: bool, max_elements: int):
    for record in listing(value, what, MAX_LAYER_CALLS):
        mapping(record, what, limit=10)
        allowed = {"path", "type", "config", "in_shape", "out_shape"}
        if keep_values:
            allowed |= {"in_value", "out_value"}
        if not set(record) <= allowed or not {"path", "type", "config"} <= set(record):
            _fail(what, f"a layer record with fields {sorted(record)[:10]}")
        text(record["path"], what, 500)
        text(record["type"], what, 200)
        config(record["config"], what)
        for side in ("in", "out"):
            dims = record.get(f"{side}_shape")
            if dims is not None:
                shape(dims, what)
            values = record.get(f"{side}_value")
            if values is not None:
                tensor(values, what, "any", shape_is=dims, max_elements=max_elements)


def _forward(payload, result):
    mapping(result, "the answer", {"output", "layers"})
    # A wrong network may honestly return a far larger output than its input (a pooling
    # kernel of 1 before two upsamplings: 16 times the pixels); that is a shape mistake for
    # the checks to report, so the floor is the frame's fixed allowance in float32 elements.
    limit = REPLY_BYTES_PER_REQUEST_BYTE * _request_elements(payload) + BASE_REPLY_BYTES // 4
    tensor(result["output"], "forward's output", "any", max_elements=limit)
    if result["layers"] is not None:
        if not payload.get("trace"):
            _fail("the answer", "layer records nobody asked for")
        _layer_records(result["layers"], "the layer trace", bool(payload.get("keep_values")), limit)


def _parameters(payload, result):
    mapping(result, "the answer", {"named", "count"})
    for entry in listing(result["named"], "the parameter list", MAX_PARAMETERS):
        mapping(entry, "a parameter", {"name", "shape", "requires_grad"})
        text(entry["name"], "a parameter's name", 500)
        shape(entry["shape"], "a parameter's shape")
        flag(entry["requires_grad"], "requires_grad")
    count(result["count"], "the parameter count")


def _load_layers(payload, result):
    mapping(result, "the answer", {"problems", "count"})
    names(result["problems"], "the loading problems", MAX_PROBLEMS)
    count(result["count"], "the layer count", MAX_LAYER_CALLS)


def _call(payload, result):
    mapping(result, "the answer", {"output", "grads"})
    output = result["output"]
    limit = REPLY_BYTES_PER_REQUEST_BYTE * _request_elements(payload) + 2**16
    if isinstance(output, torch.Tensor):
        tensor(output, "the returned value", "any", max_elements=limit)
    elif isinstance(output, str):
        text(output, "the returned value", 200)
    elif output is not None and not isinstance(output, (bool, int, float)):
        _fail("the returned value", f"a {type(output).__name__}")
    wanted = payload.get("grad_wrt") or []
    grads = listing(result["grads"], "the gradients", len(wanted))
    if len(grads) != len(wanted):
        _fail("the gradients", f"{len(grads)} of them for {len(wanted)} arguments")
    args = payload.get("args") or []
    for index, grad in zip(wanted, grads):
        if grad is not None:
            arg = args[index] if isinstance(index, int) and 0 <= index < len(args) else None
            expected = list(arg.shape) if isinstance(arg, torch.Tensor) else None
            tensor(grad, "a gradient", "float", shape_is=expected, max_elements=limit)


def _empty(payload, result):
    mapping(result, "the answer", limit=0)


def _get_parameters(payload, result):
    mapping(result, "the answer", limit=len(payload.get("names") or []))
    asked = set(payload.get("names") or [])
    for name, value in result.items():
        if name not in asked:
            _fail("the parameters", f"{name[:100]!r} was not asked for")
        tensor(value, f"parameter {name[:100]}", "float", max_elements=2**24)


def _describe(payload, result):
    mapping(result, "the answer", {"type", "config", "parameters"})
    text(result["type"], "the layer's type", 200)
    config(result["config"], "the layer's settings")
    for name, dims in mapping(result["parameters"], "the layer's parameters", limit=MAX_PARAMETERS).items():
        text(name, "a parameter's name", 500)
        shape(dims, "a parameter's shape")


def _train(payload, result):
    mapping(
        result,
        "the answer",
        {"losses", "changed", "unchanged", "requires_grad", "predictions", "seconds", "device"},
    )
    steps = count(payload.get("steps", 0), "steps")
    for loss in listing(result["losses"], "the losses", steps):
        number(loss, "a loss")
    names(result["changed"], "the changed parameters", MAX_PARAMETERS)
    names(result["unchanged"], "the unchanged parameters", MAX_PARAMETERS)
    flags = mapping(result["requires_grad"], "the requires_grad flags", limit=MAX_PARAMETERS)
    for name, value in flags.items():
        text(name, "a parameter's name", 500)
        flag(value, "requires_grad")
    inputs, targets = payload.get("inputs"), payload.get("targets")
    if isinstance(inputs, torch.Tensor) and isinstance(targets, torch.Tensor):
        rows = min(PREVIEW, len(inputs))
        tensor(result["predictions"], "the predictions", "integer", shape_is=[rows, *targets.shape[1:]])
    else:
        tensor(result["predictions"], "the predictions", "integer", max_elements=2**16)
    seconds = number(result["seconds"], "the training time")
    if not (math.isfinite(seconds) and seconds >= 0):
        _fail("the training time", "not a duration")
    text(result["device"], "the device", 20)


def _layer_states(payload, result):
    mapping(result, "the answer", {"states"})
    for state in listing(result["states"], "the layer states", MAX_LAYER_CALLS):
        mapping(state, "a layer's state", limit=4)
        for name, value in state.items():
            if name not in ("weight", "bias", "running_mean", "running_var"):
                _fail("a layer's state", f"holds {name[:50]!r}")
            tensor(value, f"a layer's {name}", "float", max_elements=2**24)


def _call_until_optimizer(payload, result):
    mapping(result, "the answer", {"reached", "params"})
    flag(result["reached"], "reached")
    for entry in listing(result["params"], "the optimizer's parameters", MAX_PARAMETERS):
        mapping(entry, "an optimizer parameter", {"name", "shape"})
        if entry["name"] is not None:
            text(entry["name"], "a parameter's name", 500)
        if entry["shape"] is not None:
            shape(entry["shape"], "a parameter's shape")


def bounded(value, what: str, depth: int = 8, budget: list | None = None):
    """Plain data of bounded size and depth (JSON values and tensors): for answers whose shape
    the request's caller, not the engine, knows (a harness's return value); the caller checks
    the rest."""
    budget = budget if budget is not None else [MAX_NAMES * 5]
    budget[0] -= 1
    if budget[0] < 0 or depth < 0:
        _fail(what, "too large or too deeply nested")
    if isinstance(value, torch.Tensor):
        tensor(value, what, "any", max_elements=2**22)
    elif isinstance(value, str):
        text(value, what, 20_000)
    elif isinstance(value, (list, tuple)):
        for item in listing(list(value), what, MAX_NAMES):
            bounded(item, what, depth - 1, budget)
    elif isinstance(value, dict):
        for key, item in mapping(value, what).items():
            text(key, what, 500)
            bounded(item, what, depth - 1, budget)
    elif value is not None and not isinstance(value, (bool, int, float)):
        _fail(what, f"a {type(value).__name__}")


def _transplant(payload, result):
    mapping(result, "the answer", limit=1)
    if set(result) == {"error"}:
        mapping(result["error"], "the error", limit=3)
        for value in result["error"].values():
            if value is not None:
                text(value, "the error", 1000)
    elif set(result) == {"result"}:
        bounded(result["result"], "the harness's answer")
    else:
        _fail("the answer", f"fields {sorted(result)[:5]}")


CHECKS = {
    "construct": _construct,
    "build_trusted": _build_trusted,
    "forward": _forward,
    "parameters": _parameters,
    "load_layers": _load_layers,
    "call": _call,
    "run_region": _empty,
    "set_parameters": _empty,
    "get_parameters": _get_parameters,
    "describe": _describe,
    "set_submodule": _empty,
    "train": _train,
    "call_until_optimizer": _call_until_optimizer,
    "layer_states": _layer_states,
    "transplant": _transplant,
    "forget": _empty,
}


def check(op: str, payload: dict, result) -> None:
    """Raise Malformed unless `result` is an answer request `op` with `payload` can have."""
    checker = CHECKS.get(op)
    if checker is None:
        raise Malformed(f"no answer is expected to request {op!r}")
    checker(payload, result)


# -- what the child says outside a request's answer -----------------------------------------------


def error_fields(error) -> dict:
    """A failed request's error: its type, message and place, as text of bounded length."""
    if not isinstance(error, dict):
        return {}
    limits = {"type": 100, "message": 500, "where": 200}
    return {k: v[: limits[k]] for k, v in error.items() if k in limits and isinstance(v, str)}


def isolation(hello) -> list[str]:
    """The protections a new child says it put in place."""
    if not isinstance(hello, list):
        return []
    return [item[:300] for item in hello[:30] if isinstance(item, str)]
