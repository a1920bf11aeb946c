"""A short, seeded training run: the same loop trains the student's model in the child and
the reference in the parent, so their loss curves can be compared.

Everything the run needs travels as plain data; what it returns is plain data too (losses,
which parameters changed, a few predictions for pictures).
"""

from __future__ import annotations

import importlib
import inspect
import time
import zlib

import torch
from torch import nn

from grader.engine.layers import own_named_parameters

DEFAULT_OPTIMIZER = "torch.optim.Adam"


def resolve_torch_name(name: str, namespace: str = "torch."):
    """The object a dotted name such as "torch.nn.CrossEntropyLoss" names, looked up only
    under `namespace`: a request names library code and must reach nothing else (not even
    through a module torch imports, such as torch.os)."""
    root = namespace.rstrip(".")
    if not isinstance(name, str) or not name.startswith(namespace):
        raise ValueError(f"{name!r} is not a name under {root}")
    parts = name.split(".")
    if not all(p.isidentifier() and not p.startswith("_") for p in parts):
        raise ValueError(f"{name!r} is not a public name under {root}")
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            found = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attr in parts[split:]:
            if not hasattr(found, attr):
                break
            found = getattr(found, attr)
            home = found.__name__ if inspect.ismodule(found) else getattr(found, "__module__", None)
            if not isinstance(home, str) or not (home == "torch" or home.startswith("torch.")):
                raise ValueError(f"{name!r} reaches outside torch")
        else:
            return found
        break
    raise ValueError(f"{name!r} names nothing under {root}")


def optimizer_class(optimizer) -> type:
    """A torch.optim optimizer class, given as itself or as its dotted name."""
    cls = resolve_torch_name(optimizer, "torch.optim.") if isinstance(optimizer, str) else optimizer
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{optimizer!r} is not a torch.optim optimizer class")
    return cls


def training_loss(loss: str, options: dict | None = None, student_function=None):
    """The loss a training request names: a dotted name under `torch.` (a class is built with
    `options`, a function is used as it is), else `student_function(loss)`, the student's."""
    if not isinstance(loss, str):
        raise ValueError(f"the loss must be given by name, not as {type(loss).__name__}")
    if "." not in loss:  # a student's function name is an identifier: a dotted one is torch's
        if student_function is None:
            raise ValueError(f"{loss!r} is not a dotted name under torch")
        return student_function(loss)
    found = resolve_torch_name(loss)
    if isinstance(found, type):
        return found(**(options or {}))
    if options:
        raise ValueError(f"loss options are for a loss class, and {loss} is a function")
    if not callable(found):
        raise ValueError(f"{loss} is neither a loss class nor a function")
    return found


def prediction_dtype(classes: int) -> torch.dtype:
    """The smallest integer dtype that holds class indices 0..classes-1: predictions travel
    over the wire, and uint8 would wrap above 256 classes."""
    for dtype in (torch.uint8, torch.int16, torch.int32):
        if classes - 1 <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


DIGEST_WINDOW_BYTES = 1 << 20  # how much of a copy-on-write parameter a digest reads at once


def _shares_bytes(tensor: torch.Tensor) -> bool:
    """Whether `tensor`'s bytes are shared copy-on-write (grader.engine.recipes.copy_of) and
    not yet written to."""
    is_cow = getattr(torch._C, "_is_cow_tensor", None)
    return bool(is_cow is not None and is_cow(tensor))


def parameter_digests(module: nn.Module, earlier: dict[str, str] | None = None) -> dict[str, str]:
    """A short digest of every parameter's bytes: 'bit-identical' means the same digest.
    CRC-32 and Adler-32 together (64 bits): no adversary is kept out by it (the child computes
    it, and its report is a claim the grader verifies otherwise), so it needs to tell an honest
    change only, at five times blake2b's speed (a tenth of a second per digest of D.1's model).
    `earlier`: this module's digests taken before, kept for each copy-on-write parameter
    still unwritten (one written since has a copy of its own), without reading it again."""
    out = {}
    window = None
    for name, p in own_named_parameters(module):
        data = p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        shared = _shares_bytes(data)
        if shared and earlier is not None and name in earlier:
            out[name] = earlier[name]
            continue
        if not shared:
            array = data.numpy()  # read in place, not copied
            out[name] = f"{zlib.crc32(array):08x}{zlib.adler32(array):08x}"
            continue
        # A copy-on-write clone (grader.engine.recipes.copy_of): numpy() would give it a copy
        # of its own (as a write would). Read it through a small window instead; the digests
        # are the same as of the whole.
        if window is None:
            window = torch.empty(DIGEST_WINDOW_BYTES, dtype=torch.uint8)
        crc, adler = 0, 1
        for start in range(0, data.numel(), DIGEST_WINDOW_BYTES):
            piece = data[start : start + DIGEST_WINDOW_BYTES]
            array = window[: piece.numel()].copy_(piece).numpy()
            crc, adler = zlib.crc32(array, crc), zlib.adler32(array, adler)
        out[name] = f"{crc:08x}{adler:08x}"
    return out


def run_training(
    module: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str = "cpu",
    output_key: str | None = None,
    preview: int = 4,
    optimizer=DEFAULT_OPTIMIZER,
    optimizer_options: dict | None = None,
    track_changes: bool = True,
) -> dict:
    """Train `module` for `steps` steps with `loss_fn(output, target)` and `optimizer` (a
    torch.optim class or its dotted name, built with lr and `optimizer_options`).
    `track_changes`: say which parameters changed (a digest of every parameter before and
    after: a tenth of a second for a large model); the grader's own runs need no such list."""
    torch.manual_seed(seed)
    nn.Module.to(module, device)
    nn.Module.train(module, True)
    # What trains is read from the module tree's own storage: an object that replaced its own
    # parameters() or named_parameters() trains as it really is (grader.engine.layers).
    named = own_named_parameters(module)
    trainable = [p for _, p in named if p.requires_grad]
    if not trainable:
        raise ValueError("no parameter of the model requires a gradient, so nothing can train")
    before = parameter_digests(module) if track_changes else {}
    requires_grad = {n: p.requires_grad for n, p in named}
    optimizer = optimizer_class(optimizer)(trainable, lr=lr, **(optimizer_options or {}))
    order = torch.randperm(len(inputs), generator=torch.Generator().manual_seed(seed))
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        start = (step * batch_size) % len(inputs)
        idx = order[start : start + batch_size]
        if len(idx) < batch_size:  # wrap around so every step sees a full batch
            idx = torch.cat([idx, order[: batch_size - len(idx)]])
        x, y = inputs[idx].to(device), targets[idx].to(device)
        out = module(x)
        if output_key is not None and isinstance(out, dict):
            out = out[output_key]
        loss = loss_fn(out, y)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"the loss is {type(loss).__name__}, not a single-number tensor")
        losses.append(float(loss.detach()))
        if not torch.isfinite(loss.detach()):
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    after = parameter_digests(module, earlier=before) if track_changes else {}
    nn.Module.train(module, False)
    with torch.no_grad():
        out = module(inputs[:preview].to(device))
        if output_key is not None and isinstance(out, dict):
            out = out[output_key]
        predictions = out.argmax(dim=1).to(prediction_dtype(out.shape[1])).cpu()
    return {
        "losses": losses,
        "changed": sorted(n for n in after if after[n] != before.get(n)),
        "unchanged": sorted(n for n in after if after[n] == before.get(n)),
        "requires_grad": requires_grad,
        "predictions": predictions,
        "seconds": seconds,
        "device": device,
    }
