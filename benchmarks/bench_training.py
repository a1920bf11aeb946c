"""Time the training checks per model, on the CPU and (when present) on CUDA.

    python benchmarks/bench_training.py [--device cpu|cuda|both] [--notebook PATH]

Grades only the training checks of the notebook in-process (one warm sandbox) and prints
each check's wall time, the total, and the verdicts.
"""

from __future__ import annotations

import argparse
import time

import torch

from grader.editions.assignment import load_assignment
from grader.engine.pipeline import Options, grade
from grader.sandbox import warm_up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", choices=["cpu", "cuda", "both"], default="both")
    parser.add_argument("--notebook", default="reference/pa2-w2021/a2-cnn.ipynb")
    args = parser.parse_args()
    warm_up()
    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("cuda: not available on this machine")
        devices.remove("cuda")
    assignment = load_assignment("pa2-w2021")
    for device in devices:
        options = Options(device=device, kinds=("training",))
        started = time.perf_counter()
        result = grade(args.notebook, assignment, options)
        total = time.perf_counter() - started
        name = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"\ndevice {device} ({name})")
        print(f"{'check':70} {'s':>6} verdict")
        for c in result.checks:
            print(f"{c.name[:70]:70} {c.seconds:6.2f} {c.status}")
        print(f"{'all training checks (incl. loading the notebook)':70} {total:6.2f}")


if __name__ == "__main__":
    main()
