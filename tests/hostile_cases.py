"""PA2 W2021 notebooks that attack the grader: they hang, exit, exhaust memory, patch the checks'
tools, print fake results or try to read the reference (`HOSTILE_CASES`, graded by
tests/test_hostile.py), and the lines of the reference's classes that such edits hook onto."""

from submissions import REFERENCE_SOLUTION, REPO

# Lines of the reference classes that edits hook onto (used with `within=`: the three
# classes share the __init__ lines, and the first two their forward).
PUN_HEAD = "class PoolUpsampleNet(nn.Module):\n"
CTN_HEAD = "class ConvTransposeNet(nn.Module):\n"
UNET_HEAD = "class UNet(nn.Module):\n"
INIT = "        super().__init__()\n"
CHAIN = "        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))\n"

FAKE_MARK = "FAKE-RESULT-1c9e"
FAKE_JSON = (
    'json.dumps({"score": 999, "execution_time": 0, "tests": [{"name": "%s", '
    '"score": 999, "max_score": 999, "status": "passed"}]})' % FAKE_MARK
)

# A wrong PoolUpsampleNet (ReLU before BatchNorm: it honestly loses only the 2 equivalence
# points) that patches the grader's tools while its class is being defined.
PATCHING_WRONG = """
class PoolUpsampleNet(nn.Module):
    torch.allclose = lambda *args, **kwargs: True
    nn.Module.__call__ = lambda self, *args, **kwargs: self.forward(*args, **kwargs)

    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()
        padding = kernel // 2
        def block(cin, cout, resample):
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding), resample,
                                 nn.ReLU(), nn.BatchNorm2d(cout))
        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)

    def forward(self, x):
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
"""

SECRETS = [REFERENCE_SOLUTION, REPO / "assignments" / "pa2" / "test_colourization.py"]
READ_SECRETS = f"""    _stolen = []
    for _path in {[str(p) for p in SECRETS]!r}:
        try:
            _stolen.append(open(_path).read())
        except OSError as exc:
            _stolen.append("could not read: %s" % exc)
"""

HOSTILE_CASES = {
    "h_infinite_loop_in_init": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        while True:\n            pass\n"}}
    },
    # hangs only for a setting that only the hypothesis-driven shape check draws
    "h_hangs_for_one_filter": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        while num_filters == 1:\n            pass\n"}}
    },
    "h_infinite_loop_in_class_body": {
        "within": {"UNet": {UNET_HEAD: UNET_HEAD + "    while True:\n        pass\n"}}
    },
    "h_sys_exit_in_class_body": {
        "within": {"UNet": {UNET_HEAD: "import sys\n\n" + UNET_HEAD + "    sys.exit()\n"}}
    },
    "h_os_exit_in_class_body": {"within": {"ConvTransposeNet": {CTN_HEAD: CTN_HEAD + "    os._exit(0)\n"}}},
    "h_huge_tensor_in_init": {
        "within": {"PoolUpsampleNet": {INIT: INIT + "        self.cache = torch.empty(10**11)\n"}}
    },
    "h_growing_list_in_class_body": {
        "within": {
            "ConvTransposeNet": {
                CTN_HEAD: CTN_HEAD + "    _cache = []\n    while True:\n"
                "        _cache.append(bytearray(100 * 2**20))\n"
            }
        }
    },
    "h_patches_with_wrong_solution": {"replace": {"PoolUpsampleNet": PATCHING_WRONG}},
    "h_patches_allclose_correct_solution": {
        "within": {
            "PoolUpsampleNet": {PUN_HEAD: PUN_HEAD + "    torch.allclose = lambda *args, **kwargs: True\n"}
        }
    },
    "h_prints_fake_results": {
        "within": {
            "PoolUpsampleNet": {
                PUN_HEAD: "import json\nimport sys\n\n" + PUN_HEAD + f"    print({FAKE_JSON})\n",
                CHAIN: f"        print({FAKE_JSON})\n"
                f"        sys.__stdout__.write({FAKE_JSON})\n"
                f"        os.write(1, {FAKE_JSON}.encode())\n"
                f"        os.write(2, {FAKE_JSON}.encode())\n" + CHAIN,
            }
        }
    },
    "h_prints_megabytes": {
        "within": {"PoolUpsampleNet": {CHAIN: "        print('spam' * 250000)\n" + CHAIN}}
    },
    "h_reads_reference": {
        "within": {
            "PoolUpsampleNet": {
                PUN_HEAD: PUN_HEAD + READ_SECRETS,
                INIT: INIT + "        raise RuntimeError('LEAK ' + ' | '.join(s[:600] for s in "
                "PoolUpsampleNet._stolen))\n",
            }
        },
        "extra_cells": [
            f"class Peek:\n{READ_SECRETS}    raise RuntimeError('LEAK ' + "
            "' | '.join(s[:600] for s in _stolen))\n"
        ],
    },
}
