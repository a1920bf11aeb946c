"""PA2 W2021's colourization parts (A.1 PoolUpsampleNet, B.1 ConvTransposeNet, C.1 UNet) as
notebooks: real mistakes (`MUTANTS`, each with the checks it must lose and the feedback it must
get), correct solutions written in other styles (`CORRECT_STYLES`), and what real notebooks
carry besides the answers. `COLOURIZATION_NOTEBOOKS` is what tests/test_pa2_colourization.py
has graded; other tests build on the same sources."""

from dataclasses import dataclass

from submissions import TEMPLATE_NOTEBOOK

# --------------------------------------------------------------------------------------
# Mistakes found in real submissions
# --------------------------------------------------------------------------------------
A1_RELU_BEFORE_BN = """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.layer1 = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.BatchNorm2d(num_filters))
        self.layer2 = nn.Sequential(
            nn.Conv2d(num_filters, 2 * num_filters, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.BatchNorm2d(2 * num_filters))
        self.layer3 = nn.Sequential(
            nn.Conv2d(2 * num_filters, num_filters, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.ReLU(),
            nn.BatchNorm2d(num_filters))
        self.layer4 = nn.Sequential(
            nn.Conv2d(num_filters, num_colours, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.ReLU(),
            nn.BatchNorm2d(num_colours))
        self.layer5 = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.layer5(x)
"""

# The block helper of the reference, with a mistake in the network that uses it.
_A1_BLOCKS = """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2

        def block(cin, cout, resample):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=kernel, padding=padding),
                                 resample, nn.BatchNorm2d(cout), nn.ReLU())

{body}
"""
A1_MISSING_FINAL_CONV = _A1_BLOCKS.format(
    body="""
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))

    def forward(self, x):
        return self.up2(self.up1(self.down2(self.down1(x))))
"""
)
A1_POOL_UPSAMPLE_SWAPPED = _A1_BLOCKS.format(
    body="""
        self.down1 = block(num_in_channels, num_filters, nn.Upsample(scale_factor=2))
        self.down2 = block(num_filters, 2 * num_filters, nn.Upsample(scale_factor=2))
        self.up1 = block(2 * num_filters, num_filters, nn.MaxPool2d(2))
        self.up2 = block(num_filters, num_colours, nn.MaxPool2d(2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
)
A1_POOL_KERNEL_1 = _A1_BLOCKS.format(
    body="""
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(1))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(1))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
)
# Third block keeps 2NF channels (its BatchNorm agrees, so it runs): one wrong width.
A1_WRONG_WIDTH = _A1_BLOCKS.format(
    body="""
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, 2 * num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(2 * num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
)
# A leftover layer from an experiment: defined, never called.
A1_UNUSED_LAYER = _A1_BLOCKS.format(
    body="""
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)
        self.refine = nn.Conv2d(num_colours, num_colours, kernel_size=1)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
)
A1_GREYSCALE_ONLY = _A1_BLOCKS.format(
    body="""
        self.down1 = block(1, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
)

# The reference's network with one hyper-parameter ignored (a constant in its place): each
# check that varies that hyper-parameter must see it.
_A1_IGNORING = """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        {constant}
        padding = kernel // 2

        def block(cin, cout, resample):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=kernel, padding=padding),
                                 resample, nn.BatchNorm2d(cout), nn.ReLU())

        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""
# One BatchNorm shared by the first and third blocks (both have num_filters channels): it runs,
# with the right output shape everywhere, but it is the same layer twice.
A1_SHARED_BATCHNORM = """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.bn = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.conv3 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.final = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)
        self.pool, self.up = nn.MaxPool2d(2), nn.Upsample(scale_factor=2)

    def forward(self, x):
        x = torch.relu(self.bn(self.pool(self.conv1(x))))
        x = torch.relu(self.bn2(self.pool(self.conv2(x))))
        x = torch.relu(self.bn(self.up(self.conv3(x))))
        x = torch.relu(self.bn4(self.up(self.conv4(x))))
        return self.final(x)
"""
A1_IGNORES_KERNEL = _A1_IGNORING.format(constant="kernel = 3  # the argument is ignored")
A1_IGNORES_NUM_FILTERS = _A1_IGNORING.format(constant="num_filters = 4  # the argument is ignored")
A1_IGNORES_NUM_COLOURS = _A1_IGNORING.format(constant="num_colours = 24  # the argument is ignored")

_B1 = """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        stride = 2
        padding = kernel // 2
        output_padding = 1
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride={s1}, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.tconv1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                                         padding=padding, output_padding={op})
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.tconv2 = nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=stride,
                                         padding=padding, output_padding={op})
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.final = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
{forward}
"""
_B1_FORWARD = """\
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.tconv1(x)))
        x = F.relu(self.bn4(self.tconv2(x)))
"""
B1_STRIDE_1 = _B1.format(s1=1, op="output_padding", forward=_B1_FORWARD + "        return self.final(x)")
B1_OUTPUT_PADDING_0 = _B1.format(s1="stride", op=0, forward=_B1_FORWARD + "        return self.final(x)")
B1_RETURNS_INTERMEDIATE = _B1.format(
    s1="stride",
    op="output_padding",
    forward=_B1_FORWARD
    + """\
        out = self.final(x)
        return x""",
)
B1_RELU_AFTER_FINAL = _B1.format(
    s1="stride",
    op="output_padding",
    forward=_B1_FORWARD
    + """\
        return F.relu(self.final(x))""",
)
B1_NO_BATCHNORM = """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        stride = 2
        padding = kernel // 2
        output_padding = 1
        self.layers = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel, stride=stride, padding=padding),
            nn.ReLU(),
            nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.ReLU(),
            nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.ReLU(),
            nn.Conv2d(num_colours, num_colours, kernel, padding=padding),
        )

    def forward(self, x):
        return self.layers(x)
"""

_UNET = """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        stride = 2
        padding = kernel // 2
        output_padding = 1
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=stride, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.tconv1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                                         padding=padding, output_padding=output_padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.tconv2 = nn.ConvTranspose2d({t2_in}, num_colours, kernel, stride=stride,
                                         padding=padding, output_padding=output_padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.final = nn.Conv2d({final_in}, num_colours, kernel, padding=padding)

    def forward(self, x):
        out1 = self.conv1(x)
        x1 = F.relu(self.bn1(out1))
        x2 = F.relu(self.bn2(self.conv2(x1)))
        x3 = F.relu(self.bn3(self.tconv1(x2)))
{rest}
"""
# The skip takes conv1's raw output instead of the block's output: the channels still fit.
C1_SKIP_BEFORE_ACTIVATION = _UNET.format(
    t2_in="2 * num_filters",
    final_in="num_colours + num_in_channels",
    rest="""\
        x4 = F.relu(self.bn4(self.tconv2(torch.cat([x3, out1], dim=1))))
        return self.final(torch.cat([x4, x], dim=1))""",
)
# No first skip; the second transposed conv was shrunk to fit.
C1_MISSING_SKIP = _UNET.format(
    t2_in="num_filters",
    final_in="num_colours + num_in_channels",
    rest="""\
        x4 = F.relu(self.bn4(self.tconv2(x3)))
        return self.final(torch.cat([x4, x], dim=1))""",
)
# The greyscale input is never concatenated; the final conv was shrunk to fit.
C1_MISSING_INPUT_SKIP = _UNET.format(
    t2_in="2 * num_filters",
    final_in="num_colours",
    rest="""\
        x4 = F.relu(self.bn4(self.tconv2(torch.cat([x3, x1], dim=1))))
        return self.final(x4)""",
)
# `+ 1` for "the grey channel": breaks for colour input.
C1_GREY_CHANNEL_HARDCODED = _UNET.format(
    t2_in="2 * num_filters",
    final_in="num_colours + 1",
    rest="""\
        x4 = F.relu(self.bn4(self.tconv2(torch.cat([x3, x1], dim=1))))
        return self.final(torch.cat([x4, x], dim=1))""",
)

# Upsample + Conv2d where the handout has transposed convolutions: the same parameter count
# and output shape, so only the layer type tells them apart.
C1_UPSAMPLE_CONV = """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.up = nn.Upsample(scale_factor=2)
        self.tconv1 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.tconv2 = nn.Conv2d(2 * num_filters, num_colours, kernel, padding=padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.final = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=padding)

    def forward(self, x):
        x1 = F.relu(self.bn1(self.conv1(x)))
        x2 = F.relu(self.bn2(self.conv2(x1)))
        x3 = F.relu(self.bn3(self.tconv1(self.up(x2))))
        x4 = F.relu(self.bn4(self.tconv2(self.up(torch.cat([x3, x1], dim=1)))))
        return self.final(torch.cat([x4, x], dim=1))
"""


@dataclass
class Mutant:
    name: str
    replace: dict
    part: str
    lost: set  # check kinds that must fail, in that part only
    feedback: dict  # kind -> phrases its feedback must contain

    def spec(self):
        return {"replace": self.replace}


MUTANTS = [
    Mutant(
        "a1_relu_before_bn",
        {"PoolUpsampleNet": A1_RELU_BEFORE_BN},
        "A.1",
        {"equivalence"},
        {
            "equivalence": [
                "your output differs from the reference's",
                "the input to layer 2, BatchNorm2d(4) -> output [3, 4, 16, 16], differs",
                "activations",
            ]
        },
    ),
    Mutant(
        "a1_missing_final_conv",
        {"PoolUpsampleNet": A1_MISSING_FINAL_CONV},
        "A.1",
        {"layers", "params", "equivalence"},
        {
            "layers": ["parametrised layer 9", "expected Conv2d(24->24, kernel 3)", "found nothing"],
            "params": ["parameters; expected", "no layer is missing"],
            "equivalence": ["8 parametrised layers are used in forward, the reference uses 9"],
        },
    ),
    Mutant(
        "a1_pool_upsample_swapped",
        {"PoolUpsampleNet": A1_POOL_UPSAMPLE_SWAPPED},
        "A.1",
        {"layers", "equivalence"},
        {
            "layers": [
                "parametrised layer 2",
                "BatchNorm2d(4) -> output [2, 4, 16, 16]",
                "BatchNorm2d(4) -> output [2, 4, 64, 64]",
            ],
            "equivalence": ["the input to layer 2, BatchNorm2d(4)", "pooling or upsampling"],
        },
    ),
    Mutant(
        "a1_pool_kernel_1",
        {"PoolUpsampleNet": A1_POOL_KERNEL_1},
        "A.1",
        {"shape", "layers", "equivalence"},
        {
            "shape": ["returned shape [1, 2, 128, 128]; expected [1, 2, 32, 32]"],
            "layers": [
                "parametrised layer 2",
                "expected BatchNorm2d(4) -> output [2, 4, 16, 16]",
                "found BatchNorm2d(4) -> output [2, 4, 32, 32]",
            ],
            "equivalence": ["output has shape", "128, 128]"],
        },
    ),
    Mutant(
        "a1_wrong_width",
        {"PoolUpsampleNet": A1_WRONG_WIDTH},
        "A.1",
        {"layers", "params", "equivalence"},
        {
            "layers": [
                "parametrised layer 5",
                "expected Conv2d(8->4, kernel 3)",
                "found Conv2d(8->8, kernel 3)",
            ],
            "params": ["parameters; expected", "channel counts"],
            "equivalence": [
                "do not fit your layers",
                "layer 5 (Conv2d) weight has shape [8, 8, 3, 3]",
                "the reference [4, 8, 3, 3]",
            ],
        },
    ),
    Mutant(
        "a1_unused_layer",
        {"PoolUpsampleNet": A1_UNUSED_LAYER},
        "A.1",
        {"params"},
        {
            "params": [
                "PoolUpsampleNet(kernel=3, num_filters=4, num_colours=24",
                "has 7,404 parameters; expected 6,804 (+600)",
            ]
        },
    ),
    Mutant(
        "a1_greyscale_only",
        {"PoolUpsampleNet": A1_GREYSCALE_ONLY},
        "A.1",
        {"shape", "layers", "params", "equivalence"},
        {
            "shape": ["RuntimeError", "to have 1 channels, but got 3 channels", "code cell 7, line 18"],
            "layers": ["to have 1 channels, but got 3 channels"],
            "params": ["num_in_channels=3) has 2,471 parameters; expected 2,597 (-126)"],
            "equivalence": ["to have 1 channels, but got 3 channels"],
        },
    ),
    Mutant(
        "a1_shared_batchnorm",
        {"PoolUpsampleNet": A1_SHARED_BATCHNORM},
        "A.1",
        {"layers", "params", "equivalence"},
        {
            "layers": ["Layer 6 runs `bn` a second time (it is also layer 2)"],
            "equivalence": ["8 parametrised layers are used in forward, the reference uses 9"],
        },
    ),
    # A hyper-parameter ignored: the checks that vary it fail, each naming the call it failed on.
    Mutant(
        "a1_ignores_kernel",
        {"PoolUpsampleNet": A1_IGNORES_KERNEL},
        "A.1",
        {"layers", "params", "equivalence"},
        {
            "layers": [
                "PoolUpsampleNet(kernel=5,",
                "expected Conv2d(1->5, kernel 5)",
                "found Conv2d(1->5, kernel 3)",
            ],
            "params": [
                "PoolUpsampleNet(kernel=5, num_filters=5, num_colours=7, num_in_channels=1) has 1,789 "
                "parameters; expected 4,813"
            ],
            "equivalence": ["PoolUpsampleNet(kernel=5,"],
        },
    ),
    Mutant(
        "a1_ignores_num_filters",
        {"PoolUpsampleNet": A1_IGNORES_NUM_FILTERS},
        "A.1",
        {"layers", "params", "equivalence"},
        {"params": ["num_filters=7,"], "layers": ["num_filters=7,"]},
    ),
    Mutant(
        "a1_ignores_num_colours",
        {"PoolUpsampleNet": A1_IGNORES_NUM_COLOURS},
        "A.1",
        {"shape", "layers", "params", "equivalence"},
        {"params": ["num_colours=5,"], "shape": ["expected [", "num_colours"]},
    ),
    Mutant(
        "b1_stride_1",
        {"ConvTransposeNet": B1_STRIDE_1},
        "B.1",
        {"shape", "layers", "equivalence"},
        {
            "shape": ["ConvTransposeNet(kernel=3", "returned shape [1, 2, 64, 64]; expected [1, 2, 32, 32]"],
            "layers": [
                "parametrised layer 1",
                "expected Conv2d(1->4, kernel 3, stride 2) -> output [2, 4, 16, 16]",
                "found Conv2d(1->4, kernel 3) -> output [2, 4, 32, 32]",
            ],
            "equivalence": ["output has shape", "64, 64]"],
        },
    ),
    Mutant(
        "b1_output_padding_0",
        {"ConvTransposeNet": B1_OUTPUT_PADDING_0},
        "B.1",
        {"shape", "layers", "equivalence"},
        {
            "shape": ["returned shape [1, 2, 29, 29]"],
            "layers": [
                "parametrised layer 5",
                "ConvTranspose2d(8->4, kernel 3, stride 2)",
                "[2, 4, 16, 16]",
                "[2, 4, 15, 15]",
            ],
            "equivalence": ["output has shape", "29, 29]"],
        },
    ),
    # The final conv runs (so every layer is there) but its output is thrown away.
    Mutant(
        "b1_returns_intermediate",
        {"ConvTransposeNet": B1_RETURNS_INTERMEDIATE},
        "B.1",
        {"equivalence"},
        {
            "equivalence": [
                "your output differs from the reference's",
                "Every layer agrees",
                "after the last parametrised layer",
            ]
        },
    ),
    Mutant(
        "b1_relu_after_final",
        {"ConvTransposeNet": B1_RELU_AFTER_FINAL},
        "B.1",
        {"equivalence"},
        {"equivalence": ["Every layer agrees", "after the last parametrised layer"]},
    ),
    Mutant(
        "b1_no_batchnorm",
        {"ConvTransposeNet": B1_NO_BATCHNORM},
        "B.1",
        {"layers", "params", "equivalence"},
        {
            "layers": [
                "Layer 2 of the reference, a BatchNorm2d, is missing: your layer 2 is a Conv2d",
                "parametrised layer 2",
                "expected BatchNorm2d(4)",
                "found Conv2d(4->8",
            ],
            "params": ["parameters; expected", "(-"],
            "equivalence": ["5 parametrised layers are used in forward, the reference uses 9"],
        },
    ),
    # The cause (a layer type) comes before the evidence (weight shapes that do not fit).
    Mutant(
        "c1_upsample_conv",
        {"UNet": C1_UPSAMPLE_CONV},
        "C.1",
        {"layers", "equivalence"},
        {
            "layers": [
                "Layer 5 is a Conv2d where the reference has a ConvTranspose2d (",
                "transposed convolution",
            ],
            "equivalence": [
                "Layer 5 is a Conv2d where the reference has a ConvTranspose2d",
                "; so the reference's weights do not fit your layers: layer 5 (Conv2d) weight has shape",
            ],
        },
    ),
    Mutant(
        "c1_skip_before_activation",
        {"UNet": C1_SKIP_BEFORE_ACTIVATION},
        "C.1",
        {"equivalence"},
        {
            "equivalence": [
                "Layers 1-6 agree",
                "the input to layer 7",
                "ConvTranspose2d(8->24, kernel 3, stride 2)",
                "skip connections",
            ]
        },
    ),
    Mutant(
        "c1_missing_skip",
        {"UNet": C1_MISSING_SKIP},
        "C.1",
        {"layers", "params", "equivalence"},
        {
            "layers": [
                "parametrised layer 7",
                "expected ConvTranspose2d(8->24, kernel 3, stride 2)",
                "found ConvTranspose2d(4->24, kernel 3, stride 2)",
            ],
            "params": ["UNet(kernel=3, num_filters=4", "parameters; expected"],
            "equivalence": ["layer 7 (ConvTranspose2d) weight has shape [4, 24, 3, 3]"],
        },
    ),
    Mutant(
        "c1_missing_input_skip",
        {"UNet": C1_MISSING_INPUT_SKIP},
        "C.1",
        {"layers", "params", "equivalence"},
        {
            "layers": [
                "parametrised layer 9",
                "expected Conv2d(25->24, kernel 3)",
                "found Conv2d(24->24, kernel 3)",
            ],
            "params": ["parameters; expected", "(-216)"],
            "equivalence": [
                "layer 9 (Conv2d) weight has shape [24, 24, 3, 3]",
                "the reference [24, 25, 3, 3]",
            ],
        },
    ),
    Mutant(
        "c1_grey_channel_hardcoded",
        {"UNet": C1_GREY_CHANNEL_HARDCODED},
        "C.1",
        {"shape", "layers", "params", "equivalence"},
        {
            "shape": ["to have 3 channels, but got 5 channels", "code cell 11, line 25"],
            "layers": ["to have 6 channels, but got 8 channels"],
            "params": [
                "UNet(kernel=3, num_filters=7, num_colours=5, num_in_channels=3) has 2,957 "
                "parameters; expected 3,047 (-90)"
            ],
            "equivalence": ["to have 6 channels, but got 8 channels"],
        },
    ),
]

# --------------------------------------------------------------------------------------
# Correct solutions written in other styles
# --------------------------------------------------------------------------------------
BIG_SEQUENTIAL = {
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.model = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(kernel_size=2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
            nn.Conv2d(num_filters, 2 * num_filters, kernel_size=kernel, padding=padding),
            nn.MaxPool2d(kernel_size=2),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU(),
            nn.Conv2d(2 * num_filters, num_filters, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
            nn.Conv2d(num_filters, num_colours, kernel_size=kernel, padding=padding),
            nn.Upsample(scale_factor=2),
            nn.BatchNorm2d(num_colours),
            nn.ReLU(),
            nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding),
        )

    def forward(self, x):
        return self.model(x)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        # the handout fixes these, so only kernel 3 keeps 32x32
        self.model = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
            nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                               output_padding=1),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
            nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=2, padding=1,
                               output_padding=1),
            nn.BatchNorm2d(num_colours),
            nn.ReLU(),
            nn.Conv2d(num_colours, num_colours, kernel, padding=1),
        )

    def forward(self, x):
        return self.model(x)
""",
}

FUNCTIONAL = {
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(PoolUpsampleNet, self).__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, num_filters * 2, kernel, padding=padding)
        self.bn2 = nn.BatchNorm2d(num_filters * 2)
        self.conv3 = nn.Conv2d(num_filters * 2, num_filters, kernel, padding=padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        x = F.relu(self.bn1(F.max_pool2d(self.conv1(x), 2)))
        x = F.relu(self.bn2(F.max_pool2d(self.conv2(x), 2)))
        x = F.relu(self.bn3(F.interpolate(self.conv3(x), scale_factor=2)))
        x = F.relu(self.bn4(F.interpolate(self.conv4(x), scale_factor=2)))
        return self.conv5(x)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(ConvTransposeNet, self).__init__()
        stride = 2
        padding = kernel // 2
        output_padding = 1
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride, padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride, padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.tconv1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride, padding,
                                         output_padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.tconv2 = nn.ConvTranspose2d(num_filters, num_colours, kernel, stride, padding,
                                         output_padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv3 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.tconv1(x)))
        x = F.relu(self.bn4(self.tconv2(x)))
        return self.conv3(x)
""",
    # both skips with the skip tensor first
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super(UNet, self).__init__()
        stride = 2
        padding = kernel // 2
        output_padding = 1
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=stride, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.tconv1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                                         padding=padding, output_padding=output_padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.tconv2 = nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=stride,
                                         padding=padding, output_padding=output_padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv3 = nn.Conv2d(num_in_channels + num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        x1 = F.relu(self.bn1(self.conv1(x)))
        x2 = F.relu(self.bn2(self.conv2(x1)))
        x3 = F.relu(self.bn3(self.tconv1(x2)))
        x4 = F.relu(self.bn4(self.tconv2(torch.cat((x1, x3), dim=1))))
        return self.conv3(torch.cat((x, x4), dim=1))
""",
}

MODULE_LISTS = {
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        widths = [num_in_channels, num_filters, 2 * num_filters, num_filters, num_colours]
        self.convs = nn.ModuleList(
            [nn.Conv2d(widths[i], widths[i + 1], kernel, padding=padding) for i in range(4)])
        self.norms = nn.ModuleList([nn.BatchNorm2d(w) for w in widths[1:]])
        self.resample = nn.ModuleList([nn.MaxPool2d(2), nn.MaxPool2d(2),
                                       nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=2)])
        self.out = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        for conv, resample, norm in zip(self.convs, self.resample, self.norms):
            x = torch.relu(norm(resample(conv(x))))
        return self.out(x)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.blocks = nn.ModuleList()
        for cin, cout in [(num_in_channels, num_filters), (num_filters, 2 * num_filters)]:
            self.blocks.append(nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=2, padding=1),
                                             nn.BatchNorm2d(cout), nn.ReLU()))
        for cin, cout in [(2 * num_filters, num_filters), (num_filters, num_colours)]:
            self.blocks.append(nn.Sequential(
                nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(cout), nn.ReLU()))
        self.blocks.append(nn.Conv2d(num_colours, num_colours, kernel, padding=1))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x
""",
    # skip first in the first torch.cat, second in the other
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        def down(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=2, padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU())
        def up(cin, cout):
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=1,
                                                    output_padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU())
        self.downs = nn.ModuleList([down(num_in_channels, num_filters),
                                    down(num_filters, 2 * num_filters)])
        self.ups = nn.ModuleList([up(2 * num_filters, num_filters),
                                  up(2 * num_filters, num_colours)])
        self.final = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=1)

    def forward(self, x):
        d1 = self.downs[0](x)
        d2 = self.downs[1](d1)
        u1 = self.ups[0](d2)
        u2 = self.ups[1](torch.cat([d1, u1], 1))
        return self.final(torch.cat([u2, x], 1))
""",
}

SHARED_MODULES = {
    # one pooling module and one upsampling module, each used twice; one ReLU for all
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding)
        self.conv3 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.bn4 = nn.BatchNorm2d(num_colours)

    def forward(self, x):
        x = self.relu(self.bn1(self.pool(self.conv1(x))))
        x = self.relu(self.bn2(self.pool(self.conv2(x))))
        x = self.relu(self.bn3(self.upsample(self.conv3(x))))
        x = self.relu(self.bn4(self.upsample(self.conv4(x))))
        return self.conv5(x)
""",
    # layers registered twice: as attributes and again inside the Sequential blocks
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.up2 = nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.relu = nn.ReLU()
        self.block1 = nn.Sequential(self.conv1, nn.BatchNorm2d(num_filters), self.relu)
        self.block2 = nn.Sequential(self.conv2, nn.BatchNorm2d(2 * num_filters), self.relu)
        self.block3 = nn.Sequential(self.up1, nn.BatchNorm2d(num_filters), self.relu)
        self.block4 = nn.Sequential(self.up2, nn.BatchNorm2d(num_colours), self.relu)
        self.conv3 = nn.Conv2d(num_colours, num_colours, kernel, padding=1)

    def forward(self, x):
        return self.conv3(self.block4(self.block3(self.block2(self.block1(x)))))
""",
    # skip second in the first torch.cat, first in the other
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.relu = nn.ReLU()
        self.down1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=padding)
        self.norm1 = nn.BatchNorm2d(num_filters)
        self.down2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=padding)
        self.norm2 = nn.BatchNorm2d(2 * num_filters)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2,
                                      padding=padding, output_padding=1)
        self.norm3 = nn.BatchNorm2d(num_filters)
        self.up2 = nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=2,
                                      padding=padding, output_padding=1)
        self.norm4 = nn.BatchNorm2d(num_colours)
        self.out = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=padding)

    def forward(self, x):
        skip1 = self.relu(self.norm1(self.down1(x)))
        h = self.relu(self.norm2(self.down2(skip1)))
        h = self.relu(self.norm3(self.up1(h)))
        h = self.relu(self.norm4(self.up2(torch.cat((h, skip1), 1))))
        return self.out(torch.cat((x, h), 1))
""",
}

# Between them the UNets use all four orders of the two torch.cat calls (the reference:
# skip second in both; functional: skip first in both; module lists: first, then second;
# shared modules: second, then first).
EXPLICIT_FORWARD = {
    # every layer called as `self.layer.forward(x)`, which bypasses forward hooks (a real
    # W2020 notebook does this): the layer trace must still see all of them
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.conv3 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        x = F.relu(self.bn1.forward(F.max_pool2d(self.conv1.forward(x), 2)))
        x = F.relu(self.bn2.forward(F.max_pool2d(self.conv2.forward(x), 2)))
        x = F.relu(self.bn3.forward(F.interpolate(self.conv3.forward(x), scale_factor=2)))
        x = F.relu(self.bn4.forward(F.interpolate(self.conv4.forward(x), scale_factor=2)))
        return self.conv5.forward(x)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.up2 = nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv3 = nn.Conv2d(num_colours, num_colours, kernel, padding=1)

    def forward(self, x):
        x = F.relu(self.bn1.forward(self.conv1.forward(x)))
        x = F.relu(self.bn2.forward(self.conv2.forward(x)))
        x = F.relu(self.bn3.forward(self.up1.forward(x)))
        x = F.relu(self.bn4.forward(self.up2.forward(x)))
        return self.conv3.forward(x)
""",
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.up2 = nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv3 = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=1)

    def forward(self, x):
        d1 = F.relu(self.bn1.forward(self.conv1.forward(x)))
        d2 = F.relu(self.bn2.forward(self.conv2.forward(d1)))
        u1 = F.relu(self.bn3.forward(self.up1.forward(d2)))
        u2 = F.relu(self.bn4.forward(self.up2.forward(torch.cat([u1, d1], dim=1))))
        return self.conv3.forward(torch.cat([u2, x], dim=1))
""",
}

CORRECT_STYLES = {
    "style_big_sequential": BIG_SEQUENTIAL,
    "style_explicit_forward": EXPLICIT_FORWARD,
    "style_functional_super": FUNCTIONAL,
    "style_module_lists": MODULE_LISTS,
    "style_shared_modules": SHARED_MODULES,
}

# A cell that defines UNet but does not parse (a Python 2 print at its end).
UNET_RETURN = "        return self.final(torch.cat([u2, x], dim=1))\n"
UNET_PY2_PRINT = 'print "UNet defined"'

# --------------------------------------------------------------------------------------
# What real notebooks carry besides the answers: none of it may cost a point
# --------------------------------------------------------------------------------------
COLAB_SETUP = """
%mkdir -p /content/csc413/a2/
%cd /content/csc413/a2
!pip install torchsummary
!wget -N http://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz
!tar -xzf cifar-10-python.tar.gz
from google.colab import drive
drive.mount('/content/drive')
"""
# Early drafts, shadowed by the real definitions further down the notebook.
EARLY_DRAFTS = """
def compute_iou_loss(pred, gt):
    return 1 - (pred.argmax(1) == gt).float().mean()

def train(args, model):
    learned_parameters = list(model.parameters())
    optimizer = torch.optim.Adam(learned_parameters, lr=args.learn_rate)
"""
HUB_MODEL = """
model = torch.hub.load('pytorch/vision:v0.6.0', 'deeplabv3_resnet101', pretrained=True)
model.eval()
"""
RUN_EVERYTHING = """
for name in ["PoolUpsampleNet", "ConvTransposeNet", "UNet"]:
    args.model = name
    cnn = train(args)
if __name__ == "__main__":
    train(args, model)
"""
# Helpers defined again with other signatures (the colourization train keeps its name).
REDEFINED_HELPERS = """
class AttrDict(dict):
    def __init__(self, *args, **kwargs):
        super(AttrDict, self).__init__(*args, **kwargs)
        self.__dict__ = self


def compute_loss(criterion, outputs, labels, batch_size, num_colours):
    loss_out = outputs.transpose(1, 3).contiguous().view([batch_size * 32 * 32, num_colours])
    loss_lab = labels.transpose(1, 3).contiguous().view([batch_size * 32 * 32])
    return criterion(loss_out, loss_lab)


def train(args, cnn=None, plot_every=5):
    Net = globals()[args.model]
    cnn = cnn or Net(args.kernel, args.num_filters, 24, 1)
    return cnn
"""
# Does not parse (Python 2), defines nothing that is graded.
PY2_CELL = """
def show_losses(losses):
    for l in losses:
        print l
print "done"
"""

COLOURIZATION_NOTEBOOKS = {
    "reference": {},
    "template": {"base": TEMPLATE_NOTEBOOK},
    **{m.name: m.spec() for m in MUTANTS},
    **{name: {"replace": classes} for name, classes in CORRECT_STYLES.items()},
    "noise": {
        "kernel": "python2",
        "insert_cells": [(1, COLAB_SETUP), (2, EARLY_DRAFTS), (3, PY2_CELL)],
        "extra_cells": [HUB_MODEL, RUN_EVERYTHING, REDEFINED_HELPERS],
    },
    "broken_unet_cell": {"substitute": {UNET_RETURN: UNET_RETURN + "\n" + UNET_PY2_PRINT + "\n"}},
}


# A PoolUpsampleNet that cannot learn (its output is multiplied by zero): the honest twin of
# forgeries that fake a training run (tests/test_forgery.py, tests/test_trust_attacks.py).
CANNOT_LEARN = A1_RELU_BEFORE_BN.replace(
    "    def forward(self, x):\n",
    "    def forward(self, x):\n        return self._f(x) * 0\n\n    def _f(self, x):\n",
    1,
)
