"""Build the PA2 (W2021) starter notebook and its filled-in reference from one source.

    python reference/pa2-w2021/build_notebooks.py

writes

    student_template/pa2-w2021/a2-cnn.ipynb   the starter students receive
    reference/pa2-w2021/a2-cnn.ipynb          the same notebook, student regions filled in

Everything the student writes is taken from `reference/pa2-w2021/solution.py`:

* the three model classes (A.1, B.1, C.1) are copied whole from solution.py; in the starter
  the code between each pair of markers is removed, so an untouched class does not parse,
  as in the real starter;
* D.1 region 1, D.1 region 2 and D.2 are the marker blocks of `select_learned_parameters`,
  `replace_head_and_freeze` and `compute_iou_loss`, re-indented for where they sit in the
  notebook.

The notebook and the module therefore cannot drift apart. The output is deterministic (fixed
cell ids, no timestamps, no execution counts): running the script twice gives the same bytes.
"""
from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SOLUTION = HERE / "solution.py"
TEMPLATE_OUT = REPO / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"
REFERENCE_OUT = HERE / "a2-cnn.ipynb"

# The markers of the real W2021 starter.
MODEL_OPEN = "#" * 15 + " YOUR CODE GOES HERE " + "#" * 15  # written with a trailing space
MODEL_CLOSE = "#" * 51
TRAIN_OPEN = "#" * 16 + " Code goes here " + "#" * 22
TRAIN_CLOSE = "#" * 54
DRIVER_OPEN = "#" * 16 + " YOUR CODE GOES HERE " + "#" * 22
DRIVER_CLOSE = "#" * 59

MODEL_CLASSES = ("PoolUpsampleNet", "ConvTransposeNet", "UNet")


# --------------------------------------------------------------------------------------
# Reading solution.py
# --------------------------------------------------------------------------------------
class _Solution:
    def __init__(self, path: Path):
        self.text = path.read_text(encoding="utf-8")
        self.lines = self.text.splitlines()
        self.tree = ast.parse(self.text, filename=str(path))
        self.top = {
            node.name: node
            for node in self.tree.body
            if isinstance(node, (ast.ClassDef, ast.FunctionDef))
        }

    def source_lines(self, name: str) -> list[str]:
        """The lines of a top-level def/class, with the indented comment lines after its last
        statement (the AST ends at the last statement, before a closing marker line)."""
        node = self.top[name]
        end = node.end_lineno
        while end < len(self.lines):
            following = self.lines[end]
            if following.strip() and not (following.startswith(" ")
                                           and following.lstrip().startswith("#")):
                break
            end += 1
        lines = self.lines[node.lineno - 1 : end]
        while lines and not lines[-1].strip():
            lines.pop()
        return lines


def _is_close(line: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= 10 and set(stripped) == {"#"}


def _model_class_source(sol: _Solution, name: str) -> tuple[str, str]:
    """(starter, reference) text of one model class, both from solution.py."""
    lines = sol.source_lines(name)
    starter, reference = [], []
    i = 0
    regions = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == MODEL_OPEN:
            indent = line[: len(line) - len(line.lstrip())]
            opener = indent + MODEL_OPEN + " "
            starter.append(opener)
            reference.append(opener)
            j = i + 1
            while j < len(lines) and not _is_close(lines[j]):
                j += 1
            if j == len(lines) or lines[j].strip() != MODEL_CLOSE:
                raise SystemExit(f"solution.py: {name}: marker at line {i + 1} is not closed "
                                 f"by a line of 51 '#'")
            reference.extend(lines[i + 1 : j])
            closer = indent + MODEL_CLOSE
            starter.append(closer)
            reference.append(closer)
            regions += 1
            i = j + 1
            continue
        starter.append(line)
        reference.append(line)
        i += 1
    if regions != 2:
        raise SystemExit(f"solution.py: {name} should have 2 marker regions, found {regions}")
    starter_text = "\n".join(starter)
    # The skeleton must stay the real starter's.
    expected = [
        f"class {name}(nn.Module):",
        "    def __init__(self, kernel, num_filters, num_colours, num_in_channels):",
        "        super().__init__()",
        "        # Useful parameters",
        "        padding = kernel // 2",
        "    def forward(self, x):",
    ]
    if name != "PoolUpsampleNet":
        expected += ["        stride = 2", "        output_padding = 1"]
    for want in expected:
        if want not in starter:
            raise SystemExit(f"solution.py: {name}: the starter line {want!r} is missing")
    return starter_text, "\n".join(reference)


def _region(sol: _Solution, func: str, opener: str, closer: str, indent: str) -> str:
    """Code between the markers of `func` in solution.py, re-indented to `indent`."""
    lines = sol.source_lines(func)
    starts = [k for k, line in enumerate(lines) if line.strip() == opener]
    if len(starts) != 1:
        raise SystemExit(f"solution.py: {func}: expected one {opener!r} marker")
    start = starts[0]
    end = start + 1
    while end < len(lines) and not _is_close(lines[end]):
        end += 1
    if end == len(lines) or lines[end].strip() != closer:
        raise SystemExit(f"solution.py: {func}: region is not closed by {closer!r}")
    body = textwrap.dedent("\n".join(lines[start + 1 : end])).strip("\n")
    if not body.strip():
        raise SystemExit(f"solution.py: {func}: the region is empty")
    return textwrap.indent(body, indent)


# --------------------------------------------------------------------------------------
# Notebook cells. `@@name@@` on a line of its own is replaced by a student region (empty
# in the starter); `@@class:Name@@` by a whole model class.
# --------------------------------------------------------------------------------------
MD_TITLE = r'''# CSC413/2516 Winter 2021, Programming Assignment 2: Convolutional Neural Networks

This notebook is the grader project's own re-creation of the W2021 starter `a2-cnn.ipynb`:
same classes, signatures, helper names and markers, written afresh. It runs **offline**: when
the real data are not given (see `README.md`), small synthetic data sets stand in for CIFAR-10
and the Oxford 17 Flowers segmentation set, and DeepLabV3 is built without pretrained weights.

What you write:

* **Part A.1** `PoolUpsampleNet`, **Part B.1** `ConvTransposeNet`, **Part C.1** `UNet`
  (image colourization, 24 colour classes);
* **Part D.1** two regions for fine-tuning DeepLabV3 on flower segmentation: choose the
  parameters Adam updates inside `train(args, model)`, and replace and freeze layers in the
  driver cell;
* **Part D.2** `compute_iou_loss`.

Write your code between the `YOUR CODE GOES HERE` (or `Code goes here`) marker and the line of
`#` below it. Do not rename the classes or functions: the grader looks them up by name.'''

CODE_COLAB = r'''# Colab only: uncomment if you are on Colab
# %mkdir -p /content/csc413/a2/
# %cd /content/csc413/a2'''

CODE_IMPORTS = r'''import argparse
import math
import os
import pickle
import time

import numpy as np
import numpy.random as npr

try:
    import matplotlib
    import matplotlib.pyplot as plt
except ImportError:  # pictures are optional: everything else runs without matplotlib
    matplotlib = None
    plt = None

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision'''

MD_HELPERS = r'''# Colourization: helper code

Run the cells below; you do not need to change them. `load_cifar10` reads the CIFAR-10 python
batches from `PA2_CIFAR_DIR` (or its `data_root` argument) when given and never downloads;
without them it makes a small synthetic set of smooth colour images. The 24-colour palette is
read from `args.colours` when that file exists, else computed by k-means on the training
pixels.'''

CODE_DATA = r'''HORSE_CATEGORY = 7
SYNTHETIC_TRAIN_IMAGES = 600
SYNTHETIC_TEST_IMAGES = 200


def _read_cifar_batch(path):
    """One pickled CIFAR-10 batch -> (uint8 [N, 3, 32, 32], int64 [N, 1])."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    labels = np.asarray(batch[b"labels"], dtype=np.int64).reshape(-1, 1)
    return data, labels


def _cifar_dir(data_root=None):
    """The folder with data_batch_1..5 and test_batch, or None for synthetic data."""
    root = data_root or os.environ.get("PA2_CIFAR_DIR")
    if not root:
        return None
    for folder in (root, os.path.join(root, "cifar-10-batches-py")):
        if os.path.isfile(os.path.join(folder, "data_batch_1")):
            return folder
    raise FileNotFoundError("no CIFAR-10 python batches (data_batch_1 ...) in %r" % root)


def _synthetic_colour_images(num_images, seed):
    """Smooth colour images: a two-colour gradient with a few soft coloured blobs."""
    rng = np.random.RandomState(seed)
    yy, xx = np.meshgrid(np.linspace(0.0, 1.0, 32), np.linspace(0.0, 1.0, 32), indexing="ij")
    images = np.empty((num_images, 3, 32, 32), dtype=np.uint8)
    for i in range(num_images):
        start, end = rng.uniform(0.0, 1.0, size=(2, 3, 1, 1))
        angle = rng.uniform(0.0, 2.0 * np.pi)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min() + 1e-8)
        image = start * (1.0 - ramp) + end * ramp
        for _ in range(rng.randint(1, 4)):
            cy, cx = rng.uniform(0.15, 0.85, size=2)
            radius = rng.uniform(0.08, 0.25)
            weight = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * radius ** 2))
            image = image * (1.0 - weight) + rng.uniform(0.0, 1.0, size=(3, 1, 1)) * weight
        image = image * 255.0 + rng.normal(0.0, 3.0, size=image.shape)
        images[i] = np.clip(image, 0, 255).astype(np.uint8)
    return images


def load_cifar10(data_root=None):
    """(x_train, y_train), (x_test, y_test): uint8 images [N, 3, 32, 32], labels [N, 1]."""
    folder = _cifar_dir(data_root)
    if folder is None:
        x_train = _synthetic_colour_images(SYNTHETIC_TRAIN_IMAGES, seed=0)
        x_test = _synthetic_colour_images(SYNTHETIC_TEST_IMAGES, seed=1)
        y_train = np.full((len(x_train), 1), HORSE_CATEGORY, dtype=np.int64)
        y_test = np.full((len(x_test), 1), HORSE_CATEGORY, dtype=np.int64)
        return (x_train, y_train), (x_test, y_test)
    parts = [_read_cifar_batch(os.path.join(folder, "data_batch_%d" % i)) for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_batch(os.path.join(folder, "test_batch"))
    return (x_train, y_train), (x_test, y_test)'''

CODE_COLOUR = r'''def _kmeans(points, k, seed=0, iterations=20):
    """Plain Lloyd's k-means on [P, 3] points; empty clusters restart at a random point."""
    rng = np.random.RandomState(seed)
    centres = points[rng.choice(len(points), size=k, replace=False)].copy()
    for _ in range(iterations):
        nearest = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        for j in range(k):
            members = points[nearest == j]
            centres[j] = members.mean(axis=0) if len(members) else points[rng.randint(len(points))]
    return centres


def get_palette(data=None, palette_path=None, num_colours=24, seed=0):
    """The colour palette, [num_colours, 3] RGB in [0, 1].

    With `palette_path`, the official colour_kmeans24_cat7.npy; otherwise k-means on the
    pixels of `data` (images [N, 3, H, W], uint8 or already divided by 256).
    """
    if palette_path is not None:
        return np.load(palette_path, allow_pickle=True, encoding="bytes")[0]
    if data is None:
        raise ValueError("get_palette needs training images or a palette file")
    xs = np.asarray(data, dtype=np.float64)
    if xs.max() > 1.0:
        xs = xs / 256.0
    pixels = xs.transpose(0, 2, 3, 1).reshape(-1, 3)
    rng = np.random.RandomState(seed)
    if len(pixels) > 20000:
        pixels = pixels[rng.choice(len(pixels), size=20000, replace=False)]
    return _kmeans(pixels, num_colours, seed=seed)


def get_rgb_cat(xs, colours, chunk_size=100):
    """Index of the nearest palette colour for every pixel: [N, 3, H, W] -> int64 [N, 1, H, W].

    Works in chunks of `chunk_size` images to bound memory; any N works, also N < chunk_size.
    """
    colours = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
    n, _, height, width = np.shape(xs)
    cats = np.empty((n, 1, height, width), dtype=np.int64)
    for start in range(0, n, chunk_size):
        block = np.asarray(xs[start : start + chunk_size], dtype=np.float64)
        dists = ((block[:, None] - colours[None, :, :, None, None]) ** 2).sum(axis=2)
        cats[start : start + chunk_size, 0] = dists.argmin(axis=1)
    return cats


def get_cat_rgb(cats, colours):
    """Palette indices [N, 1, H, W] -> RGB images [N, 3, H, W]."""
    colours = np.asarray(colours).reshape(-1, 3)
    return colours[np.asarray(cats)[:, 0]].transpose(0, 3, 1, 2)


def process(xs, ys, max_pixel=256.0, downsize_input=False):
    """Keep the horses, scale to [0, 1), shuffle, and make the network input.

    Returns (rgb [N, 3, 32, 32], grey [N, 1, 32, 32]); with `downsize_input` the input is the
    colour image at half resolution, blown up again ([N, 3, 32, 32], super-resolution).
    Colour labels come from `get_rgb_cat(rgb, colours)`.
    """
    xs = np.asarray(xs)[np.where(np.asarray(ys).reshape(-1) == HORSE_CATEGORY)[0]]
    xs = (xs / max_pixel).astype(np.float32)
    npr.shuffle(xs)
    if downsize_input:
        n, c, h, w = xs.shape
        small = xs.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
        grey = small.repeat(2, axis=2).repeat(2, axis=3)
    else:
        grey = np.mean(xs, axis=1, keepdims=True)
    return xs, grey


def get_batch(x, y, batch_size):
    """Consecutive mini-batches; the last one may be smaller."""
    for start in range(0, np.shape(x)[0], batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]'''

CODE_TORCH_HELPERS = r'''def get_torch_vars(xs, ys, gpu=False):
    """numpy images and colour labels -> float and long tensors (on the GPU if asked)."""
    xs = torch.from_numpy(np.ascontiguousarray(xs)).float()
    ys = torch.from_numpy(np.ascontiguousarray(ys)).long()
    if gpu:
        xs, ys = xs.cuda(), ys.cuda()
    return xs, ys


def compute_loss(criterion, outputs, labels, batch_size, num_colours):
    """Per-pixel loss of logits [B, NC, H, W] against labels [B, 1, H, W].

    `batch_size` is kept for the starter's signature; the sizes come from `labels`, so the
    last, smaller batch and other image sizes work too.
    """
    b, h, w = labels.shape[0], labels.shape[-2], labels.shape[-1]
    flat_outputs = outputs.permute(0, 2, 3, 1).reshape(b * h * w, num_colours)
    return criterion(flat_outputs, labels.reshape(b * h * w))


def run_validation_step(cnn, criterion, test_grey, test_rgb_cat, batch_size, colours,
                        plotpath=None, visualize=True, downsize_input=False):
    """Mean loss and pixel accuracy (%) on the validation set; plots the last batch."""
    device = next(cnn.parameters()).device
    num_colours = np.shape(colours)[0]
    cnn.eval()
    losses, correct, total = [], 0, 0
    xs = ys = predicted = None
    with torch.no_grad():
        for xs, ys in get_batch(test_grey, test_rgb_cat, batch_size):
            images, labels = get_torch_vars(xs, ys)
            images, labels = images.to(device), labels.to(device)
            outputs = cnn(images)
            losses.append(compute_loss(criterion, outputs, labels, batch_size, num_colours).item())
            predicted = outputs.argmax(dim=1, keepdim=True)
            correct += (predicted == labels).sum().item()
            total += labels.numel()
    if plotpath and predicted is not None:
        plot(xs, ys, predicted.cpu().numpy(), colours, plotpath, visualize, downsize_input)
    return float(np.mean(losses)), 100.0 * correct / max(total, 1)


def plot(input, gtlabel, output, colours, path, visualize, compare_bilinear=False):
    """Rows: network input, ground-truth colours, predicted colours (first 10 images).

    `compare_bilinear` is kept for the starter's signature (super-resolution runs).
    """
    if plt is None:
        return
    n = min(10, len(input))
    shown = np.transpose(np.asarray(input[:n]), (0, 2, 3, 1))
    if shown.shape[-1] == 1:
        shown = np.repeat(shown, 3, axis=-1)
    rows = [
        shown,
        get_cat_rgb(gtlabel[:n], colours).transpose(0, 2, 3, 1),
        get_cat_rgb(output[:n], colours).transpose(0, 2, 3, 1),
    ]
    fig, axes = plt.subplots(len(rows), n, figsize=(n, len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n):
            axes[r][c].imshow(np.clip(row[c], 0.0, 1.0))
            axes[r][c].axis("off")
    fig.savefig(path)
    if visualize:
        plt.show()
    plt.close(fig)


class AttrDict(dict):
    """A dict whose keys are also attributes: args.epochs == args["epochs"]."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__ = self'''

CODE_COLOUR_TRAIN = r'''def train(args, cnn=None):
    """Train a colourization network; `args.model` names the class to build."""
    npr.seed(args.seed)
    torch.manual_seed(args.seed)
    use_gpu = bool(args.gpu) and torch.cuda.is_available()

    save_dir = "outputs/" + args.experiment_name
    os.makedirs(save_dir, exist_ok=True)

    print("Loading data...")
    (x_train, y_train), (x_test, y_test) = load_cifar10(args.get("data_root"))
    print("Transforming data...")
    train_rgb, train_grey = process(x_train, y_train, downsize_input=args.downsize_input)
    test_rgb, test_grey = process(x_test, y_test, downsize_input=args.downsize_input)
    palette_path = args.colours if args.colours and os.path.isfile(args.colours) else None
    colours = get_palette(train_rgb, palette_path)
    num_colours = np.shape(colours)[0]
    train_rgb_cat = get_rgb_cat(train_rgb, colours)
    test_rgb_cat = get_rgb_cat(test_rgb, colours)
    num_in_channels = 3 if args.downsize_input else 1

    if cnn is None:
        # An explicit table, not globals()[args.model]. Each class is looked up only when
        # chosen, so Part A trains before Parts B and C are written.
        model_classes = {
            "PoolUpsampleNet": lambda: PoolUpsampleNet,
            "ConvTransposeNet": lambda: ConvTransposeNet,
            "UNet": lambda: UNet,
        }
        if args.model not in model_classes:
            choices = ", ".join(model_classes)
            raise ValueError("unknown model %r; choose one of %s" % (args.model, choices))
        cnn = model_classes[args.model]()(args.kernel, args.num_filters, num_colours,
                                          num_in_channels)
    if use_gpu:
        cnn.cuda()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(cnn.parameters(), lr=args.learn_rate)

    if args.valid:
        val_loss, val_acc = run_validation_step(cnn, criterion, test_grey, test_rgb_cat,
                                                args.batch_size, colours, None,
                                                args.visualize, args.downsize_input)
        print("Val Loss: %.4f, Val Acc: %.1f%%" % (val_loss, val_acc))
        return cnn

    print("Beginning training ...")
    start = time.time()
    train_losses, valid_losses, valid_accs = [], [], []
    for epoch in range(args.epochs):
        cnn.train()
        losses = []
        for xs, ys in get_batch(train_grey, train_rgb_cat, args.batch_size):
            images, labels = get_torch_vars(xs, ys, use_gpu)
            optimizer.zero_grad()
            outputs = cnn(images)
            loss = compute_loss(criterion, outputs, labels, args.batch_size, num_colours)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        train_losses.append(float(np.mean(losses)))
        print("Epoch [%d/%d], Loss: %.4f, Time (s): %d" % (
            epoch + 1, args.epochs, train_losses[-1], time.time() - start))

        plotpath = os.path.join(save_dir, "valid_%d.png" % epoch) if args.plot else None
        val_loss, val_acc = run_validation_step(cnn, criterion, test_grey, test_rgb_cat,
                                                args.batch_size, colours, plotpath,
                                                args.visualize, args.downsize_input)
        valid_losses.append(val_loss)
        valid_accs.append(val_acc)
        print("Epoch [%d/%d], Val Loss: %.4f, Val Acc: %.1f%%, Time(s): %.2f" % (
            epoch + 1, args.epochs, val_loss, val_acc, time.time() - start))

    if args.plot and plt is not None:
        fig = plt.figure(figsize=(5, 4))
        plt.plot(train_losses, "ro-", label="Train")
        plt.plot(valid_losses, "go-", label="Validation")
        plt.legend()
        plt.title("Loss")
        plt.xlabel("Epochs")
        fig.savefig(os.path.join(save_dir, "training_curve.png"))
        plt.close(fig)

    if args.checkpoint:
        print("Saving model...")
        torch.save(cnn.state_dict(), args.checkpoint)
    return cnn'''

MD_PART_A = r'''# Part A: Pooling and Upsampling

**A.1** Complete `PoolUpsampleNet`. Four blocks, each `Conv2d -> pooling or upsampling ->
BatchNorm2d -> ReLU`, with NIC -> NF -> 2NF -> NF -> NC channels (`MaxPool2d(2)` in the first
two blocks, `Upsample(scale_factor=2)` in the next two), then a final `Conv2d` from NC to NC.
Use `kernel` and `padding` for every convolution. Input `[B, NIC, 32, 32]`, output
`[B, NC, 32, 32]`.'''

MD_DRIVER_A = r'''**A.2** Train the model with the default hyper-parameters below and report the final losses.
**A.3** Count the weights, outputs and connections of the network (in the write-up).'''


def _driver(model: str) -> str:
    return r'''args = AttrDict()
args_dict = {
    "gpu": True,
    "valid": False,
    "checkpoint": "",
    "colours": "./data/colours/colour_kmeans24_cat7.npy",
    "model": "%s",
    "kernel": 3,
    "num_filters": 32,
    "learn_rate": 0.001,
    "batch_size": 100,
    "epochs": 25,
    "seed": 0,
    "plot": True,
    "experiment_name": "colourization_cnn",
    "visualize": False,
    "downsize_input": False,
}
args.update(args_dict)
cnn = train(args)''' % model


MD_PART_B = r'''# Part B: Strided and Transposed Convolutions

**B.1** Complete `ConvTransposeNet`: the first two blocks are `Conv2d(stride=2) -> BatchNorm2d
-> ReLU`, the next two `ConvTranspose2d(stride=2, output_padding=1) -> BatchNorm2d -> ReLU`,
then a final `Conv2d` from NC to NC. Same channel widths as Part A.'''

MD_DRIVER_B = r'''**B.2** Train it and compare with Part A. **B.3-B.5** are written questions (padding for other
kernel sizes, the effect of the batch size).'''

MD_PART_C = r'''# Part C: Skip Connections

**C.1** Complete `UNet`: `ConvTransposeNet` with two skip connections made with `torch.cat` on
the channel axis. The output of the first transposed convolution block is concatenated with
the output of the first down block, and the input of the final `Conv2d` is concatenated with
the network input `x`. Adjust the input channels of the layers after each concatenation.'''

MD_DRIVER_C = r'''**C.2** Train it and compare with Parts A and B. **C.3** Why do skip connections help?'''

MD_PART_D = r'''# Part D: Fine-tuning a Pre-trained Model for Semantic Segmentation

We fine-tune DeepLabV3-ResNet101 to separate flowers from the background (2 classes).
The data cell reads the Oxford 17 Flowers images (`jpg/`) and trimaps (`trimaps/`) from
`PA2_FLOWERS_DIR` when it is set (a trimap pixel of pure red `(128, 0, 0)` is flower);
without it a small synthetic segmentation set of coloured blobs stands in, at a smaller image
size so that it runs on a CPU.'''

CODE_FLOWERS = r'''IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SEG_IMAGE_SIZE = 224  # the real flower images are resized to this
SYNTHETIC_SEG_SIZE = 96  # the synthetic stand-in is smaller, to stay fast on a CPU
SYNTHETIC_SEG_IMAGES = {"train": 64, "val": 16}
FOREGROUND_RGB = (128, 0, 0)


def _normalise(images):
    """float images [..., 3, H, W] in [0, 1] -> ImageNet-normalised tensors."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (torch.as_tensor(images, dtype=torch.float32) - mean) / std


def _flower_pairs(root, split):
    """(image, trimap) paths of one split; every fifth file is for validation."""
    image_dir, trimap_dir = os.path.join(root, "jpg"), os.path.join(root, "trimaps")
    if not (os.path.isdir(image_dir) and os.path.isdir(trimap_dir)):
        raise FileNotFoundError("expected jpg/ and trimaps/ folders in %r" % root)
    stems = sorted(
        os.path.splitext(name)[0]
        for name in os.listdir(trimap_dir)
        if name.endswith(".png")
        and os.path.isfile(os.path.join(image_dir, os.path.splitext(name)[0] + ".jpg"))
    )
    chosen = [s for k, s in enumerate(stems) if (k % 5 == 0) == (split == "val")]
    return [(os.path.join(image_dir, s + ".jpg"), os.path.join(trimap_dir, s + ".png"))
            for s in chosen]


def _load_flower_pair(image_path, trimap_path, size):
    from PIL import Image

    resample = getattr(Image, "Resampling", Image)
    image = Image.open(image_path).convert("RGB").resize((size, size), resample.BILINEAR)
    trimap = Image.open(trimap_path).convert("RGB").resize((size, size), resample.NEAREST)
    x = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    mask = np.all(np.asarray(trimap) == np.array(FOREGROUND_RGB, dtype=np.uint8), axis=-1)
    return _normalise(x), torch.from_numpy(mask.astype(np.int64))


def _synthetic_segmentation(num_images, size, seed):
    """Flower-like coloured blobs on a green, textured background, with their masks."""
    rng = np.random.RandomState(seed)
    yy, xx = np.meshgrid(np.linspace(-1.0, 1.0, size), np.linspace(-1.0, 1.0, size),
                         indexing="ij")
    petal_colours = np.array([[0.9, 0.1, 0.1], [0.95, 0.85, 0.1], [0.6, 0.2, 0.8],
                              [0.95, 0.95, 0.95], [0.95, 0.5, 0.1]])
    images = np.empty((num_images, 3, size, size), dtype=np.float32)
    masks = np.empty((num_images, size, size), dtype=np.int64)
    for i in range(num_images):
        ground = rng.uniform([0.05, 0.25, 0.0], [0.3, 0.6, 0.2]).reshape(3, 1, 1)
        ground = ground * (0.8 + 0.2 * yy) + rng.normal(0.0, 0.05, size=(3, size, size))
        cy, cx = rng.uniform(-0.35, 0.35, size=2)
        radius = rng.uniform(0.3, 0.55)
        petals = rng.randint(5, 9)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        angle = np.arctan2(yy - cy, xx - cx)
        edge = radius * (0.75 + 0.25 * np.cos(petals * angle + rng.uniform(0.0, np.pi)))
        mask = dist < edge
        colour = petal_colours[rng.randint(len(petal_colours))] + rng.normal(0.0, 0.05, 3)
        flower = colour.reshape(3, 1, 1) * (1.0 - 0.35 * dist / radius)
        image = np.where(mask[None], flower, ground)
        images[i] = np.clip(image, 0.0, 1.0)
        masks[i] = mask
    return _normalise(images), torch.from_numpy(masks)


class FlowerSegmentationDataset(torch.utils.data.Dataset):
    """Images [3, H, W] (ImageNet-normalised) and masks [H, W] (1 = flower, 0 = background)."""

    def __init__(self, split="train", data_root=None, image_size=None, seed=0):
        self.split = split
        self.pairs = None
        if data_root:
            self.image_size = image_size or SEG_IMAGE_SIZE
            self.pairs = _flower_pairs(data_root, split)
            self.num_files = len(self.pairs)
        else:
            self.image_size = image_size or SYNTHETIC_SEG_SIZE
            self.num_files = SYNTHETIC_SEG_IMAGES[split]
            self.images, self.masks = _synthetic_segmentation(
                self.num_files, self.image_size, seed + (0 if split == "train" else 1))

    def __len__(self):
        return self.num_files

    def __getitem__(self, index):
        if self.pairs is not None:
            return _load_flower_pair(*self.pairs[index], self.image_size)
        return self.images[index], self.masks[index]


def initialize_loader(train_batch_size=64, val_batch_size=64, data_root=None, image_size=None):
    """Train and validation DataLoaders; their datasets have `num_files`."""
    root = data_root or os.environ.get("PA2_FLOWERS_DIR") or None
    train_dataset = FlowerSegmentationDataset("train", root, image_size)
    valid_dataset = FlowerSegmentationDataset("val", root, image_size)
    # BatchNorm in training mode cannot take a batch of one image: drop such a last batch.
    drop_last = len(train_dataset) % train_batch_size == 1
    train_loader = torch.utils.data.DataLoader(train_dataset, batch_size=train_batch_size,
                                               shuffle=True, drop_last=drop_last)
    valid_loader = torch.utils.data.DataLoader(valid_dataset, batch_size=val_batch_size,
                                               shuffle=False)
    return train_loader, valid_loader'''

CODE_DEEPLAB = r'''from torchvision.models.segmentation import deeplabv3_resnet101

# The real assignment loads pretrained weights from the internet:
#   model = torch.hub.load('pytorch/vision', 'deeplabv3_resnet101', pretrained=True)
# This offline version builds the same architecture without downloading anything.
# Instructors may point PA2_DEEPLAB_WEIGHTS at a local state dict of the pretrained model.
model = deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=False)
if os.environ.get("PA2_DEEPLAB_WEIGHTS"):
    state_dict = torch.load(os.environ["PA2_DEEPLAB_WEIGHTS"], map_location="cpu")
    # Pretrained files also hold the auxiliary head, which this model does not have.
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith("aux_classifier.")}
    model.load_state_dict(state_dict)
print(model.classifier)'''

CODE_IOU = r'''def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    """Soft IoU loss for flower segmentation.

    pred: logits [B, 2, H, W] (channel 1 is the flower); gt: long [B, H, W] of 0/1.
    Turn the logits into probabilities with a softmax over the classes, compute a soft
    intersection and union of the flower probability with gt, and return 1 - IoU.
    SMOOTH keeps the division defined when both are empty.
    """
    ''' + DRIVER_OPEN + r'''
@@iou@@
    ''' + DRIVER_CLOSE + r'''
    return loss'''

CODE_SEG_HELPERS = r'''def run_validation_step_seg(model, criterion, loader, device):
    """Mean loss and mIOU (mean over background and flower of the IoU) on `loader`."""
    model.eval()
    losses = []
    intersection, union = np.zeros(2), np.zeros(2)
    with torch.no_grad():
        for images, masks in loader:
            images, masks = images.to(device), masks.to(device)
            output = model(images)["out"]
            losses.append(criterion(output, masks).item())
            predicted = output.argmax(dim=1)
            for c in (0, 1):
                p, g = predicted == c, masks == c
                intersection[c] += (p & g).sum().item()
                union[c] += (p | g).sum().item()
    return float(np.mean(losses)), float(np.mean(intersection / np.maximum(union, 1.0)))


def visualize(model, loader, plotpath=None, num_images=4, show=False):
    """Rows: image, ground-truth mask, predicted mask, for the first `num_images` images."""
    if plt is None:
        return
    dataset = loader.dataset
    n = min(num_images, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(n)])
    masks = torch.stack([dataset[i][1] for i in range(n)])
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        predicted = model(images.to(device))["out"].argmax(dim=1).cpu()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    shown = (images * std + mean).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    fig, axes = plt.subplots(3, n, figsize=(2 * n, 6), squeeze=False)
    for c in range(n):
        for r, picture in enumerate((shown[c], masks[c].numpy(), predicted[c].numpy())):
            axes[r][c].imshow(picture)
            axes[r][c].axis("off")
    if plotpath:
        fig.savefig(plotpath)
    if show:
        plt.show()
    plt.close(fig)'''

MD_D1 = r'''## D.1 Fine-tune the last layer

**D.1.1** Complete `train` below: put into `learned_parameters` the parameters of the layer
you replace (the last layer of the classifier, `classifier.4`), so that Adam updates only
those.'''

CODE_SEG_TRAIN = r'''def train(args, model):
    # Set the maximum number of threads to prevent crash in Teaching Labs
    torch.set_num_threads(min(5, os.cpu_count() or 1))
    # Numpy random seed
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    # Save directory
    # Create the outputs folder if not created already
    save_dir = "outputs/" + args.experiment_name
    if not os.path.exists(save_dir):
        os.makedirs(save_dir)

    learned_parameters = []
    # We only learn the last layer and freeze all the other weights
    ''' + TRAIN_OPEN + r'''
@@learned@@
    ''' + TRAIN_CLOSE + r'''

    # Adam only updates learned_parameters
    optimizer = torch.optim.Adam(learned_parameters, lr=args.learn_rate)

    train_loader, valid_loader = initialize_loader(args.train_batch_size, args.val_batch_size)
    print("Train set: {}, Test set: {}".format(train_loader.dataset.num_files,
                                               valid_loader.dataset.num_files))

    if args.loss == "cross-entropy":
        criterion = nn.CrossEntropyLoss()
    elif args.loss == "iou":
        criterion = compute_iou_loss
    else:
        raise ValueError("args.loss must be 'cross-entropy' or 'iou', not %r" % args.loss)

    print("Beginning training ...")
    device = torch.device("cuda" if args.gpu and torch.cuda.is_available() else "cpu")
    model.to(device)

    best_miou = 0.0
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        losses = []
        for images, masks in train_loader:
            images, masks = images.to(device), masks.to(device)
            optimizer.zero_grad()
            output = model(images)["out"]
            loss = criterion(output, masks)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        print("Epoch [%d/%d], Loss: %.4f, Time (s): %d" % (
            epoch + 1, args.epochs, np.mean(losses), time.time() - start))

        val_start = time.time()
        val_loss, miou = run_validation_step_seg(model, criterion, valid_loader, device)
        if args.plot:
            visualize(model, valid_loader, os.path.join(save_dir, "valid_%d.png" % epoch))
        print("Epoch [%d/%d], Loss: %.4f, mIOU: %.4f, Validation time (s): %d" % (
            epoch + 1, args.epochs, val_loss, miou, time.time() - val_start))
        if miou > best_miou:
            best_miou = miou
            print("Saving model...")
            torch.save(model.state_dict(),
                       os.path.join(save_dir, args.checkpoint_name + "-best.ckpt"))

    print("Best model achieves mIOU: %.4f" % best_miou)
    return model'''

MD_D1_DRIVER = r'''**D.1.2** Replace the last layer of the classifier with a new `nn.Conv2d` for our 2 classes
and freeze every other layer, then train. **D.1.3** Visualise the predictions.'''


def _seg_driver(loss: str, experiment: str) -> str:
    return r'''args = AttrDict()
# You can play with the hyperparameters here, but to finish the assignment,
# there is no need to tune the hyperparameters here.
args_dict = {
    "gpu": True,
    "checkpoint_name": "finetune-segmentation",
    "learn_rate": 0.05,
    "train_batch_size": 128,
    "val_batch_size": 256,
    "epochs": 10,
    "loss": "%s",
    "seed": 0,
    "plot": True,
    "experiment_name": "%s",
}
args.update(args_dict)

# Truncate the last layer and replace it with the new one.
# To avoid `CUDA out of memory` error, you might find it useful (sometimes required)
# to set the `requires_grad` = False for some layers
%s
@@head@@
%s

# Clear the cache in GPU
torch.cuda.empty_cache()
train(args, model)''' % (loss, experiment, DRIVER_OPEN, DRIVER_CLOSE)


MD_D2 = r'''## D.2 The IoU loss

**D.2.1** Complete `compute_iou_loss` (defined above, before `train`) and fine-tune again with
`"loss": "iou"`. **D.2.2** Compare the mIOU with D.1.'''

MD_END = r'''# Done

Submit this notebook (File > Download .ipynb) together with your write-up. The grader never
runs the training cells: it takes your classes and functions out of the notebook and checks
them directly, so keep their names and signatures.'''

CELLS = [
    ("markdown", MD_TITLE),
    ("code", CODE_COLAB),
    ("code", CODE_IMPORTS),
    ("markdown", MD_HELPERS),
    ("code", CODE_DATA),
    ("code", CODE_COLOUR),
    ("code", CODE_TORCH_HELPERS),
    ("code", CODE_COLOUR_TRAIN),
    ("markdown", MD_PART_A),
    ("code", "@@class:PoolUpsampleNet@@"),
    ("markdown", MD_DRIVER_A),
    ("code", _driver("PoolUpsampleNet")),
    ("markdown", MD_PART_B),
    ("code", "@@class:ConvTransposeNet@@"),
    ("markdown", MD_DRIVER_B),
    ("code", _driver("ConvTransposeNet")),
    ("markdown", MD_PART_C),
    ("code", "@@class:UNet@@"),
    ("markdown", MD_DRIVER_C),
    ("code", _driver("UNet")),
    ("markdown", MD_PART_D),
    ("code", CODE_FLOWERS),
    ("code", CODE_DEEPLAB),
    ("code", CODE_IOU),
    ("code", CODE_SEG_HELPERS),
    ("markdown", MD_D1),
    ("code", CODE_SEG_TRAIN),
    ("markdown", MD_D1_DRIVER),
    ("code", _seg_driver("cross-entropy", "finetune-segmentation")),
    ("markdown", MD_D2),
    ("code", _seg_driver("iou", "finetune-segmentation-iou")),
    ("markdown", MD_END),
]


def _fill(source: str, replacements: dict[str, str]) -> str:
    out = []
    for line in source.split("\n"):
        key = line.strip()
        if key.startswith("@@") and key.endswith("@@"):
            text = replacements[key[2:-2]]
            if text:
                out.append(text)
            continue
        if "@@" in line:
            raise SystemExit(f"placeholder not alone on its line: {line!r}")
        out.append(line)
    return "\n".join(out)


def _replacements(sol: _Solution) -> tuple[dict[str, str], dict[str, str]]:
    starter: dict[str, str] = {"learned": "", "head": "", "iou": ""}
    reference: dict[str, str] = {
        "learned": _region(sol, "select_learned_parameters", TRAIN_OPEN, TRAIN_CLOSE, " " * 4),
        "head": _region(sol, "replace_head_and_freeze", DRIVER_OPEN, DRIVER_CLOSE, ""),
        "iou": _region(sol, "compute_iou_loss", DRIVER_OPEN, DRIVER_CLOSE, " " * 4),
    }
    for name in MODEL_CLASSES:
        starter["class:" + name], reference["class:" + name] = _model_class_source(sol, name)
    return starter, reference


def _notebook(replacements: dict[str, str]) -> nbformat.NotebookNode:
    cells = []
    for index, (kind, source) in enumerate(CELLS):
        cell_id = "cell-%02d" % index
        text = _fill(source, replacements)
        if kind == "code":
            cells.append(new_code_cell(source=text, id=cell_id))
        else:
            cells.append(new_markdown_cell(source=text, id=cell_id))
    nb = new_notebook(cells=cells)
    nb.nbformat, nb.nbformat_minor = 4, 5
    nb.metadata = nbformat.from_dict({
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "pygments_lexer": "ipython3"},
    })
    nbformat.validate(nb)
    return nb


def _write(nb: nbformat.NotebookNode, path: Path) -> None:
    text = nbformat.writes(nb, version=4)
    if not text.endswith("\n"):
        text += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def main() -> int:
    sol = _Solution(SOLUTION)
    starter, reference = _replacements(sol)
    _write(_notebook(starter), TEMPLATE_OUT)
    _write(_notebook(reference), REFERENCE_OUT)
    for path in (TEMPLATE_OUT, REFERENCE_OUT):
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
