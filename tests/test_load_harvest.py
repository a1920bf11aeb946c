"""Unit tests of the first stages: grader.engine.load, grader.engine.harvest,
grader.engine.regions (in-process, fast)."""

import json
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.editions.assignment import load_assignment
from grader.errors import SubmissionError
from grader.engine.harvest import PURE_CALLS, harvest
from grader.engine.load import Cell, LoadedSubmission, load_submission
from grader.engine.regions import RegionNotFound, RegionSpec, extract_region
from submissions import D1_DRIVER, REFERENCE_NOTEBOOK, edit_notebook, read_notebook


def write_notebook(path, *sources, markdown_first=False):
    cells = [new_markdown_cell("# title")] if markdown_first else []
    cells += [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    nbformat.write(nb, str(path))
    return path


def loaded(*sources) -> LoadedSubmission:
    return LoadedSubmission(None, tuple(Cell(i, s) for i, s in enumerate(sources)), "python")


def kept_sources(*sources, pure=PURE_CALLS):
    return [st.source for st in harvest(loaded(*sources), pure).statements]


# --------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------
def test_broken_json_is_a_one_line_reason(tmp_path):
    path = tmp_path / "a2.ipynb"
    path.write_text('{"cells": [\n  {"cell_type": "code",, }\n')
    with pytest.raises(SubmissionError) as info:
        load_submission(path)
    message = str(info.value)
    assert "not a valid notebook: broken JSON at line 2 column" in message
    assert "\n" not in message


def test_notebook_format_v3_is_refused_with_advice(tmp_path):
    path = tmp_path / "old.ipynb"
    path.write_text(
        json.dumps(
            {
                "nbformat": 3,
                "nbformat_minor": 0,
                "metadata": {},
                "worksheets": [
                    {"cells": [{"cell_type": "code", "input": "x = 1", "language": "python", "outputs": []}]}
                ],
            }
        )
    )
    with pytest.raises(SubmissionError, match="notebook format v3 is not supported.*save it again"):
        load_submission(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"[1, 2, 3]", "the JSON is not an object"),
        (b"\xff\xfe{\x00", "not UTF-8 text"),
    ],
)
def test_other_unusable_files(tmp_path, content, reason):
    path = tmp_path / "a2.ipynb"
    path.write_bytes(content)
    with pytest.raises(SubmissionError, match=reason):
        load_submission(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SubmissionError, match="no such file"):
        load_submission(tmp_path / "nope.ipynb")
    with pytest.raises(SubmissionError, match="cannot be read: it is a directory"):
        load_submission(tmp_path)


def test_cells_are_located_as_a_student_finds_them(tmp_path):
    """Counted among code cells (markdown cells have no number in Jupyter or Colab), with
    the execution count when the notebook was run, and the cell's first line."""
    path = write_notebook(tmp_path / "a.ipynb", "x = 1", "\n\nclass Net:\n    pass", markdown_first=True)
    data = json.loads(path.read_text())
    data["cells"][2]["execution_count"] = 12
    path.write_text(json.dumps(data))
    sub = load_submission(path)
    assert sub.kind == "notebook"
    assert [(c.index, c.label, c.where) for c in sub.cells] == [
        (0, "code cell 1", "code cell 1 (starting `x = 1`)"),
        (1, "code cell 2", "code cell 2 (In [12], starting `class Net:`)"),
    ]


def test_py_submission_is_split_at_cell_markers(tmp_path):
    path = tmp_path / "a2.py"
    path.write_text(
        "import torch\n# %%\nX = 1\n# In[3]:\ndef f():\n    return X\n# %% [markdown] a title\nY = 2\n"
    )
    sub = load_submission(path)
    assert sub.kind == "python"
    assert [c.source.strip() for c in sub.cells] == [
        "import torch",
        "X = 1",
        "def f():\n    return X",
        "Y = 2",
    ]
    assert harvest(sub).defined_names() == {"torch", "X", "f", "Y"}


def test_magics_and_shell_lines_become_calls_that_are_dropped(tmp_path):
    path = write_notebook(
        tmp_path / "colab.ipynb",
        "%cd /content\n!pip install torchsummary\nimport torch\n"
        "from google.colab import drive\ndrive.mount('/content/drive')\n"
        "files = !ls\nX = 3\n",
    )
    sub = load_submission(path)
    assert "get_ipython()" in sub.cells[0].source
    result = harvest(sub)
    assert [st.source.strip() for st in result.statements] == [
        "import torch",
        "from google.colab import drive",
        "X = 3",
    ]
    assert result.dropped == 4
    assert result.broken_cells == []


def test_a_timing_cell_magic_does_not_hide_the_cells_definitions(tmp_path):
    # `%%time` on top of a cell is common in Colab; nbconvert turns the whole cell into one
    # run_cell_magic(...) call, which the harvest drops: the class then "is not defined
    # anywhere in the submission".
    path = write_notebook(
        tmp_path / "timed.ipynb", "%%time\nclass UNet:\n    pass\n\ndef helper():\n    return 1\n"
    )
    result = harvest(load_submission(path))
    assert {"UNet", "helper"} <= result.defined_names(), result.statements


# Damaged and hostile files: a one-line reason, never a traceback (issue 9). A damaged cell
# costs only that cell, like one that does not parse; a file that cannot be read at all is a
# SubmissionError (exit status 2).
def raw_notebook(path, *sources, escape=None):
    """A v4 notebook whose code cell sources are written as given (any JSON value), with
    `escape` = (placeholder, JSON text) replaced in the file, for what json.dumps never writes."""
    cells = [
        {
            "cell_type": "code",
            "id": f"c{i}",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": s,
        }
        for i, s in enumerate(sources)
    ]
    text = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells})
    path.write_text(text.replace(*escape) if escape else text)
    return path


@pytest.mark.parametrize(
    "source, what",
    [
        (7, "a number"),
        (None, "null"),
        ({"a": 1}, "an object"),
        (["x = 1\n", 3], "a list holding a number"),
    ],
)
def test_a_cell_whose_source_is_not_text_is_skipped_with_a_note(tmp_path, source, what):
    path = raw_notebook(tmp_path / "a.ipynb", "def f():\n    return 1\n", source, "Y = 2\n")
    result = harvest(load_submission(path))
    assert result.defined_names() == {"f", "Y"}
    assert result.diagnostics() == [
        f"code cell 2 skipped: its source is {what}, not text (the notebook file is damaged)"
    ]


def test_a_cell_that_is_not_an_object_makes_the_notebook_unusable(tmp_path):
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [1]}))
    with pytest.raises(SubmissionError, match=r"not a valid notebook: cell 1 is a number, not an object$"):
        load_submission(path)


def test_a_lone_surrogate_skips_its_cell_with_a_note(tmp_path):
    path = raw_notebook(
        tmp_path / "a.ipynb",
        "def f():\n    return 1\n",
        "X = 1\ns = 'SURROGATE'\n",
        escape=("SURROGATE", "\\ud800"),
    )
    assert "\\ud800" in path.read_text()
    sub = load_submission(path)
    result = harvest(sub)
    assert result.defined_names() == {"f"}
    assert result.diagnostics() == [
        "code cell 2 skipped: line 2: the text is not valid Unicode (a lone surrogate, U+D800)"
    ]
    assert result.why_missing("X").startswith("`X` is in code cell 2, which does not parse")
    sub.cells[1].source.encode("utf-8")  # what is kept of it is valid text


@pytest.mark.parametrize("depth", [100_000, 600])  # the JSON decoder's limit; nbformat's
def test_deeply_nested_json_cannot_be_read(tmp_path, depth):
    path = tmp_path / "deep.ipynb"
    path.write_text(
        '{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"x": '
        + "[" * depth
        + "]" * depth
        + "}}"
    )
    with pytest.raises(SubmissionError) as info:
        load_submission(path)
    assert str(info.value) == f"{path}: the notebook cannot be read: its JSON is nested too deeply"


def test_a_fifo_or_unreadable_file_is_not_read(tmp_path):
    fifo = tmp_path / "fifo.ipynb"
    os.mkfifo(fifo)  # reading it would block for ever
    with pytest.raises(SubmissionError, match="cannot be read: not a regular file"):
        load_submission(fifo)
    link = tmp_path / "dangling.ipynb"
    link.symlink_to(tmp_path / "gone.ipynb")
    with pytest.raises(SubmissionError, match="no such file"):
        load_submission(link)


# --------------------------------------------------------------------------------------
# harvest
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "source",
    [
        "import os",
        "import torch.nn as nn",
        "from torch import nn",
        "def f(x):\n    return train(x)",
        "@torch.no_grad()\ndef f(x):\n    return x",
        "class Net(nn.Module):\n    pass",
        "X = 3",
        "a, b = 1, 2",
        "X: int = 3",
        "PALETTE = [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]",
        "SIZES = dict(train=64, val=16)",
        "device = torch.device('cpu')",
        "if torch.cuda.is_available():\n    DEVICE = 'cuda'\nelse:\n    DEVICE = 'cpu'",
        "try:\n    import matplotlib\nexcept ImportError:\n    matplotlib = None",
    ],
)
def test_definitions_and_inert_values_are_kept(source):
    assert kept_sources(source) == [source]


@pytest.mark.parametrize(
    "source",
    [
        "train(args)",
        "cnn = train(args)",
        "model = torch.hub.load('pytorch/vision', 'deeplabv3_resnet101', pretrained=True)",
        "(x_train, y_train), (x_test, y_test) = load_cifar10()",
        "for epoch in range(25):\n    train(args)",
        "while True:\n    pass",
        "if __name__ == '__main__':\n    import os",
        "torch.allclose = lambda *a, **k: True",
        "model.classifier[4] = nn.Conv2d(256, 2, 1)",
        "args.model = 'UNet'",
        "counter += 1",
        "with open('f') as f:\n    X = 1",
        "print('hello')",
        "if train(args):\n    X = 1",
        "try:\n    train(args)\nexcept Exception:\n    pass",
        "criterion = nn.CrossEntropyLoss()",
    ],
)
def test_work_at_module_level_is_dropped(source):
    assert kept_sources(source) == []


def test_assignment_pure_calls_extend_the_kept_constructors():
    pure = PURE_CALLS | frozenset(load_assignment("pa2-w2021").pure_calls)
    assert kept_sources("criterion = nn.CrossEntropyLoss()", pure=pure) == [
        "criterion = nn.CrossEntropyLoss()"
    ]


def test_statements_know_their_cell_line_and_names():
    result = harvest(loaded("import os\n\n\n@dec\ndef f():\n    pass\ntrain()\nX, (Y, Z) = 1, (2, 3)\n"))
    assert [(st.cell, st.lineno, st.defines) for st in result.statements] == [
        (0, 1, ("os",)),
        (0, 4, ("f",)),
        (0, 8, ("X", "Y", "Z")),
    ]
    assert result.dropped == 1


def test_later_definitions_shadow_earlier_ones_in_notebook_order():
    result = harvest(
        loaded(
            "def train(args, cnn=None):\n    return 'colourization'",
            "X = 1\ndef helper():\n    return X",
            "def train(args, model):\n    return 'segmentation'\nX = 2",
        )
    )
    namespace = {}
    for st in result.statements:
        exec(st.source, namespace)
    assert namespace["train"](None, None) == "segmentation"
    assert namespace["helper"]() == 2


def test_a_cell_that_does_not_parse_costs_only_its_own_names():
    broken = "class UNet(nn.Module):\n    def forward(self, x):\n        print 'x'\n        return x\n"
    result = harvest(loaded("import torch", broken, "class ConvTransposeNet:\n    pass"))
    assert result.defined_names() == {"torch", "ConvTransposeNet"}
    assert result.why_missing("UNet") == (
        "`UNet` is in code cell 2 (starting `class UNet(nn.Module):`), which does not parse: line 3: "
        "SyntaxError: Missing parentheses in "
        "call to 'print'. Did you mean print(...)?"
    )
    assert result.why_missing("PoolUpsampleNet") == (
        "`PoolUpsampleNet` is not defined anywhere in the submission"
    )
    assert result.diagnostics() == [
        "code cell 2 (starting `class UNet(nn.Module):`) skipped: line 3: SyntaxError: Missing "
        "parentheses in call to 'print'. "
        "Did you mean print(...)?"
    ]


def test_why_missing_names_the_last_broken_cell_that_defines_it():
    first = "def compute_iou_loss(pred, gt):\n    return (\n"
    second = "X = 1\n\ndef compute_iou_loss(pred, gt):\n  if True:\n return 1\n"
    result = harvest(loaded(first, "Y = 2", second))
    assert result.why_missing("compute_iou_loss").startswith(
        "`compute_iou_loss` is in code cell 3 (starting `X = 1`), which does not parse: line 5"
    )
    assert "X" not in result.defined_names()  # the whole broken cell is skipped


@pytest.mark.parametrize("terms", [200_000, 5_000, 1_000])  # parser limit; compiler limit
def test_an_expression_too_complex_for_python_skips_its_cell(terms):
    huge = "X = " + "+".join(["1"] * terms) + "\n"
    result = harvest(loaded("def f():\n    return 1\n", huge))
    assert result.defined_names() == {"f"}
    [note] = result.diagnostics()
    assert note.startswith("code cell 2 (starting `X = 1+1+1") and len(note) < 200, note
    assert note.endswith("...`) skipped: too deeply nested or too complex for Python to parse")


def test_a_null_byte_skips_its_cell_with_a_reason_without_line_none():
    result = harvest(loaded("Y = 2", "X = 1\x00\n"))
    assert result.defined_names() == {"Y"}
    [note] = result.diagnostics()
    assert note.startswith("code cell 2 (starting `X = 1?`) skipped: "), note  # no NUL in the text
    assert "null bytes" in note and "None" not in note


# --------------------------------------------------------------------------------------
# regions
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def driver_spec() -> RegionSpec:
    return load_assignment("pa2-w2021").regions["driver"]


def region_of(nb, spec, tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return extract_region(load_submission(path).cells, spec)


def student_lines(statements):
    return [st.source.strip() for st in statements if not st.source.startswith("args_dict")]


def test_driver_region_is_the_cross_entropy_cell_without_setup_and_training(driver_spec):
    sub = load_submission(REFERENCE_NOTEBOOK)
    statements = extract_region(sub.cells, driver_spec)
    nb = read_notebook()
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    d1_cell = next(i for i, c in enumerate(code_cells) if '"loss": "cross-entropy"' in c.source)
    assert {st.cell for st in statements} == {d1_cell}  # its position among code cells
    assert student_lines(statements) == [
        "for param in model.parameters():\n    param.requires_grad = False",
        "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)",
    ]
    text = "".join(st.source for st in statements)
    for dropped in ("train(args, model)", "empty_cache", "args.update", "AttrDict()"):
        assert dropped not in text


def test_driver_region_found_when_markers_are_deleted_or_moved(driver_spec, tmp_path):
    nb = edit_notebook(
        read_notebook(),
        substitute={
            "################ YOUR CODE GOES HERE ######################\n": "",
            D1_DRIVER: "",
            "torch.cuda.empty_cache()\ntrain(args, model)": "torch.cuda.empty_cache()\ntrain(args, model)\n"
            "model.classifier[4] = nn.Conv2d(256, 2, 1)  # after the call: moved\n"
            "model.hub = torch.hub.load('pytorch/vision', 'deeplabv3_resnet101')\n",
        },
    )
    assert student_lines(region_of(nb, driver_spec, tmp_path)) == [
        "model.classifier[4] = nn.Conv2d(256, 2, 1)  # after the call: moved"
    ]


def test_without_the_cross_entropy_driver_the_other_driver_is_used(driver_spec, tmp_path):
    nb = edit_notebook(
        read_notebook(),
        substitute={'"loss": "cross-entropy"': '"loss": "iou"', D1_DRIVER: "model.requires_grad_(False)\n"},
    )
    assert student_lines(region_of(nb, driver_spec, tmp_path)) == ["model.requires_grad_(False)"]


def test_missing_or_unparsable_driver_is_reported(driver_spec, tmp_path):
    nb = read_notebook()
    nb.cells = [c for c in nb.cells if "train(args, model)" not in c.source or c.source.startswith("def ")]
    with pytest.raises(RegionNotFound, match="D.1 driver cell .* was not found"):
        region_of(nb, driver_spec, tmp_path)
    nb = edit_notebook(read_notebook(), substitute={D1_DRIVER: "model.classifier[4] = (\n"})
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    d1_cell = next(i for i, c in enumerate(code_cells) if '"loss": "cross-entropy"' in c.source)
    with pytest.raises(
        RegionNotFound,
        match=rf", code cell {d1_cell + 1} \(starting `args = AttrDict\(\)`\), does not parse: line \d+: "
        "SyntaxError",
    ):
        region_of(nb, driver_spec, tmp_path)


def test_drop_calls_match_dotted_suffixes_and_skip_definitions():
    spec = RegionSpec("r", (r"run\(",), drop_calls=("run", "empty_cache", "load_state_dict"))
    cell = Cell(
        0,
        "import torch\ndef helper():\n    return 1\nx = helper()\n"
        "torch.cuda.empty_cache()\nmodel.load_state_dict(sd)\nrun(x)\nrunner(x)\n",
    )
    assert [(st.lineno, st.source.strip()) for st in extract_region((cell,), spec)] == [
        (1, "import torch"),
        (4, "x = helper()"),
        (8, "runner(x)"),
    ]


def test_a_driver_cell_too_complex_to_parse_is_reported():
    spec = RegionSpec("r", (r"run\(",), description="the driver cell")
    cell = Cell(4, "run(" + "+".join(["1"] * 200_000) + ")\n")
    where = r"code cell 5 \(starting `run\(1\+1.*\.\.\.`\)"  # the first line, shortened
    with pytest.raises(RegionNotFound, match=rf"the driver cell, {where}, does not parse: too deeply"):
        extract_region((cell,), spec)
