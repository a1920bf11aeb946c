"""A short, seeded training run: the same loop trains the student's model in the child and
the reference in the parent, so their loss curves can be compared.

Everything the run needs travels as plain data; what it returns is plain data too (losses,
which parameters changed, a few predictions for pictures).
"""

from __future__ import annotations

import hashlib
import time

import torch
from torch import nn


def parameter_digests(module: nn.Module) -> dict[str, str]:
    """A short digest of every parameter's bytes: 'bit-identical' means the same digest."""
    out = {}
    for name, p in module.named_parameters():
        data = p.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        out[name] = hashlib.blake2b(data.tobytes(), digest_size=8).hexdigest()
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
) -> dict:
    torch.manual_seed(seed)
    module.to(device)
    module.train()
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("no parameter of the model requires a gradient, so nothing can train")
    before = parameter_digests(module)
    requires_grad = {n: p.requires_grad for n, p in module.named_parameters()}
    optimizer = torch.optim.Adam(trainable, lr=lr)
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
    after = parameter_digests(module)
    module.eval()
    with torch.no_grad():
        out = module(inputs[:preview].to(device))
        if output_key is not None and isinstance(out, dict):
            out = out[output_key]
        predictions = out.argmax(dim=1).to(torch.uint8).cpu()
    return {
        "losses": losses,
        "changed": sorted(n for n in after if after[n] != before.get(n)),
        "unchanged": sorted(n for n in after if after[n] == before.get(n)),
        "requires_grad": requires_grad,
        "predictions": predictions,
        "seconds": seconds,
        "device": device,
    }
