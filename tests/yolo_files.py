"""W2022 Part D submissions for tests: `train.py` and `utils/loss.py` as a student hands them
in, written for these tests from the handout's description (the real files belong to a
GPL-3.0 YOLOv3 tree and are not copied): the same functions, the same three marked places,
the same names around them, and a module level the grader must never run (imports of the
tree's own modules, a W&B login, a download). `starter_*()` are the files as handed out;
the keyword arguments put a student's code in the marked places.

A W2022 submission folder holds the notebook and the two files, in the tree's layout
(`utils/loss.py`), flat (Gradescope's upload), or deep in a Colab clone.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from submissions import REPO

W2022_REFERENCE_NOTEBOOK = REPO / "reference" / "pa2-w2022" / "a2-code.ipynb"
W2022_TEMPLATE_NOTEBOOK = REPO / "student_template" / "pa2-w2022" / "a2-code.ipynb"
W2021_REFERENCE_NOTEBOOK = REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb"
W2021_TEMPLATE_NOTEBOOK = REPO / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"

TRAIN_HEAD = '''\
"""Train a YOLOv3 model on a custom dataset (stand-in written for the grader's tests)."""
import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml

import val  # the tree's own module: importing this file outside the tree fails
from models.yolo import Model
from utils.downloads import attempt_download
from utils.general import LOGGER, check_dataset, check_git_status, init_seeds
from utils.loss import ComputeLoss

RANK = int(os.getenv("RANK", -1))


def train(hyp,  # path/to/hyp.yaml or hyp dictionary
          opt,
          device,
          callbacks
          ):
    save_dir, epochs, batch_size, weights, freeze = \\
        Path(opt.save_dir), opt.epochs, opt.batch_size, opt.weights, opt.freeze

    if isinstance(hyp, str):
        with open(hyp, errors="ignore") as f:
            hyp = yaml.safe_load(f)
    init_seeds(1 + RANK)
    data_dict = check_dataset(opt.data)
    nc = int(data_dict["nc"])

    weights = attempt_download(weights)
    ckpt = torch.load(weights, map_location=device)
    model = Model(opt.cfg or ckpt["model"].yaml, ch=3, nc=nc).to(device)
    model.load_state_dict(ckpt["model"].float().state_dict(), strict=False)

    # Freeze
    freeze = [f"model.{x}." for x in range(freeze)]  # the layers to freeze
    for k, v in model.named_parameters():
'''

TRAIN_STARTER_BODY = """\
        # --- YOUR CODE GOES HERE ---
        pass
        # ---------------------------
"""

TRAIN_TAIL = """
    g0, g1, g2 = [], [], []
    for v in model.modules():
        if hasattr(v, "bias") and isinstance(v.bias, nn.Parameter):
            g2.append(v.bias)
        if isinstance(v, nn.BatchNorm2d):
            g0.append(v.weight)
        elif hasattr(v, "weight") and isinstance(v.weight, nn.Parameter):
            g1.append(v.weight)
    optimizer = torch.optim.SGD(g0, lr=hyp["lr0"], momentum=hyp["momentum"], nesterov=True)
    optimizer.add_param_group({"params": g1, "weight_decay": hyp["weight_decay"]})
    optimizer.add_param_group({"params": g2})

    hyp["label_smoothing"] = opt.label_smoothing
    model.hyp = hyp
    compute_loss = ComputeLoss(model)
    for epoch in range(epochs):
        model.train()
    return model


def parse_opt(known=False):
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=str, default="yolov3.pt")
    parser.add_argument("--freeze", type=int, default=0, help="layers to freeze: backbone=10, all=24")
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    return parser.parse_known_args()[0] if known else parser.parse_args()


def main(opt):
    check_git_status()
    import wandb

    wandb.login()
    train(opt.hyp, opt, torch.device("cpu"), None)


if __name__ == "__main__":
    main(parse_opt())
"""

LOSS_HEAD = '''\
"""Loss functions (stand-in written for the grader's tests)."""

import torch
import torch.nn as nn

from utils.metrics import bbox_iou
from utils.torch_utils import is_parallel


def smooth_BCE(eps=0.1):
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
        super().__init__()
        self.loss_fcn, self.gamma, self.alpha = loss_fcn, gamma, alpha
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = "none"

    def forward(self, pred, true):
        loss = self.loss_fcn(pred, true)
        prob = torch.sigmoid(pred)
        p_t = true * prob + (1 - true) * (1 - prob)
        loss *= (true * self.alpha + (1 - true) * (1 - self.alpha)) * (1.0 - p_t) ** self.gamma
        return loss.mean() if self.reduction == "mean" else loss.sum()


class ComputeLoss:
    # Compute losses
    def __init__(self, model, autobalance=False):
        self.sort_obj_iou = False
        device = next(model.parameters()).device  # get model device
        h = model.hyp  # hyperparameters

        # Define loss criteria
'''

LOSS_STARTER_CRITERION = """\
        # --- YOUR CODE GOES HERE ---
        BCEcls = None
        # ---------------------------
"""

LOSS_MIDDLE = """\
        BCEobj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["obj_pw"]], device=device))

        self.cp, self.cn = smooth_BCE(eps=h.get("label_smoothing", 0.0))

        g = h["fl_gamma"]
        if g > 0:
            BCEcls, BCEobj = FocalLoss(BCEcls, g), FocalLoss(BCEobj, g)

        det = model.module.model[-1] if is_parallel(model) else model.model[-1]
        self.balance = [4.0, 1.0, 0.4]
        self.BCEcls, self.BCEobj, self.gr, self.hyp, self.autobalance = BCEcls, BCEobj, 1.0, h, autobalance
        for k in "na", "nc", "nl", "anchors":
            setattr(self, k, getattr(det, k))

    def __call__(self, p, targets):  # predictions, targets, model
        device = targets.device
        lcls, lbox, lobj = (torch.zeros(1, device=device) for _ in range(3))
        tcls, tbox, indices, anchors = self.build_targets(p, targets)

        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros_like(pi[..., 0], device=device)
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                pbox = torch.cat((pxy, pwh), 1)
                iou = bbox_iou(pbox.T, tbox[i], x1y1x2y2=False, CIoU=True)
                lbox += (1.0 - iou).mean()
                tobj[b, a, gj, gi] = (1.0 - self.gr) + self.gr * iou.detach().clamp(0).type(tobj.dtype)

                # Classification
                if self.nc > 1:  # cls loss (only if multiple classes)
                    t = torch.full_like(ps[:, 5:], self.cn, device=device)  # targets
                    t[range(n), tcls[i]] = self.cp
"""

LOSS_STARTER_UPDATE = """\
                    # --- YOUR CODE GOES HERE ---
                    lcls += 0 \n\
                    # ---------------------------
"""

LOSS_TAIL = """
            obji = self.BCEobj(pi[..., 4], tobj)
            lobj += obji * self.balance[i]

        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = tobj.shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, p, targets):
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=targets.device)
        for i in range(self.nl):
            gain[2:6] = torch.tensor(p[i].shape)[[3, 2, 3, 2]]
            t = targets * gain
            b, c = t[:, :2].long().T
            gij = t[:, 2:4].long()
            gi, gj = gij.T
            a = torch.zeros_like(b)
            indices.append((b, a, gj.clamp_(0, gain[3] - 1), gi.clamp_(0, gain[2] - 1)))
            tbox.append(torch.cat((t[:, 2:4] - gij, t[:, 4:6]), 1))
            anch.append(self.anchors[i][a])
            tcls.append(c)
        return tcls, tbox, indices, anch
"""


def _block(code: str | None, indent: int, starter: str) -> str:
    if code is None:
        return starter
    return textwrap.indent(textwrap.dedent(code).strip("\n"), " " * indent) + "\n"


def train_py(loop_body: str | None = None, *, loop: str | None = None) -> str:
    """train.py with `loop_body` in the freezing loop (indented 8 spaces unless written with
    its own indentation inside `loop`, which replaces the whole `for` statement)."""
    if loop is not None:
        head = TRAIN_HEAD.rsplit("    for k, v in model.named_parameters():\n", 1)[0]
        return head + textwrap.indent(textwrap.dedent(loop).strip("\n"), "    ") + "\n" + TRAIN_TAIL
    return TRAIN_HEAD + _block(loop_body, 8, TRAIN_STARTER_BODY) + TRAIN_TAIL


def loss_py(criterion: str | None = None, update: str | None = None) -> str:
    """utils/loss.py with `criterion` where `BCEcls = None` was and `update` where `lcls += 0` was."""
    return (
        LOSS_HEAD
        + _block(criterion, 8, LOSS_STARTER_CRITERION)
        + LOSS_MIDDLE
        + _block(update, 20, LOSS_STARTER_UPDATE)
        + LOSS_TAIL
    )


def starter_train_py() -> str:
    return train_py()


def starter_loss_py() -> str:
    return loss_py()


# The answers as a student writes them (what the handout's hints lead to).
CORRECT_LOOP = """\
if any(x in k for x in freeze):
  v.requires_grad = False
else:
  v.requires_grad = True
"""  # the real submission's 2-space style inside the 8-space block
CORRECT_CRITERION = "BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h['cls_pw']], device=device))"
CORRECT_UPDATE = "lcls += self.BCEcls(ps[:, 5:], t)"


def correct_train_py() -> str:
    return train_py(CORRECT_LOOP)


def correct_loss_py() -> str:
    return loss_py(CORRECT_CRITERION, CORRECT_UPDATE)


def w2022_folder(
    folder: Path,
    *,
    train: str | None = None,
    loss: str | None = None,
    layout: str = "tree",
    notebook: Path = W2022_REFERENCE_NOTEBOOK,
) -> Path:
    """A W2022 submission folder: the notebook and the files (None leaves one out).
    layout: "tree" (train.py, utils/loss.py), "flat" (Gradescope's upload), "colab" (the
    notebook beside a clone of the course repository, the files deep inside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(notebook, folder / "a2-code.ipynb")
    base = folder / "2022" / "assets" / "assignments" / "pa2-q4-files" if layout == "colab" else folder
    places = {"train": base / "train.py", "loss": base / ("loss.py" if layout == "flat" else "utils/loss.py")}
    for key, text in (("train", train), ("loss", loss)):
        if text is not None:
            places[key].parent.mkdir(parents=True, exist_ok=True)
            places[key].write_text(text)
    if layout == "colab":  # the rest of a clone: other modules the grader must leave alone
        (base / "val.py").write_text("import wandb\nwandb.login()\n")
        (base / "utils").mkdir(parents=True, exist_ok=True)
        (base / "utils" / "__init__.py").write_text("")
        (base / "models").mkdir(exist_ok=True)
        (base / "models" / "yolo.py").write_text("raise ImportError('needs the whole tree')\n")
    return folder


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the first line of `text` that contains `fragment`."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if fragment in line)
