"""What the MyConv2d editions' grading tests share: notebooks made from an edition's
reference notebook, and what a result must show (tests/test_myconv_w2020.py,
tests/test_myconv_w2019.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from submissions import REPO

W2020_REFERENCE = REPO / "reference" / "pa2-w2020" / "a2-cnn.ipynb"
W2020_TEMPLATE = REPO / "student_template" / "pa2-w2020" / "a2-cnn.ipynb"
W2019_REFERENCE = REPO / "reference" / "pa2-w2019" / "colourization.ipynb"
W2019_TEMPLATE = REPO / "student_template" / "pa2-w2019" / "colourization.ipynb"

# A check's key, from its title (the kinds repeat within a part).
KEYS = {
    "Convolution and batch-norm layers": "layers",
    "Every convolution is a MyConv2d": "myconv",
    "Number of parameters": "params",
    "Same outputs as the reference": "equivalence",
    "Output shape for": "shape",
    "Short training run": "training",
    "classifier[4] becomes": "head",
    "every parameter is frozen": "frozen",
    "'out' has shape": "out_shape",
    "reach the optimizer": "optimizer",
    "Fine-tuning steps": "finetune",
    "forward keeps": "activations",
}


def key(test: dict) -> str:
    name = test["name"]
    found = next(k for fragment, k in KEYS.items() if fragment in name)
    if found == "activations":  # W2019's Part E has one per network
        return f"activations {name.split(':', 1)[0].split()[-1]}"
    return found


@dataclass
class Case:
    name: str
    spec: dict
    lost: dict = field(default_factory=dict)  # part id -> the keys of the checks that must fail
    feedback: dict = field(default_factory=dict)  # (part, key) -> phrases its output must contain


def failed(result) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t in result.tests:
        if t["status"] != "passed":
            out.setdefault(t["tags"][0], set()).add(key(t))
    return out


def summary(result) -> str:
    lines = [f"{result.name}: {result.score:g}/{result.max_score:g} ({result.data['grader']['assignment']})"]
    lines += [
        f"  {t['name']}: {t['status']}: {t['output'][:400]!r}"
        for t in result.tests
        if t["status"] != "passed"
    ]
    lines += [f"  note: {n[:300]}" for n in result.notes]
    return "\n".join(lines)


def expect(result, edition: str, parts: set[str], lost: dict | None = None) -> None:
    """Graded as `edition`, every part there, exactly the checks in `lost` failed (0 points),
    every other check full marks, no check broke."""
    lost = {p: set(k) for p, k in (lost or {}).items() if k}
    assert result.error is None, summary(result)
    assert result.data["grader"]["assignment"] == edition, summary(result)
    assert {t["tags"][0] for t in result.tests} == parts, summary(result)
    for t in result.tests:
        assert "please report this" not in t["output"], (result.name, t["output"])
        assert t["score"] == (t["max_score"] if t["status"] == "passed" else 0), summary(result)
    assert failed(result) == lost, f"expected {lost}\n{summary(result)}"


def feedback(result, part: str, check: str) -> str:
    found = [t["output"] for t in result.tests if t["tags"][0] == part and key(t) == check]
    assert len(found) == 1, (part, check, summary(result))
    return found[0]
