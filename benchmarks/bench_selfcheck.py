"""How long `check()` takes inside a student's kernel (grader.student.selfcheck), the first
call and the ones after it.

    python benchmarks/bench_selfcheck.py [NOTEBOOK] [--calls N] [--profile]

The kernel is simulated as tests/kernel_check.py does: the notebook's harvested definitions
run in a fresh namespace and `In` holds its cells. The import of the grader and torch is
timed apart: a student's kernel has imported torch long before it calls check().
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook", nargs="?", default=str(DEFAULT))
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="profile the second call")
    args = parser.parse_args()

    started = time.perf_counter()
    import torch  # noqa: F401  (the kernel's own import)

    from grader.engine.harvest import harvest
    from grader.engine.load import load_submission
    from grader.sandbox.child import _compile
    from grader.student import selfcheck

    imports = time.perf_counter() - started
    loaded = load_submission(args.notebook)
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    for st in harvest(loaded).statements:
        try:
            exec(_compile(st.source, st.cell, st.lineno), namespace)
        except Exception:
            pass  # as in a kernel where a cell raised: the rest still ran
    namespace["In"] = [""] + [cell.source for cell in loaded.cells]
    print(f"imports (torch, grader): {imports:.1f} s")
    for call in range(1, args.calls + 1):
        started = time.perf_counter()
        if args.profile and call == 2:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            result = profiler.runcall(selfcheck.run, namespace=namespace, notebook=args.notebook)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        else:
            # The notebook file names the edition (a checkout has several installed).
            result = selfcheck.run(namespace=namespace, notebook=args.notebook)
        seconds = time.perf_counter() - started
        print(f"check() call {call}: {seconds:.2f} s ({result.score:g}/{result.max_score:g})")


if __name__ == "__main__":
    main()
