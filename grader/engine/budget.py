"""One time budget per grading (docs/design.md, trust model, rule 6).

Each request to the child has a wall-time limit, but a grading makes hundreds of requests: a
child that answers each one just under its limit could hold a grading for hours. So a grading
also has one budget for everything: a multiple of the time the reference notebook's grading
takes on this machine, with a floor. The assignment states that time as measured on a known
machine (`[limits] reference_seconds`, by kind of check); a short calibration run tells how
much slower or faster this machine is (`machine_speed`), and request limits scale the same way.

When the budget is spent, the request in progress fails, and so does every check not yet run,
each saying that the submission was too slow.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

# The calibration workload's time (one run of CALIBRATION_ROUNDS rounds) on the machine where
# assignments' reference_seconds are measured (2-core x86_64, torch 2.14.1 on the CPU, one
# thread; benchmarks/bench_grade.py). It was 100 rounds (0.068 s), best of three: the best of five
# runs of 20 gives the same speeds within 2% on that machine, in a third of the time (0.06 s),
# which every standalone grading waits for.
CALIBRATION_ROUNDS = 20
CALIBRATION_RUNS = 5
CALIBRATION_SECONDS = 0.0136
BUDGET_FACTOR = 4  # the budget: this many times the reference's own grading time
BUDGET_FLOOR_SECONDS = 180.0


@functools.cache
def machine_speed() -> float:
    """How many times slower than the calibration machine this one is now (never below 1:
    a fast machine keeps the stated limits). The best of a few short runs on one thread: a
    run slowed by other work only makes the limits more generous."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(192, 192, generator=generator)
        x = torch.randn(8, 8, 32, 32, generator=generator)
        w = torch.randn(8, 8, 3, 3, generator=generator)
        best = float("inf")
        for _ in range(CALIBRATION_RUNS):
            started = time.perf_counter()
            for _ in range(CALIBRATION_ROUNDS):
                a = torch.tanh(a @ a / 192)
                torch.nn.functional.conv2d(x, w, padding=1).sum()
            best = min(best, time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return max(1.0, best / CALIBRATION_SECONDS)


@dataclass
class Budget:
    seconds: float
    started: float

    @classmethod
    def for_grading(cls, reference_seconds: float, speed: float, override: float | None = None) -> Budget:
        if override is not None:
            seconds = float(override)
        else:
            seconds = max(BUDGET_FLOOR_SECONDS, BUDGET_FACTOR * reference_seconds * speed)
        return cls(seconds, time.monotonic())

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def spent(self) -> bool:
        return self.left() <= 0

    def text(self) -> str:
        return f"{self.seconds:.0f} s"


def reference_seconds(limits: dict, kinds_run: set[str]) -> float:
    """The reference notebook's grading time on the calibration machine for the checks a
    grading runs: `[limits] reference_seconds` is {kind: seconds} (kind "training" apart from
    "checks", every other kind), or one number for all."""
    stated = limits.get("reference_seconds", 60.0)
    if not isinstance(stated, dict):
        return float(stated)
    total = 0.0
    if kinds_run - {"training"}:
        total += float(stated.get("checks", 0.0))
    if "training" in kinds_run:
        total += float(stated.get("training", 0.0))
    return total
