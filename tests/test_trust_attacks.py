"""Attacks of issue 18 (trust, round two), each graded end to end by real `grade` processes on
the instructor's side with a fixed secret seed, and compared with an honest twin: the same
notebook without the attack.

* Oracles (defect 3): the offline training data is predictable without learning (each grey
  level is one palette colour; the flower is a colour threshold). A network that cannot learn
  plus a child that, after training, swaps the trained model's forward for a lookup (and fakes
  a falling curve) must earn no more than the same network without the swap.
* A lying instance (defect 4): a D.1 driver cell that freezes nothing and replaces the model
  object's own `named_parameters` and `parameters` must earn no more than its honest twin.
* A 3x3 head (defect 10): the same lie with a 3x3 new layer, and a correct 3x3 driver (full
  marks: the edition accepts 3x3 heads).
* Floods (defect 2): a child that sends oversized answers (2,000 rows of predictions, a
  4x4096x4096 picture, 9,000 boot problems, a 128 MiB forward output) costs the grader at most
  2x the honest grading's time and 1.5x its memory, and the outputs stay small.
* Terminal injection (defect 6): control characters in an exception's class name and message
  and in a notebook's file name reach no output (terminal, results.json, gradebook.csv, JUnit,
  HTML).

The attacks patch what the child runs today (grader.engine.training.run_training, the serving
object's `send`, found through the call stack); the oracle and flood tests also check that the
attack took effect (its cell loaded without an error, its answer reached the parent), so a
rename of those names shows up as a failure here instead of a silently harmless attack.

Each attack was graded against the code before issue 18's fixes (commit 6bd37ef) too, where
every attack test here fails: the oracles won A.1 4/6 against 3/6 and D.2 1/4 against 0/4, the
lying instance D.1 7/7 against 4/7 (3x3: 6/7 against 4/7), 4x4096x4096 predictions made the
grader hold 6.2 GiB (honest: 2.0), 9,000 boot problems gave a 911 KB results.json and 9,021
terminal lines, and the control characters reached the terminal, results.json and CSV.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from grading import Graded, grader_command, grader_env, run_grader
from hostile_cases import CHAIN, INIT
from pa2_colourization_cases import CANNOT_LEARN
from pa2_finetune_cases import NO_FREEZING
from submissions import D1_DRIVER, located_cell, make_notebook

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

SEED = ("--seed", "11")  # instructor side, the same secret challenges on every run

# ------------------------------------------------------------------------------------------
# Defect 3: oracles
# ------------------------------------------------------------------------------------------

# In the child, after the grader's short training run of a colourization network: learn the
# grey level -> colour map from the training set the run was given, make the trained model
# answer by lookup (its layers still run, so a tracer sees them), and report a falling curve
# in which every parameter changed.
COLOUR_ORACLE = """
class _ColourOracle:
    import grader.engine.training as _training
    _train = _training.run_training

    def _forged(module, inputs, targets, *args, _train=_train, **kwargs):
        import torch
        report = _train(module, inputs, targets, *args, **kwargs)
        if inputs.dim() != 4 or inputs.shape[1] != 1:
            return report
        levels = (inputs[:, 0] * 4096).round().long().flatten()
        pairs, counts = torch.unique(torch.stack([levels, targets.flatten()]), dim=1, return_counts=True)
        table = {}
        for (level, colour), n in zip(pairs.t().tolist(), counts.tolist()):
            if n > table.get(level, (None, 0))[1]:
                table[level] = (colour, n)
        known = torch.tensor(sorted(table))
        colours = torch.tensor([table[k][0] for k in sorted(table)])
        honest = module.forward

        def lookup(x):
            out = honest(x)
            level = (x[:, 0] * 4096).round().long()
            nearest = (level[..., None] - known).abs().argmin(-1)
            onehot = torch.nn.functional.one_hot(colours[nearest], out.shape[1]).permute(0, 3, 1, 2)
            return out * 0 + 20.0 * onehot

        module.forward = lookup
        report["losses"] = [3.2 * 0.8 ** i for i in range(len(report["losses"]))]
        report["changed"] = list(report["changed"]) + list(report["unchanged"])
        report["unchanged"] = []
        with torch.no_grad():
            report["predictions"] = lookup(inputs[:4]).argmax(1).to(report["predictions"].dtype)
        return report

    _training.run_training = _forged
"""

# A compute_iou_loss that trains nothing (no gradient reaches the head).
USELESS_IOU_LOSS = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    return pred.sum() * 0 + 0.5
"""

# In the child, after a segmentation training run: the model answers every image by a colour
# threshold (the flower is (0.9, g, 0.2) in RGB before ImageNet normalisation), and the
# curve is made to fall.
FLOWER_ORACLE = """
class _FlowerOracle:
    import grader.engine.training as _training
    _train = _training.run_training

    def _forged(module, inputs, targets, *args, _train=_train, **kwargs):
        import torch
        report = _train(module, inputs, targets, *args, **kwargs)
        if inputs.dim() != 4 or inputs.shape[1] != 3:
            return report

        def threshold(x):
            red = x[:, 0] * 0.229 + 0.485
            blue = x[:, 2] * 0.225 + 0.406
            flower = ((red - 0.9).abs() < 0.01) & ((blue - 0.2).abs() < 0.01)
            logits = torch.stack([~flower, flower], 1).float() * 20 - 10
            return {"out": logits, "aux": logits}

        module.forward = threshold
        first = report["losses"][0]
        report["losses"] = [first * 0.8 ** i for i in range(len(report["losses"]))]
        return report

    _training.run_training = _forged
"""

# ------------------------------------------------------------------------------------------
# Defects 4 and 10: a model object that lies about itself
# ------------------------------------------------------------------------------------------

FREEZE = "for param in model.parameters():\n    param.requires_grad = False\n"
HEAD_1X1 = NO_FREEZING  # model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)
HEAD_3X3 = "model.classifier[4] = nn.Conv2d(256, 2, 3, padding=1)\n"
# Nothing is frozen; then the instance's own named_parameters() hands out detached tensors
# for everything but the new layer (so requires_grad reads False) and parameters() only the
# new layer's: code that asks the object what trains is told "only the head".
LIE_ABOUT_PARAMETERS = (
    "_real = list(model.named_parameters())\n"
    "model.named_parameters = lambda *args, **kwargs: iter(\n"
    "    [(n, p if n.startswith('classifier.4.') else p.detach()) for n, p in _real])\n"
    "model.parameters = lambda *args, **kwargs: iter(\n"
    "    [p for n, p in _real if n.startswith('classifier.4.')])\n"
)

# Notebook name -> (make_notebook arguments, the cell an attack adds, if any).
A1_NOTEBOOKS = {
    "a1_honest_cannot_learn": {"replace": {"PoolUpsampleNet": CANNOT_LEARN}},
    "a1_forged_colour_oracle": {"replace": {"PoolUpsampleNet": CANNOT_LEARN}, "extra_cells": [COLOUR_ORACLE]},
}
D2_NOTEBOOKS = {
    "d2_honest_useless_loss": {"replace": {"compute_iou_loss": USELESS_IOU_LOSS}},
    "d2_forged_flower_oracle": {
        "replace": {"compute_iou_loss": USELESS_IOU_LOSS},
        "extra_cells": [FLOWER_ORACLE],
    },
}
D1_NOTEBOOKS = {
    "d1_honest_no_freezing": {"substitute": {D1_DRIVER: HEAD_1X1}},
    "d1_forged_lying_instance": {"substitute": {D1_DRIVER: HEAD_1X1 + LIE_ABOUT_PARAMETERS}},
    "d1_honest_3x3_no_freezing": {"substitute": {D1_DRIVER: HEAD_3X3}},
    "d1_forged_3x3_lying_instance": {"substitute": {D1_DRIVER: HEAD_3X3 + LIE_ABOUT_PARAMETERS}},
    "d1_correct_3x3": {"substitute": {D1_DRIVER: FREEZE + HEAD_3X3}},
}


# The forgeries are graded in three batches, one per part, started together: the D.1 batch
# alone (five notebooks, three of which fine-tune all of DeepLab) would leave a core idle
# at its end. Two jobs for it and one each for the small ones keep both cores busy.
BATCHES = (  # kind, notebooks, parts, jobs
    ("d1", D1_NOTEBOOKS, ("D.1",), 2),
    ("a1", A1_NOTEBOOKS, ("A.1",), 1),
    ("d2", D2_NOTEBOOKS, ("D.2",), 1),
)


@pytest.fixture(scope="module")
def forgeries(tmp_path_factory) -> dict[str, Graded]:
    """Every forgery and its honest twin, graded on the instructor's side (fixed seed, with
    training)."""
    root = tmp_path_factory.mktemp("trust-forgeries")
    running = []
    for kind, notebooks, parts, jobs in BATCHES:
        folder, out = root / f"{kind}-notebooks", root / f"{kind}-results"
        folder.mkdir()
        for name, spec in notebooks.items():
            make_notebook(folder, name, **spec)
        selection = [a for p in parts for a in ("--part", p)]
        command = grader_command(
            folder, "--out", out, "--quiet", "--jobs", jobs, *SEED, *selection, train=True
        )
        log = open(root / f"{kind}.log", "wb")
        proc = subprocess.Popen(command, cwd=root, env=grader_env(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        running.append((proc, folder, out, notebooks, parts, root / f"{kind}.log"))
    graded = {}
    try:
        for proc, folder, out, notebooks, parts, log in running:
            assert proc.wait(timeout=900) == 0, log.read_text(errors="replace")[-3000:]
            for name in notebooks:
                graded[name] = Graded(name, json.loads((out / f"{name}.json").read_text()), parts)
                graded[name].path = folder / f"{name}.ipynb"
    finally:
        for proc, *_ in running:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return graded


def part_score(result: Graded, part: str) -> float:
    return result.parts()[part][0]


def assert_attack_loaded(forged: Graded, honest: Graded, needle: str):
    """The attack cell ran without an error (else the comparison would prove nothing): the
    forged notebook's notes are its honest twin's."""
    where = located_cell(forged.path, needle).where
    assert not any(where in note for note in forged.notes), forged.notes
    assert forged.error is None and honest.error is None, (forged.error, honest.error)


def test_a_colour_lookup_after_training_earns_no_a1_point(forgeries):
    honest, forged = forgeries["a1_honest_cannot_learn"], forgeries["a1_forged_colour_oracle"]
    assert_attack_loaded(forged, honest, "class _ColourOracle")
    assert part_score(forged, "A.1") <= part_score(honest, "A.1"), forged.summary() + "\n" + honest.summary()


def test_a_flower_threshold_after_training_earns_no_d2_point(forgeries):
    honest, forged = forgeries["d2_honest_useless_loss"], forgeries["d2_forged_flower_oracle"]
    assert_attack_loaded(forged, honest, "class _FlowerOracle")
    assert part_score(forged, "D.2") <= part_score(honest, "D.2"), forged.summary() + "\n" + honest.summary()


def test_a_model_that_lies_about_its_parameters_keeps_no_d1_point(forgeries):
    # Before the fix: 7/7 against the honest twin's 4/7 (issue 18).
    honest, forged = forgeries["d1_honest_no_freezing"], forgeries["d1_forged_lying_instance"]
    assert forged.error is None and honest.error is None
    assert part_score(forged, "D.1") <= part_score(honest, "D.1"), forged.summary() + "\n" + honest.summary()
    assert part_score(honest, "D.1") < honest.parts()["D.1"][1]  # no freezing loses points


def test_a_3x3_head_that_lies_about_its_parameters_keeps_no_d1_point(forgeries):
    honest, forged = forgeries["d1_honest_3x3_no_freezing"], forgeries["d1_forged_3x3_lying_instance"]
    assert forged.error is None and honest.error is None
    assert part_score(forged, "D.1") <= part_score(honest, "D.1"), forged.summary() + "\n" + honest.summary()
    assert part_score(honest, "D.1") < honest.parts()["D.1"][1]


def test_a_correct_3x3_head_earns_full_d1_marks(forgeries):
    result = forgeries["d1_correct_3x3"]
    result.expect()


# ------------------------------------------------------------------------------------------
# Defect 2: floods
# ------------------------------------------------------------------------------------------

# Finds the object that serves the parent's requests in the child (the caller of the code
# that runs the notebook's statements) and wraps its `send`, changing answers as they leave.
SEND_PATCH = """
class _Flood:
    import sys
    _frame = sys._getframe()
    while _frame is not None and not callable(getattr(_frame.f_locals.get("self"), "send", None)):
        _frame = _frame.f_back
    _server = type(_frame.f_locals["self"])
    _send = _server.send

    def send(self, payload, _send=_send):
        result = payload.get("result") if isinstance(payload, dict) else None
        if isinstance(result, dict):
{change}
        return _send(self, payload)

    _server.send = send
"""
FLOOD_ROWS = SEND_PATCH.format(
    change="            if 'predictions' in result:\n"
    "                p = result['predictions']\n"
    "                result['predictions'] = p.repeat(500, *[1] * (p.dim() - 1))[:2000]"
)
FLOOD_PICTURE = SEND_PATCH.format(
    change="            if 'predictions' in result:\n"
    "                result['predictions'] = torch.zeros(4, 4096, 4096, dtype=torch.uint8)"
)
FLOOD_PROBLEMS = SEND_PATCH.format(
    change="            if 'problems' in result and 'names' in result:\n"
    "                n = len(getattr(self, 'statements', ())) or 1\n"
    "                result['problems'] = list(result['problems']) + [\n"
    "                    {'index': k % n, 'error': {'type': 'FloodError', 'message': 'flood %d' % k,\n"
    "                                               'where': None}} for k in range(9000)]"
)
# A forward whose output is 128 MiB, whatever the input.
HUGE_FORWARD = {"within": {"PoolUpsampleNet": {CHAIN: "        return torch.zeros(32 * 2**20)\n" + CHAIN}}}

FLOODS = {  # name: (make_notebook arguments, with training)
    "flood_prediction_rows": ({"extra_cells": [FLOOD_ROWS]}, True),
    "flood_prediction_picture": ({"extra_cells": [FLOOD_PICTURE]}, True),
    "flood_boot_problems": ({"extra_cells": [FLOOD_PROBLEMS]}, False),
    "flood_huge_forward": (HUGE_FORWARD, False),
}
TIME_FACTOR = 2.0
MEMORY_FACTOR = 1.5
MAX_RESULTS_BYTES = 200_000
MAX_TERMINAL_LINES = 400


@dataclass
class Measured:
    """One `grade` process and what it cost."""

    name: str
    seconds: float  # wall time
    cpu_seconds: float  # user + system time of every process of the tree
    tree_peak: int  # bytes: the most RSS the whole process tree held at one sample
    trusted_peak: int  # the same for the grader's own processes (grade, its forkserver, tracker)
    parent_peak: int  # grade's own high-water mark (VmHWM)
    children: int  # sandbox children seen (processes below the forkserver)
    returncode: int
    output: str  # what reached the terminal (stdout and stderr)
    results: dict
    results_bytes: int
    path: Path | None = None

    def __str__(self):
        mib = 2**20
        return (
            f"{self.name}: {self.seconds:.1f} s wall, {self.cpu_seconds:.1f} s CPU, tree "
            f"{self.tree_peak / mib:.0f} MiB, grader's own {self.trusted_peak / mib:.0f} MiB, grade "
            f"{self.parent_peak / mib:.0f} MiB, {self.children} sandbox children, results.json "
            f"{self.results_bytes} B, {len(self.output.splitlines())} terminal lines"
        )


def _status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _tree(root: int) -> list[tuple[int, int]]:
    """(pid, depth) of `root` and every live descendant."""
    found, stack = [], [(root, 0)]
    while stack:
        pid, depth = stack.pop()
        found.append((pid, depth))
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    stack.extend((int(c), depth + 1) for c in f.read().split())
            except OSError:
                pass
    return found


def measure(folder: Path, name: str, *args, train: bool, limit: float = 600) -> Measured:
    """Grade one notebook alone (single mode, not quiet: the terminal output is measured),
    sampling its process tree every 50 ms: memory (RSS, and grade's own high-water mark) and
    CPU time (the last reading of each process, so a process that lives less than a sample
    is missed: the sandbox children of a grading live seconds)."""
    path = folder / f"{name}.ipynb"
    results = folder / f"{name}.results.json"
    terminal = folder / f"{name}.terminal.txt"
    with open(terminal, "wb") as sink:
        started = time.monotonic()
        proc = subprocess.Popen(
            grader_command(path, "--json", results, *SEED, *args, train=train),
            cwd=folder,
            env=grader_env(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree_peak = trusted_peak = parent_peak = 0
    cpu: dict[int, float] = {}
    children: set[int] = set()
    while True:
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > limit:
            os.killpg(proc.pid, signal.SIGKILL)
            continue
        members = _tree(proc.pid)
        rss = {p: _status_kib(p, "VmRSS") * 1024 for p, _ in members}
        tree_peak = max(tree_peak, sum(rss.values()))
        trusted_peak = max(trusted_peak, sum(rss[p] for p, depth in members if depth <= 1))
        parent_peak = max(parent_peak, _status_kib(proc.pid, "VmHWM") * 1024)
        children.update(p for p, depth in members if depth >= 2)
        for p, _ in members:
            seconds = _cpu_seconds(p)
            if seconds is not None:
                cpu[p] = max(cpu.get(p, 0.0), seconds)
        time.sleep(0.05)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:  # whatever the grading left running in its session
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    data = json.loads(results.read_text()) if results.is_file() else {}
    return Measured(
        name,
        wall,
        sum(cpu.values()),
        tree_peak,
        trusted_peak,
        parent_peak,
        len(children),
        proc.returncode,
        terminal.read_text(errors="replace"),
        data,
        results.stat().st_size if results.is_file() else 0,
        path,
    )


@pytest.fixture(scope="module")
def floods(batches, tmp_path_factory) -> dict[str, Measured]:
    """The honest reference graded as each flood is (A.1, with and without training), then
    the floods, one at a time, while nothing else of this session grades (conftest's batches,
    when other files declared notebooks, are waited for first)."""
    for batch in batches.values():
        batch.wait()
    folder = tmp_path_factory.mktemp("trust-floods")
    make_notebook(folder, "honest_reference")
    for name, (spec, _) in FLOODS.items():
        make_notebook(folder, name, **spec)
    measured = {
        "honest_train": measure(folder, "honest_reference", "--part", "A.1", train=True),
        "honest_no_train": measure(folder, "honest_reference", "--part", "A.1", train=False),
    }
    for name, (_, train) in FLOODS.items():
        measured[name] = measure(folder, name, "--part", "A.1", train=train)
    for m in measured.values():
        print(m)
    return measured


def assert_flood_is_cheap(floods, name: str):
    flood = floods[name]
    honest = floods["honest_train" if FLOODS[name][1] else "honest_no_train"]
    both = f"\n{flood}\n{honest}"
    assert flood.returncode in (0, 1), flood.output[-3000:]
    assert flood.results, "no results.json" + both
    assert flood.seconds <= TIME_FACTOR * honest.seconds, both
    assert flood.cpu_seconds <= TIME_FACTOR * honest.cpu_seconds, both
    assert flood.tree_peak <= MEMORY_FACTOR * honest.tree_peak, both
    assert flood.trusted_peak <= MEMORY_FACTOR * honest.trusted_peak, both
    assert flood.parent_peak <= MEMORY_FACTOR * honest.parent_peak, both
    assert flood.results_bytes < MAX_RESULTS_BYTES, both
    assert len(flood.output.splitlines()) < MAX_TERMINAL_LINES, both
    return flood, honest


def test_honest_gradings_pass_what_the_floods_are_measured_against(floods):
    for name in ("honest_train", "honest_no_train"):
        m = floods[name]
        assert m.returncode == 0, m.output[-3000:]
        assert m.results["score"] == sum(t["max_score"] for t in m.results["tests"]), m.output[-3000:]


def test_2000_rows_of_predictions_cost_no_more_than_an_honest_grading(floods):
    flood, _ = assert_flood_is_cheap(floods, "flood_prediction_rows")
    assert located_cell(flood.path, "class _Flood").where not in flood.output  # the patch loaded


def test_a_4x4096x4096_prediction_costs_no_more_than_an_honest_grading(floods):
    flood, _ = assert_flood_is_cheap(floods, "flood_prediction_picture")
    assert located_cell(flood.path, "class _Flood").where not in flood.output


def test_9000_boot_problems_cost_no_more_than_an_honest_grading(floods):
    flood, _ = assert_flood_is_cheap(floods, "flood_boot_problems")
    # The flood reached the parent (its problems are reported, a bounded number of them).
    assert "FloodError" in flood.output, flood.output[-3000:]


def test_a_huge_forward_output_costs_no_more_than_an_honest_grading(floods):
    flood, honest = assert_flood_is_cheap(floods, "flood_huge_forward")
    assert flood.results["score"] < honest.results["score"]


# ------------------------------------------------------------------------------------------
# Defect 6: terminal injection
# ------------------------------------------------------------------------------------------

# Every character that can change what a terminal, spreadsheet or browser shows: C0 controls
# but newline and tab, DEL, C1 controls (CSI 0x9b among them) and bidirectional formatting.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

# An exception whose class name sets the window title and clears the screen, and whose
# message moves the cursor up to print a fake score, writes the clipboard (OSC 52), rings the
# bell, reverses the text and returns the carriage; the same text printed to stdout.
EVIL_TEXT = (
    "\\x1b[1A\\x1b[2K\\x1b[32mScore: 30 / 30\\x1b[0m \\x1b]52;c;b3duZWQ=\\x07 \\x9b2J "
    "\\u202etxet desrever\\u202c \\x07 hidden\\rScore: 30 / 30"
)
EVIL_EXCEPTION = {
    "within": {
        "PoolUpsampleNet": {
            INIT: INIT + f"        print('{EVIL_TEXT}')\n"
            "        raise type('\\x1b]0;owned\\x07\\x1b[2J', (Exception,), {})(" + f"'{EVIL_TEXT}')\n"
        }
    }
}
EVIL_NAME = "owned\x1b]0;title\x07\x1b[2J\x1b[1A\r\x9b31m\u202egpj"


def control_characters(text: str) -> list[str]:
    return sorted({repr(c) for c in CONTROL.findall(text)})


def json_strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from json_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from json_strings(v)


@pytest.fixture(scope="module")
def injected(tmp_path_factory) -> dict:
    """A batch of two notebooks whose PoolUpsampleNet raises the evil exception, one of them
    with a file name full of control characters (gradebook, JUnit, results files, batch
    output), and that one graded alone (terminal, results.json, HTML page)."""
    root = tmp_path_factory.mktemp("trust-injection")
    folder = root / "notebooks"
    folder.mkdir()
    make_notebook(folder, "evil_exception", **EVIL_EXCEPTION)
    evil = make_notebook(folder, EVIL_NAME, **EVIL_EXCEPTION)
    out, junit = root / "out", root / "junit.xml"
    parts = ("--part", "A.1")
    # (text=False: the terminal output is read as it is, control characters and all)
    batch = run_grader(
        folder, "--out", out, "--junit", junit, "--jobs", 2, *SEED, *parts, cwd=root, text=False
    )
    assert batch.returncode == 0, batch.stdout[-3000:] + batch.stderr[-3000:]
    page, results = root / "page.html", root / "results.json"
    single = run_grader(evil, "--json", results, "--html", page, *SEED, *parts, cwd=root, text=False)
    assert single.returncode in (0, 1), single.stdout[-3000:] + single.stderr[-3000:]
    return {
        "batch terminal": (batch.stdout + batch.stderr).decode("utf-8", "replace"),
        "single terminal": (single.stdout + single.stderr).decode("utf-8", "replace"),
        "results.json": results,
        "batch results": sorted(out.glob("*.json")),
        "gradebook.csv": out / "gradebook.csv",
        "junit": junit,
        "html": page,
    }


def test_the_evil_exception_reaches_the_feedback(injected):
    """The attack is seen (its name and message are reported, made harmless): else the
    tests below would prove nothing."""
    data = json.loads(injected["results.json"].read_text())
    outputs = " ".join(t["output"] for t in data["tests"])
    assert "owned" in outputs and "Score: 30 / 30" in outputs, outputs[:3000]
    assert "owned" in injected["single terminal"], injected["single terminal"][-3000:]
    assert len(injected["batch results"]) == 2, injected["batch results"]


def test_no_control_character_reaches_the_terminal(injected):
    for which in ("single terminal", "batch terminal"):
        text = injected[which]
        assert not control_characters(text), (which, control_characters(text), text[-3000:])


def test_no_control_character_reaches_results_json(injected):
    for path in [injected["results.json"], *injected["batch results"]]:
        data = json.loads(path.read_text())
        bad = [s for s in json_strings(data) if CONTROL.search(s)]
        assert not bad, (path.name, [repr(s[:300]) for s in bad[:5]])


def test_no_control_character_reaches_the_gradebook_junit_or_html(injected):
    for which in ("gradebook.csv", "junit", "html"):
        # Bytes decoded as they are: a text-mode read would turn a stray carriage return into
        # a newline. CSV ends its rows with CR LF.
        text = injected[which].read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
        # A character reference (&#27;) is the same character once a reader decodes it.
        assert not control_characters(text), (which, control_characters(text))
        assert not control_characters(html.unescape(text)), (which, control_characters(html.unescape(text)))
    assert "owned" in injected["gradebook.csv"].read_text(), "the evil file name is not in the gradebook"
