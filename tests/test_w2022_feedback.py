"""W2022 Part D feedback on real kinds of student code (slow: about a second each): the
official starter files, correct files written differently, and each mistake the handout's
facts list, graded by the public checks in-process through a student's self-check
(`grader.check` on a folder, the same checks as the real grading, without the sandbox).

Each case asserts the points of D.1 and D.2 (public checks only: D.1 2, D.2 1.5 of 2; the
hidden check is graded in tests/test_w2022_grading.py) and the phrase its feedback must
contain; every `Try:` snippet must run as pasted (a crash it reproduces may raise).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import pytest

import yolo_files as y
from grader.student.selfcheck import run

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

STARTSWITH = "v.requires_grad = not any(k.startswith(x) for x in freeze)"
INDEX = "v.requires_grad = int(k.split('.')[1]) >= len(freeze)"  # index arithmetic
UPSTREAM = """\
for k, v in model.named_parameters():
    v.requires_grad = True  # train all layers
    if any(x in k for x in freeze):
        LOGGER.info(f'freezing {k}')
        v.requires_grad = False
"""
CONTINUE = "if not any(x in k for x in freeze):\n    continue\nv.requires_grad_(False)"
C, U = y.CORRECT_CRITERION, y.CORRECT_UPDATE


@dataclass
class Case:
    train: str | None
    loss: str | None
    d1: float
    d2: float
    phrases: tuple[str, ...] = ()


def loss(criterion=C, update=U):
    return y.loss_py(criterion, update)


CASES = {
    # the handout's files as they come, and the answer
    "official starter": Case(
        y.starter_train_py(), y.starter_loss_py(), 0, 0, ("no parameter is frozen", "lcls stays 0")
    ),
    "correct (2-space body in the 8-space block)": Case(y.correct_train_py(), y.correct_loss_py(), 2, 1.5),
    # correct, written differently
    "k.startswith(x)": Case(y.train_py(STARTSWITH), None, 2, 0),
    "index arithmetic": Case(y.train_py(INDEX), None, 2, 0),
    "sets True first, logs what it freezes": Case(y.train_py(loop=UPSTREAM), None, 2, 0),
    "continue in the loop": Case(y.train_py(CONTINUE), None, 2, 0),
    "lcls = lcls + ...": Case(None, loss(update="lcls = lcls + self.BCEcls(ps[:, 5:], t)"), 0, 1.5),
    "pos_weight from a helper line": Case(
        None,
        loss("pw = torch.tensor([h['cls_pw']], device=device)\nBCEcls = nn.BCEWithLogitsLoss(pos_weight=pw)"),
        0,
        1.5,
    ),
    # D.1 mistakes
    "`k in freeze` (exact match)": Case(
        y.train_py("if k in freeze:\n    v.requires_grad = False"), None, 0, 0, ("no parameter is frozen",)
    ),
    "`requires_grad_ =` typo": Case(
        y.train_py("if any(x in k for x in freeze):\n    v.requires_grad_ = False"),
        None,
        0,
        0,
        ("no parameter is frozen", "only makes a new attribute"),
    ),
    "freezes everything": Case(
        y.train_py("v.requires_grad = False"), None, 0, 0, ("every parameter is frozen",)
    ),
    "hard-coded range(10)": Case(
        y.train_py("v.requires_grad = not any(k.startswith(f'model.{x}.') for x in range(10))"),
        None,
        1,
        0,
        ("with --freeze 3: the loop froze model.0 to model.9 (the first 10 layers)",),
    ),
    "hard-coded model.9": Case(
        y.train_py("v.requires_grad = int(k.split('.')[1]) > 9"), None, 1, 0, ("the first 10 layers",)
    ),
    "changes the weights": Case(
        y.train_py("v.requires_grad = not any(x in k for x in freeze)\nv.data.mul_(0.5)"),
        None,
        0,
        0,
        ("the loop changed the values of",),
    ),
    # D.2 mistakes; those the handout's defaults hide fail only under cls_pw 2.5 and smoothing
    "no pos_weight": Case(
        None,
        loss("BCEcls = nn.BCEWithLogitsLoss()"),
        0,
        0.5,
        ("BCEcls has no pos_weight", "With cls_pw 2.5, label smoothing 0.1, lcls"),
    ),
    "BCELoss on sigmoids": Case(
        None,
        loss("BCEcls = nn.BCELoss()", "lcls += self.BCEcls(ps[:, 5:].sigmoid(), t)"),
        0,
        0.5,
        ("nn.BCELoss on sigmoid probabilities", "With cls_pw 2.5, label smoothing 0.1, lcls"),
    ),
    "the objectness pos_weight": Case(
        None,
        loss("BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h['obj_pw']], device=device))"),
        0,
        0.5,
        ("objectness weight h['obj_pw']",),
    ),
    "`weight=` for `pos_weight=`": Case(
        None,
        loss("BCEcls = nn.BCEWithLogitsLoss(weight=torch.tensor([h['cls_pw']], device=device))"),
        0,
        0.5,
        ("as `weight`, which scales every term",),
    ),
    "pos_weight a float": Case(
        None,
        loss("BCEcls = nn.BCEWithLogitsLoss(pos_weight=h['cls_pw'])"),
        0,
        0,
        ("pos_weight must be a tensor",),
    ),
    "reduction='sum'": Case(
        None,
        loss("BCEcls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([h['cls_pw']]), reduction='sum')"),
        0,
        0.5,
        ("sums over the elements",),
    ),
    "BCEcls left None": Case(None, loss(None), 0, 0, ("BCEcls is still None",)),
    "`lcls = ...` instead of +=": Case(
        None, loss(update="lcls = self.BCEcls(ps[:, 5:], t)"), 0, 0, ("`lcls = ...` replaces lcls",)
    ),
    "`lcls = ...` kept 1-d": Case(
        None,
        loss(update="lcls = self.BCEcls(ps[:, 5:], t).unsqueeze(0)"),
        0,
        0,  # and no gradient reaches the other layers' logits
        ("keeps only the last detection layer's loss",),
    ),
    "wrong slice ps[:, 4:-1]": Case(
        None, loss(update="lcls += self.BCEcls(ps[:, 4:-1], t)"), 0, 0.5, ("ps[:, 4] is the objectness",)
    ),
    "wrong target tcls[i]": Case(
        None, loss(update="lcls += self.BCEcls(ps[:, 5:], tcls[i])"), 0, 0, ("differ in shape",)
    ),
    "unsmoothed one-hot targets": Case(
        None,
        loss(update="lcls += self.BCEcls(ps[:, 5:], torch.nn.functional.one_hot(tcls[i], 80).float())"),
        0,
        0.5,
        ("the targets are not `t`",),
    ),
    "scaled by h['cls'] twice": Case(
        None, loss(update="lcls += self.BCEcls(ps[:, 5:], t) * self.hyp['cls']"), 0, 0.5, ("twice",)
    ),
    "detached logits": Case(
        None, loss(update="lcls += self.BCEcls(ps[:, 5:].detach(), t)"), 0, 1, ("no gradient reaches",)
    ),
}


def grade(tmp_path, case: Case):
    folder = y.w2022_folder(tmp_path / "s", train=case.train, loss=case.loss)
    return run(("D.1", "D.2"), {}, assignment="pa2-w2022", folder=str(folder))


def part_score(result, part) -> float:
    return sum(c.score for c in result.checks if c.part == part)


@pytest.mark.parametrize("name", sorted(CASES))
def test_feedback(tmp_path, name):
    case = CASES[name]
    result = grade(tmp_path, case)
    assert result.error is None, result.error
    summary = "\n\n".join(f"{c.name}: {c.output}" for c in result.checks)
    assert part_score(result, "D.1") == pytest.approx(case.d1), summary
    assert part_score(result, "D.2") == pytest.approx(case.d2), summary
    failed = "\n".join(c.output for c in result.checks if not c.passed)
    for phrase in case.phrases:
        assert phrase in failed, (phrase, summary)
    for check in result.checks:
        if check.passed:
            continue
        if case.train is None and check.part == "D.1" or case.loss is None and check.part == "D.2":
            assert "was not found in the submission" in check.output, check.output
            continue
        assert "Try:\n" in check.output or "gradient" in check.name, check.output
        if "Try:\n" in check.output:
            snippet = check.output.split("Try:\n", 1)[1]
            code = compile(snippet, "pasted", "exec")
            crash = any(
                p in failed for p in ("replaces lcls", "still None", "must be a tensor", "differ in shape")
            )
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                try:
                    exec(code, {})
                except Exception:
                    assert crash, (name, snippet)  # it reproduces the crash
                else:
                    assert "expected" in printed.getvalue(), snippet


def test_check_in_colab_finds_the_files_in_the_cloned_tree(tmp_path, monkeypatch):
    """check() run in the notebook after `%cd 2022/assets/assignments/pa2-q4-files`, or from
    the notebook's own folder above the clone: the files are found by name and content."""
    folder = y.w2022_folder(
        tmp_path / "a2", train=y.correct_train_py(), loss=y.correct_loss_py(), layout="colab"
    )
    for where in (folder, folder / "2022" / "assets" / "assignments" / "pa2-q4-files"):
        monkeypatch.chdir(where)
        result = run(("D.1", "D.2"), {}, assignment="pa2-w2022")
        assert result.score == pytest.approx(3.5), [c.output for c in result.checks]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a2").rename(tmp_path / "elsewhere")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    result = run(("D.1",), {}, assignment="pa2-w2022")
    assert result.score == 0
    assert "train.py was not found in the submission (looked in" in result.checks[0].output
    assert "check(folder=...)" in result.checks[0].output
