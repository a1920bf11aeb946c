"""`grade assign`: master notebooks make the starters, the reference notebooks and the
reference module (grader/authoring/masters.py, docs/master-notebooks.md).

Every test here writes only into pytest's temporary folders: masters that must fail are
copies, and the real masters are run with --check, which writes nothing.
"""

from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader.authoring import masters as assign
from grader import cli
from submissions import REPO

from grader.editions.assignment import available, load_assignment

MASTERS = sorted((REPO / "reference").glob("*/master.ipynb"))
MASTER_IDS = [p.parent.name for p in MASTERS]
SOLUTION_LINE = re.compile(r"^\s*#+\s*(BEGIN|END)\s+SOLUTION\s*$")


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


def write(nb, path: Path) -> Path:
    path.write_text(nbformat.writes(nb, version=4), encoding="utf-8")
    return path


def run(capsys, *argv) -> tuple[int, str, str]:
    status = cli.main(["assign", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status: int, err: str, *fragments: str) -> None:
    assert status == 2, err
    line = err.strip()
    assert "\n" not in line and line.startswith("grade assign: "), err
    for fragment in fragments:
        assert fragment in line, line


def edited_copy(tmp_path: Path, master: Path, edit) -> Path:
    nb = read(master)
    edit(nb)
    return write(nb, tmp_path / "master.ipynb")


def cell_by_start(nb, start: str):
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(start))


# --------------------------------------------------------------------------------------
# The real masters
# --------------------------------------------------------------------------------------
def test_every_installed_edition_has_a_master():
    assert set(available()) <= set(MASTER_IDS)
    assert {"pa2-w2021", "pa2-w2022", "pa2-w2023", "pa2-f2024", "pa2-w2025"} <= set(MASTER_IDS)


def test_all_masters_at_once_the_module_master_first(capsys):
    status, out, err = run(capsys, *MASTERS, "--check")
    assert status == 0, out + err
    headers = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(headers) == len(MASTERS) and "makes " in headers[0]


@pytest.mark.parametrize("master", MASTERS, ids=MASTER_IDS)
def test_outputs_are_up_to_date(master, capsys):
    status, out, err = run(capsys, master, "--check")
    assert status == 0, f"run `grade assign {master.relative_to(REPO)}`:\n{out}{err}"
    assert "OUT OF DATE" not in out


@pytest.mark.parametrize("master", MASTERS, ids=MASTER_IDS)
def test_outputs_are_deterministic(master):
    first, _, _ = assign.outputs(assign.read_master(master))
    second, _, _ = assign.outputs(assign.read_master(master))
    assert list(first) == list(second)
    for path in first:
        assert first[path].encode() == second[path].encode(), path
    for path, text in first.items():
        if path.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            nbformat.validate(nb)
            assert "grader" not in nb.metadata
            for cell in nb.cells:
                assert "tags" not in cell.metadata or not {"module", "module-only"} & set(cell.metadata.tags)
                if cell.cell_type == "code":
                    assert cell.outputs == [] and cell.execution_count is None


def master_lines(master: Path) -> tuple[set[str], set[str]]:
    """(lines inside solution regions, lines outside them) of the master's code cells, read
    here independently of grader.authoring.masters."""
    inside, outside = set(), set()
    for cell in read(master).cells:
        if cell.cell_type != "code":
            continue
        in_solution = False
        for line in cell.source.split("\n"):
            if SOLUTION_LINE.match(line):
                in_solution = line.strip("# ").startswith("BEGIN")
                continue
            (inside if in_solution else outside).add(line.strip())
    return inside, outside


@pytest.mark.parametrize("master", MASTERS, ids=MASTER_IDS)
def test_the_starter_has_no_solution_line(master):
    assignment = load_assignment(read(master).metadata.grader.assignment)
    starter = read(assignment.template_folder / assignment.notebook)
    inside, outside = master_lines(master)
    answer_only = {line for line in inside - outside if line}
    assert len(answer_only) >= 10  # the check below has something to find
    shown = {line.strip() for cell in starter.cells for line in cell.source.split("\n")}
    assert not answer_only & shown
    assert not any(SOLUTION_LINE.match(line) for cell in starter.cells for line in cell.source.split("\n"))


@pytest.mark.parametrize("master", MASTERS, ids=MASTER_IDS)
def test_starter_and_reference_keep_the_notebook_cells_and_their_ids(master):
    nb = read(master)
    assignment = load_assignment(nb.metadata.grader.assignment)
    kept = [c.id for c in nb.cells if "module-only" not in c.metadata.get("tags", [])]
    starter = read(assignment.template_folder / assignment.notebook)
    reference = read(assignment.reference_folder / assignment.notebook)
    assert [c.id for c in starter.cells] == kept == [c.id for c in reference.cells]
    for a, b in zip(starter.cells, reference.cells):
        assert a.cell_type == b.cell_type
        if a.cell_type == "markdown":
            assert a.source == b.source


# The PA2 family's starters: each graded class a cell of its own, which does not parse
# untouched (the MyConv2d family's starters differ: tests/test_myconv_family.py).
PA2_MASTERS = [m for m in MASTERS if load_assignment(m.parent.name).family == "pa2"]


@pytest.mark.parametrize("master", PA2_MASTERS, ids=[m.parent.name for m in PA2_MASTERS])
def test_untouched_classes_do_not_parse_and_filled_ones_do(master):
    nb = read(master)
    assignment = load_assignment(nb.metadata.grader.assignment)
    starter = {c.id: c for c in read(assignment.template_folder / assignment.notebook).cells}
    reference = {c.id: c for c in read(assignment.reference_folder / assignment.notebook).cells}
    classes = [
        c.id for c in nb.cells if "module" in c.metadata.get("tags", []) and c.source.startswith("class ")
    ]
    assert len(classes) >= 2
    for cell_id in classes:
        with pytest.raises(SyntaxError):
            ast.parse(starter[cell_id].source)
        ast.parse(reference[cell_id].source)
        assert "YOUR CODE GOES HERE" in starter[cell_id].source


def test_shared_editions_keep_the_w2021_class_cells_byte_for_byte():
    w2021 = read(REPO / "student_template" / "pa2-w2021" / "a2-cnn.ipynb")
    classes = {c.source.split("(")[0]: c.source for c in w2021.cells if c.source.startswith("class ")}
    for edition in ("pa2-w2022", "pa2-w2023", "pa2-f2024", "pa2-w2025"):
        starter = read(REPO / "student_template" / edition / "a2-code.ipynb")
        found = [c.source for c in starter.cells if c.source.startswith("class ")]
        assert found and all(source == classes[source.split("(")[0]] for source in found), edition


def test_the_module_wrappers_hold_the_notebook_region_code():
    """W2021's D.1 wrappers take their code from the notebook cells by reference."""
    master = assign.read_master(REPO / "reference" / "pa2-w2021" / "master.ipynb")
    module = assign.module_text(master)
    for cell in master.cells:
        if cell.role == "notebook" and len(cell.regions) == 1 and cell.kind == "code":
            body = [line.strip() for line in cell.regions[0] if line.strip()]
            if "learned_parameters.append(param)" in "\n".join(body):
                assert "\n".join(body) in "\n".join(line.strip() for line in module.split("\n"))
                break
    else:
        pytest.fail("no D.1 region cell in the W2021 master")


# --------------------------------------------------------------------------------------
# Masters that must be refused (copies; --check, so nothing is ever written)
# --------------------------------------------------------------------------------------
W2023 = REPO / "reference" / "pa2-w2023" / "master.ipynb"


def test_a_graded_class_that_differs_from_the_module_is_named(tmp_path, capsys):
    def edit(nb):
        cell = cell_by_start(nb, "class ConvTransposeNet")
        cell.source = cell.source.replace("nn.ReLU(),", "nn.Sigmoid(),", 1)

    status, _, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert_one_line_error(status, err, "class ConvTransposeNet", "differs from", "Sigmoid", "ReLU")


def test_docstrings_and_comments_do_not_count_as_differences(tmp_path, capsys):
    def edit(nb):
        cell = cell_by_start(nb, "class UNet")
        cell.source = cell.source.replace(
            "class UNet(nn.Module):\n",
            'class UNet(nn.Module):\n    """A docstring."""\n\n    # a comment\n',
            1,
        )

    status, out, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert status == 1, err  # only the notebooks differ
    assert "3 definition(s) match" in out


def test_a_graded_class_missing_from_the_module_is_named(tmp_path, capsys):
    def edit(nb):
        cell = cell_by_start(nb, "class UNet")
        cell.source = cell.source.replace("class UNet(", "class UNet2(", 1)

    status, _, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert_one_line_error(status, err, "class UNet2", "is not defined in")


def test_check_exits_1_when_an_output_would_change(tmp_path, capsys):
    def edit(nb):
        nb.cells[-1].source += "\n\nOne more sentence."

    status, out, _ = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert status == 1
    assert "OUT OF DATE" in out and "a2-code.ipynb" in out


def test_unknown_edition_is_one_line_exit_2(tmp_path, capsys):
    def edit(nb):
        nb.metadata.grader.assignment = "pa2-nosuch"

    status, _, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert_one_line_error(status, err, "pa2-nosuch")


def test_missing_metadata_is_one_line_exit_2(tmp_path, capsys):
    def edit(nb):
        del nb.metadata["grader"]

    status, _, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert_one_line_error(status, err, "metadata.grader.assignment")


def test_missing_file_and_broken_json_are_one_line_exit_2(tmp_path, capsys):
    status, _, err = run(capsys, tmp_path / "nothing.ipynb", "--check")
    assert_one_line_error(status, err, "no such file")
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    status, _, err = run(capsys, broken, "--check")
    assert_one_line_error(status, err, "not a readable notebook")


@pytest.mark.parametrize(
    "old, new, last, fragment",
    [
        ("### END SOLUTION", "### END SOLUTON", False, "inside the SOLUTION region opened at line"),
        ("### BEGIN SOLUTION", "### BEGIN SOLUTIONS", False, "is not a marker"),
        ("### BEGIN SOLUTION", "### END PROMPT", False, "without a BEGIN PROMPT"),
        ("### END SOLUTION\n", "", True, "is never closed"),
    ],
)
def test_marker_mistakes_are_one_line_exit_2(tmp_path, capsys, old, new, last, fragment):
    def edit(nb):
        cell = cell_by_start(nb, "class PoolUpsampleNet")
        if last:
            head, _, tail = cell.source.rpartition(old)
            cell.source = head + new + tail
        else:
            cell.source = cell.source.replace(old, new, 1)

    status, _, err = run(capsys, edited_copy(tmp_path, W2023, edit), "--check")
    assert_one_line_error(status, err, fragment)


# --------------------------------------------------------------------------------------
# The convention, on a small master of its own (read and built in memory only)
# --------------------------------------------------------------------------------------
def small_master(tmp_path: Path, module: str = "write") -> Path:
    cells = [
        new_code_cell(
            '"""The module\'s docstring."""\nimport math', id="header", metadata={"tags": ["module-only"]}
        ),
        new_markdown_cell("# A title", id="title"),
        new_code_cell("# --- part 1 ---", id="heading", metadata={"tags": ["module-only"]}),
        new_code_cell(
            "def area(r):\n"
            "    # YOUR CODE HERE\n"
            "    ### BEGIN SOLUTION\n"
            "    return math.pi * r ** 2\n"
            "    ### END SOLUTION\n"
            "    # BEGIN PROMPT\n"
            "    raise NotImplementedError\n"
            "    # END PROMPT",
            id="area",
            metadata={"tags": ["module"], "execution": {"iopub.status.busy": "2024-01-01"}},
            execution_count=7,
            outputs=[new_output("stream", name="stdout", text="hi\n")],
        ),
        new_code_cell(
            "if True:\n"
            "    ##### BEGIN SOLUTION\n"
            "    total = area(1) + area(2)\n"
            "    ##### END SOLUTION\n"
            "print(total)",
            id="driver",
        ),
        new_code_cell(
            "def both():\n    ### SOLUTION FROM driver\n    return total",
            id="wrapper",
            metadata={"tags": ["module-only"]},
        ),
    ]
    nb = new_notebook(cells=cells, metadata={"grader": {"assignment": "pa2-w2021", "module": module}})
    return write(nb, tmp_path / "small.ipynb")


def test_convention_on_a_small_master(tmp_path):
    master = assign.read_master(small_master(tmp_path))
    starter = nbformat.reads(assign.notebook_text(master, "starter"), as_version=4)
    reference = nbformat.reads(assign.notebook_text(master, "reference"), as_version=4)
    assert [c.id for c in starter.cells] == ["title", "area", "driver"] == [c.id for c in reference.cells]
    assert starter.cells[1].source == "def area(r):\n    # YOUR CODE HERE\n    raise NotImplementedError"
    assert reference.cells[1].source == "def area(r):\n    # YOUR CODE HERE\n    return math.pi * r ** 2"
    assert starter.cells[2].source == "if True:\nprint(total)"
    for cell in (starter.cells[1], reference.cells[1]):
        assert cell.metadata == {} and cell.outputs == [] and cell.execution_count is None
    assert "grader" not in starter.metadata
    assert assign.module_text(master) == (
        '"""The module\'s docstring."""\nimport math\n\n\n'
        "# --- part 1 ---\n"
        "def area(r):\n    # YOUR CODE HERE\n    return math.pi * r ** 2\n\n\n"
        "def both():\n    total = area(1) + area(2)\n    return total\n"
    )


def test_solution_from_needs_a_cell_with_one_region(tmp_path):
    path = small_master(tmp_path)
    nb = read(path)
    nb.cells[-1].source = nb.cells[-1].source.replace("FROM driver", "FROM title")
    master = assign.read_master(write(nb, path))
    with pytest.raises(assign.MasterError, match="0 solution regions"):
        assign.module_text(master)
    nb.cells[-1].source = nb.cells[-1].source.replace("FROM title", "FROM nowhere")
    with pytest.raises(assign.MasterError, match="no cell with that id"):
        assign.module_text(assign.read_master(write(nb, path)))


def test_solution_from_outside_module_only_cells_is_refused(tmp_path):
    path = small_master(tmp_path)
    nb = read(path)
    nb.cells[4].source += "\n### SOLUTION FROM area"
    with pytest.raises(assign.MasterError, match="module-only"):
        assign.read_master(write(nb, path))


def test_markers_in_markdown_are_refused(tmp_path):
    path = small_master(tmp_path)
    nb = read(path)
    nb.cells[1].source += "\n### BEGIN SOLUTION"
    with pytest.raises(assign.MasterError, match="code cells only"):
        assign.read_master(write(nb, path))


def test_a_check_master_compares_every_module_definition(tmp_path):
    master = assign.read_master(small_master(tmp_path, module="check"))
    module = tmp_path / "module.py"
    module.write_text(assign.module_text(master))
    assert assign.check_definitions(master, module) == 2
    module.write_text(module.read_text().replace("math.pi * r ** 2", "3.14 * r ** 2"))
    with pytest.raises(assign.MasterError, match=r"def area \(cell area\) differs"):
        assign.check_definitions(master, module)


def test_the_outputs_do_not_change_the_master_in_memory(tmp_path):
    master = assign.read_master(small_master(tmp_path))
    before = copy.deepcopy(master.notebook)
    assign.notebook_text(master, "starter")
    assign.notebook_text(master, "reference")
    assign.module_text(master)
    assert master.notebook == before
