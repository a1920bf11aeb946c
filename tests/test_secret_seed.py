"""A definite bug fails on every secret seed.

A hidden check's hypothesis inputs come from the grading's secret seed. When a bug shows only
for one value of a small discrete axis (colour input, num_in_channels=3), twelve draws missed
that value on about one seed in 500, and the bug earned the check on that seed alone: the
session's random seed once failed CI that way. The seeds below are ones on which the drawn
inputs never had num_in_channels=3 (found by replaying hypothesis with the grader's seed
derivation); the shape checks' explicit examples (`@example`) must catch the bug anyway."""

import json

import pytest

from grading import run_grader
from myconv_cases import GREY_PLUS_ONE_UNET, W2020_REFERENCE
from pa2_colourization_cases import COLOURIZATION_NOTEBOOKS
from submissions import make_notebook

pytestmark = pytest.mark.slow

CASES = [
    # (notebook, its edits, part, the secret seed)
    ("a1_greyscale_only", COLOURIZATION_NOTEBOOKS["a1_greyscale_only"], "A.1", 688),
    ("c1_grey_channel_hardcoded", COLOURIZATION_NOTEBOOKS["c1_grey_channel_hardcoded"], "C.1", 2230),
    ("w2020_grey_plus_one", {"base": W2020_REFERENCE, "replace": {"UNet": GREY_PLUS_ONE_UNET}}, "B.1", 1641),
]


@pytest.mark.parametrize("name, edits, part, seed", CASES, ids=[c[0] for c in CASES])
def test_a_greyscale_only_network_fails_the_shape_check_on_a_seed_that_draws_no_colour(
    name, edits, part, seed, tmp_path
):
    notebook = make_notebook(tmp_path, name, **edits)
    out = tmp_path / "results.json"
    proc = run_grader(notebook, "--part", part, "--seed", str(seed), "--json", out)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    (shape,) = [t for t in json.loads(out.read_text())["tests"] if t["tags"] == [part, "shape"]]
    assert shape["score"] == 0, shape
    # the input the student can paste: colour input, named with the handout's arguments
    assert "\nFailing input: kernel = " in shape["output"], shape["output"]
    assert "num_in_channels = 3" in shape["output"], shape["output"]
