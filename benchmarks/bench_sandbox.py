"""What one sandbox child costs: fork from the warm server, put the box in place, load a small
submission, answer one request, then kill it and clean up (processes, cgroups, folder).

    python benchmarks/bench_sandbox.py [--children N]

Prints the median and the spread of N children, after one warm-up child (which pays the
server's torch import). Works on any version of the engine that has Sandbox.ensure_started
and Sandbox.close, so the same script measures before and after a change (PYTHONPATH=OLD).
"""

from __future__ import annotations

import argparse
import statistics
import time

SOURCE = "import torch\n\ndef answer():\n    return 42\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=20)
    args = parser.parse_args()
    from grader.sandbox import Limits, Sandbox

    statements = [
        {"cell": 0, "lineno": 1, "source": "import torch\n"},
        {"cell": 0, "lineno": 3, "source": "def answer():\n    return 42\n"},
    ]
    box = Sandbox(statements, Limits())
    box.ensure_started()
    box.close()
    starts, closes = [], []
    for _ in range(args.children):
        box = Sandbox(statements, Limits())
        started = time.perf_counter()
        box.ensure_started()
        box.request("call", name="answer", args=[], kwargs={}, grad_wrt=[], source_pattern=None)
        starts.append(time.perf_counter() - started)
        started = time.perf_counter()
        box.close()
        closes.append(time.perf_counter() - started)
    isolation = getattr(box, "isolation", None) or (box.boot.isolation if box.boot else [])
    print(
        f"{args.children} children: start+load+one request median "
        f"{statistics.median(starts) * 1000:.1f} ms (min {min(starts) * 1000:.1f}, max "
        f"{max(starts) * 1000:.1f}); close and clean up median {statistics.median(closes) * 1000:.1f} ms"
    )
    print("isolation:", ", ".join(isolation))


if __name__ == "__main__":
    main()
