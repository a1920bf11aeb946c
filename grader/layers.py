"""Trace a network's parametrised layers in the order forward() calls them.

Used on both sides: in the child on the student's model, in the parent on the reference.
Real submissions build the same network with Sequential blocks, ModuleLists, separate
attributes or a reused module, so layers are identified by call order, not by name.
"""

from __future__ import annotations

import torch
from torch import nn

# Attributes that say how a layer is configured (compared one by one in feedback).
CONFIG_ATTRS = (
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "dilation",
    "groups",
    "num_features",
    "in_features",
    "out_features",
    "eps",
)
STATE_NAMES = ("weight", "bias", "running_mean", "running_var")


def is_parametrised_leaf(module: nn.Module) -> bool:
    has_own = any(True for _ in module.parameters(recurse=False)) or any(
        b is not None for b in module.buffers(recurse=False)
    )
    return has_own and not any(True for _ in module.children())


def layer_config(module: nn.Module) -> dict:
    config = {}
    for attr in CONFIG_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, (int, float, str)) or (
            isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)
        ):
            config[attr] = list(value) if isinstance(value, tuple) else value
    return config


def trace(module: nn.Module, inputs: tuple, keep_values: bool = False):
    """Run forward once; return (output, records) for every parametrised leaf call."""
    paths = {m: name for name, m in module.named_modules()}
    records = []

    def hook(mod, args, out):
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        rec = {
            "path": paths.get(mod, "?"),
            "type": type(mod).__name__,
            "config": layer_config(mod),
            "in_shape": list(first.shape) if first is not None else None,
            "out_shape": list(out.shape) if isinstance(out, torch.Tensor) else None,
        }
        if keep_values:
            rec["in_value"] = first.detach().clone() if first is not None else None
            rec["out_value"] = out.detach().clone() if isinstance(out, torch.Tensor) else None
        records.append(rec)

    handles = [m.register_forward_hook(hook) for m in module.modules() if is_parametrised_leaf(m)]
    try:
        output = module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return output, records


def ordered_layers(module: nn.Module, inputs: tuple) -> list[nn.Module]:
    """The parametrised leaf modules in first-call order (a reused module counts once)."""
    order: list[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, a, o: order.append(mod) if mod not in order else None)
        for m in module.modules()
        if is_parametrised_leaf(m)
    ]
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return order


def layer_state(module: nn.Module) -> dict:
    return {
        name: getattr(module, name).detach().clone()
        for name in STATE_NAMES
        if isinstance(getattr(module, name, None), torch.Tensor)
    }


def load_layer_states(module: nn.Module, probe: torch.Tensor, states: list[dict]) -> tuple[list[str], int]:
    """Copy per-layer states (weight, bias, running statistics) onto `module`'s parametrised
    layers, matched by the order forward() first calls them on `probe`, and by shape.
    Returns (problems, number of layers found); no problems means every layer matched."""
    was_training = module.training
    module.eval()  # the probe must not move BatchNorm's running statistics
    order = ordered_layers(module, (probe,))
    module.train(was_training)
    problems = []
    if len(order) != len(states):
        problems.append(
            f"{len(order)} parametrised layers are used in forward, the reference uses {len(states)}"
        )
    with torch.no_grad():
        for i, (mod, state) in enumerate(zip(order, states)):
            for name, tensor in state.items():
                own = getattr(mod, name, None)
                if not isinstance(own, torch.Tensor):
                    problems.append(f"layer {i + 1} ({type(mod).__name__}) has no {name}")
                elif own.shape != tensor.shape:
                    problems.append(
                        f"layer {i + 1} ({type(mod).__name__}) {name} has shape "
                        f"{list(own.shape)}, the reference {list(tensor.shape)}"
                    )
                else:
                    own.copy_(tensor)
    return problems, len(order)
