"""W2022 Part D: the trusted stand-ins the student's YOLOv3 lines are transplanted into.

W2022's students edit two files of a third-party YOLOv3 tree (GPL-3.0, never copied here):
the body of `for k, v in model.named_parameters():` in `train.py`'s `train` (D.1, freezing)
and, in `utils/loss.py`'s `ComputeLoss`, the statement defining `BCEcls` and the one adding
the class loss to `lcls` (D.2). The grader never imports those files (their module level
downloads, logs in to W&B and checks git; the tree's own target builder fails on current
torch). It takes only those statements (grader.engine.fileregions) and runs them inside this module,
written for the grader from the handout's description:

* `StandInYolo`: a small network with exactly the parameter names of the handout's
  `Model('models/yolov3.yaml')` (222 tensors, `model.0.` to `model.28.`; `model.0.` to
  `model.9.` are the Darknet-53 backbone, 132 tensors) at a tiny width;
* `freeze_step`: builds `freeze` as `train` does, runs the student's loop, then one plain
  gradient step, and reports the flags and every parameter after the step;
* `LossHarness`: binary cross-entropy on logits for the 80 classes of the predictions matched
  to targets, with smoothed targets `cp`/`cn`, summed over the three detection layers and
  scaled by `h['cls']`; box and objectness terms of the same shape as the tree's (simpler
  target assignment: one cell per target and anchor), all driven by the hyper-parameters.

The module is self-contained (torch and the standard library only): the sandbox child gets
its source, never a file path, and the parent imports it for the same computations with the
reference's statements. It holds no answer: the statements come from the submission or from
the reference files.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NUM_CLASSES = 80
OUTPUTS = NUM_CLASSES + 5  # x, y, w, h, objectness, then one logit per class
ANCHORS_PIXELS = [  # three anchors (w, h) per detection layer, in pixels, as the handout's config
    [(10, 13), (16, 30), (33, 23)],
    [(30, 61), (62, 45), (59, 119)],
    [(116, 90), (156, 198), (373, 326)],
]
STRIDES = [8, 16, 32]
# The handout's default hyper-parameters (data/hyps/hyp.scratch.yaml) that the loss reads;
# train.py adds label_smoothing (its --label-smoothing, 0.0 by default).
DEFAULT_HYP = {
    "box": 0.05,
    "cls": 0.5,
    "cls_pw": 1.0,
    "obj": 1.0,
    "obj_pw": 1.0,
    "anchor_t": 4.0,
    "fl_gamma": 0.0,
    "label_smoothing": 0.0,
}

# -- the stand-in network ---------------------------------------------------------------------
# The handout's yolov3.yaml as (inputs, repeats, block, channels at full width, extra): inputs
# -1 is the previous layer; a block repeated n > 1 times sits in an nn.Sequential, which puts
# an index into its parameter names (`model.4.1.cv2.conv.weight`). Channels are divided by
# WIDTH_DIVISOR: the names and the structure are the handout's, the size is not.
LAYERS = [
    (-1, 1, "conv", 32, (3, 1)),  # 0
    (-1, 1, "conv", 64, (3, 2)),  # 1
    (-1, 1, "bottleneck", 64, True),  # 2
    (-1, 1, "conv", 128, (3, 2)),  # 3
    (-1, 2, "bottleneck", 128, True),  # 4
    (-1, 1, "conv", 256, (3, 2)),  # 5: stride 8
    (-1, 8, "bottleneck", 256, True),  # 6
    (-1, 1, "conv", 512, (3, 2)),  # 7: stride 16
    (-1, 8, "bottleneck", 512, True),  # 8
    (-1, 1, "conv", 1024, (3, 2)),  # 9: stride 32, the last backbone layer `--freeze 10` freezes
    (-1, 4, "bottleneck", 1024, True),  # 10
    (-1, 1, "bottleneck", 1024, False),  # 11: the head
    (-1, 1, "conv", 512, (1, 1)),  # 12
    (-1, 1, "conv", 1024, (3, 1)),  # 13
    (-1, 1, "conv", 512, (1, 1)),  # 14
    (-1, 1, "conv", 1024, (3, 1)),  # 15: large objects
    (-2, 1, "conv", 256, (1, 1)),  # 16
    (-1, 1, "upsample", None, None),  # 17
    ((-1, 8), 1, "concat", None, None),  # 18
    (-1, 1, "bottleneck", 512, False),  # 19
    (-1, 1, "bottleneck", 512, False),  # 20
    (-1, 1, "conv", 256, (1, 1)),  # 21
    (-1, 1, "conv", 512, (3, 1)),  # 22: medium objects
    (-2, 1, "conv", 128, (1, 1)),  # 23
    (-1, 1, "upsample", None, None),  # 24
    ((-1, 6), 1, "concat", None, None),  # 25
    (-1, 1, "bottleneck", 256, False),  # 26
    (-1, 2, "bottleneck", 256, False),  # 27: small objects
    ((27, 22, 15), 1, "detect", None, None),  # 28
]
WIDTH_DIVISOR = 32


class Conv(nn.Module):
    """Convolution without bias, batch norm, SiLU: parameters `conv.weight`, `bn.weight`, `bn.bias`."""

    def __init__(self, c_in, c_out, kernel=1, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """1x1 to half the channels, 3x3 back; a residual sum when shapes allow and it is asked."""

    def __init__(self, c_in, c_out, shortcut=True):
        super().__init__()
        hidden = max(c_out // 2, 1)
        self.cv1 = Conv(c_in, hidden, 1)
        self.cv2 = Conv(hidden, c_out, 3)
        self.residual = shortcut and c_in == c_out

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.residual else y


class Concat(nn.Module):
    def forward(self, xs):
        return torch.cat(xs, 1)


class Detect(nn.Module):
    """One 1x1 convolution per detection layer (parameters `m.<i>.weight`, `m.<i>.bias`); in
    training mode each output is [B, anchors, H, W, 85], as ComputeLoss receives it."""

    def __init__(self, channels):
        super().__init__()
        self.nc, self.no, self.nl, self.na = NUM_CLASSES, OUTPUTS, len(channels), len(ANCHORS_PIXELS[0])
        self.stride = torch.tensor(STRIDES, dtype=torch.float32)
        # In grid units, as the tree's Model leaves them after dividing by the strides.
        anchors = torch.tensor(ANCHORS_PIXELS, dtype=torch.float32) / self.stride.view(-1, 1, 1)
        self.register_buffer("anchors", anchors)
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)

    def forward(self, xs):
        out = []
        for conv, x in zip(self.m, xs):
            b, _, h, w = x.shape
            out.append(conv(x).view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return out


class StandInYolo(nn.Module):
    def __init__(self):
        super().__init__()
        widths, layers, self.inputs = [], [], []
        for index, (source, repeats, kind, channels, extra) in enumerate(LAYERS):
            before = widths[source] if isinstance(source, int) and widths else 3
            if kind == "conv":
                width = max(channels // WIDTH_DIVISOR, 1)
                block = Conv(before, width, *extra)
            elif kind == "bottleneck":
                width = max(channels // WIDTH_DIVISOR, 1)
                blocks = [Bottleneck(before if i == 0 else width, width, extra) for i in range(repeats)]
                block = nn.Sequential(*blocks) if repeats > 1 else blocks[0]
            elif kind == "upsample":
                width, block = before, nn.Upsample(scale_factor=2, mode="nearest")
            elif kind == "concat":
                width, block = sum(widths[j] for j in source), Concat()
            else:
                width, block = 0, Detect([widths[j] for j in source])
            widths.append(width)
            layers.append(block)
            self.inputs.append(source)
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        outputs = []
        for source, layer in zip(self.inputs, self.model):
            if isinstance(source, int):
                x = layer(outputs[source] if source != -1 else x)
            else:
                x = layer([outputs[j] if j != -1 else x for j in source])
            outputs.append(x)
        return x


def build_model(seed: int) -> StandInYolo:
    """The stand-in in float64 (so a gradient step is compared to 1e-9), from `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return StandInYolo().double()


def parameter_names() -> list[str]:
    return [name for name, _ in nn.Module.named_parameters(StandInYolo())]


# -- D.1: the freezing loop -------------------------------------------------------------------
STEP_LR = 0.5
STEP_IMAGE = 64  # detection grids 8, 4, 2


class _Logger:
    """The tree's LOGGER, for loops that log what they freeze."""

    def info(self, *args, **kwargs):
        pass

    warning = debug = error = info


def freeze_scope(model, freeze_count: int) -> dict:
    """What the loop sees in `train`: the model, `freeze` built as `train` builds it from
    `--freeze`, the logger, and the imports train.py has."""
    return {
        "model": model,
        "freeze": [f"model.{x}." for x in range(freeze_count)],
        "LOGGER": _Logger(),
        "torch": torch,
        "nn": nn,
        "math": math,
        "device": torch.device("cpu"),
    }


def _step_loss(model, seed: int):
    """A loss every parameter has a gradient of: the detection outputs weighed by fixed random
    numbers, on random images (train mode: batch statistics)."""
    g = torch.Generator().manual_seed(seed + 1)
    images = torch.randn(2, 3, STEP_IMAGE, STEP_IMAGE, generator=g, dtype=torch.float64)
    nn.Module.train(model)  # the class's method: not one the loop put on the instance
    outputs = model(images)
    return sum((out * torch.randn(out.shape, generator=g, dtype=torch.float64)).sum() for out in outputs)


def freeze_step(regions, freeze_count: int, seed: int) -> dict:
    """In the sandbox child: build the stand-in from `seed`, run the student's loop (the
    region `freeze_loop`), report each parameter's requires_grad, then take one gradient step
    on the parameters that require it and report every parameter's value afterwards."""
    model = build_model(seed)
    regions["freeze_loop"](freeze_scope(model, freeze_count))
    named = list(nn.Module.named_parameters(model))  # the class's method: not one the loop replaced
    flags = {name: bool(p.requires_grad) for name, p in named}
    trainable = [p for _, p in named if p.requires_grad]
    if trainable:
        grads = torch.autograd.grad(_step_loss(model, seed), trainable, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(trainable, grads):
                if g is not None:
                    p -= STEP_LR * g
    return {"flags": flags, "after": {name: p.detach().clone() for name, p in named}}


def step_reference(seed: int) -> tuple[dict, dict]:
    """In the parent, with no student code: every parameter's value before the step and after
    a step that trains it (all of them trainable). A frozen parameter must end where it began,
    a trained one where this step leaves it: the gradient of one parameter does not depend on
    which others are frozen."""
    model = build_model(seed)
    named = list(nn.Module.named_parameters(model))
    before = {name: p.detach().clone() for name, p in named}
    grads = torch.autograd.grad(_step_loss(model, seed), [p for _, p in named])
    trained = {name: before[name] - STEP_LR * g for (name, _), g in zip(named, grads)}
    return before, trained


# -- D.2: the class loss ------------------------------------------------------------------------
class FocalLoss(nn.Module):
    """The focal-loss wrapper ComputeLoss puts around both criteria when h['fl_gamma'] > 0. As
    the tree's, it takes over the wrapped loss's `reduction` (so it needs a real loss module
    such as nn.BCEWithLogitsLoss) and weighs each element by alpha and (1 - p_t) ** gamma."""

    def __init__(self, loss_fcn, gamma=1.5, alpha=0.25):
        super().__init__()
        self.loss_fcn, self.gamma, self.alpha = loss_fcn, gamma, alpha
        self.reduction = loss_fcn.reduction
        loss_fcn.reduction = "none"

    def forward(self, pred, true):
        loss = self.loss_fcn(pred, true)
        prob = torch.sigmoid(pred)
        p_t = true * prob + (1 - true) * (1 - prob)
        weight = (true * self.alpha + (1 - true) * (1 - self.alpha)) * (1.0 - p_t) ** self.gamma
        loss = loss * weight
        if self.reduction == "mean":
            return loss.mean()
        return loss.sum() if self.reduction == "sum" else loss


def smooth_BCE(eps=0.1):  # noqa: N802 (the tree's name, which student lines may call)
    """Label smoothing: the positive and the negative target."""
    return 1.0 - 0.5 * eps, 0.5 * eps


def _box_iou(a, b):
    """IoU of boxes given as (centre x, centre y, w, h), row by row."""
    a1, a2 = a[:, :2] - a[:, 2:] / 2, a[:, :2] + a[:, 2:] / 2
    b1, b2 = b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(0).prod(1)
    union = a[:, 2:].prod(1) + b[:, 2:].prod(1) - inter + 1e-7
    return inter / union


class LossHarness:
    """ComputeLoss as the handout describes it, with the two student statements in their
    places: `BCEcls` in __init__ (region `cls_criterion`), the `lcls` update for each
    detection layer with matched targets (region `cls_update`)."""

    def __init__(self, model, regions):
        self.regions = regions
        device = next(model.parameters()).device
        h = model.hyp
        scope = self._scope(self=self, model=model, autobalance=False, device=device, h=h)
        regions["cls_criterion"](scope)
        BCEcls = scope.get("BCEcls")  # noqa: N806 (the tree's names)
        BCEobj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h["obj_pw"]], device=device))  # noqa: N806
        self.cp, self.cn = smooth_BCE(eps=h.get("label_smoothing", 0.0))
        if h["fl_gamma"] > 0:
            BCEcls, BCEobj = FocalLoss(BCEcls, h["fl_gamma"]), FocalLoss(BCEobj, h["fl_gamma"])  # noqa: N806
        detect = model.model[-1]
        self.balance = [4.0, 1.0, 0.4]
        self.BCEcls, self.BCEobj, self.hyp, self.gr = BCEcls, BCEobj, h, 1.0
        self.na, self.nc, self.nl, self.anchors = detect.na, detect.nc, detect.nl, detect.anchors

    @staticmethod
    def _scope(**names) -> dict:
        base = {"torch": torch, "nn": nn, "math": math, "FocalLoss": FocalLoss, "smooth_BCE": smooth_BCE}
        return base | names

    def __call__(self, p, targets):
        device = targets.device
        lcls, lbox, lobj = (torch.zeros(1, device=device, dtype=p[0].dtype) for _ in range(3))
        tcls, tbox, indices, anchors = self.build_targets(p, targets)
        for i, pi in enumerate(p):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros_like(pi[..., 0])
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                pbox = torch.cat((pxy, pwh), 1)
                iou = _box_iou(pbox, tbox[i])
                lbox += (1.0 - iou).mean()
                score_iou = iou.detach().clamp(0).type(tobj.dtype)
                tobj[b, a, gj, gi] = (1.0 - self.gr) + self.gr * score_iou
                if self.nc > 1:
                    t = torch.full_like(ps[:, 5:], self.cn)
                    t[range(n), tcls[i]] = self.cp
                    scope = self._scope(**{k: v for k, v in locals().items() if k != "scope"})
                    self.regions["cls_update"](scope)
                    lcls = scope.get("lcls")
            lobj += self.BCEobj(pi[..., 4], tobj) * self.balance[i]
        lbox *= self.hyp["box"]
        lobj *= self.hyp["obj"]
        lcls *= self.hyp["cls"]
        bs = tobj.shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, p, targets):
        """Each target (image, class, x, y, w, h; coordinates in [0, 1]) goes, in each layer,
        to every anchor whose shape is within a factor anchor_t of its own, at the grid cell
        holding its centre."""
        tcls, tbox, indices, anch = [], [], [], []
        for i in range(self.nl):
            _, _, ny, nx, _ = p[i].shape
            gain = torch.tensor([nx, ny], dtype=targets.dtype, device=targets.device)
            anchors = self.anchors[i].to(targets.dtype)
            gxy = targets[:, 2:4] * gain
            gwh = targets[:, 4:6] * gain
            ratio = gwh[None] / anchors[:, None]  # [anchors, targets, 2]
            keep = torch.max(ratio, 1 / ratio).max(2).values < self.hyp["anchor_t"]
            a, k = keep.nonzero(as_tuple=True)
            cell = gxy[k].long()
            gi = cell[:, 0].clamp(0, nx - 1)
            gj = cell[:, 1].clamp(0, ny - 1)
            b = targets[k, 0].long()
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy[k] - torch.stack((gi, gj), 1), gwh[k]), 1))
            anch.append(anchors[a])
            tcls.append(targets[k, 1].long())
        return tcls, tbox, indices, anch


def predictions(seed: int, batch: int = 2, grids=(8, 4, 2)) -> list:
    """Detection outputs [B, 3, H, W, 85] for three layers, from `seed` (the same on every
    machine: the stored cases keep only the seed)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, s, s, OUTPUTS, generator=g) * 1.5 for s in grids]


def loss_model(hyp: dict, model: StandInYolo | None = None) -> StandInYolo:
    """What ComputeLoss(model) reads: its parameters' device, `model.hyp`, the Detect layer.
    A new stand-in from seed 0, or `model` (one made by build_model(0)) given the hyper-parameters."""
    model = build_model(0) if model is None else model
    model.hyp = dict(DEFAULT_HYP) | dict(hyp)
    return model


def criterion_summary(criterion) -> dict:
    """What BCEcls is (for feedback only): its type, reduction and positive weight."""
    inner = getattr(criterion, "loss_fcn", None) if isinstance(criterion, FocalLoss) else criterion
    pos_weight = getattr(inner, "pos_weight", None)
    return {
        "type": type(inner).__name__,
        "reduction": str(getattr(criterion, "reduction", "")),
        "pos_weight": pos_weight.detach().reshape(-1).tolist()
        if isinstance(pos_weight, torch.Tensor)
        else None,
    }


def class_loss(regions, p, targets, hyp, grad=False, model=None) -> dict:
    """In the sandbox child (and in the parent for the reference): ComputeLoss(model)(p,
    targets) with the student's statements; the total loss, its three items and, with `grad`,
    the gradient of the total loss with respect to the class logits p[i][..., 5:]. `model`:
    see loss_model (a student's statements always get a new one)."""
    model = loss_model(hyp, model)
    p = [x.detach().clone().requires_grad_(grad) for x in p]
    harness = LossHarness(model, regions)
    loss, items = harness(p, targets)
    result = {
        "loss": loss.detach().reshape(-1),
        "items": items.reshape(-1),
        "criterion": criterion_summary(harness.BCEcls),
    }
    if grad:
        connected = [x for x in p]
        grads = torch.autograd.grad(loss.sum(), connected, allow_unused=True) if loss.requires_grad else []
        result["grad"] = [g[..., 5:] if g is not None else None for g in grads] or [None for _ in p]
    return result
