"""PA2 W2019 (CSC421/2516, `colourization.ipynb`, no title cell): the reference, the starter
and notebooks written the way the real CSC421 notebooks (and one reuse) are: BatchNorm before
pooling, `upconv2` with 3 filters and `plot_activation` edited to match, a pool-first copy of
the course's 2018 solution, hard-coded channel numbers, Python 2 kernels. Graded without
--assignment in the session's batch (--no-train). Slow."""

from __future__ import annotations

import csv

import pytest

from myconv_cases import W2019_REFERENCE, W2019_TEMPLATE, Case, expect, feedback, summary

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

EDITION = "pa2-w2019"
PARTS = {"B.1", "C.1", "E"}


def cnn_init(block, width="num_colours", final_in=None, nic="num_in_channels", nf="num_filters"):
    """A W2019 CNN.__init__ (the given forward kept): `block(cin, cout, resample)` as source."""
    final_in = final_in or width
    return f"""
class CNN(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(CNN, self).__init__()
        padding = kernel // 2

        ############### YOUR CODE GOES HERE ###############
        self.downconv1 = {block(nic, nf, "nn.MaxPool2d(2)")}
        self.downconv2 = {block(nf, "2*" + nf, "nn.MaxPool2d(2)")}
        self.rfconv = {block("2*" + nf, "2*" + nf, None)}
        self.upconv1 = {block("2*" + nf, nf, "nn.Upsample(scale_factor=2)")}
        self.upconv2 = {block(nf, width, "nn.Upsample(scale_factor=2)")}
        self.finalconv = MyConv2d({final_in}, num_colours, kernel_size=kernel)
        ###################################################

    def forward(self, x):
        self.out1 = self.downconv1(x)
        self.out2 = self.downconv2(self.out1)
        self.out3 = self.rfconv(self.out2)
        self.out4 = self.upconv1(self.out3)
        self.out5 = self.upconv2(self.out4)
        self.out_final = self.finalconv(self.out5)
        return self.out_final
"""


def bn_first(cin, cout, resample):
    """As RegressionCNN: MyConv2d, BatchNorm2d, ReLU, then the pooling (MyConv2d without padding=)."""
    tail = f", {resample}" if resample else ""
    return (
        f"nn.Sequential(MyConv2d({cin}, {cout}, kernel_size=kernel), nn.BatchNorm2d({cout}), nn.ReLU(){tail})"
    )


def pool_first(cin, cout, resample):
    """The course's 2018 solution: MyConv2d, the pooling, BatchNorm2d, ReLU."""
    mid = f"{resample}, " if resample else ""
    return (
        f"nn.Sequential(MyConv2d({cin}, {cout}, kernel_size=kernel, padding=padding), {mid}"
        f"nn.BatchNorm2d({cout}), nn.ReLU())"
    )


def unet(width="num_colours", skips=3, final_in=None, keep=True, block=bn_first):
    """A W2019 UNet: three (or two) skips, upconv2 with `width` filters, activations kept."""
    final_in = final_in or f"{width} + num_in_channels"
    up1_in = "4*num_filters" if skips == 3 else "2*num_filters"
    up1_arg = "torch.cat((self.out3, self.out2), dim=1)" if skips == 3 else "self.out3"
    s = "self." if keep else ""
    forward = f"""
        {s}out1 = self.downconv1(x)
        {s}out2 = self.downconv2({s}out1)
        {s}out3 = self.rfconv({s}out2)
        {s}out4 = self.upconv1({up1_arg.replace("self.", s)})
        {s}out5 = self.upconv2(torch.cat(({s}out4, {s}out1), dim=1))
        {s}out_final = self.finalconv(torch.cat(({s}out5, x), dim=1))
        return {s}out_final"""
    return f"""
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(UNet, self).__init__()
        padding = kernel // 2
        self.downconv1 = {block("num_in_channels", "num_filters", "nn.MaxPool2d(2)")}
        self.downconv2 = {block("num_filters", "2*num_filters", "nn.MaxPool2d(2)")}
        self.rfconv = {block("2*num_filters", "2*num_filters", None)}
        self.upconv1 = {block(up1_in, "num_filters", "nn.Upsample(scale_factor=2)")}
        self.upconv2 = {block("2*num_filters", width, "nn.Upsample(scale_factor=2)")}
        self.finalconv = MyConv2d({final_in}, num_colours, kernel_size=kernel)

    def forward(self, x):{forward}
"""


# The literal numbers of the notebook's defaults (kernel 3, 32 filters, 24 colours, greyscale):
# right there only.
HARD_CODED_CNN = cnn_init(bn_first, width="3", final_in="3", nic="1", nf="32").replace(
    "MyConv2d(3, num_colours", "MyConv2d(3, 24"
)
WIDTH_3_CNN = cnn_init(bn_first, width="3", final_in="3")
POOL_FIRST_CNN = cnn_init(pool_first)
NN_CONV2D_CNN = (
    cnn_init(bn_first)
    .replace("MyConv2d(", "nn.Conv2d(")
    .replace("kernel_size=kernel)", "kernel_size=kernel, padding=kernel // 2)")
)
RENAMED_CNN = (
    cnn_init(bn_first).replace("self.downconv1 =", "self.down1 =").replace("self.downconv2 =", "self.down2 =")
)
PLOT_IMGWIDTH = (
    "def draw_activations(path, activation, imgwidth=4):",
    "def draw_activations(path, activation, imgwidth=3):",
)

RUNS = """
%mkdir -p /content/csc421/a2/
%cd /content/csc421/a2
!pip install Pillow==4.0.0
for epochs in [1, 5, 10]:
    args.epochs = epochs
    cnn = train(args)
print "trained"
"""

CASES = [
    Case("w2019_width_3_plot_edited", {"replace": {"CNN": WIDTH_3_CNN}, "substitute": dict([PLOT_IMGWIDTH])}),
    Case("w2019_pool_first_2018", {"replace": {"CNN": POOL_FIRST_CNN, "UNet": unet(block=pool_first)}}),
    Case("w2019_unet_width_3", {"replace": {"UNet": unet(width="3")}, "kernel": "python2"}),
    Case(
        "w2019_unet_width_3_two_skips",
        {"replace": {"UNet": unet(width="3", skips=2)}},
        lost={"C.1": {"layers", "params", "equivalence"}},
        feedback={("C.1", "params"): ["two skip connections", "this course asks for three"]},
    ),
    Case(
        "w2019_hard_coded_defaults",
        {"replace": {"CNN": HARD_CODED_CNN}},
        lost={"B.1": {"layers", "params", "equivalence", "shape"}},
    ),
    Case(
        "w2019_finalconv_greyscale_only",
        {"replace": {"UNet": unet(final_in="num_colours + 1")}},
        lost={"C.1": {"layers", "params", "equivalence", "shape"}},
    ),
    Case(
        "w2019_unet_keeps_no_activations",
        {"replace": {"UNet": unet(keep=False)}},
        lost={"E": {"activations UNet"}},
        feedback={("E", "activations UNet"): ["does not keep self.out1, self.out2", "plot_activation"]},
    ),
    Case(
        "w2019_renamed_blocks",
        {"replace": {"CNN": RENAMED_CNN}},
        lost={"B.1": {"layers", "myconv", "equivalence", "shape"}, "E": {"activations CNN"}},
        feedback={("B.1", "layers"): ["no attribute 'downconv1'", "exactly these names"]},
    ),
    Case(
        "w2019_nn_conv2d",
        {"replace": {"CNN": NN_CONV2D_CNN}},
        lost={"B.1": {"myconv"}},
        feedback={("B.1", "myconv"): ["is a Conv2d"]},
    ),
    Case("w2019_noise", {"kernel": "python2", "extra_cells": [RUNS]}),
]

NOTEBOOKS = {
    "w2019_reference": {"base": W2019_REFERENCE},
    "w2019_template": {"base": W2019_TEMPLATE, "kernel": "python2"},
    **{c.name: dict(c.spec, base=W2019_REFERENCE) for c in CASES},
}


def test_reference_gets_full_marks(graded):
    result = graded["w2019_reference"]
    expect(result, EDITION, PARTS)
    assert result.max_score == 14, summary(result)
    text = feedback(result, "B.1", "equivalence")
    assert "Matched the reading: BatchNorm before the pooling" in text, text


def test_template_gets_nothing(graded):
    result = graded["w2019_template"]
    assert result.data["grader"]["assignment"] == EDITION, summary(result)
    assert result.score == 0 and result.max_score == 14, summary(result)
    assert all(t["status"] == "failed" for t in result.tests), summary(result)
    # The starter parses: CNN lacks the blocks its given forward calls, UNet returns None.
    assert "exactly these names" in feedback(result, "B.1", "layers")
    assert "forward returned NoneType" in feedback(result, "C.1", "layers")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_notebook_loses_exactly_what_it_should(graded, case):
    result = graded[case.name]
    expect(result, EDITION, PARTS, case.lost)
    for (part, check), phrases in case.feedback.items():
        text = feedback(result, part, check)
        for phrase in phrases:
            assert phrase in text, f"{case.name} {part} {check}: {phrase!r} not in\n{text}"


def test_feedback_names_the_readings_real_notebooks_chose(graded):
    text = feedback(graded["w2019_width_3_plot_edited"], "B.1", "equivalence")
    assert "upconv2 with 3 filters" in text, text
    text = feedback(graded["w2019_pool_first_2018"], "C.1", "equivalence")
    assert "BatchNorm after the pooling" in text, text


def test_the_batch_gradebook_has_the_w2019_edition_column(graded, main_batch):
    rows = {
        r["submission"]: r
        for r in csv.DictReader((main_batch.out / "gradebook.csv").read_text().splitlines())
    }
    for name in NOTEBOOKS:
        assert rows[name]["edition"] == EDITION, rows[name]
        assert float(rows[name]["E"]) == pytest.approx(
            sum(t["score"] for t in graded[name].tests if t["tags"][0] == "E")
        )
