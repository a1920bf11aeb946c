"""Compare Part D's verdicts on the stand-in model with those on the real DeepLabV3-ResNet101.

    python benchmarks/bench_standin.py [--jobs 2] [--keep DIR]

PA2's fine-tuning checks hand the student's driver cell a model built from the family's recipe
(assignments/pa2/family.toml, [finetune.model]): DeepLabV3 with deeplabv3_resnet101's module
tree and parameter names, its backbone's blocks 16 times narrower inside and output stride 16.
This script grades the test suite's D.1/D.2 notebooks (tests/pa2_finetune_cases.py: every
mutant and variant, plus the reference) twice, as a `--jobs` batch of parts D.1 and D.2: once
with the recipe as shipped, once in a copy of the checkout whose recipe builds the real
backbone (width_per_group 64, dilation in layer3 and layer4, as torchvision's
deeplabv3_resnet101 builds it; random weights, nothing downloaded). It prints, per notebook,
the checks whose verdict differs (none is the claim) and the wall time of each batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

STAND_IN = "width_per_group = 4, replace_stride_with_dilation = [false, false, true]"
REAL = "width_per_group = 64, replace_stride_with_dilation = [false, true, true]"


def real_model_checkout(into: Path) -> Path:
    """A copy of this checkout's tracked files whose PA2 recipe builds the real backbone."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            target = into / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    family = into / "assignments" / "pa2" / "family.toml"
    text = family.read_text()
    if STAND_IN not in text:
        raise SystemExit(f"{family}: the stand-in's backbone line changed; update this script")
    family.write_text(text.replace(STAND_IN, REAL))
    return into


def write_notebooks(folder: Path) -> list[str]:
    from pa2_finetune_cases import FINETUNE_NOTEBOOKS
    from submissions import make_notebook

    specs = {"reference": {}, **FINETUNE_NOTEBOOKS}
    for name, spec in specs.items():
        make_notebook(folder, name, **spec)
    return sorted(specs)


def grade_batch(checkout: Path, notebooks: Path, out: Path, jobs: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    command = [
        sys.executable, "-m", "grader.cli", str(notebooks), "--out", str(out),
        "--assignment", "pa2-w2021", "--part", "D.1", "--part", "D.2",
        "--jobs", str(jobs), "--quiet", "--seed", "1",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"grading in {checkout} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def verdicts(out: Path, name: str) -> dict[str, bool]:
    data = json.loads((out / f"{name}.json").read_text())
    return {t["name"]: t["score"] >= t["max_score"] for t in data["tests"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", metavar="DIR", help="keep the notebooks and results here")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-standin-"))
    work.mkdir(parents=True, exist_ok=True)
    notebooks = work / "notebooks"
    notebooks.mkdir(exist_ok=True)
    names = write_notebooks(notebooks)
    real = real_model_checkout(work / "checkout-real")
    seconds = {}
    for label, checkout in (("stand-in", ROOT), ("real", real)):
        seconds[label] = grade_batch(checkout, notebooks, work / f"results-{label}", args.jobs)
    differing = 0
    for name in names:
        shipped, full = verdicts(work / "results-stand-in", name), verdicts(work / "results-real", name)
        failed = sorted(check for check, ok in shipped.items() if not ok)
        checks = shipped.keys() | full.keys()
        diff = sorted(check for check in checks if shipped.get(check) != full.get(check))
        differing += bool(diff)
        status = f"DIFFERS: {', '.join(diff)}" if diff else "same verdicts"
        print(f"{name:36s} {status}; failed: {', '.join(failed) or 'none'}")
    print(
        f"\n{len(names)} notebooks, {differing} with a differing verdict; "
        f"batch of parts D.1 and D.2 at --jobs {args.jobs}: stand-in {seconds['stand-in']:.1f} s, "
        f"real model {seconds['real']:.1f} s"
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if differing else 0)


if __name__ == "__main__":
    main()
