"""What the instructor side's secret challenges cost (grader.public.expectations.Expectations): computing
the fresh cases from the reference in the parent, per grading.

    python benchmarks/bench_challenges.py [--runs N]

The checks then also run the fresh cases in the sandbox; grade the reference notebook with
and without `--public-only` (benchmarks/bench_grade.py) for the whole difference.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from grader.public import expectations as public
    from grader.editions.assignment import load_assignment

    assignment = load_assignment("pa2-w2021")
    reference = assignment.load_reference()
    started = time.perf_counter()
    public.Expectations(assignment, reference).cases()
    stored = time.perf_counter() - started
    fresh = []
    for seed in range(1, args.runs + 1):
        started = time.perf_counter()
        cases = public.Expectations(assignment, reference, challenge_seed=seed).cases()
        fresh.append(time.perf_counter() - started)
    counts = {name: len(c["equivalence"]) for name, c in cases["colour"].items()}
    print(
        f"stored cases only: {stored * 1000:.0f} ms; with secret challenges: median "
        f"{statistics.median(fresh) * 1000:.0f} ms (min {min(fresh) * 1000:.0f}, max "
        f"{max(fresh) * 1000:.0f}) over {args.runs} seeds"
    )
    print(
        f"equivalence cases per model {counts}; IoU cases {len(cases['iou']['cases'])}; "
        f"gradient probes {len(cases['iou']['gradient_probes'])}"
    )


if __name__ == "__main__":
    main()
