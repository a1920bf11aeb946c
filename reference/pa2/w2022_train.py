"""W2022 Part D.1, reference: a stand-in for the YOLOv3 tree's `train.py`, written for the
grader (the tree is GPL-3.0 and is not copied here). The grader reads only the loop over
`model.named_parameters()` in `train` (grader.engine.fileregions; family.toml [file_regions]) and
runs it in assignments/pa2/public/yolo_harness.py, as it does with a student's file. The rest
is what that loop sits in: `freeze` comes from `--freeze` (10 in the notebook's run)."""

import torch


def train(hyp, opt, device, callbacks):
    freeze = opt.freeze
    model = opt.model.to(device)

    # Freeze
    freeze = [f"model.{x}." for x in range(freeze)]
    for k, v in model.named_parameters():
        v.requires_grad = not any(x in k for x in freeze)

    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=hyp["lr0"])
