"""Grading the PA2 editions other than W2021 (slow: graded in the main batch, where every
notebook's edition is detected, and wheels built).

W2021's colourization mutants and correct variants are re-headed as the other editions'
notebooks (the same class code put into each edition's reference notebook): each must lose
exactly the checks its W2021 original loses, under the edition's ids and points, and nothing
else. Every mutant is re-headed once, as one edition in turn, to keep the batch short.
"""

from __future__ import annotations

import itertools

import pytest

from pa2_colourization_cases import CORRECT_STYLES, MUTANTS
from pa2_editions import FILE_TASKS, OTHERS, PARTS, edition, reference_notebook, tasks_of, template_notebook

from grader.authoring.release import release
from grader.public import store

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]


def _rotation():
    """Each W2021 colourization mutant and correct variant re-headed as one other edition,
    in turn, among those that grade its part (F2024 and W2025 have no UNet)."""
    cycle = itertools.cycle(OTHERS)
    chosen = {}
    for mutant in MUTANTS:
        name = next(e for e in cycle if mutant.part in tasks_of(e))
        chosen[f"{name}__{mutant.name}"] = (name, mutant.name, mutant.spec())
    for style, classes in sorted(CORRECT_STYLES.items()):
        name = next(e for e in cycle if "C.1" in tasks_of(e))  # the variants replace all three
        chosen[f"{name}__{style}"] = (name, style, {"replace": classes})
    return chosen


REHEADED = _rotation()
NOTEBOOKS = {
    # the W2021 originals (declared in test_pa2_colourization too), to compare with
    **{m.name: m.spec() for m in MUTANTS},
    **{style: {"replace": classes} for style, classes in CORRECT_STYLES.items()},
    **{key: dict(spec, base=reference_notebook(name)) for key, (name, _, spec) in REHEADED.items()},
    **{f"{name}__reference": {"base": reference_notebook(name)} for name in OTHERS},
    **{f"{name}__template": {"base": template_notebook(name)} for name in OTHERS},
}


def title(check_name: str) -> str:
    """A check's name without its part and subject ("4.1 PoolUpsampleNet: ")."""
    return check_name.split(": ", 1)[1]


def by_task(result, name) -> dict[tuple[str, str], dict]:
    ids = {part: task for part, (task, _) in PARTS[name].items()}
    return {(ids[t["tags"][0]], title(t["name"])): t for t in result.tests}


def scale(name, part_id) -> float:
    """How much one of the checks' own points is worth in this edition's part."""
    task, points = PARTS[name][part_id]
    return 1.0 if points is None else points / edition(name).task_weights()[task]


@pytest.mark.parametrize("key", sorted(REHEADED))
def test_a_reheaded_notebook_loses_what_its_w2021_original_loses(graded, key):
    name, original, _ = REHEADED[key]
    result, w2021 = graded[key], graded[original]
    assert result.error is None, result.summary()
    assert result.data["grader"]["assignment"] == name, result.summary()
    here, there = by_task(result, name), by_task(w2021, "pa2-w2021")
    here = {k: v for k, v in here.items() if k[0] not in FILE_TASKS}  # not in the notebook
    assert set(here) == {k for k in there if k[0] in tasks_of(name)}, result.summary()
    tasks = {task: part_id for part_id, (task, _) in PARTS[name].items()}
    for k, check in here.items():
        theirs = there[k]
        assert check["status"] == theirs["status"], (k, result.summary(), w2021.summary())
        factor = scale(name, tasks[k[0]])
        assert check["max_score"] == pytest.approx(theirs["max_score"] * factor), k
        assert check["score"] == pytest.approx(theirs["score"] * factor), k


@pytest.mark.parametrize("name", OTHERS)
def test_each_editions_reference_gets_full_marks_and_template_nothing(graded, name):
    reference, template = graded[f"{name}__reference"], graded[f"{name}__template"]
    in_files = {part for part, (task, _) in PARTS[name].items() if task in FILE_TASKS}
    assert reference.error is None and all(
        t["status"] == "passed" for t in reference.tests if t["tags"][0] not in in_files
    ), reference.summary()
    assert {t["tags"][0] for t in reference.tests} == set(PARTS[name])
    assert template.score == 0 and template.max_score == pytest.approx(reference.max_score)
    for part_id in PARTS[name]:
        for result in [template] + ([reference] if part_id in in_files else []):
            failed = [t for t in result.tests if t["tags"][0] == part_id]
            assert failed and all(t["status"] == "failed" for t in failed), result.summary()
            # one reason: the class's cell does not parse (the starter's empty marker pairs),
            # or, for a part graded from a file, that the notebook came alone
            reason = "was not handed in" if part_id in in_files else "does not parse"
            assert all(reason in t["output"].split("\n", 1)[0] for t in failed), result.summary()


@pytest.mark.parametrize("name", OTHERS)
def test_each_editions_public_expectations_are_current_and_its_bundle_builds(name, tmp_path):
    a = edition(name)
    assert store.is_current(a), f"run `grade build-public {name}`"
    notebook, wheel, readme = release(a, tmp_path)
    assert notebook.name == a.notebook and wheel.suffix == ".whl"
    assert a.title in readme.read_text()
