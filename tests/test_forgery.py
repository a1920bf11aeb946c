"""Forged answers (docs/design.md, trust model, rule 2): a submission that knows the public cases
(students get them with the grader) and answers them from a table, or patches the sandbox
child's own request handlers, must earn no more in the instructor's grading than honest code
of the same quality. Each forgery is also graded the way a student's installation grades
(public checks only, stored cases): there it does fool the checks, which shows that the
forgery works and that the secret challenges are what stops it."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
import torch

from grading import run_grader
from pa2_colourization_cases import A1_RELU_BEFORE_BN, CANNOT_LEARN
from pa2_finetune_cases import NO_FREEZING
from submissions import REPO, TEMPLATE_NOTEBOOK, make_notebook

from grader.public.store import read

# End to end (`make test-fast` leaves it out); the session's batches grade meanwhile (conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("batches")]

PARTS = ("--part", "A.1", "--part", "D.1", "--part", "D.2")

FREEZE_AND_REPLACE = (
    "for param in model.parameters():\n    param.requires_grad = False\n"
    "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"
)
# No freezing, and the model lies about it: named_parameters() shows frozen snapshots of
# everything but the new layer (so requires_grad reads False and the weights never seem to
# change), while parameters() hands every real parameter to whatever trains it.
LYING_PARAMETERS = NO_FREEZING + (
    "_real = list(model.named_parameters())\n"
    "_snapshot = {n: p.detach().clone() for n, p in _real}\n"
    "model.named_parameters = lambda *args, **kwargs: iter(\n"
    "    [(n, p) if n.startswith('classifier.4') else (n, _snapshot[n]) for n, p in _real])\n"
    "model.parameters = lambda *args, **kwargs: iter([p for _, p in _real])\n"
)


# A PoolUpsampleNet that cannot learn (CANNOT_LEARN) with a made-up training report: the child's
# training function replaced by one that returns a falling curve and every parameter "changed".
FAKE_TRAINING_REPORT = (
    "class _FakeTraining:\n"
    "    import grader.engine.training as _training\n"
    "    def _report(module, inputs, targets, loss_fn, steps, batch_size, lr, seed,\n"
    "                device='cpu', output_key=None, preview=4, **more):\n"
    "        import torch\n"
    "        names = [n for n, _ in module.named_parameters()]\n"
    "        return {'losses': [3.2 * 0.8 ** i for i in range(steps)], 'changed': names,\n"
    "                'unchanged': [], 'requires_grad': {n: True for n in names},\n"
    "                'predictions': torch.zeros(preview, 32, 32, dtype=torch.uint8),\n"
    "                'seconds': 0.1, 'device': device}\n"
    "    _training.run_training = _report\n"
)


def _stored_cases() -> dict:
    return read(REPO / "assignments" / "pa2" / "public")["cases"]


def _tensor_text(t: torch.Tensor) -> str:
    buffer = io.BytesIO()
    buffer.write(t.detach().float().contiguous().numpy().tobytes())
    return base64.b64encode(buffer.getvalue()).decode()


def lookup_table_model() -> str:
    """The wrong PoolUpsampleNet (ReLU before BatchNorm) whose forward answers every stored
    public input with the stored reference output, found by hashing the input."""
    table = {}
    for case in _stored_cases()["colour"]["PoolUpsampleNet"]["equivalence"]:
        # Keyed by input and hyper-parameters: one input serves several settings.
        key = hashlib.sha256(case["input"].float().numpy().tobytes()).hexdigest() + str(list(case["hp"]))
        variant = case["variants"][0]
        table[key] = {
            mode: [list(variant[mode]["output"].shape), _tensor_text(variant[mode]["output"])]
            for mode in ("train", "eval")
        }
    blob = base64.b64encode(json.dumps(table).encode()).decode()
    forward = (
        "    def forward(self, x):\n"
        "        out = self._honest(x)  # the layers run, as the weight loading expects\n"
        "        import base64, hashlib, json\n"
        "        import numpy as np\n"
        "        table = json.loads(base64.b64decode(TABLE))\n"
        "        first, last = self.layer1[0], self.layer5\n"
        "        hp = [first.kernel_size[0], first.out_channels, last.out_channels, first.in_channels]\n"
        "        key = hashlib.sha256(x.detach().float().numpy().tobytes()).hexdigest() + str(hp)\n"
        "        if key in table:\n"
        "            shape, data = table[key]['train' if self.training else 'eval']\n"
        "            raw = np.frombuffer(base64.b64decode(data), dtype=np.float32).copy()\n"
        "            return torch.from_numpy(raw).reshape(shape)\n"
        "        return out\n\n"
        "    def _honest(self, x):\n"
    )
    source = A1_RELU_BEFORE_BN.replace("    def forward(self, x):\n", forward, 1)
    return f"TABLE = {blob!r}\n" + source


def patched_handlers_cell() -> str:
    """Replaces the child's `call` handler: IoU values looked up by hashing the public inputs
    (whole-batch reading), 0.5 elsewhere, and a made-up gradient."""
    iou = _stored_cases()["iou"]
    table = {}
    for case in iou["cases"] + [iou["probe"]]:
        pred = torch.tensor(case["pred"], dtype=torch.float32)
        gt = torch.tensor(case["gt"], dtype=torch.long)
        key = hashlib.sha256(pred.numpy().tobytes() + gt.numpy().tobytes()).hexdigest()
        table[key] = case["values"]["whole batch"]
    blob = base64.b64encode(json.dumps(table).encode()).decode()
    return (
        "class _Answers:\n"
        "    import base64, json\n"
        "    import grader.sandbox.child as _child\n"
        f"    _table = json.loads(base64.b64decode({blob!r}))\n"
        "    def _call(self, name, args, kwargs, grad_wrt=(), _table=_table, **_other_fields):\n"
        "        import hashlib, torch\n"
        "        pred, gt = self.value(args)[:2]\n"
        "        key = hashlib.sha256(pred.numpy().tobytes() + gt.numpy().tobytes()).hexdigest()\n"
        "        grads = [torch.full_like(pred, 0.01) for _ in grad_wrt]\n"
        "        return {'output': torch.tensor(_table.get(key, 0.5)), 'grads': grads}\n"
        "    _child.Child.op_call = _call\n"
    )


@pytest.fixture(scope="module")
def graded(tmp_path_factory, batches):
    # Waits for the hostile batch (conftest.py), when the session has one, first: these
    # gradings train, and running them beside it would stretch the time that test_hostile bounds.
    if "hostile" in batches:
        batches["hostile"].wait()
    folder = tmp_path_factory.mktemp("forgeries")
    make_notebook(folder, "honest_a1_relu_before_bn", replace={"PoolUpsampleNet": A1_RELU_BEFORE_BN})
    make_notebook(folder, "forged_a1_lookup_table", replace={"PoolUpsampleNet": lookup_table_model()})
    make_notebook(folder, "honest_template", base=TEMPLATE_NOTEBOOK)
    make_notebook(folder, "honest_a1_cannot_learn", replace={"PoolUpsampleNet": CANNOT_LEARN})
    make_notebook(
        folder,
        "forged_a1_training_report",
        replace={"PoolUpsampleNet": CANNOT_LEARN},
        extra_cells=[FAKE_TRAINING_REPORT],
    )
    make_notebook(folder, "honest_d1_no_freezing", substitute={FREEZE_AND_REPLACE: NO_FREEZING})
    make_notebook(folder, "forged_d1_lying_parameters", substitute={FREEZE_AND_REPLACE: LYING_PARAMETERS})
    make_notebook(
        folder, "forged_patched_handlers", base=TEMPLATE_NOTEBOOK, extra_cells=[patched_handlers_cell()]
    )
    scores = {}
    # A fixed secret seed, so the verdicts are the same on every run: 11 is one of the 15% of
    # seeds on which held-out images of other colours once let a network that outputs zeros
    # pass the training check (the made-up report below); any seed must fail it now.
    for side, extra in (("instructor", ["--seed", "11"]), ("student", ["--public-only"])):
        out = tmp_path_factory.mktemp(f"out-{side}")
        # Training checks included: the D.1 one is where the grader verifies fine-tuning.
        proc = run_grader(folder, "--out", out, "--quiet", *PARTS, *extra, train=True, timeout=900)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        for path in out.glob("*.json"):
            data = json.loads(path.read_text())
            parts: dict[str, float] = {}
            for test in data["tests"]:
                parts[test["tags"][0]] = parts.get(test["tags"][0], 0) + test["score"]
                parts[test["name"]] = test["status"]
            scores[(side, path.stem)] = parts
    return scores


def test_a_lookup_table_of_public_outputs_earns_nothing_on_the_instructor_side(graded):
    honest = graded[("instructor", "honest_a1_relu_before_bn")]["A.1"]
    forged = graded[("instructor", "forged_a1_lookup_table")]["A.1"]
    assert forged <= honest, (forged, honest)
    # The table does fool the stored cases alone (a student's self-check): the equivalence
    # points the honest network loses are won there.
    assert (
        graded[("student", "forged_a1_lookup_table")]["A.1"]
        > graded[("student", "honest_a1_relu_before_bn")]["A.1"]
    )


def test_patched_child_handlers_earn_nothing_on_the_instructor_side(graded):
    honest = graded[("instructor", "honest_template")]["D.2"]
    forged = graded[("instructor", "forged_patched_handlers")]["D.2"]
    assert forged <= honest, (forged, honest)
    assert (
        graded[("student", "forged_patched_handlers")]["D.2"] > graded[("student", "honest_template")]["D.2"]
    )


def test_a_made_up_training_report_earns_nothing(graded):
    training = (
        "A.1 PoolUpsampleNet: Short training run: every layer learns and the loss falls like the reference's"
    )
    assert graded[("instructor", "honest_a1_cannot_learn")][training] == "failed"
    assert graded[("instructor", "forged_a1_training_report")][training] == "failed"
    assert (
        graded[("instructor", "forged_a1_training_report")]["A.1"]
        <= graded[("instructor", "honest_a1_cannot_learn")]["A.1"]
    )


def test_lying_about_requires_grad_earns_nothing_on_the_instructor_side(graded):
    honest = graded[("instructor", "honest_d1_no_freezing")]["D.1"]
    forged = graded[("instructor", "forged_d1_lying_parameters")]["D.1"]
    assert forged <= honest, (forged, honest)
    # The model is read through nn.Module's own storage, not the instance's replaced methods:
    # the lie fools a student's own self-check no more than the instructor's grading.
    assert (
        graded[("student", "forged_d1_lying_parameters")]["D.1"]
        <= graded[("student", "honest_d1_no_freezing")]["D.1"]
    )


def test_secret_challenges_change_no_honest_verdict(graded):
    """Every public check gives honest notebooks the same verdict on the instructor's side
    (stored and secret cases) as on a student's (stored cases alone)."""
    for name in (
        "honest_a1_relu_before_bn",
        "honest_template",
        "honest_d1_no_freezing",
        "honest_a1_cannot_learn",
    ):
        student, instructor = graded[("student", name)], graded[("instructor", name)]
        checks = [k for k, v in student.items() if v in ("passed", "failed")]
        assert checks
        for check in checks:
            assert instructor[check] == student[check], (name, check)
