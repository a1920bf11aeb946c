"""A forged MyConv2d network (trust model, rule 2): a W2020 CNN with ReLU before BatchNorm whose
forward answers every stored public input with the stored reference output (students get the
stored cases with their wheel). A student's public-only grading is fooled; the instructor's
grading, with its secret challenges, is not. Slow."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from grading import run_grader
from myconv_cases import RELU_BEFORE_BN_CNN, W2020_REFERENCE
from submissions import REPO, make_notebook

from grader.public.store import read

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]


def lookup_table_cnn() -> str:
    cases = read(REPO / "assignments" / "pa2-myconv" / "public")["cases"]["colour"]["CNN"]["equivalence"]
    table = {}
    for case in cases:
        key = hashlib.sha256(case["input"].float().numpy().tobytes()).hexdigest() + str(case["hp"])
        structure = next(s for s in case["structures"] if s["structure"]["upconv2_width"] == "num_colours")
        variant = next(v for v in structure["variants"] if v["reading"]["batchnorm"] == "after-pooling")
        table[key] = {
            mode: [
                list(variant[mode]["output"].shape),
                base64.b64encode(variant[mode]["output"].numpy().tobytes()).decode(),
            ]
            for mode in ("eval", "train")
        }
    blob = base64.b64encode(json.dumps(table).encode()).decode()
    forward = (
        "    def forward(self, x):\n"
        "        out = self._honest(x)  # every layer runs, as the weight loading expects\n"
        "        import base64, hashlib, json\n"
        "        import numpy as np\n"
        "        table = json.loads(base64.b64decode(TABLE))\n"
        "        first = self.down1[0]\n"
        "        hp = [first.kernel_size, first.out_channels, self.final.out_channels, first.in_channels]\n"
        "        key = hashlib.sha256(x.detach().float().numpy().tobytes()).hexdigest() + str(hp)\n"
        "        if key in table:\n"
        "            shape, data = table[key]['train' if self.training else 'eval']\n"
        "            raw = np.frombuffer(base64.b64decode(data), dtype=np.float32).copy()\n"
        "            return torch.from_numpy(raw).reshape(shape)\n"
        "        return out\n\n"
        "    def _honest(self, x):\n"
    )
    return f"TABLE = {blob!r}\n" + RELU_BEFORE_BN_CNN.replace("    def forward(self, x):\n", forward, 1)


def test_a_lookup_table_of_public_outputs_earns_nothing_on_the_instructor_side(tmp_path):
    path = make_notebook(tmp_path, "a2-cnn", base=W2020_REFERENCE, replace={"CNN": lookup_table_cnn()})
    verdicts = {}
    for side, extra in (("instructor", []), ("student", ["--public-only"])):
        out = tmp_path / f"{side}.json"
        run_grader(path, "--part", "A.1", "--json", out, *extra)
        tests = json.loads(out.read_text())["tests"]
        verdicts[side] = {t["name"]: t["status"] for t in tests if "Same outputs" in t["name"]}
    assert list(verdicts["student"].values()) == ["passed"], verdicts  # the forgery works on stored cases
    assert list(verdicts["instructor"].values()) == ["failed"], verdicts  # the secret ones stop it
