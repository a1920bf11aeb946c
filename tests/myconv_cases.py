"""What the MyConv2d editions' grading tests share: notebooks made from an edition's
reference notebook, what a result must show (tests/test_myconv_w2020.py,
tests/test_myconv_w2019.py), and W2020 networks written with one block helper (also the base
of tests/test_myconv_forgery.py's forgery)."""

from __future__ import annotations

from dataclasses import dataclass, field

from submissions import REPO

W2020_REFERENCE = REPO / "reference" / "pa2-w2020" / "a2-cnn.ipynb"
W2020_TEMPLATE = REPO / "student_template" / "pa2-w2020" / "a2-cnn.ipynb"
W2019_REFERENCE = REPO / "reference" / "pa2-w2019" / "colourization.ipynb"
W2019_TEMPLATE = REPO / "student_template" / "pa2-w2019" / "colourization.ipynb"

# A check's key, from its title (the kinds repeat within a part).
KEYS = {
    "Convolution and batch-norm layers": "layers",
    "Every convolution is a MyConv2d": "myconv",
    "Number of parameters": "params",
    "Same outputs as the reference": "equivalence",
    "Output shape for": "shape",
    "Short training run": "training",
    "classifier[4] becomes": "head",
    "every parameter is frozen": "frozen",
    "'out' has shape": "out_shape",
    "reach the optimizer": "optimizer",
    "Fine-tuning steps": "finetune",
    "forward keeps": "activations",
}


def key(test: dict) -> str:
    name = test["name"]
    found = next(k for fragment, k in KEYS.items() if fragment in name)
    if found == "activations":  # W2019's Part E has one per network
        return f"activations {name.split(':', 1)[0].split()[-1]}"
    return found


@dataclass
class Case:
    name: str
    spec: dict
    lost: dict = field(default_factory=dict)  # part id -> the keys of the checks that must fail
    feedback: dict = field(default_factory=dict)  # (part, key) -> phrases its output must contain


def failed(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in result.tests:
        if t["status"] != "passed":
            out.setdefault(t["tags"][0], set()).add(key(t))
    return out


def summary(result) -> str:
    lines = [f"{result.name}: {result.score:g}/{result.max_score:g} ({result.data['grader']['assignment']})"]
    lines += [
        f"  {t['name']}: {t['status']}: {t['output'][:400]!r}"
        for t in result.tests
        if t["status"] != "passed"
    ]
    lines += [f"  note: {n[:300]}" for n in result.notes]
    return "\n".join(lines)


def expect(result, edition: str, parts: set[str], lost: dict | None = None) -> None:
    """Graded as `edition`, every part there, exactly the checks in `lost` failed (0 points),
    every other check full marks, no check broke."""
    lost = {p: set(k) for p, k in (lost or {}).items() if k}
    assert result.error is None, summary(result)
    assert result.data["grader"]["assignment"] == edition, summary(result)
    assert {t["tags"][0] for t in result.tests} == parts, summary(result)
    for t in result.tests:
        assert "please report this" not in t["output"], (result.name, t["output"])
        assert t["score"] == (t["max_score"] if t["status"] == "passed" else 0), summary(result)
    assert failed(result) == lost, f"expected {lost}\n{summary(result)}"


def feedback(result, part: str, check: str) -> str:
    found = [t["output"] for t in result.tests if t["tags"][0] == part and key(t) == check]
    assert len(found) == 1, (part, check, summary(result))
    return found[0]


# -- W2020 networks written with one block helper: the orders and widths real notebooks chose ------
_BLOCKS = """
class {name}(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super({name}, self).__init__()
        nf, nc = num_filters, num_colours

        def block(cin, cout, resample=None):
            layers = [MyConv2d(cin, cout, kernel)]
            if resample is not None and {bn_first}:
                layers += [nn.BatchNorm2d(cout), nn.ReLU(), resample]
            elif resample is not None:
                layers += [resample, nn.BatchNorm2d(cout), nn.ReLU()]
            else:
                layers += [nn.BatchNorm2d(cout), nn.ReLU()]
            return nn.Sequential(*layers)

        self.down1 = block(num_in_channels, nf, nn.MaxPool2d(2))
        self.down2 = block(nf, 2 * nf, nn.MaxPool2d(2))
        self.mid = block(2 * nf, 2 * nf)
        self.up1 = block({up1_in}, nf, nn.Upsample(scale_factor=2))
        self.up2 = block({up2_in}, nc, nn.Upsample(scale_factor=2))
        self.final = MyConv2d({final_in}, nc, kernel)

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        m = self.mid(d2)
{forward}
"""
CNN_FORWARD = "        return self.final(self.up2(self.up1(m)))"
UNET_FORWARD = """\
        u1 = self.up1(torch.cat([m, d2], 1))
        u2 = self.up2(torch.cat([u1, d1], 1))
        return self.final(torch.cat([u2, x], 1))"""


def blocks(name, bn_first=False, up1_in="2 * nf", up2_in="nf", final_in="nc", forward=CNN_FORWARD):
    return _BLOCKS.format(
        name=name, bn_first=bn_first, up1_in=up1_in, up2_in=up2_in, final_in=final_in, forward=forward
    )


UNET = {"up1_in": "4 * nf", "up2_in": "2 * nf", "final_in": "nc + num_in_channels", "forward": UNET_FORWARD}
BN_FIRST_CNN = blocks("CNN", bn_first=True)
BN_FIRST_UNET = blocks("UNet", bn_first=True, **UNET)
TWO_SKIPS_UNET = blocks(
    "UNet",
    up1_in="2 * nf",
    up2_in="2 * nf",
    final_in="nc + num_in_channels",
    forward="""\
        u1 = self.up1(m)
        u2 = self.up2(torch.cat([d1, u1], 1))
        return self.final(torch.cat([x, u2], 1))""",
)
GREY_PLUS_ONE_UNET = blocks("UNet", **dict(UNET, final_in="num_colours + 1"))
RELU_BEFORE_BN_CNN = blocks("CNN").replace(
    "layers += [resample, nn.BatchNorm2d(cout), nn.ReLU()]",
    "layers += [resample, nn.ReLU(), nn.BatchNorm2d(cout)]",
)
NN_CONV2D_CNN = blocks("CNN").replace(
    "MyConv2d(cin, cout, kernel)", "nn.Conv2d(cin, cout, kernel, padding=kernel // 2)"
)
GREYSCALE_ONLY_CNN = blocks("CNN").replace("block(num_in_channels, nf,", "block(1, nf,")
