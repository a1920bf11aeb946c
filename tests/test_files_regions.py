"""Submissions of several files, in-process (fast): finding the files a W2022 edition names
in a student's folder, taking the regions out of them by what the code does, running them in
trusted code (grader.engine.files, grader.engine.fileregions, grader.engine.transplant),
batch discovery of student folders, and the checks on the edition's description."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import yolo_files as y
from grader.editions.assignment import load_assignment
from grader.batch.discover import expand_paths, result_names
from grader.cli import _is_class_folder
from grader.errors import AssignmentError, SubmissionError
from grader.engine.fileregions import FileRegionSpec, RegionNotFound, edits_outside, extract
from grader.engine.files import (
    FileSpec,
    find_files,
    is_submission_folder,
    notebook_of,
    read_specs,
    submission_digest,
    wanted_files,
)
from grader.engine.transplant import compile_regions, run_in_child


CLONE = "2022/assets/assignments/pa2-q4-files"  # where a Colab clone keeps the tree


@pytest.fixture(scope="module")
def w2022():
    return load_assignment("pa2-w2022")


def regions_of(w2022, train: str | None = None, loss: str | None = None) -> dict:
    out = {}
    for name, spec in w2022.file_regions.items():
        text = {"train": train, "loss": loss}[spec.file]
        if text is not None:
            out[name] = extract(text, w2022.files[spec.file].name, spec)
    return out


# -- which files, where ------------------------------------------------------------------------
def test_only_an_edition_with_the_tasks_looks_for_the_files(w2022):
    assert sorted(s.name for s in wanted_files(w2022).values()) == ["loss.py", "train.py"]
    for other in ("pa2-w2021", "pa2-w2023", "pa2-f2024", "pa2-w2025"):
        assert wanted_files(load_assignment(other)) == {}, other


@pytest.mark.parametrize(
    "layout, train_at, loss_at",
    [
        ("tree", "train.py", "utils/loss.py"),
        ("flat", "train.py", "loss.py"),
        ("colab", f"{CLONE}/train.py", f"{CLONE}/utils/loss.py"),
    ],
)
def test_files_are_found_by_name_and_content_in_every_layout(tmp_path, w2022, layout, train_at, loss_at):
    folder = y.w2022_folder(
        tmp_path / "s", train=y.correct_train_py(), loss=y.correct_loss_py(), layout=layout
    )
    found = find_files(folder, wanted_files(w2022))
    assert found["train"].shown == train_at and found["loss"].shown == loss_at
    assert notebook_of(folder, w2022.notebook) == folder / "a2-code.ipynb"
    assert is_submission_folder(folder)


def test_a_renamed_file_is_found_by_its_content_and_a_wrong_one_is_named(tmp_path, w2022):
    folder = y.w2022_folder(tmp_path / "s", train=y.correct_train_py())
    (folder / "loss (1).py").write_text(y.correct_loss_py())
    (folder / "utils").mkdir()
    (folder / "utils" / "loss.py").write_text("def my_loss(x):\n    return x\n")  # not the handout's
    found = find_files(folder, wanted_files(w2022))
    assert found["loss"].shown == "loss (1).py"
    assert "not found by name" in found["loss"].note
    (folder / "loss (1).py").unlink()
    found = find_files(folder, wanted_files(w2022))
    assert found["loss"] == "utils/loss.py is not the handout's loss.py: it has no `class ComputeLoss`"


def test_missing_files_are_named_and_a_lone_notebook_has_none(tmp_path, w2022):
    folder = y.w2022_folder(tmp_path / "s", train=y.correct_train_py())
    assert find_files(folder, wanted_files(w2022))["loss"] == "loss.py was not found in the submission"
    alone = find_files(folder / "a2-code.ipynb", wanted_files(w2022))
    assert alone["train"].startswith("train.py was not handed in: this submission is the notebook alone")


def test_the_tree_layout_wins_over_a_stray_copy_and_says_so(tmp_path, w2022):
    folder = y.w2022_folder(tmp_path / "s", train=y.correct_train_py(), loss=y.correct_loss_py())
    (folder / "backup").mkdir()
    (folder / "backup" / "loss.py").write_text(y.starter_loss_py())
    found = find_files(folder, wanted_files(w2022))
    assert found["loss"].shown == "utils/loss.py"
    assert found["loss"].note == "several files could be loss.py (backup/loss.py); graded utils/loss.py"


def test_a_folder_names_its_notebook_or_says_why_not(tmp_path):
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / "b.ipynb").write_text("{}")
    assert notebook_of(tmp_path, "b.ipynb") == tmp_path / "b.ipynb"
    with pytest.raises(SubmissionError, match="holds 2 notebooks .*keep one"):
        notebook_of(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SubmissionError, match="holds no notebook"):
        notebook_of(empty)


# -- regions, found by behaviour -----------------------------------------------------------------
def test_the_three_regions_of_the_real_layout(w2022):
    train, loss = y.correct_train_py(), y.correct_loss_py()
    regions = regions_of(w2022, train, loss)
    loop = regions["freeze_loop"]
    assert loop.where == f"train.py lines {y.line_of(train, 'for k, v in model.named_parameters')}-" + str(
        y.line_of(train, "v.requires_grad = True")
    )
    # the 2-space body inside the 8-space block, taken as written; the source runs as a block
    assert "  v.requires_grad = False" in loop.statements[0].source
    assert (
        regions["cls_criterion"].where == f"loss.py line {y.line_of(loss, 'BCEcls = nn.BCEWithLogitsLoss')}"
    )
    assert regions["cls_update"].where == f"loss.py line {y.line_of(loss, 'lcls += self.BCEcls')}"
    # the focal wrapper (rebinds BCEcls from itself), the zeros before the loop and the
    # scaling after it are the handout's, not the region
    assert [s.source.strip() for s in regions["cls_update"].statements] == [y.CORRECT_UPDATE]
    assert any(s.source.startswith("import torch") for s in regions["cls_update"].imports)


def test_markers_and_indentation_do_not_matter(w2022):
    train = y.train_py(
        loop="""
        for name, param in model.named_parameters():
                  # a comment where the marker was
                  param.requires_grad = not any(name.startswith(x) for x in freeze)
        """
    )
    loss = y.loss_py(
        "pw = torch.tensor([h['cls_pw']], device=device)  # a helper only BCEcls uses\n"
        "BCEcls = nn.BCEWithLogitsLoss(pos_weight=pw)\nBCEcls.reduction = 'mean'",
        "lcls = lcls + self.BCEcls(ps[:, 5:], t)",
    )
    regions = regions_of(w2022, train, loss)
    assert "param.requires_grad" in regions["freeze_loop"].statements[0].source
    assert [s.source.strip().split("  #")[0] for s in regions["cls_criterion"].statements] == [
        "pw = torch.tensor([h['cls_pw']], device=device)",
        "BCEcls = nn.BCEWithLogitsLoss(pos_weight=pw)",
        "BCEcls.reduction = 'mean'",
    ]
    assert regions["cls_update"].statements[0].source.strip() == "lcls = lcls + self.BCEcls(ps[:, 5:], t)"


def test_a_region_that_is_missing_or_does_not_parse_is_named(w2022):
    specs = w2022.file_regions
    with pytest.raises(RegionNotFound, match=r"train.py does not parse: line \d+"):
        extract(y.train_py("if x\n    pass"), "train.py", specs["freeze_loop"])
    no_loop = y.train_py(loop="model.requires_grad_(False)")
    with pytest.raises(
        RegionNotFound, match="the loop `for k, v in model.named_parameters\\(\\):` in `train` was"
    ):
        extract(no_loop, "train.py", specs["freeze_loop"])
    with pytest.raises(RegionNotFound, match="utils/loss.py has no `ComputeLoss.__init__`"):
        extract("class ComputeLoss:\n    pass\n", "utils/loss.py", specs["cls_criterion"])


def test_transplanted_statements_run_in_a_scope_and_errors_name_the_file_line(w2022):
    loss = y.loss_py(y.CORRECT_CRITERION, "lcls += self.BCEcls(ps[:, 5:], tcls[i])")
    regions = regions_of(w2022, loss=loss)
    compiled = compile_regions({k: v.to_wire() for k, v in regions.items()})
    scope = compiled["cls_criterion"]({"h": {"cls_pw": 2.5}, "device": "cpu"})
    assert scope["BCEcls"].pos_weight.tolist() == [2.5]  # torch and nn came from the file's imports
    harness = Path(__file__).resolve().parent.parent / "assignments/pa2/public/yolo_harness.py"
    import torch

    p = [torch.zeros(1, 3, s, s, 85) for s in (8, 4, 2)]
    targets = torch.tensor([[0, 3, 0.5, 0.5, 0.3, 0.4]])
    out = run_in_child(
        harness.read_text(),
        harness.name,
        "class_loss",
        {k: v.to_wire() for k, v in regions.items()},
        [p, targets, {}],
        {},
    )
    assert out["error"]["type"] == "ValueError"
    assert out["error"]["where"] == f"loss.py line {y.line_of(loss, 'tcls[i])')}"


# -- the edition's description --------------------------------------------------------------------
def test_mistakes_in_files_tables_stop_at_load_naming_file_and_key():
    path = Path("x/assignment.toml")
    with pytest.raises(AssignmentError, match="unknown key 'contain' in \\[files.loss\\]"):
        read_specs(path, {"files": {"loss": {"name": "loss.py", "contain": ["x"]}}})
    with pytest.raises(AssignmentError, match="is in file 'los', which \\[files\\] does not list"):
        read_specs(
            path,
            {
                "files": {"loss": {"name": "loss.py"}},
                "file_regions": {"r": {"file": "los", "function": "f", "binds": "x"}},
            },
        )
    with pytest.raises(AssignmentError, match="exactly one of 'loop_over', 'binds'"):
        FileRegionSpec.from_dict(path, "r", {"file": "f", "function": "g"})
    with pytest.raises(AssignmentError, match="not a valid regular expression"):
        FileSpec.from_dict(path, "f", {"name": "f.py", "contains": ["("]})


# -- edits outside the regions ---------------------------------------------------------------------
def test_edits_outside_the_regions_are_notes_given_the_handouts_copy(w2022):
    starter = y.starter_loss_py()
    # the fix the tree's target builder needs on current torch, outside the regions
    fixed = "int(gain[3]) - 1), gi.clamp_(0, int(gain[2]) - 1)"
    mine = y.correct_loss_py().replace("gain[3] - 1), gi.clamp_(0, gain[2] - 1)", fixed)
    regions = list(regions_of(w2022, loss=mine).values())
    notes = edits_outside(mine, starter, regions, "utils/loss.py")
    line = y.line_of(mine, "int(gain[3]) - 1")
    assert len(notes) == 1 and notes[0].startswith(
        f"utils/loss.py line {line} (`indices.append((b, a, gj."
    ), notes
    assert notes[0].endswith(
        "...`) differ from the handout's file and are not graded: only the graded regions are run"
    )
    assert edits_outside(y.correct_loss_py(), starter, regions, "utils/loss.py") == []


# -- batches ------------------------------------------------------------------------------------------
def test_a_class_folder_has_student_folders_and_loose_notebooks(tmp_path):
    classroom = tmp_path / "class"
    y.w2022_folder(classroom / "alice", train=y.correct_train_py(), loss=y.correct_loss_py())
    y.w2022_folder(classroom / "bob.smith", train=y.starter_train_py(), layout="colab")
    (classroom / "carol.ipynb").write_bytes(y.W2021_REFERENCE_NOTEBOOK.read_bytes())
    (classroom / "dave").mkdir()
    (classroom / "dave" / "a2-code.ipynb").write_bytes(y.W2022_REFERENCE_NOTEBOOK.read_bytes())
    paths = expand_paths([str(classroom)])
    assert [p.relative_to(classroom).as_posix() for p in paths] == [
        "alice",
        "bob.smith",
        "carol.ipynb",
        "dave/a2-code.ipynb",  # a notebook alone in a folder is graded as before
    ]
    assert sorted(result_names(paths).values()) == ["a2-code", "alice", "bob.smith", "carol"]
    # a folder given as a path is one submission too
    assert expand_paths([str(classroom / "alice")]) == [classroom / "alice"]


def test_a_folder_submissions_digest_follows_its_files(tmp_path):
    folder = y.w2022_folder(tmp_path / "s", train=y.correct_train_py(), loss=y.correct_loss_py())
    before = submission_digest(folder)
    assert before == submission_digest(folder)
    (folder / "utils" / "loss.py").write_text(y.starter_loss_py())
    assert submission_digest(folder) != before


def test_grade_folder_is_one_student_unless_it_holds_several_notebooks(tmp_path):
    student = y.w2022_folder(tmp_path / "s", train=y.correct_train_py())
    assert not _is_class_folder(str(student), None)
    (student / "old.ipynb").write_text("{}")
    assert _is_class_folder(str(student), None)
    assert not _is_class_folder(str(student), "pa2-w2022")  # the edition's notebook is there
    assert not _is_class_folder(str(student / "a2-code.ipynb"), None)


def test_code_for_feedback_is_the_region_dedented(w2022):
    train = y.correct_train_py()
    source = regions_of(w2022, train)["freeze_loop"].source()
    assert source == textwrap.dedent("""\
        for k, v in model.named_parameters():
            if any(x in k for x in freeze):
              v.requires_grad = False
            else:
              v.requires_grad = True""")
    compile(source, "pasted", "exec")


def test_the_stand_in_has_the_handouts_parameter_names():
    """222 tensors named model.0. to model.28. as the tree's Model('models/yolov3.yaml')
    names them; --freeze 10 covers 132 of them (the Darknet-53 backbone, model.0-9)."""
    from grader.checks import import_sibling

    harness = import_sibling(str(y.REPO / "assignments/pa2/public/x.py"), "yolo_harness")
    names = harness.parameter_names()
    assert len(names) == len(set(names)) == 222
    assert {n.split(".")[1] for n in names} == {str(i) for i in range(29)} - {"17", "18", "24", "25"}
    assert sum(n.startswith(tuple(f"model.{x}." for x in range(10))) for n in names) == 132
    assert names[:3] == ["model.0.conv.weight", "model.0.bn.weight", "model.0.bn.bias"]
    assert "model.4.1.cv2.conv.weight" in names and "model.27.1.cv2.bn.bias" in names
    assert names[-2:] == ["model.28.m.2.weight", "model.28.m.2.bias"]
