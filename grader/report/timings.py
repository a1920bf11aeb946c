"""Where a grading's time goes: each stage of the pipeline, the expectations the public checks
compare with (stored files, plus the secret challenges computed from the reference), and each
check. Kept in the result (`GradingResult.timings`, the `grader` block of results.json and of
a batch's results files) and printed by `grade --verbose`, so the slow parts are visible to
whoever grades. Torch-free."""

from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def timed(timings: dict, name: str):
    """Add the wall time of the block to `timings["stages"][name]` (it adds up, so a stage
    entered twice counts both times)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        stages = timings.setdefault("stages", {})
        stages[name] = stages.get(name, 0.0) + time.perf_counter() - started


def rounded(timings: dict) -> dict:
    """As stored: milliseconds are enough."""
    return {
        key: {k: round(v, 3) for k, v in value.items()} if isinstance(value, dict) else round(value, 3)
        for key, value in timings.items()
    }


def lines(result, slowest: int = 8) -> list[str]:
    """What `grade --verbose` prints after the table: the stages, then the slowest checks."""
    stages = result.timings.get("stages", {})
    out = []
    if stages:
        out.append("time: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items()))
        out[-1] += f"; in all {result.execution_time:.2f} s"
    ranked = sorted((c for c in result.checks if c.seconds), key=lambda c: -c.seconds)[:slowest]
    if ranked:
        out.append("slowest checks:")
        out += [f"  {c.seconds:6.2f} s  {c.number}. {c.name}" for c in ranked]
    return out
