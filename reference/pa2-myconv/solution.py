"""Reference solution for the MyConv2d family (PA2 W2020 and W2019): every graded student
part as importable Python.

Made by `grade assign reference/pa2-w2020/master.ipynb` from the W2020 master notebook (see
docs/master-notebooks.md): edit the master, not this file. The W2019 master shares this
module; its own CNN and UNet (fixed attribute names, a given forward) are checked against
`ColourNet` by the family's tests instead, since they differ from W2020's.

The grader imports this module in the trusted parent process only; it is never sent to the
sandboxed child. Besides the graded definitions (the provided `MyConv2d`, W2020's `CNN` and
`UNet`) it holds the master's grader-side extras: `ColourNet`, the networks under every
reading the handouts leave open (docs/family-myconv.md), and `select_learned_parameters` /
`replace_head_and_freeze`, which wrap the two Part C regions (inside `train(args, model)`,
and in the driver cell) so that checks can call them; their code is the master's region
code itself.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# --- A.1 -------------------------------------------------------------------------------
######################################################################
# MODELS
######################################################################

class MyConv2d(nn.Module):
    """A square 2D convolution written out by hand: use it instead of nn.Conv2d.

    `padding=None` pads by kernel_size // 2, so that an odd kernel keeps the image size.
    """

    def __init__(self, in_channels, out_channels, kernel_size, padding=None):
        super(MyConv2d, self).__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.padding = kernel_size // 2 if padding is None else padding
        shape = (out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self):
        # Uniform in +-1/sqrt(fan_in), the weight drawn first (nn.Conv2d's default too).
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size * self.kernel_size)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, input):
        return F.conv2d(input, self.weight, self.bias, padding=self.padding)


class CNN(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(CNN, self).__init__()
        padding = kernel // 2

        ############### YOUR CODE GOES HERE ###############
        self.downconv1 = nn.Sequential(
            MyConv2d(num_in_channels, num_filters, kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU())
        self.downconv2 = nn.Sequential(
            MyConv2d(num_filters, 2 * num_filters, kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU())
        self.rfconv = nn.Sequential(
            MyConv2d(2 * num_filters, 2 * num_filters, kernel, padding=padding),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU())
        self.upconv1 = nn.Sequential(
            MyConv2d(2 * num_filters, num_filters, kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU())
        self.upconv2 = nn.Sequential(
            MyConv2d(num_filters, num_colours, kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_colours),
            nn.ReLU())
        self.finalconv = MyConv2d(num_colours, num_colours, kernel, padding=padding)
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        out1 = self.downconv1(x)
        out2 = self.downconv2(out1)
        out3 = self.rfconv(out2)
        out4 = self.upconv1(out3)
        out5 = self.upconv2(out4)
        return self.finalconv(out5)
        ###################################################


# --- B.1 -------------------------------------------------------------------------------
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(UNet, self).__init__()

        ############### YOUR CODE GOES HERE ###############
        self.downconv1 = nn.Sequential(
            MyConv2d(num_in_channels, num_filters, kernel),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU())
        self.downconv2 = nn.Sequential(
            MyConv2d(num_filters, 2 * num_filters, kernel),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU())
        self.rfconv = nn.Sequential(
            MyConv2d(2 * num_filters, 2 * num_filters, kernel),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU())
        self.upconv1 = nn.Sequential(
            MyConv2d(2 * num_filters + 2 * num_filters, num_filters, kernel),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU())
        self.upconv2 = nn.Sequential(
            MyConv2d(num_filters + num_filters, num_colours, kernel),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_colours),
            nn.ReLU())
        self.finalconv = MyConv2d(num_colours + num_in_channels, num_colours, kernel)
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        out1 = self.downconv1(x)
        out2 = self.downconv2(out1)
        out3 = self.rfconv(out2)
        out4 = self.upconv1(torch.cat([out3, out2], dim=1))
        out5 = self.upconv2(torch.cat([out4, out1], dim=1))
        return self.finalconv(torch.cat([out5, x], dim=1))
        ###################################################


# --- every reading of the handouts (the checks' reference networks) ----------------------
class ColourNet(nn.Module):
    """The family's CNN (skips=0) and UNet (skips=2 or 3) under every reading the handouts
    leave open (docs/family-myconv.md): the checks compare a student's network with these.

    `batchnorm`: "after-pooling" (MyConv2d, MaxPool2d or Upsample, BatchNorm2d, ReLU: the
    W2020 figure) or "before-pooling" (MyConv2d, BatchNorm2d, ReLU, then MaxPool2d or
    Upsample: W2019's RegressionCNN). `upconv2_width`: "num_colours" or "3" filters in the
    fifth block. Each torch.cat puts the earlier layer's output (the skip) second; the
    checks try the other orders by permuting the loaded weights.
    """

    def __init__(self, kernel, num_filters, num_colours, num_in_channels,
                 batchnorm="after-pooling", upconv2_width="num_colours", skips=0):
        super().__init__()
        if batchnorm not in ("after-pooling", "before-pooling") or int(skips) not in (0, 2, 3):
            raise ValueError(f"unknown reading: batchnorm={batchnorm!r}, skips={skips!r}")
        nf, self.skips = num_filters, int(skips)
        width = num_colours if upconv2_width == "num_colours" else int(upconv2_width)
        before = batchnorm == "before-pooling"

        def block(cin, cout, resample=None):
            norm = [nn.BatchNorm2d(cout), nn.ReLU()]
            if resample is None:
                rest = norm
            else:
                rest = norm + [resample] if before else [resample] + norm
            return nn.Sequential(MyConv2d(cin, cout, kernel), *rest)

        self.downconv1 = block(num_in_channels, nf, nn.MaxPool2d(2))
        self.downconv2 = block(nf, 2 * nf, nn.MaxPool2d(2))
        self.rfconv = block(2 * nf, 2 * nf)
        self.upconv1 = block(2 * nf + (2 * nf if self.skips == 3 else 0), nf, nn.Upsample(scale_factor=2))
        self.upconv2 = block(nf + (nf if self.skips else 0), width, nn.Upsample(scale_factor=2))
        self.finalconv = MyConv2d(width + (num_in_channels if self.skips else 0), num_colours, kernel)

    def forward(self, x):
        out1 = self.downconv1(x)
        out2 = self.downconv2(out1)
        out3 = self.rfconv(out2)
        out4 = self.upconv1(torch.cat([out3, out2], dim=1) if self.skips == 3 else out3)
        out5 = self.upconv2(torch.cat([out4, out1], dim=1) if self.skips else out4)
        return self.finalconv(torch.cat([out5, x], dim=1) if self.skips else out5)


# --- Part C -------------------------------------------------------------------------------
def select_learned_parameters(model):
    """C.1, inside the segmentation `train(args, model)`."""
    learned_parameters = []
    ################ Code goes here ######################
    for name, param in model.named_parameters():
        if name.startswith("classifier.4"):
            learned_parameters.append(param)
    ######################################################
    return learned_parameters


def replace_head_and_freeze(model):
    """C.2, the module-level driver cell (it runs with `model` as a global)."""
    ################ Code goes here ######################
    model.requires_grad_(False)
    model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)
    ######################################################
    return model
