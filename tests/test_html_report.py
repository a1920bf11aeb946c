"""The HTML feedback page is self-contained and renders its pictures in a real browser."""

import numpy as np
import pytest
from PIL import Image

from browser import require_chromium, screenshot
from grader.checks.pictures import prediction_grid
from grader.report.writers import to_html, write_html
from grader.report.results import CheckResult, GradingResult

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

PASS_GREEN = (0x2A, 0x9D, 0x4B)
FAIL_RED = (0xD1, 0x37, 0x2B)


def sample_result() -> GradingResult:
    pure_blue = np.zeros((8, 8, 3))
    pure_blue[..., 2] = 1.0
    png = prediction_grid({"yours": [pure_blue], "truth": [pure_blue]}, {"yours": [3.0, 2.0, 1.0]})
    return GradingResult(
        submission="a2-cnn.ipynb",
        assignment="pa2-w2021",
        checks=[
            CheckResult(
                "A.1 PoolUpsampleNet: training",
                "A.1",
                "training",
                1,
                1,
                True,
                "Trained 30 steps",
                number="1",
                images=[("a blue picture", png)],
            ),
            CheckResult(
                "B.1 ConvTransposeNet: shape <b>not bold</b>",
                "B.1",
                "shape",
                1,
                0,
                False,
                "expected [1, 24, 32, 32], got [1, 24, 16, 16]",
                number="2",
            ),
        ],
    )


def test_html_is_self_contained_and_escaped():
    page = to_html(sample_result())
    assert page.count('src="data:image/png;base64,') == 1
    assert "http://" not in page and "https://" not in page  # opens offline
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page  # student-controlled text is escaped
    assert "Score: 1 / 2" in page


def test_page_renders_pictures_in_headless_chromium(tmp_path):
    require_chromium()
    html, png = tmp_path / "feedback.html", tmp_path / "feedback.png"
    write_html(sample_result(), html)
    screenshot(html, png, "--height", "1200")
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)

    def count(colour, tol=12):
        return int((np.abs(pixels.astype(int) - colour).max(axis=1) <= tol).sum())

    assert count(PASS_GREEN) > 50, "the passed badge/border is not drawn"
    assert count(FAIL_RED) > 50, "the failed badge/border is not drawn"
    assert count((0, 0, 255), tol=20) > 500, "the embedded picture is not rendered"
