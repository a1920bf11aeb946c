"""Copies planted among the test suite's notebooks, for the class report's similarity flags.

Each copy takes a correct solution already in the suite (a style of pa2_colourization_cases, an
IoU loss of pa2_finetune_cases) and disguises it the way students do: renamed variables,
independent statements reordered, comments and docstrings added, dead code added, or all at
once. The originals stay where they are, so every planted pair is (original, copy) or two
copies of one original. Every other pair of the suite's notebooks is independent work as far
as the flags are concerned: the suite's correct styles, its mutants (honest mistakes) and the
same code re-headed as another edition (compared only within an edition).
"""

from __future__ import annotations

from pa2_colourization_cases import BIG_SEQUENTIAL, FUNCTIONAL

# -- renamed: every name the student chose is another ---------------------------------------
RENAMED = {
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        chans = [num_in_channels, num_filters, 2 * num_filters, num_filters, num_colours]
        self.conv_stack = nn.ModuleList(
            [nn.Conv2d(chans[j], chans[j + 1], kernel, padding=padding) for j in range(4)])
        self.bn_stack = nn.ModuleList([nn.BatchNorm2d(c) for c in chans[1:]])
        self.scalers = nn.ModuleList([nn.MaxPool2d(2), nn.MaxPool2d(2),
                                      nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=2)])
        self.last = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, inp):
        for c, s, b in zip(self.conv_stack, self.scalers, self.bn_stack):
            inp = torch.relu(b(s(c(inp))))
        return self.last(inp)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.stages = nn.ModuleList()
        for a, b in [(num_in_channels, num_filters), (num_filters, 2 * num_filters)]:
            self.stages.append(nn.Sequential(nn.Conv2d(a, b, kernel, stride=2, padding=1),
                                             nn.BatchNorm2d(b), nn.ReLU()))
        for a, b in [(2 * num_filters, num_filters), (num_filters, num_colours)]:
            self.stages.append(nn.Sequential(
                nn.ConvTranspose2d(a, b, kernel, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(b), nn.ReLU()))
        self.stages.append(nn.Conv2d(num_colours, num_colours, kernel, padding=1))

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x
""",
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        def enc(i, o):
            return nn.Sequential(nn.Conv2d(i, o, kernel, stride=2, padding=1),
                                 nn.BatchNorm2d(o), nn.ReLU())
        def dec(i, o):
            return nn.Sequential(nn.ConvTranspose2d(i, o, kernel, stride=2, padding=1,
                                                    output_padding=1),
                                 nn.BatchNorm2d(o), nn.ReLU())
        self.encoders = nn.ModuleList([enc(num_in_channels, num_filters),
                                       enc(num_filters, 2 * num_filters)])
        self.decoders = nn.ModuleList([dec(2 * num_filters, num_filters),
                                       dec(2 * num_filters, num_colours)])
        self.head = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=1)

    def forward(self, img):
        e1 = self.encoders[0](img)
        e2 = self.encoders[1](e1)
        y1 = self.decoders[0](e2)
        y2 = self.decoders[1](torch.cat([e1, y1], 1))
        return self.head(torch.cat([y2, img], 1))
""",
}

# The IoU loss of d2_variant_per_image_module, renamed.
IOU_RENAMED = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    sm = nn.Softmax(dim=1)
    flower = sm(pred)[:, 1]
    target = gt.float()
    overlap = (flower * target).sum(dim=(1, 2))
    total = (flower + target - flower * target).sum(dim=(1, 2))
    score = (overlap + SMOOTH) / (total + SMOOTH)
    return 1 - score.mean()
"""

# -- reordered: the independent statements of each __init__ in another order ----------------
REORDERED = {
    "PoolUpsampleNet": """
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.conv5 = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)
        self.bn4 = nn.BatchNorm2d(num_colours)
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, padding=padding)
        self.upsample = nn.Upsample(scale_factor=2)
        self.bn2 = nn.BatchNorm2d(2 * num_filters)
        self.conv3 = nn.Conv2d(2 * num_filters, num_filters, kernel, padding=padding)
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(num_filters)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, padding=padding)
        self.pool = nn.MaxPool2d(2)
        self.bn3 = nn.BatchNorm2d(num_filters)
        self.conv4 = nn.Conv2d(num_filters, num_colours, kernel, padding=padding)

    def forward(self, x):
        x = self.relu(self.bn1(self.pool(self.conv1(x))))
        x = self.relu(self.bn2(self.pool(self.conv2(x))))
        x = self.relu(self.bn3(self.upsample(self.conv3(x))))
        x = self.relu(self.bn4(self.upsample(self.conv4(x))))
        return self.conv5(x)
""",
    "ConvTransposeNet": """
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        self.relu = nn.ReLU()
        self.up2 = nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.conv3 = nn.Conv2d(num_colours, num_colours, kernel, padding=1)
        self.conv2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=1)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2, padding=1,
                                      output_padding=1)
        self.conv1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=1)
        self.block4 = nn.Sequential(self.up2, nn.BatchNorm2d(num_colours), self.relu)
        self.block2 = nn.Sequential(self.conv2, nn.BatchNorm2d(2 * num_filters), self.relu)
        self.block1 = nn.Sequential(self.conv1, nn.BatchNorm2d(num_filters), self.relu)
        self.block3 = nn.Sequential(self.up1, nn.BatchNorm2d(num_filters), self.relu)

    def forward(self, x):
        return self.conv3(self.block4(self.block3(self.block2(self.block1(x)))))
""",
    "UNet": """
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        self.norm4 = nn.BatchNorm2d(num_colours)
        self.up1 = nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=2,
                                      padding=padding, output_padding=1)
        self.out = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel, padding=padding)
        self.down1 = nn.Conv2d(num_in_channels, num_filters, kernel, stride=2, padding=padding)
        self.norm2 = nn.BatchNorm2d(2 * num_filters)
        self.relu = nn.ReLU()
        self.up2 = nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=2,
                                      padding=padding, output_padding=1)
        self.norm1 = nn.BatchNorm2d(num_filters)
        self.down2 = nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=2, padding=padding)
        self.norm3 = nn.BatchNorm2d(num_filters)

    def forward(self, x):
        skip1 = self.relu(self.norm1(self.down1(x)))
        h = self.relu(self.norm2(self.down2(skip1)))
        h = self.relu(self.norm3(self.up1(h)))
        h = self.relu(self.norm4(self.up2(torch.cat((h, skip1), 1))))
        return self.out(torch.cat((x, h), 1))
""",
}


def _commented(source: str) -> str:
    """Comments after every statement line and a docstring under each `def`, as a student
    does to make a copy look worked on."""
    out = []
    for line in source.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        if stripped.startswith("def "):
            out.append(f"{indent}# {stripped.split('(')[0][4:]}: written for this assignment")
            out.append(line)
            out.append(f'{indent}    """My implementation of {stripped.split("(")[0][4:]}."""')
        elif stripped.startswith(("x =", "padding =", "stride =", "output_padding =")) or "= nn." in stripped:
            out.append(f"{line}  # step")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


# -- commented: the functional style with comments and docstrings ---------------------------
COMMENTED = {name: _commented(source) for name, source in FUNCTIONAL.items()}

# -- dead code: the big-sequential style with code that never runs or is never used ----------
DEAD_CODE = {
    "PoolUpsampleNet": BIG_SEQUENTIAL["PoolUpsampleNet"]
    .replace(
        "        padding = kernel // 2\n",
        "        padding = kernel // 2\n"
        "        debug = False\n"
        "        unused_channels = [num_filters * m for m in (1, 2, 4)]\n",
    )
    .replace(
        "    def forward(self, x):\n        return self.model(x)\n",
        "    def forward(self, x):\n"
        "        if False:\n"
        "            print('input', x.shape)\n"
        "            x = x.clone()\n"
        "        return self.model(x)\n"
        "\n"
        "    def count_parameters(self):\n"
        "        return sum(p.numel() for p in self.parameters())\n",
    ),
    "ConvTransposeNet": BIG_SEQUENTIAL["ConvTransposeNet"].replace(
        "    def forward(self, x):\n        return self.model(x)\n",
        "    def forward(self, x):\n"
        "        out = self.model(x)\n"
        "        shape_before = x.shape  # kept for debugging\n"
        "        return out\n"
        "\n"
        "    def describe(self):\n"
        "        for layer in self.model:\n"
        "            print(layer)\n",
    ),
}

# -- all at once: module lists renamed, reordered, commented, with dead code -----------------
DISGUISED_POOL = """
class PoolUpsampleNet(nn.Module):
    \"\"\"Pool, then upsample.\"\"\"
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        sizes = [num_in_channels, num_filters, 2 * num_filters, num_filters, num_colours]
        self.final_layer = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)  # output
        self.resizers = nn.ModuleList([nn.MaxPool2d(2), nn.MaxPool2d(2),
                                       nn.Upsample(scale_factor=2), nn.Upsample(scale_factor=2)])
        self.norm_layers = nn.ModuleList([nn.BatchNorm2d(s) for s in sizes[1:]])  # norms
        self.conv_layers = nn.ModuleList(
            [nn.Conv2d(sizes[n], sizes[n + 1], kernel, padding=padding) for n in range(4)])
        self.verbose = False  # never read

    def forward(self, t):
        # the four blocks, then the last convolution
        for conv, rs, norm in zip(self.conv_layers, self.resizers, self.norm_layers):
            t = torch.relu(norm(rs(conv(t))))
        if self.verbose and False:
            print(t.shape)
        return self.final_layer(t)
"""

# name -> (make_notebook spec, {region: original notebook}): the pairs that must be flagged.
PLANTED = {
    "copy_renamed": (
        {"replace": {**RENAMED, "compute_iou_loss": IOU_RENAMED}},
        {
            "PoolUpsampleNet": "style_module_lists",
            "ConvTransposeNet": "style_module_lists",
            "UNet": "style_module_lists",
            "compute_iou_loss": "d2_variant_per_image_module",
        },
    ),
    "copy_reordered": (
        {"replace": REORDERED},
        {
            "PoolUpsampleNet": "style_shared_modules",
            "ConvTransposeNet": "style_shared_modules",
            "UNet": "style_shared_modules",
        },
    ),
    "copy_commented": (
        {"replace": COMMENTED},
        {
            "PoolUpsampleNet": "style_functional_super",
            "ConvTransposeNet": "style_functional_super",
            "UNet": "style_functional_super",
        },
    ),
    "copy_dead_code": (
        {"replace": DEAD_CODE},
        {"PoolUpsampleNet": "style_big_sequential", "ConvTransposeNet": "style_big_sequential"},
    ),
    "copy_disguised": (
        {"replace": {"PoolUpsampleNet": DISGUISED_POOL}},
        {"PoolUpsampleNet": "style_module_lists"},
    ),
}

NOTEBOOKS = {name: spec for name, (spec, _) in PLANTED.items()}


def planted_pairs() -> set[tuple[str, str, str]]:
    """(region, a, b) with a < b: every pair the flags must find, copies of one original
    among themselves included."""
    groups: dict[tuple[str, str], set[str]] = {}
    for copy_name, (_, originals) in PLANTED.items():
        for region, original in originals.items():
            groups.setdefault((region, original), {original}).add(copy_name)
    return {
        (region, *sorted((a, b)))
        for (region, _), members in groups.items()
        for a in members
        for b in members
        if a < b
    }


# The suite's mutants built from one shared text (pa2_colourization_cases' `_UNET`, `_B1` and
# `_A1_BLOCKS`/`_A1_IGNORING` templates; myconv_cases' `blocks` for W2020, test_myconv_w2019's
# `unet`): each is that text
# with a one-line mistake, which is just what a copy with a small edit looks like. A flag
# between two of one family (or their re-headed versions in another edition) is therefore
# not a false flag; every other pair of the suite is independent work.
SIBLING_FAMILIES = (
    {"c1_skip_before_activation", "c1_missing_skip", "c1_missing_input_skip", "c1_grey_channel_hardcoded"},
    {"b1_stride_1", "b1_output_padding_0", "b1_returns_intermediate", "b1_relu_after_final"},
    {
        "a1_missing_final_conv",
        "a1_pool_upsample_swapped",
        "a1_pool_kernel_1",
        "a1_wrong_width",
        "a1_unused_layer",
        "a1_greyscale_only",
        "a1_ignores_kernel",
        "a1_ignores_num_filters",
        "a1_ignores_num_colours",
    },
    {
        "w2020_batchnorm_before_pooling",
        "w2020_two_skips",
        "w2020_grey_plus_one",
        "w2020_nn_conv2d",
        "w2020_relu_before_bn",
        "w2020_greyscale_only",
    },
    {"w2019_unet_width_3", "w2019_unet_width_3_two_skips"},
)


def original_name(name: str) -> str:
    """A re-headed notebook's W2021 original ("pa2-w2023__c1_missing_skip" -> "c1_missing_skip")."""
    return name.split("__", 1)[-1]


def siblings(a: str, b: str) -> bool:
    return any({original_name(a), original_name(b)} <= family for family in SIBLING_FAMILIES)
