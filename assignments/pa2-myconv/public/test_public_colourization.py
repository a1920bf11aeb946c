"""Public checks of the CNN and the UNet built from MyConv2d (W2020 A.1 and B.1, W2019 B.1
and C.1).

Everything they compare with was computed from the reference once and stored as data, for
every reading of the handouts (readings.py); the edition's `[readings]` says which earn the
points, and feedback names the reading a network matches, or the nearest accepted one and
where the network departs from it. Students run these same checks before submitting."""

import pytest

from grader.checks import import_sibling, reproducible, with_reproduction

readings = import_sibling(__file__, "readings")

MODELS = [
    pytest.param(name, marks=pytest.mark.grade(part=name, subject=name), id=name) for name in ("CNN", "UNet")
]

pytestmark = pytest.mark.grade(visibility="visible")


def layers_code(call: str, input_shape) -> str:
    """Code that prints the network's layers in forward order with their output shapes."""
    return (
        f"model = {call}\n"
        "for layer in model.modules():\n"
        "    if isinstance(layer, (MyConv2d, nn.Conv2d, nn.BatchNorm2d)):\n"
        "        layer.register_forward_hook(lambda layer, inputs, out: print(layer, tuple(out.shape)))\n"
        f"model(torch.randn({', '.join(map(str, input_shape))}))"
    )


def graded_settings(expected, assignment, name, kind="settings"):
    """The stored cases whose num_in_channels the edition grades."""
    channels = readings.input_channels(assignment)
    return [case for case in expected["colour"][name][kind] if case["hp"][3] in channels]


def traced(submission, assignment, name, case):
    code = layers_code(case["call"], list(case["input"].shape))
    with reproducible(code), readings.hinted(assignment, name):
        records = submission.build(name, *case["hp"]).forward(case["input"], trace=True).layers
    return records, code


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="layers", points=1)
def test_layer_shapes(submission, expected, assignment, name):
    """Convolution and batch-norm layers, in forward order, with their output shapes"""
    acc = readings.accepted(assignment)
    for case in graded_settings(expected, assignment, name):
        records, code = traced(submission, assignment, name, case)
        got = readings.normalised(records)
        per = case["readings"]
        fits = [e for e in per if readings.layer_difference(got, e["layers"]) is None]
        if any(readings.is_accepted(e["reading"], acc) for e in fits):
            continue
        if fits:
            message = (
                f"{case['call']}: your layers are those of another reading of the handout: "
                f"{readings.refused(fits[0]['reading'], acc)}."
            )
        else:
            near = readings.nearest(name, per, acc, lambda e: readings.agreeing_layers(got, e["layers"]))
            message = (
                f"{case['call']}: {readings.layer_difference(got, near['layers'])} (compared with "
                f"the reading: {readings.describe(near['reading'])})."
            )
        raise AssertionError(with_reproduction(message, code))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="layers", points=1)
def test_only_myconv2d(submission, expected, assignment, name):
    """Every convolution is a MyConv2d (the handout forbids nn.Conv2d)"""
    case = graded_settings(expected, assignment, name)[0]
    records, code = traced(submission, assignment, name, case)
    convolutions = [(i, r) for i, r in enumerate(records) if "kernel_size" in (r.get("config") or {})]
    other = [(i, r) for i, r in convolutions if r["type"] != "MyConv2d"]
    if not other:
        return
    where = ", ".join(f"layer {i + 1} is a {r['type']}" for i, r in other[:3])
    more = f" (and {len(other) - 3} more)" if len(other) > 3 else ""
    raise AssertionError(
        with_reproduction(
            f"{case['call']}: {where}{more}: the handout says not to use nn.Conv2d but the provided "
            "MyConv2d. They compute the same (MyConv2d(i, o, k) is nn.Conv2d(i, o, k, "
            "padding=k // 2)), so only this check sees it: write MyConv2d(in_channels, "
            "out_channels, kernel) instead.",
            code,
        )
    )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="params", points=1)
def test_parameter_count(submission, expected, assignment, name):
    """Number of parameters"""
    acc = readings.accepted(assignment)
    for case in graded_settings(expected, assignment, name):
        code = f"model = {case['call']}\nprint(sum(p.numel() for p in model.parameters()))"
        with reproducible(code), readings.hinted(assignment, name):
            got = submission.build(name, *case["hp"]).parameter_count()
        per = case["readings"]
        if any(e["parameters"] == got and readings.is_accepted(e["reading"], acc) for e in per):
            continue
        wanted = sorted({e["parameters"] for e in per if readings.is_accepted(e["reading"], acc)})
        wanted_text = " or ".join(f"{n:,}" for n in wanted)
        other = next((e for e in per if e["parameters"] == got), None)
        why = (
            f"that is the count of another reading of the handout: {readings.refused(other['reading'], acc)}"
            if other is not None
            else "check the channel counts of each layer (skip connections add input channels) and "
            "that no layer is missing or extra"
        )
        raise AssertionError(
            with_reproduction(
                f"{case['call']} has {got:,} parameters; expected {wanted_text} "
                f"({got - wanted[0]:+,}): {why}.",
                code + f"  # expected {wanted_text}",
            )
        )


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.grade(kind="equivalence", points=2)
def test_same_function_as_reference(submission, expected, assignment, feedback, name):
    """Same outputs as the reference with the reference's weights (train and eval mode)"""
    acc = readings.accepted(assignment)
    layouts = {tuple(c["hp"]): c for c in expected["colour"][name]["settings"]}
    matched = None
    for case in graded_settings(expected, assignment, name, kind="equivalence"):
        code = layers_code(case["call"], list(case["input"].shape))
        with reproducible(code), readings.hinted(assignment, name):
            model = submission.build(name, *case["hp"])
            found = readings.search(model, case, stop=lambda r: readings.is_accepted(r, acc))
            good = [m for m in found["matches"] if readings.is_accepted(m["reading"], acc)]
            if good:
                matched = matched or good[0]
                continue
            message = _why_not(model, case, found, acc, layouts.get(tuple(case["hp"])), name)
        raise AssertionError(with_reproduction(f"{case['call']}: {message}", code))
    if matched is not None:
        order = readings.cat_order_text(matched["structure"]["concatenations"], matched["skip_first"])
        feedback(
            f"Matched the reading: {readings.describe(matched['reading'])}{'; ' + order if order else ''}."
        )


def _why_not(model, case, found, acc, layout, name) -> str:
    """The reading a network matched that the course does not accept, or the nearest
    accepted reading and where the network departs from it."""
    if found["matches"]:
        return (
            "your network computes another reading of the handout: "
            f"{readings.refused(found['matches'][0]['reading'], acc)}."
        )
    attempts = [a for a in found["attempts"] if readings.is_accepted(a["reading"], acc)] or found["attempts"]
    if attempts:
        near = min(attempts, key=lambda a: a["difference"])
        where = readings.where_it_differs(
            model, near["structure"], near["variant"], near["skip_first"], case["input"]
        )
        return (
            f"with the reference's weights loaded, your output differs from the reading "
            f"\u201c{readings.describe(near['reading'])}\u201d (largest difference "
            f"{near['difference']:.3g}): {where}."
        )
    problems = found["misfits"][0]["problems"] if found["misfits"] else ["no structure to load"]
    cause = ""
    if layout is not None:
        got = readings.normalised(model.forward(layout["input"], trace=True).layers)
        near = readings.nearest(
            name, layout["readings"], acc, lambda e: readings.agreeing_layers(got, e["layers"])
        )
        difference = readings.layer_difference(got, near["layers"])
        if difference:
            cause = f"{difference} (reading: {readings.describe(near['reading'])}); so "
    shown = problems[:1] if "parametrised layers are used" in problems[0] else problems[:3]
    return f"{cause}the reference's weights do not fit your layers: {'; '.join(shown)}."
