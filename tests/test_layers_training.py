"""Unit tests of grader.engine.layers (the layer trace, layer configs) and grader.engine.training (the short
training run and how a request names its loss and optimizer). Fast: small models, no sandbox."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from grader.engine import layers, training
from grader.sandbox import wire
from grader.sandbox.child import Child


class Mixed(nn.Module):
    """Layers called as module(x), module.forward(x), by keyword, and one reused."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU())
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        x = self.conv1.forward(x)
        x = torch.relu(self.bn.forward(x))
        x = self.conv2(x)
        x = self.conv2.forward(x)  # reused, through forward
        x = self.block(x).mean(dim=(2, 3))
        return self.fc(input=x)


def hook_records(model, x):
    """(path, in_shape, out_shape) as forward hooks see them: the trace's old mechanism."""
    paths = {m: n for n, m in model.named_modules()}
    seen = []
    handles = [
        m.register_forward_hook(lambda mod, a, o: seen.append((paths[mod], list(a[0].shape), list(o.shape))))
        for m in model.modules()
        if layers.is_parametrised_leaf(m)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def no_shadowed_forward(model):
    return all("forward" not in m.__dict__ for m in model.modules())


def test_trace_sees_layers_called_through_forward_once_each_in_order():
    model = Mixed().eval()
    x = torch.randn(2, 1, 8, 8)
    out, records = layers.trace(model, (x,), keep_values=True)
    assert [r["path"] for r in records] == ["conv1", "bn", "conv2", "conv2", "block.0", "fc"]
    assert [r["type"] for r in records] == ["Conv2d", "BatchNorm2d", "Conv2d", "Conv2d", "Conv2d", "Linear"]
    assert records[0]["in_shape"] == [2, 1, 8, 8] and records[0]["out_shape"] == [2, 4, 8, 8]
    assert records[-1]["in_shape"] == [2, 2] and records[-1]["out_shape"] == [2, 3]  # by keyword
    assert torch.equal(records[-1]["out_value"], out.detach())
    assert records[1]["config"] == {"num_features": 4, "eps": 1e-05}
    assert [model.get_submodule(p) for p in ("conv1", "bn", "conv2", "block.0", "fc")] == (
        layers.ordered_layers(model, (x,))
    )
    assert no_shadowed_forward(model)
    assert torch.equal(model(x), out)


def test_trace_of_an_ordinary_model_is_what_forward_hooks_saw():
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5)
    )
    x = torch.randn(2, 3, 9, 9)
    model(x)  # materialise the lazy layer
    _, records = layers.trace(model, (x,))
    assert [(r["path"], r["in_shape"], r["out_shape"]) for r in records] == hook_records(model, x)
    assert list(records[0]) == ["path", "type", "config", "in_shape", "out_shape"]


def test_trace_restores_forward_after_an_error_and_keeps_a_students_own():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 1)
            self.fc = nn.Linear(1, 1)
            self.fc.forward = lambda x: x * 0  # the student's own override stays theirs

        def forward(self, x):
            self.fc(x)
            self.conv(x)
            raise RuntimeError("student bug")

    model = Broken()
    own = model.fc.forward
    with pytest.raises(RuntimeError, match="student bug"):
        layers.trace(model, (torch.ones(1, 1, 2, 2),))
    assert "forward" not in model.conv.__dict__ and model.fc.forward is own
    _, records = layers.trace(nn.Sequential(model.fc), (torch.ones(1, 1),))
    assert len(records) == 1 and model.fc.forward is own


# What the old attribute list gave; stored traces (public/expected.json) hold these.
STORED_CONFIGS = [
    (
        nn.Conv2d(3, 7, 3, stride=2, padding=1),
        {
            "in_channels": 3,
            "out_channels": 7,
            "kernel_size": [3, 3],
            "stride": [2, 2],
            "padding": [1, 1],
            "output_padding": [0, 0],
            "dilation": [1, 1],
            "groups": 1,
        },
    ),
    (
        nn.Conv2d(4, 8, 3, padding="same", padding_mode="reflect", bias=False),
        {
            "in_channels": 4,
            "out_channels": 8,
            "kernel_size": [3, 3],
            "stride": [1, 1],
            "padding": "same",
            "output_padding": [0, 0],
            "dilation": [1, 1],
            "groups": 1,
        },
    ),
    (
        nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1),
        {
            "in_channels": 8,
            "out_channels": 4,
            "kernel_size": [3, 3],
            "stride": [2, 2],
            "padding": [1, 1],
            "output_padding": [1, 1],
            "dilation": [1, 1],
            "groups": 1,
        },
    ),
    (nn.BatchNorm2d(24, momentum=0.3, affine=False), {"num_features": 24, "eps": 1e-05}),
    (nn.Linear(10, 3), {"in_features": 10, "out_features": 3}),
]


@pytest.mark.parametrize("module,config", STORED_CONFIGS, ids=lambda v: type(v).__name__)
def test_layer_config_of_stored_layer_types_is_unchanged(module, config):
    assert layers.layer_config(module) == config


def test_layer_config_describes_other_layers_too():
    assert layers.layer_config(nn.MaxPool2d(3, 2, ceil_mode=True))["ceil_mode"] is True
    assert layers.layer_config(nn.Upsample(scale_factor=2)) == {"scale_factor": 2.0, "mode": "nearest"}
    assert layers.layer_config(nn.LayerNorm([4, 5]))["normalized_shape"] == [4, 5]

    class Custom(nn.Module):  # declares no __constants__: its public attributes
        def __init__(self):
            super().__init__()
            self.width, self.scale, self._hidden = 3, (1.5, 2.0), 1
            self.weight = nn.Parameter(torch.ones(3))

    assert layers.layer_config(Custom()) == {"width": 3, "scale": [1.5, 2.0]}


def tiny_segmenter(classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(1, classes, 1)


@pytest.mark.parametrize("classes,dtype", [(2, torch.uint8), (256, torch.uint8), (300, torch.int16)])
def test_predictions_take_the_smallest_dtype_and_cross_the_wire(classes, dtype):
    inputs, targets = torch.randn(8, 1, 4, 4), torch.randint(0, classes, (8, 4, 4))
    report = training.run_training(
        tiny_segmenter(classes), inputs, targets, nn.CrossEntropyLoss(), 2, 4, 0.1, 0
    )
    assert report["predictions"].dtype == dtype and report["predictions"].shape == (4, 4, 4)
    back = wire.decode(wire.encode(report))["predictions"]
    assert back.dtype == dtype and torch.equal(back, report["predictions"])
    assert int(report["predictions"].max()) < classes
    assert (
        training.prediction_dtype(2**15 + 1) == torch.int32
        and training.prediction_dtype(2**40) == torch.int64
    )


def test_run_training_defaults_to_adam_and_takes_another_optimizer():
    inputs, targets = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8, 4, 4))
    run = dict(
        inputs=inputs, targets=targets, loss_fn=nn.CrossEntropyLoss(), steps=3, batch_size=4, lr=0.05, seed=0
    )
    default = training.run_training(tiny_segmenter(3), **run)
    adam = training.run_training(tiny_segmenter(3), **run, optimizer=torch.optim.Adam)
    sgd = training.run_training(
        tiny_segmenter(3), **run, optimizer="torch.optim.SGD", optimizer_options={"momentum": 0.9}
    )
    assert default["losses"] == adam["losses"] and sgd["losses"] != adam["losses"]
    for wrong in ("torch.nn.Linear", "torch.optim.lr_scheduler.StepLR"):
        with pytest.raises(ValueError, match="torch.optim"):
            training.run_training(tiny_segmenter(3), **run, optimizer=wrong)


@pytest.mark.parametrize(
    "name", ["os.system", "torch.os.system", "torch._C", "torch.nn.Nope", "torchvision.models", "torch", 3]
)
def test_only_public_torch_names_resolve(name):
    with pytest.raises(ValueError):
        training.resolve_torch_name(name)


def test_training_loss_by_torch_name_or_student_function():
    assert isinstance(training.training_loss("torch.nn.CrossEntropyLoss"), nn.CrossEntropyLoss)
    assert training.training_loss("torch.nn.CrossEntropyLoss", {"ignore_index": 255}).ignore_index == 255
    assert training.training_loss("torch.nn.functional.mse_loss") is torch.nn.functional.mse_loss
    assert training.training_loss("my_loss", student_function=lambda n: n.upper()) == "MY_LOSS"
    with pytest.raises(ValueError, match="dotted name under torch"):
        training.training_loss("cross_entropy")
    with pytest.raises(ValueError, match="for a loss class"):
        training.training_loss("torch.nn.functional.mse_loss", {"reduction": "sum"})


def test_child_trains_with_a_named_torch_loss_or_the_students_function():
    child = Child(conn=None, statements=[])
    child.ns["my_loss"] = lambda out, y: nn.functional.cross_entropy(out, y) * 2
    child.objects["m"] = tiny_segmenter(3)
    inputs, targets = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8, 4, 4))
    run = dict(handle="m", inputs=inputs, targets=targets, steps=1, batch_size=8, lr=0.0)
    named = child.op_train(loss="torch.nn.CrossEntropyLoss", **run)
    student = child.op_train(loss="my_loss", **run)
    assert student["losses"][0] == pytest.approx(2 * named["losses"][0])
    with pytest.raises(ValueError, match="reaches outside torch"):
        child.op_train(loss="torch.os.system", **run)
    with pytest.raises(NameError):
        child.op_train(loss="not_defined", **run)
