"""PA2 W2020 (CSC413/2516, `a2-cnn.ipynb`): the reference, the starter, and notebooks written
the way real W2020 students wrote them (the two seed write-ups' code, the styles and the
mistakes of the public notebooks), graded without --assignment in the session's batch: the
edition is told from each notebook, W2021's notebook of the same name among them.

Mistakes cost exactly the checks that can see them; correct styles keep full marks. Slow:
every notebook is graded end to end (with --no-train, as the batch of conftest.py; one
training run of the reference is graded on its own)."""

from __future__ import annotations

import atexit
import csv
import json
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from grading import run_grader
from myconv_cases import (
    BN_FIRST_CNN,
    BN_FIRST_UNET,
    GREY_PLUS_ONE_UNET,
    GREYSCALE_ONLY_CNN,
    NN_CONV2D_CNN,
    RELU_BEFORE_BN_CNN,
    TWO_SKIPS_UNET,
    W2020_REFERENCE,
    W2020_TEMPLATE,
    Case,
    expect,
    failed,
    feedback,
    summary,
)
from submissions import REFERENCE_NOTEBOOK, located_cell, read_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

EDITION = "pa2-w2020"
PARTS = {"A.1", "B.1", "C.1", "C.2"}
C1_REGION = (
    "    for name, param in model.named_parameters():\n"
    '        if name.startswith("classifier.4"):\n'
    "            learned_parameters.append(param)\n"
)
C2_REGION = "model.requires_grad_(False)\nmodel.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"
C1_CLOSING = "    " + "#" * 54 + "\n"
C2_CLOSING = "#" * 54 + "\n"

# -- seed 000: Sequential blocks model1..model6, outputs kept as self.layerN ---------------------
SEED000_CNN = """
class CNN(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(CNN, self).__init__()
        padding = kernel // 2
        self.model1 = nn.Sequential(
            MyConv2d(num_in_channels, num_filters, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU()
        )
        self.model2 = nn.Sequential(
            MyConv2d(num_filters, num_filters*2, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(2*num_filters),
            nn.ReLU()
        )
        self.model3 = nn.Sequential(
            MyConv2d(num_filters*2, num_filters*2, kernel_size=kernel, padding=padding),
            nn.BatchNorm2d(num_filters*2),
            nn.ReLU()
        )
        self.model4 = nn.Sequential(
            MyConv2d(num_filters*2, num_filters, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU()
        )
        self.model5 = nn.Sequential(
            MyConv2d(num_filters, num_colours, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_colours),
            nn.ReLU()
        )
        self.model6 = nn.Sequential(
            MyConv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)
        )

    def forward(self, x):
        self.layer1 = self.model1(x)
        self.layer2 = self.model2(self.layer1)
        self.layer3 = self.model3(self.layer2)
        self.layer4 = self.model4(self.layer3)
        self.layer5 = self.model5(self.layer4)
        self.layer6 = self.model6(self.layer5)
        return self.layer6
"""
SEED000_UNET = (
    SEED000_CNN.replace("class CNN", "class UNet")
    .replace("super(CNN, self)", "super(UNet, self)")
    .replace(
        "MyConv2d(num_filters*2, num_filters, kernel_size", "MyConv2d(num_filters*4, num_filters, kernel_size"
    )
    .replace(
        "MyConv2d(num_filters, num_colours, kernel_size", "MyConv2d(num_filters*2, num_colours, kernel_size"
    )
    .replace("MyConv2d(num_colours, num_colours,", "MyConv2d(num_colours+num_in_channels, num_colours,")
    .replace("self.model4(self.layer3)", "self.model4(torch.cat((self.layer3, self.layer2), dim=1))")
    .replace("self.model5(self.layer4)", "self.model5(torch.cat((self.layer4, self.layer1), dim=1))")
    .replace("self.model6(self.layer5)", "self.model6(torch.cat((self.layer5, x), dim=1))")
)
SEED000_C2 = "model.requires_grad_(False)\nmodel._modules['classifier'][4] = nn.Conv2d(256, 2, (3, 3))\n"

# -- seed 002: ModuleList blocks iterated in forward; a UNet relying on MyConv2d's default padding,
# every torch.cat with the skip first; the head replaced with 21 outputs ------------------------
_SEED002_BLOCK = """
        self.layer{n} = nn.ModuleList([
            MyConv2d(in_channels={cin}, out_channels={cout}, kernel_size=self.kernel, padding=self.padding),
            {resample}
            nn.BatchNorm2d(num_features={cout}),
            nn.ReLU()
        ])"""
SEED002_CNN = (
    """
class CNN(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(CNN, self).__init__()
        padding = kernel // 2
        ############### YOUR CODE GOES HERE ###############
        # Call hyper-parameters in order to obtain CNN
        self.num_in_channels = num_in_channels # number of channels in the image
        self.kernel = kernel
        self.padding = padding
        self.num_filters = num_filters
        self.num_colours = num_colours"""
    + _SEED002_BLOCK.format(
        n=1, cin="self.num_in_channels", cout="self.num_filters", resample="nn.MaxPool2d(kernel_size=2),"
    )
    + _SEED002_BLOCK.format(
        n=2, cin="self.num_filters", cout="2*self.num_filters", resample="nn.MaxPool2d(kernel_size=2),"
    )
    + _SEED002_BLOCK.format(n=3, cin="2*self.num_filters", cout="2*self.num_filters", resample="")
    + _SEED002_BLOCK.format(
        n=4, cin="2*self.num_filters", cout="self.num_filters", resample="nn.Upsample(scale_factor=2),"
    )
    + _SEED002_BLOCK.format(
        n=5, cin="self.num_filters", cout="self.num_colours", resample="nn.Upsample(scale_factor=2),"
    )
    + """
        self.LastConv = MyConv2d(
            in_channels=self.num_colours,
            out_channels=self.num_colours,
            kernel_size=self.kernel,
            padding=self.padding
        )
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        layer_list = [
            self.layer1, self.layer2, self.layer3, self.layer4, self.layer5]
        for layer in layer_list:
            for lay in layer:
                x = lay(x)
        x = self.LastConv(x)
        return x
        ###################################################
"""
)
SEED002_UNET = """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(UNet, self).__init__()
        self.layer1 = nn.Sequential(MyConv2d(in_channels=num_in_channels, out_channels=num_filters,
                                             kernel_size=kernel),
                                    nn.MaxPool2d(kernel_size=2), nn.BatchNorm2d(num_filters), nn.ReLU())
        self.layer2 = nn.Sequential(MyConv2d(num_filters, 2*num_filters, kernel_size=kernel),
                                    nn.MaxPool2d(kernel_size=2), nn.BatchNorm2d(2*num_filters), nn.ReLU())
        self.layer3 = nn.Sequential(MyConv2d(2*num_filters, 2*num_filters, kernel_size=kernel),
                                    nn.BatchNorm2d(2*num_filters), nn.ReLU())
        self.layer4 = nn.Sequential(MyConv2d(4*num_filters, num_filters, kernel_size=kernel),
                                    nn.Upsample(scale_factor=2), nn.BatchNorm2d(num_filters), nn.ReLU())
        self.layer5 = nn.Sequential(MyConv2d(2*num_filters, num_colours, kernel_size=kernel),
                                    nn.Upsample(scale_factor=2), nn.BatchNorm2d(num_colours), nn.ReLU())
        self.LastConv = MyConv2d(num_colours + num_in_channels, num_colours, kernel_size=kernel)

    def forward(self, x):
        layer1_out = self.layer1(x)
        layer2_out = self.layer2(layer1_out)
        layer3_out = self.layer3(layer2_out)
        layer4_out = self.layer4(torch.cat((layer2_out, layer3_out), dim=1))
        layer5_out = self.layer5(torch.cat((layer1_out, layer4_out), dim=1))
        return self.LastConv(torch.cat((x, layer5_out), dim=1))
"""
SEED002_C2 = (
    "model.requires_grad_(False)\n"
    "model.classifier[4] = nn.Conv2d(256, 21, kernel_size=(1, 1), stride=(1, 1))\n"
)

# -- every layer called as self.layer.forward(x), F.relu, nn.ReLU(True), positional padding -------
DIRECT_FORWARD_CNN = """
class CNN(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(CNN, self).__init__()
        padding = kernel // 2
        self.myconv1 = MyConv2d(num_in_channels, num_filters, kernel, padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.myconv2 = MyConv2d(num_filters, 2 * num_filters, kernel, padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.myconv3 = MyConv2d(2 * num_filters, 2 * num_filters, kernel, padding)
        self.bn3 = nn.BatchNorm2d(2 * num_filters)
        self.myconv4 = MyConv2d(2 * num_filters, num_filters, kernel, padding)
        self.bn4 = nn.BatchNorm2d(num_filters)
        self.myconv5 = MyConv2d(num_filters, num_colours, kernel, padding)
        self.bn5 = nn.BatchNorm2d(num_colours)
        self.myconv6 = MyConv2d(num_colours, num_colours, kernel, padding)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2)
        self.relu = nn.ReLU(True)

    def forward(self, x):
        x = self.relu(self.bn1.forward(self.pool(self.myconv1.forward(x))))
        x = F.relu(self.bn2.forward(self.pool(self.myconv2.forward(x))))
        x = self.relu(self.bn3.forward(self.myconv3.forward(x)))
        x = F.relu(self.bn4.forward(self.up(self.myconv4.forward(x))))
        x = self.relu(self.bn5.forward(self.up(self.myconv5.forward(x))))
        return self.myconv6.forward(x)
"""
DIRECT_FORWARD_UNET = (
    DIRECT_FORWARD_CNN.replace("class CNN", "class UNet")
    .replace("super(CNN, self)", "super(UNet, self)")
    .replace(
        "MyConv2d(2 * num_filters, num_filters, kernel, padding)",
        "MyConv2d(4 * num_filters, num_filters, kernel, padding)",
    )
    .replace(
        "MyConv2d(num_filters, num_colours, kernel, padding)",
        "MyConv2d(2 * num_filters, num_colours, kernel, padding)",
    )
    .replace(
        "MyConv2d(num_colours, num_colours, kernel, padding)",
        "MyConv2d(num_colours + num_in_channels, num_colours, kernel, padding)",
    )
    .replace(
        """        x = self.relu(self.bn1.forward(self.pool(self.myconv1.forward(x))))
        x = F.relu(self.bn2.forward(self.pool(self.myconv2.forward(x))))
        x = self.relu(self.bn3.forward(self.myconv3.forward(x)))
        x = F.relu(self.bn4.forward(self.up(self.myconv4.forward(x))))
        x = self.relu(self.bn5.forward(self.up(self.myconv5.forward(x))))
        return self.myconv6.forward(x)""",
        """        a = self.relu(self.bn1.forward(self.pool(self.myconv1.forward(x))))
        b = F.relu(self.bn2.forward(self.pool(self.myconv2.forward(a))))
        c = self.relu(self.bn3.forward(self.myconv3.forward(b)))
        d = F.relu(self.bn4.forward(self.up(self.myconv4.forward(torch.cat([b, c], dim=1)))))
        e = self.relu(self.bn5.forward(self.up(self.myconv5.forward(torch.cat([d, a], dim=1)))))
        return self.myconv6.forward(torch.cat([x, e], dim=1))""",
    )
)

# -- Part C forms ------------------------------------------------------------------------------------
PREFIX_ALL = (
    '    for name, p in model.named_parameters(prefix="classifier.4"):\n'
    "        learned_parameters.append(p)\n"
)
WEIGHT_ONLY = "    learned_parameters.append(model.classifier[4].weight)\n"
WEIGHT_ONLY_FREEZING_THE_REST = (
    "    for name, param in model.named_parameters():\n"
    '        if name == "classifier.4.weight":\n'
    "            learned_parameters.append(param)\n"
    "        else:\n"
    "            param.requires_grad = False\n"
)
IN_NAME = (
    "    for name, param in model.named_parameters():\n"
    "        if 'classifier.4' in name:\n"
    "            learned_parameters.append(param)\n"
)
FREEZE_LOOP_MODULES = (
    "for param in model.parameters():\n"
    "    param.requires_grad = False\n"
    'model._modules["classifier"][4] = nn.Conv2d(256, 2, kernel_size=1)\n'
)
REPLACE_THEN_UNFREEZE = (
    "model.classifier[-1] = nn.Conv2d(256, 2, 1)\n"
    "model.requires_grad_(False)\n"
    "model.classifier[4].requires_grad_(True)\n"
)
FREEZE_ALL_BUT_OLD_HEAD = (
    "for name, param in model.named_parameters():\n"
    "    if not name.startswith('classifier.4'):\n"
    "        param.requires_grad = False\n"
    "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"
)
NO_FREEZING = "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"


def after_closing(region: str, closing: str) -> dict:
    """The region's code written after the closing marker line (one real notebook does)."""
    return {region + closing: closing + region}


# -- what real notebooks carry besides the answers --------------------------------------------------
COLAB = """
%mkdir -p /content/csc413/a2/
%cd /content/csc413/a2
if not os.path.exists('17flowers.tgz'):
    !wget https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz
    !tar xvzf 17flowers.tgz
from google.colab import drive
drive.mount('/content/drive')
"""
RUNS = """
for batch_size in [10, 20, 50, 100, 200]:
    args.batch_size = batch_size
    unet_cnn = train(args)
model = torch.hub.load('pytorch/vision:v0.5.0', 'deeplabv3_resnet101', pretrained=True)
print "done"
"""
RUNS_PY3 = RUNS.replace('print "done"', 'print("done")')
CNN_CELL_BROKEN = (
    "        return self.finalconv(out5)\n",
    "        return self.finalconv(out5)\n\nprint 'CNN ready'\n",
)

CASES = [
    # The seeds' code: full marks for seed 000 (a 3x3 head is an appropriate kernel by default);
    # seed 002's correct networks, and its 21-output head.
    Case(
        "w2020_seed000",
        {
            "replace": {"CNN": SEED000_CNN, "UNet": SEED000_UNET},
            "substitute": {C2_REGION: SEED000_C2},
            "kernel": "python2",
        },
    ),
    Case(
        "w2020_seed002",
        {"replace": {"CNN": SEED002_CNN, "UNet": SEED002_UNET}, "substitute": {C2_REGION: SEED002_C2}},
        lost={"C.2": {"head", "out_shape"}},
        feedback={("C.2", "head"): ["Conv2d(256 -> 21)", "2 classes"]},
    ),
    Case(
        "w2020_direct_forward",
        {
            "replace": {"CNN": DIRECT_FORWARD_CNN, "UNet": DIRECT_FORWARD_UNET},
            "substitute": {**after_closing(C1_REGION, C1_CLOSING), C2_REGION: REPLACE_THEN_UNFREEZE},
        },
    ),
    Case(
        "w2020_freezing_forms",
        {"substitute": {C1_REGION: IN_NAME, C2_REGION: FREEZE_LOOP_MODULES}},
    ),
    Case(
        "w2020_code_after_closing_markers",
        {"substitute": {**after_closing(C1_REGION, C1_CLOSING), **after_closing(C2_REGION, C2_CLOSING)}},
    ),
    Case("w2020_freeze_all_but_old_head", {"substitute": {C2_REGION: FREEZE_ALL_BUT_OLD_HEAD}}),
    # Mistakes and readings.
    Case(
        "w2020_batchnorm_before_pooling",
        {"replace": {"CNN": BN_FIRST_CNN, "UNet": BN_FIRST_UNET}},
        lost={"A.1": {"layers", "equivalence"}, "B.1": {"layers", "equivalence"}},
        feedback={
            ("A.1", "equivalence"): ["another reading of the handout", "BatchNorm before the pooling"],
            ("A.1", "layers"): ["another reading of the handout", "this course asks for BatchNorm after"],
        },
    ),
    Case(
        "w2020_two_skips",
        {"replace": {"UNet": TWO_SKIPS_UNET}},
        lost={"B.1": {"layers", "params", "equivalence"}},
        feedback={
            ("B.1", "params"): ["another reading of the handout", "two skip connections"],
            ("B.1", "equivalence"): ["two skip connections", "this course asks for three"],
        },
    ),
    Case(
        "w2020_grey_plus_one",
        {"replace": {"UNet": GREY_PLUS_ONE_UNET}},
        lost={"B.1": {"layers", "params", "equivalence", "shape"}},
        feedback={("B.1", "shape"): ["num_in_channels=3"]},
    ),
    Case(
        "w2020_nn_conv2d",
        {"replace": {"CNN": NN_CONV2D_CNN}},
        lost={"A.1": {"myconv"}},
        feedback={("A.1", "myconv"): ["layer 1 is a Conv2d", "not to use nn.Conv2d"]},
    ),
    Case(
        "w2020_relu_before_bn",
        {"replace": {"CNN": RELU_BEFORE_BN_CNN}},
        lost={"A.1": {"equivalence"}},
        feedback={("A.1", "equivalence"): ["your output differs from the reading", "layer 1 agrees"]},
    ),
    Case(
        "w2020_greyscale_only",
        {"replace": {"CNN": GREYSCALE_ONLY_CNN}},
        lost={"A.1": {"layers", "params", "equivalence", "shape"}},
    ),
    Case(
        "w2020_prefix_selects_everything",
        {"substitute": {C1_REGION: PREFIX_ALL}},
        lost={"C.1": {"optimizer"}},
        feedback={("C.1", "optimizer"): ["other parameters reached the optimizer"]},
    ),
    Case(
        "w2020_weight_only",
        {"substitute": {C1_REGION: WEIGHT_ONLY}},
        lost={"C.1": {"optimizer"}},
        feedback={("C.1", "optimizer"): ["`classifier.4.bias` did not reach the optimizer"]},
    ),
    Case(
        "w2020_weight_only_freezing_the_rest",
        {"substitute": {C1_REGION: WEIGHT_ONLY_FREEZING_THE_REST}},
        lost={"C.1": {"optimizer"}},
    ),
    Case(
        "w2020_no_freezing",
        {"substitute": {C2_REGION: NO_FREEZING}},
        lost={"C.2": {"frozen"}},
        feedback={("C.2", "frozen"): ["still trainable"]},
    ),
    # Real notebooks' noise: a Python 2 kernel and a Python 2 print, Colab lines, many runs.
    Case("w2020_noise", {"kernel": "python2", "insert_cells": [(3, COLAB)], "extra_cells": [RUNS]}),
    # The CNN cell does not parse: CNN is lost, MyConv2d (in the same cell) comes from the handout.
    Case(
        "w2020_broken_cnn_cell",
        {"substitute": {CNN_CELL_BROKEN[0]: CNN_CELL_BROKEN[1]}},
        lost={"A.1": {"layers", "myconv", "params", "equivalence", "shape"}},
    ),
]


def _headless_reference():
    """The W2020 reference notebook without its title cell (students delete it), written once
    per session next to the other inputs (make_notebook edits cells, it cannot delete one)."""
    nb = read_notebook(W2020_REFERENCE)
    del nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")]
    folder = Path(tempfile.mkdtemp(prefix="myconv-headless-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # nothing left in /tmp
    path = folder / "a2-cnn.ipynb"
    nbformat.write(nb, str(path))
    return path


HEADLESS = _headless_reference()

NOTEBOOKS = {
    "w2020_reference": {"base": W2020_REFERENCE},
    "w2020_template": {"base": W2020_TEMPLATE},
    "w2020_headless": {"base": HEADLESS, "extra_cells": [RUNS_PY3]},
    "w2021_same_file_name": {"base": REFERENCE_NOTEBOOK},
    **{c.name: dict(c.spec, base=W2020_REFERENCE) for c in CASES},
}


def test_reference_gets_full_marks_and_says_which_reading_it_matched(graded):
    result = graded["w2020_reference"]
    expect(result, EDITION, PARTS)
    assert result.max_score == 18 and result.notes == [], summary(result)
    assert "Matched the reading: BatchNorm after the pooling" in feedback(result, "A.1", "equivalence")
    assert "torch.cat orders upconv1: skip tensor second" in feedback(result, "B.1", "equivalence")


def test_template_gets_nothing_with_a_reason_per_check(graded):
    result = graded["w2020_template"]
    assert result.data["grader"]["assignment"] == EDITION, summary(result)
    assert result.score == 0 and result.max_score == 18, summary(result)
    assert all(t["status"] == "failed" for t in result.tests)
    cnn_cell = located_cell(W2020_TEMPLATE, "class CNN(").where
    for t in result.tests:
        if t["tags"][0] in ("A.1", "B.1"):
            name = "CNN" if t["tags"][0] == "A.1" else "UNet"
            assert t["output"].startswith(f"`{name}` is in code cell"), t["output"]
            assert "does not parse" in t["output"].split("\n")[0]
    # MyConv2d shares the CNN's cell: the handout's own is used, and the note says so
    assert any(f"`MyConv2d` is in {cnn_cell}, which does not parse" in n for n in result.notes), result.notes


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_notebook_loses_exactly_what_it_should(graded, case):
    result = graded[case.name]
    expect(result, EDITION, PARTS, case.lost)
    for (part, check), phrases in case.feedback.items():
        text = feedback(result, part, check)
        for phrase in phrases:
            assert phrase in text, f"{case.name} {part} {check}: {phrase!r} not in\n{text}"


def test_a_lost_cnn_cell_costs_only_the_cnn_and_says_myconv2d_came_from_the_handout(graded):
    result = graded["w2020_broken_cnn_cell"]
    assert any("the handout's own MyConv2d was used in its place" in n for n in result.notes), result.notes
    assert failed(result) == {"A.1": {"layers", "myconv", "params", "equivalence", "shape"}}


def test_feedback_names_the_cat_order_a_correct_unet_used(graded):
    # seed 002 puts every skip tensor first
    text = feedback(graded["w2020_seed002"], "B.1", "equivalence")
    assert "upconv1: skip tensor first, upconv2: skip tensor first, finalconv: skip tensor first" in text


def test_edition_is_told_from_the_cells_in_a_batch_with_w2021s_notebook(graded, main_batch):
    w2021 = graded["w2021_same_file_name"]
    assert w2021.data["grader"]["assignment"] == "pa2-w2021"
    # W2021's checks in full, though the batch's workers graded W2020 notebooks before it
    assert w2021.score == 25 and len(w2021.tests) == 19, summary(w2021)
    assert graded["w2020_headless"].data["grader"]["assignment"] == EDITION
    rows = {
        r["submission"]: r
        for r in csv.DictReader((main_batch.out / "gradebook.csv").read_text().splitlines())
    }
    assert rows["w2021_same_file_name"]["edition"] == "pa2-w2021"
    assert rows["w2020_reference"]["edition"] == EDITION
    assert rows["w2020_seed000"]["edition"] == EDITION


def test_one_training_run_of_the_reference(tmp_path):
    """The hidden training checks (two colourization runs, one fine-tuning run verified by
    the parent's own reproduction) pass on the reference."""
    out = tmp_path / "result.json"
    run = run_grader(W2020_REFERENCE, "--json", out, train=True)
    data = json.loads(out.read_text())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    training = [t for t in data["tests"] if t["tags"][1] == "training"]
    assert len(training) == 3 and all(t["status"] == "passed" for t in training), training
    assert data["score"] == 21
