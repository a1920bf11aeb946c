"""W2022 Part D.2, reference: a stand-in for the YOLOv3 tree's `utils/loss.py`, written for
the grader (the tree is GPL-3.0 and is not copied here). The grader reads only the statement
defining `BCEcls` in `ComputeLoss.__init__` and the `lcls` update in `ComputeLoss.__call__`
(family.toml [file_regions]) and runs them in assignments/pa2/public/yolo_harness.py, whose
LossHarness plays the rest of ComputeLoss, as it does with a student's file."""

import torch
import torch.nn as nn


class ComputeLoss:
    def __init__(self, model, autobalance=False):
        device = next(model.parameters()).device
        h = model.hyp

        BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["cls_pw"]], device=device))
        self.BCEcls = BCEcls

    def __call__(self, p, targets):
        device = targets.device
        lcls = torch.zeros(1, device=device)
        for i, pi in enumerate(p):
            ps, t = self.matched(pi, targets, i)
            if len(ps):
                lcls += self.BCEcls(ps[:, 5:], t)
        lcls *= self.hyp["cls"]
        return lcls
