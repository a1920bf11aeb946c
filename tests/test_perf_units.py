"""In-process tests of the engine pieces the performance work added: trusted builds described as
data (grader.engine.recipes), the grader's helper process (grader.engine.offload), timings in the results
and in `grade --verbose`'s terminal output, objects shared between checks, stored values a
rebuild keeps, and PA2's stand-in for DeepLabV3-ResNet101: the same module tree, and the
grader's reproduction of a fine-tuning run bit-identical to the child's."""

from __future__ import annotations

import gc
import io
import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from grader.engine import offload, recipes
from grader.editions.assignment import load_assignment
from grader.public.store import keep_stored
from grader.report.results import CheckResult, GradingResult
from submissions import REPO

RESNET = "torchvision.models.resnet"


# -- recipes ------------------------------------------------------------------------------------
def tiny_resnet(**extra) -> dict:
    recipe = {
        "call": f"{RESNET}:ResNet",
        "args": [{"object": f"{RESNET}:BasicBlock"}, [1, 1, 1, 1]],
        "num_classes": 3,
    }
    return {**recipe, **extra}


def test_a_recipe_builds_nested_library_calls_the_same_way_in_any_key_order():
    recipe = {
        "call": "torch.nn:Sequential",
        "args": [
            {"call": "torch.nn:Conv2d", "args": [3, 4, 3], "padding": 1, "bias": False},
            {"call": "torch.nn:BatchNorm2d", "args": [4]},
        ],
    }
    torch.manual_seed(0)
    first = recipes.build(recipe)
    torch.manual_seed(0)
    again = recipes.build(json.loads(recipes.key(recipe)))  # keys sorted, as stored
    assert isinstance(first, torch.nn.Sequential) and first[0].padding == (1, 1) and first[0].bias is None
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    torch.manual_seed(0)
    net = recipes.build(tiny_resnet())
    assert type(net.layer1[0]).__name__ == "BasicBlock" and net.fc.out_features == 3


@pytest.mark.parametrize(
    "name, why",
    [
        ("os:system", "not under torch or torchvision"),
        ("torch:os", "reaches outside"),  # torch imports os: still not torch
        ("torchvision.models._utils:IntermediateLayerGetter", "not a public library name"),
        ("torch.nn:_Loss", "not a public library name"),
        ("torch.nn.Conv2d", "module:attribute"),
        ("torch.nn:NoSuchLayer", "names nothing"),
    ],
)
def test_a_recipe_names_public_torch_and_torchvision_code_only(name, why):
    with pytest.raises(recipes.RecipeError, match=why):
        recipes.build({"call": name})


def test_a_build_request_names_a_factory_or_gives_a_recipe():
    assert recipes.as_recipe("torch.nn:ReLU", {"inplace": True}) == {"call": "torch.nn:ReLU", "inplace": True}
    assert recipes.as_recipe({"call": "torch.nn:ReLU"}, {"inplace": True})["inplace"] is True
    assert recipes.label({"call": f"{RESNET}:ResNet"}) == "ResNet" and recipes.label("a.b:c") == "c"
    with pytest.raises(recipes.RecipeError, match="only data"):
        recipes.build({"call": "torch.nn:ReLU", "inplace": object()})


# -- PA2's fine-tuning model ---------------------------------------------------------------------
def test_a_prebuilt_object_is_copied_with_a_builds_weights_and_random_state():
    recipe = tiny_resnet(num_classes=5)
    torch.manual_seed(3)
    built = recipes.build(recipe)
    after_build = torch.rand(4)  # where a build leaves torch's random state
    recipes.prebuild([recipe, {"call": "torch.nn:NoSuchLayer"}], seed=3)  # the second is left out
    try:
        assert list(recipes._PREBUILT) == [(recipes.key(recipe), 3)]
        torch.manual_seed(99)
        copied = recipes.fresh(recipe, seed=3)
        assert torch.equal(torch.rand(4), after_build)
        assert copied is not recipes.pristine(recipe, 3) and recipes.pristine(recipe, 3) is recipes.pristine(
            recipe, 3
        )
        assert built.state_dict().keys() == copied.state_dict().keys()
        assert all(
            torch.equal(a, b) for a, b in zip(built.state_dict().values(), copied.state_dict().values())
        )
        copied.fc.weight.data.zero_()  # a copy: the prebuilt object is untouched
        assert torch.equal(recipes.pristine(recipe, 3).fc.weight, built.fc.weight)
        torch.manual_seed(4)
        other_seed = recipes.build(recipe)  # not prebuilt for seed 4: built, the same as a build
        assert torch.equal(recipes.fresh(recipe, seed=4).fc.weight, other_seed.fc.weight)
    finally:
        recipes._PREBUILT.clear()


def test_a_copy_shares_the_originals_bytes_until_it_writes_and_the_original_stays_pristine():
    from grader.engine.training import parameter_digests, run_training

    torch.manual_seed(0)
    original = recipes.build(tiny_resnet())
    original.layer1[0].conv2.weight = original.layer1[0].conv1.weight  # tied: stays tied in a copy
    state = {k: v.clone() for k, v in original.state_dict().items()}
    digests = parameter_digests(original)
    first, second = recipes.copy_of(original), recipes.copy_of(original)
    assert first.layer1[0].conv2.weight is first.layer1[0].conv1.weight
    lazy = hasattr(torch, "_lazy_clone")
    if lazy:  # nothing is copied yet: the copy's frozen weights are the original's bytes
        assert torch._C._is_cow_tensor(first.fc.weight) and torch._C._is_cow_tensor(first.bn1.running_mean)
    assert parameter_digests(first) == digests  # read without copying, the same digests

    # The first copy trains only its head, as D.1's driver leaves the stand-in: batch norm's
    # statistics and the head are written, the rest stays shared and reported unchanged.
    for name, p in first.named_parameters():
        p.requires_grad = name.startswith("fc.")
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    report = run_training(
        first, images, labels, torch.nn.CrossEntropyLoss(), 2, 4, 0.1, seed=0, optimizer="torch.optim.SGD"
    )
    assert report["changed"] == ["fc.bias", "fc.weight"]
    if lazy:
        assert torch._C._is_cow_tensor(first.conv1.weight) and not torch._C._is_cow_tensor(first.fc.weight)
    # The second copy is a mutant that trains everything, in place: its writes are its own.
    report = run_training(
        second, images, labels, torch.nn.CrossEntropyLoss(), 2, 4, 0.1, seed=0, optimizer="torch.optim.SGD"
    )
    assert "conv1.weight" in report["changed"] and "layer4.0.conv2.weight" in report["changed"]
    assert not torch.equal(second.conv1.weight, original.conv1.weight)
    assert all(torch.equal(v, state[k]) for k, v in original.state_dict().items())
    assert parameter_digests(original) == digests
    third = recipes.copy_of(original)  # later copies see the original as built
    assert all(torch.equal(v, state[k]) for k, v in third.state_dict().items())


def test_the_warm_server_prebuilds_what_every_edition_asks_and_its_processes_find_it(tmp_path):
    """[checks] prebuild, read from the TOML files before the server starts, names the same
    recipes as the loaded editions hold; a process forked from the server (the helper) has
    them built already."""

    from grader.editions.assignment import available
    from grader.editions.prebuild import prebuild_recipes

    prebuilt = {recipes.key(r) for r in prebuild_recipes()}
    asked = set()
    for name in available():
        data = load_assignment(name).data
        for dotted in data.get("checks", {}).get("prebuild", []):
            value = data
            for part in dotted.split("."):
                value = value[part]
            asked.add(recipes.key(value))
    assert load_assignment("pa2-w2021").data["checks"]["prebuild"] == ["finetune.model"]
    assert prebuilt == asked and len(prebuilt) == 1  # PA2 and the MyConv2d family share one model

    # In a process of its own: this one's server may have been started by another test's sandbox.
    helper = tmp_path / "prebuilt_module.py"
    helper.write_text(
        "from grader.engine import recipes\n\ndef prebuilt():\n    return [k for k, _ in recipes._PREBUILT]\n"
    )
    script = (
        "import importlib.util, json, sys\n"
        "from grader.engine import offload\n"
        f"spec = importlib.util.spec_from_file_location('prebuilt_module', {str(helper)!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules[spec.name] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(json.dumps(offload.submit(module.prebuilt).result(300)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert set(json.loads(proc.stdout.splitlines()[-1])) == prebuilt


def test_pa2s_stand_in_has_deeplabv3_resnet101s_module_tree():
    """What a driver cell can see of the model (module names and types, parameter and buffer
    names, the head it replaces) is the real model's; only the inner widths of the backbone's
    blocks and its output stride differ."""
    from torchvision.models.segmentation import deeplabv3_resnet101

    real = deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=True)
    for edition in ("pa2-w2021", "pa2-w2020"):
        stand_in = recipes.build(load_assignment(edition).data["finetune"]["model"])
        assert [(n, type(m)) for n, m in stand_in.named_modules()] == [
            (n, type(m)) for n, m in real.named_modules()
        ]
        assert [n for n, _ in stand_in.named_parameters()] == [n for n, _ in real.named_parameters()]
        assert [n for n, _ in stand_in.named_buffers()] == [n for n, _ in real.named_buffers()]
        for path in ("classifier", "aux_classifier"):
            shapes = [p.shape for p in stand_in.get_submodule(path).parameters()]
            assert shapes == [p.shape for p in real.get_submodule(path).parameters()], path
        assert sum(p.numel() for p in stand_in.parameters()) < 0.4 * sum(p.numel() for p in real.parameters())


def test_the_graders_reproduction_of_d1_is_bit_identical_to_the_childs_run():
    """The child's run (the request handlers, in this process) and the grader's own run from
    the same starting head end with the same head, to the bit: D.1's verdict compares them."""
    from grader.checks import import_sibling
    from grader.engine.harvest import harvest
    from grader.engine.load import load_submission
    from grader.engine.regions import extract_region
    from grader.sandbox.child import _compile
    from grader.student.selfcheck import KernelSubmission

    assignment = load_assignment("pa2-w2021")
    reference = assignment.load_reference()
    loaded = load_submission(REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb")
    namespace = {"__name__": "__main__"}
    for st in harvest(loaded).statements:
        try:
            exec(_compile(st.source, st.cell, st.lineno), namespace)
        except Exception:
            pass
    regions = {n: extract_region(loaded.cells, s) for n, s in assignment.regions.items()}
    pa2 = import_sibling(str(REPO / "assignments" / "pa2" / "pa2.py"), "pa2")
    spec = assignment.data["finetune"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the child and in the grader's helper
    runs = []
    try:
        # built where needed, then copied from the model the warm server prebuilds: the same runs
        for prebuilt in ([], [spec["model"]]):
            recipes.prebuild(prebuilt)
            run = pa2._finetune_run(KernelSubmission(namespace, loaded.cells, regions, {}), spec, "cpu", 7)
            want = pa2._reproduce_finetune(
                reference, pa2.model_key(spec), "cpu", 7, pa2.spec_items(spec), run["head"]
            )
            runs.append((run["final"], want))
    finally:
        torch.set_num_threads(threads)
        recipes._PREBUILT.clear()
    for final, want in runs:
        assert set(want) == {"classifier.4.weight", "classifier.4.bias"}
        for name, value in want.items():
            assert torch.equal(final[name], value), name
            assert torch.equal(value, runs[0][1][name]), name


# -- the helper process --------------------------------------------------------------------------
def test_offloaded_work_runs_in_another_process_with_modules_and_errors_carried(tmp_path):
    helper = tmp_path / "helper_module.py"
    helper.write_text(
        "import os\n\n"
        "def where(module, x):\n"
        "    return os.getpid(), module.__name__, module.VALUE * x\n\n"
        "def broken():\n"
        "    raise ValueError('no such thing')\n"
    )
    data = tmp_path / "data_module.py"
    data.write_text("VALUE = 7\n")
    import importlib.util

    modules = {}
    for path in (helper, data):
        spec = importlib.util.spec_from_file_location(f"_perf_test_{path.stem}", path)
        modules[path.stem] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[path.stem]
        spec.loader.exec_module(modules[path.stem])
    try:
        pid, name, value = offload.submit(modules["helper_module"].where, modules["data_module"], 6).result(
            60
        )
        assert pid != os.getpid() and name == "_perf_test_data_module" and value == 42
        with pytest.raises(RuntimeError, match="no such thing"):
            offload.submit(modules["helper_module"].broken).result(60)
    finally:
        offload.stop()
        for module in modules.values():
            sys.modules.pop(module.__name__, None)


def test_the_helpers_results_thread_keeps_no_result_and_ends_at_exit(tmp_path):
    # At the end of a grading the thread that received the helper's results freed the last
    # one (a reference's trained weights) during the interpreter's shutdown, and freeing a
    # tensor then aborted the process after its report was printed (exit status 134).
    import importlib.util
    import weakref

    helper = tmp_path / "tensor_module.py"
    helper.write_text("import torch\n\ndef weights():\n    return {'state': {'w': torch.ones(1000)}}\n")
    spec = importlib.util.spec_from_file_location("_perf_test_tensor_module", helper)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    try:
        future = offload.submit(module.weights)
        weights = weakref.ref(future.result(60)["state"]["w"])
        receiver = offload._helper._receiver
        del future  # the grading drops the result: nothing else may keep it
        deadline = time.monotonic() + 10
        while weights() is not None and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert weights() is None, "the helper's results thread still holds the last result"
        offload._stop_at_exit()  # what runs at the process's end
        assert offload._helper is None and not receiver.is_alive()
    finally:
        offload.stop()
        sys.modules.pop(spec.name, None)


# -- results, writers and the proxy ----------------------------------------------------------------
def test_timings_travel_with_the_results_and_grade_verbose_prints_them():
    from rich.console import Console

    from grader.report.writers import terminal

    checks = [
        CheckResult("A.1: slow", "A.1", "shape", 1, 1, True, number="1", seconds=2.5),
        CheckResult("A.1: fast", "A.1", "shape", 1, 0, False, number="2", seconds=0.25),
    ]
    result = GradingResult("s.ipynb", "pa2-w2021", checks=checks, execution_time=3.0)
    result.timings = {"stages": {"load": 0.1, "check": 2.8}}
    data = json.loads(json.dumps(result.to_dict()))
    assert data["grader"]["timings"] == {
        "stages": {"load": 0.1, "check": 2.8},
        "checks": {"1": 2.5, "2": 0.25},
    }
    back = GradingResult.from_dict(data)
    assert back.timings == result.timings and [c.seconds for c in back.checks] == [2.5, 0.25]
    out = io.StringIO()
    terminal(result, console=Console(file=out, width=200), timings=True)
    text = out.getvalue()
    assert "time: load 0.10 s, check 2.80 s; in all 3.00 s" in text
    assert text.index("2.50 s  1. A.1: slow") < text.index("0.25 s  2. A.1: fast")
    plain = io.StringIO()
    terminal(result, console=Console(file=plain, width=200))
    assert "time:" not in plain.getvalue()


def test_objects_shared_by_checks_are_made_once_per_child_and_not_forgotten():
    from grader.engine.proxy import Submission

    sandbox = SimpleNamespace(children_started=1, running=False, limits=None)
    submission = Submission(None, sandbox, {}, {})
    made = []

    def make():
        made.append(submission._new_handle())
        return made[-1]

    first = submission.shared("model", make)
    assert submission.shared("model", make) == first and len(made) == 1
    assert submission._handles == []  # the check that made it does not free it
    sandbox.children_started = 2  # the child was replaced: its objects are gone
    assert submission.shared("model", make) != first and len(made) == 2


def test_a_rebuild_keeps_stored_values_that_agree_within_noise():
    stored = {"a": [1.0, torch.tensor([1.0, 2.0])], "b": 0.5, "c": "x"}
    fresh = {"a": [1.0 + 1e-9, torch.tensor([1.0, 2.0 + 1e-9])], "b": 0.75, "c": "x"}
    kept = keep_stored(stored, fresh)
    assert kept["a"] is stored["a"] and kept["b"] == 0.75
    assert keep_stored(stored, {"other": 1}) == {"other": 1}


# -- a standalone grading in a process forked from the warm server ------------------------------
def test_a_standalone_grading_process_gives_back_its_exit_status_or_the_signal_that_ended_it():
    """`grade` grades in a process forked from the warm server (torch held once, by the
    server); the exit status of that process is the grading's, and a process that died says
    how (grader.cli reports it as the grader's failure, exit status 2)."""
    from grader.batch import pool

    assert pool.run_in_worker(int, "1") == 1  # int("1"): the function's return is the status
    assert pool.run_in_worker(os.abort) == -6  # SIGABRT
    assert pool.run_in_worker(len, None) == 2  # the function raised: the grader broke


# -- the sandbox's allow-list ---------------------------------------------------------------------
def test_secret_paths_a_mount_can_cover_each_resolved_once(tmp_path, monkeypatch):
    """host.paths_to_hide keeps a secret path only where covering it hides nothing the child
    must read (symlinks followed); it resolves each path once, not once per pair (a grading's
    ~500 readable paths times its secrets took a quarter of a second)."""
    from grader.sandbox import host

    readable = tmp_path / "site" / "torch"
    readable.mkdir(parents=True)
    unrelated = tmp_path / "reference"
    unrelated.mkdir()
    inside = readable / "secret_copy"
    inside.mkdir()
    link = tmp_path / "alias"
    link.symlink_to(inside)  # resolves into a readable folder
    secrets = [str(unrelated), str(inside), str(tmp_path / "site"), str(link)]
    others = [str(tmp_path / f"lib{n}") for n in range(200)]
    calls = []
    resolve = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p, **kw: calls.append(p) or resolve(p, **kw))
    assert host.paths_to_hide(secrets, [str(readable), *others]) == [str(unrelated)]
    assert len(calls) <= len(secrets) + 1 + len(others)
