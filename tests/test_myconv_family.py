"""The MyConv2d family (PA2 W2020 and W2019) as data and its pieces, in-process: the editions
and their readings, telling them from W2021 and from each other, the reference networks of
every reading, torch.cat orders as permuted weights, the handout's MyConv2d put back when its
cell is lost, and the default edition of a notebook nothing tells. The grading tests are
tests/test_myconv_w2020.py and tests/test_myconv_w2019.py (slow)."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import tomllib

import nbformat
import pytest
import torch

from grader.editions.assignment import (
    AssignmentError,
    available,
    for_submission,
    import_sibling,
    load_assignment,
)
from grader.editions.detect import detect
from grader.engine.harvest import harvest
from grader.engine.load import load_submission
from grader.engine.provided import provided_definitions, supply_provided
from myconv_cases import W2019_REFERENCE, W2019_TEMPLATE, W2020_REFERENCE, W2020_TEMPLATE
from submissions import REFERENCE_NOTEBOOK, REPO, as_python_file, read_notebook

FAMILY = REPO / "assignments" / "pa2-myconv"
readings = import_sibling(str(FAMILY / "public" / "readings.py"), "readings")
myconv = import_sibling(str(FAMILY / "myconv.py"), "myconv")
EDITIONS = {"pa2-w2020": {"A.1": "CNN", "B.1": "UNet", "C.1": "learned_parameters", "C.2": "head"},
            "pa2-w2019": {"B.1": "CNN", "C.1": "UNet", "E": "activations"}}  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    return load_assignment("pa2-w2020").load_reference()


def installed():
    return [load_assignment(name) for name in available()]


def test_both_editions_are_installed_in_their_family_with_their_parts():
    for name, parts in EDITIONS.items():
        a = load_assignment(name)
        assert a.folder == FAMILY and a.module_path == REPO / "reference" / "pa2-myconv" / "solution.py"
        assert {p.id: p.task for p in a.parts} == parts
        assert a.reference_folder and (a.reference_folder / a.notebook).is_file() and a.template_notebook


# -- readings -----------------------------------------------------------------------------------
def test_the_family_lists_every_reading_and_each_edition_a_valid_choice():
    family = tomllib.loads((FAMILY / "family.toml").read_text())["readings"]
    assert {k: [str(v) for v in family[k]] for k in readings.AXES} == {
        k: list(v) for k, v in readings.AXES.items()
    }
    w2020 = readings.accepted(load_assignment("pa2-w2020"))
    assert w2020 == {"batchnorm": ["after-pooling"], "upconv2_width": ["num_colours"], "skips": ["3"]}
    w2019 = readings.accepted(load_assignment("pa2-w2019"))
    assert w2019["batchnorm"] == ["before-pooling", "after-pooling"] and w2019["skips"] == ["3"]
    assert w2019["upconv2_width"] == ["num_colours", "3"]


def test_one_line_changes_a_reading_and_a_misspelt_one_is_named():
    a = load_assignment("pa2-w2020")
    bn_first = {"batchnorm": "before-pooling", "upconv2_width": "num_colours", "skips": "3"}
    assert not readings.is_accepted(bn_first, readings.accepted(a))
    relaxed = dataclasses.replace(
        a,
        data={**a.data, "readings": {**a.data["readings"], "batchnorm": ["after-pooling", "before-pooling"]}},
    )
    assert readings.is_accepted(bn_first, readings.accepted(relaxed))
    wrong = dataclasses.replace(a, data={**a.data, "readings": {"batchnorm": ["pool-first"]}})
    with pytest.raises(
        ValueError, match=r"pa2-w2020/assignment.toml: \[readings\] batchnorm: unknown reading 'pool-first'"
    ):
        readings.accepted(wrong)


@pytest.mark.parametrize(
    "reading, hp, count",
    [  # the handouts' parameter counts (the family's doc lists them)
        ({"upconv2_width": "num_colours", "skips": 0}, (3, 32, 24, 1), 86784),
        ({"upconv2_width": "num_colours", "skips": 0}, (3, 32, 24, 3), 87360),
        ({"upconv2_width": "num_colours", "skips": 0}, (3, 4, 24, 1), 7404),
        ({"upconv2_width": "3", "skips": 0}, (3, 32, 24, 1), 76137),
        ({"upconv2_width": "3", "skips": 0}, (3, 32, 24, 3), 76713),
        ({"upconv2_width": "num_colours", "skips": 3}, (3, 32, 24, 1), 112344),
        ({"upconv2_width": "num_colours", "skips": 3}, (3, 4, 24, 1), 8772),
        ({"upconv2_width": "num_colours", "skips": 2}, (3, 32, 24, 1), 93912),
        ({"upconv2_width": "3", "skips": 3}, (3, 32, 24, 1), 95649),
        ({"upconv2_width": "3", "skips": 2}, (3, 32, 24, 1), 77217),
    ],
)
def test_reference_networks_have_the_handouts_parameter_counts(reference, reading, hp, count):
    for batchnorm in readings.AXES["batchnorm"]:
        net = reference.ColourNet(*hp, batchnorm=batchnorm, **reading)
        assert sum(p.numel() for p in net.parameters()) == count
        assert list(net(torch.randn(2, hp[3], 32, 32)).shape) == [2, hp[2], 32, 32]


def test_w2020s_module_networks_are_the_readings_it_accepts(reference):
    x = torch.randn(2, 3, 32, 32)
    for cls, skips in ((reference.CNN, 0), (reference.UNet, 3)):
        torch.manual_seed(0)
        mine = cls(3, 4, 6, 3)
        torch.manual_seed(0)
        theirs = reference.ColourNet(3, 4, 6, 3, skips=skips)
        theirs.load_state_dict(mine.state_dict())
        assert torch.equal(mine(x), theirs(x))


def test_a_torch_cat_in_the_other_order_is_the_reference_with_permuted_weights(reference):
    """Each concatenation's two weight blocks swap places: the same function on the swapped
    input. All 8 orders of the three concatenations."""
    hp = (3, 4, 6, 3)
    structure = {"upconv2_width": "num_colours", "skips": "3"}
    cats = myconv.concatenations("UNet", structure, hp)
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(1)
    ref = reference.ColourNet(*hp, skips=3).eval()
    states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in _layers(ref, x)]

    class SkipFirst(reference.ColourNet):
        def __init__(self, order):
            super().__init__(*hp, skips=3)
            self.order = order

        def forward(self, x):
            def cat(main, skip, first):
                return torch.cat([skip, main] if first else [main, skip], dim=1)

            o1 = self.downconv1(x)
            o2 = self.downconv2(o1)
            o3 = self.rfconv(o2)
            o4 = self.upconv1(cat(o3, o2, self.order[0]))
            o5 = self.upconv2(cat(o4, o1, self.order[1]))
            return self.finalconv(cat(o5, x, self.order[2]))

    for order in itertools.product([False, True], repeat=3):
        student = SkipFirst(order).eval()
        for module, state in zip(_layers(student, x), readings.permuted_states(states, cats, order)):
            module.load_state_dict({k: v for k, v in state.items() if k in module.state_dict()}, strict=False)
        assert torch.allclose(student(x), ref(x), atol=1e-5), order


def _layers(net, x):
    from grader.engine.layers import ordered_layers

    return ordered_layers(net, (x,))


def test_a_student_trace_with_nn_conv2d_compares_as_myconv2d():
    records = [{"type": "Conv2d", "config": {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 3]}}]
    assert readings.normalised(records)[0]["type"] == "MyConv2d"
    assert readings.normalised(records)[0]["config"]["kernel_size"] == 3


# -- telling the editions ---------------------------------------------------------------------------
def _write(nb, path):
    nbformat.write(nb, str(path))
    return path


def _headless(path, tmp_path):
    nb = read_notebook(path)
    del nb.cells[next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")]
    return _write(nb, tmp_path / path.name)


@pytest.mark.parametrize(
    "path, edition",
    [
        (W2020_REFERENCE, "pa2-w2020"),
        (W2020_TEMPLATE, "pa2-w2020"),
        (W2019_REFERENCE, "pa2-w2019"),
        (W2019_TEMPLATE, "pa2-w2019"),
        (REFERENCE_NOTEBOOK, "pa2-w2021"),
    ],
)
def test_each_notebook_is_told_from_its_cells(path, edition, tmp_path):
    assert detect(path, installed()).name == edition
    # without its title cell (W2019 has none), and as a .py file of its code cells only
    assert detect(_headless(path, tmp_path), installed()).name == edition
    if edition != "pa2-w2021":  # W2021 without markdown has nothing of its own left
        assert detect(as_python_file(read_notebook(path), tmp_path / "code.py"), installed()).name == edition


def test_python_2_kernelspecs_change_nothing(tmp_path):
    nb = read_notebook(W2019_REFERENCE)
    nb.metadata["kernelspec"] = {"display_name": "Python 2", "language": "python", "name": "python2"}
    assert detect(_write(nb, tmp_path / "colourization.ipynb"), installed()).name == "pa2-w2019"


def test_a_notebook_nothing_tells_goes_to_the_default_edition_of_its_file_name(tmp_path):
    for name, edition in (
        ("colourization.ipynb", "pa2-w2019"),
        ("a2-cnn.ipynb", "pa2-w2021"),
        ("x.ipynb", "pa2-w2021"),
    ):
        path = tmp_path / name
        path.write_text("{not json")
        chosen, why, _ = for_submission(path)
        assert chosen.name == edition and "cannot be read" in why.reason, (name, chosen.name)


# -- MyConv2d from the handout -------------------------------------------------------------------
def test_the_provided_myconv2d_is_the_starters_and_the_modules():
    provided = load_assignment("pa2-w2020").data["harvest"]["provided"]["MyConv2d"]
    ours = _definition(provided, "MyConv2d")
    for path in (W2020_TEMPLATE, W2019_TEMPLATE):
        cell = next(c for c in read_notebook(path).cells if "class MyConv2d" in c.source)
        starter = cell.source.split("\nclass CNN")[0]
        assert ast.dump(_definition(starter, "MyConv2d")) == ast.dump(ours), path
    module = (REPO / "reference" / "pa2-myconv" / "solution.py").read_text()
    assert ast.dump(_definition(module, "MyConv2d")) == ast.dump(ours)


def _definition(source, name):
    node = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == name)
    node.body = [b for b in node.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
    return node


def test_a_lost_myconv2d_is_put_back_where_its_cell_was(tmp_path):
    loaded = load_submission(W2020_TEMPLATE)
    found = harvest(loaded)
    assert "MyConv2d" not in found.defined_names()
    provided = provided_definitions(load_assignment("pa2-w2020").data["harvest"]["provided"])
    notes = supply_provided(found, provided)
    assert len(notes) == 1 and "which does not parse: the handout's own MyConv2d was used" in notes[0]
    index = next(i for i, st in enumerate(found.statements) if "MyConv2d" in st.defines)
    lost_cell = next(c for c, _, names in found.broken_cells if "MyConv2d" in names)
    assert all(st.cell < lost_cell.index for st in found.statements[:index])
    assert all(st.cell > lost_cell.index for st in found.statements[index + 1 :])
    # tracebacks in it name the handout, not a student's cell
    assert found.statements[index].to_wire()["cell"] == "the handout's MyConv2d"
    # a notebook's own MyConv2d, edited or not, is never replaced
    own = harvest(load_submission(W2020_REFERENCE))
    assert supply_provided(own, provided) == []


def test_a_provided_definition_that_defines_nothing_is_refused():
    with pytest.raises(AssignmentError, match="does not define Helper"):
        provided_definitions({"Helper": "x = 1\n"})
    with pytest.raises(AssignmentError, match="does not parse"):
        provided_definitions({"Helper": "class Helper(:\n"})


# -- W2019's Part E contract, read from the source ---------------------------------------------------
@pytest.mark.parametrize(
    "forward, kept",
    [
        ("self.out1 = self.a(x)\nself.out2 = self.b(self.out1)\nreturn self.out2", {"out1", "out2"}),
        ("me = 1\nout1 = self.a(x)\nreturn out1", set()),
        ("self.out1, self.out2 = self.a(x), 2\nreturn x", {"out1", "out2"}),
        ("for i in range(5):\n    setattr(self, 'out3', x)\nreturn x", {"out3"}),
    ],
)
def test_activations_kept_on_the_module_are_found(forward, kept):
    body = "\n".join("        " + line for line in forward.splitlines())
    tree = ast.parse(f"class UNet:\n    def forward(self, x):\n{body}\n")
    assert myconv.stored_on_self(tree.body[0]) == kept
