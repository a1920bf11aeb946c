"""Peak memory of one grading, summed over the whole process tree (grader, warm server,
sandbox children): what a Gradescope container or CI runner must have.

    python benchmarks/bench_memory.py [NOTEBOOK] [-- grade arguments]

Samples the resident set size (RSS) of `grade NOTEBOOK` and all its descendants every 0.1 s.
RSS counts pages shared between a forked child and its parent twice, so this is an upper
bound of what the tree needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tree_rss(root: int) -> int:
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(name))
            rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def main(argv: list[str]) -> int:
    notebook = argv[0] if argv and argv[0] != "--" else str(REPO / "reference" / "pa2-w2021" / "a2-cnn.ipynb")
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "grader.cli", notebook, "--quiet", *extra], stdout=subprocess.PIPE, text=True
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.1)
    out = proc.stdout.read().strip()
    print(
        f"{Path(notebook).name}: {out}; {time.perf_counter() - started:.1f} s; "
        f"peak RSS summed over the process tree {peak / 2**30:.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
