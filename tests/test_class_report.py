"""`grade report` on the session's batches (in `make test`: every notebook of the suite, the
planted copies of tests/planted_copies.py, the hostile notebooks), and the page rendered in
headless Chromium.

Run alone, this file grades its own notebooks: the planted copies with their originals, a few
mutants and one hostile notebook that hangs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser import require_chromium, screenshot
from grading import run_grader
from hostile_cases import HOSTILE_CASES
from pa2_colourization_cases import CORRECT_STYLES, MUTANTS
from pa2_finetune_cases import D2_PER_IMAGE_MODULE, D2_SQUEEZE
from planted_copies import NOTEBOOKS as PLANTED
from planted_copies import planted_pairs, siblings
from submissions import TEMPLATE_NOTEBOOK, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

_MUTANTS = {m.name: m.spec() for m in MUTANTS}
NOTEBOOKS = {
    **PLANTED,
    # the originals the copies come from, declared as their own files declare them
    **{name: {"replace": classes} for name, classes in CORRECT_STYLES.items()},
    "d2_variant_per_image_module": {"replace": {"compute_iou_loss": D2_PER_IMAGE_MODULE}},
    "d2_squeeze": {"replace": {"compute_iou_loss": D2_SQUEEZE}},
    "reference": {},
    "template": {"base": TEMPLATE_NOTEBOOK},
    **{name: _MUTANTS[name] for name in ("a1_relu_before_bn", "a1_wrong_width", "c1_missing_skip")},
}
HOSTILE_NOTEBOOKS = {"h_infinite_loop_in_init": HOSTILE_CASES["h_infinite_loop_in_init"]}

# Chromium's rendering of the page's fills (grader.classreport.page and .plots).
HISTOGRAM_GREY = (0xD9, 0xD9, 0xD9)
SHARED_LINE = (0xFF, 0xE9, 0xA8)


@pytest.fixture(scope="module")
def report(main_batch, hostile_batch, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("class-report")
    html, data = folder / "class.html", folder / "class.json"
    started = time.perf_counter()
    done = run_grader("report", main_batch.out, hostile_batch.out, "--html", html, "--json", data, train=None)
    seconds = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    print(f"grade report of {len(main_batch.names) + len(hostile_batch.names)} submissions: {seconds:.1f} s")
    return {"html": html, "data": json.loads(data.read_text()), "names": set(main_batch.names)}


def test_planted_copies_are_flagged_and_independent_work_is_not(report):
    flagged = {(p["region"], *sorted((p["a"], p["b"]))) for p in report["data"]["similarity"]["pairs"]}
    present = {pair for pair in planted_pairs() if {pair[1], pair[2]} <= report["names"]}
    assert len(present) == len(planted_pairs())  # every original is graded with its copies
    assert present <= flagged, sorted(present - flagged)
    false = [pair for pair in flagged - present if not siblings(pair[1], pair[2])]
    assert not false, false


def test_each_flag_shows_the_shared_lines_of_both_sides(report):
    pair = next(p for p in report["data"]["similarity"]["pairs"] if p["a"] == "copy_reordered")
    for side in ("a", "b"):
        lines = [line for block in pair["code"][side] for line in block["lines"]]
        assert sum(shared for _, shared in lines) >= 5, lines
        assert not any(shared for text, shared in lines if text.strip().startswith("#"))


def test_scores_pass_rates_and_causes(report):
    data = report["data"]
    editions = {e["edition"]: e for e in data["editions"]}
    assert editions["pa2-w2021"]["submissions"] >= len(NOTEBOOKS) and editions["pa2-w2021"]["max_score"] == 25
    parts = {p["part"]: p for p in data["parts"]}
    assert {"A.1", "B.1", "C.1", "D.1", "D.2"} <= set(parts)
    assert all(0 <= p["complete_rate"] <= 1 and 0 <= p["points_rate"] <= 1 for p in parts.values())
    assert data["checks"] and all(0 <= c["rate"] <= 1 for c in data["checks"])
    # The starter fails every check of A.1 with one cause (its class cell does not parse).
    starter_cause = next(c for c in data["causes"] if c["part"] == "A.1" and "does not parse" in c["cause"])
    assert starter_cause["count"] >= 1 and "N" in starter_cause["cause"]
    for cause in data["causes"]:
        assert cause["example"]["message"], cause
        # no student's name (the suite's names with "_"; "reference" is also a word of feedback)
        assert not any(name in cause["example"]["message"] for name in report["names"] if "_" in name)
    relu = next(c for c in data["causes"] if "ReLU" in c["cause"] and c["part"] == "A.1")
    assert relu["count"] >= 1


def test_time_memory_errors_and_feedback_pages(report):
    data = report["data"]
    rows = {r["name"]: r for r in data["submissions"]}
    assert rows["reference"]["peak_memory_mib"] > 100  # the sandbox holds torch
    assert len(data["slowest"]) == 10
    assert data["slowest"][0]["seconds"] == max(r["seconds"] for r in rows.values())
    hang = next(p for p in data["problems"] if p["name"] == "h_infinite_loop_in_init")
    assert hang["kind"] == "timed out"
    for row in rows.values():
        assert (report["html"].parent / row["feedback"]).is_file(), row


def test_the_page_renders_in_headless_chromium(report, tmp_path):
    require_chromium()
    png = tmp_path / "class.png"
    screenshot(report["html"], png, "--width", "1400", "--height", "5000")
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3).astype(int)

    def count(colour, tol=4):
        return int((np.abs(pixels - colour).max(axis=1) <= tol).sum())

    assert count(HISTOGRAM_GREY) > 2000, "the score histograms are not drawn"
    assert count(SHARED_LINE) > 2000, "the similar pairs' shared lines are not shown"


def test_a_batch_writes_the_report_when_asked(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_notebook(folder, "alice", replace=CORRECT_STYLES["style_module_lists"])
    make_notebook(folder, "bob", replace=PLANTED["copy_renamed"]["replace"])
    out = tmp_path / "out"
    done = run_grader(folder, "--out", out, "--part", "A.1", "--no-train", "--quiet", "--report")
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "class-report.json").read_text())
    assert {(p["a"], p["b"]) for p in data["similarity"]["pairs"]} >= {("alice", "bob")}
    page = (out / "class-report.html").read_text()
    assert 'href="class-report-feedback/alice.html"' in page
    assert Path(out / "class-report-feedback" / "bob.html").is_file()
