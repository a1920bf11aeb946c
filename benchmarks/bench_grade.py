"""Benchmark one standalone `grade --json` run against the floor of importing torch.

    python benchmarks/bench_grade.py [--runs 3] [--notebook PATH]

Reports, as medians over the runs: the floor (`python -c "import torch, torchvision"`), a
grading of the reference notebook without the training checks (the issue's 3x-the-floor
target), the same for parts A-C only (the difference is what Part D adds), the full grading
with the training checks, and peak memory (the sum over the process tree of each process's
peak resident set: grader, warm server, sandbox child).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tree_pids(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def peak_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, peak MiB summed over the process tree, exit status)."""
    peaks: dict[int, int] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done = threading.Event()

    def sample():
        while not done.is_set():
            for pid in tree_pids(proc.pid):
                peaks[pid] = max(peaks.get(pid, 0), peak_rss_kib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return wall, sum(peaks.values()) / 1024, code


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--notebook", default="reference/pa2-w2021/a2-cnn.ipynb")
    args = parser.parse_args()
    grade = [sys.executable, "-m", "grader.cli", args.notebook]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp, "results.json"))
        commands = {
            "floor: import torch, torchvision": [sys.executable, "-c", "import torch, torchvision"],
            "grade --json --no-train": grade + ["--json", out, "--no-train"],
            "grade --json --no-train, A-C only": grade
            + ["--json", out, "--no-train"]
            + [a for p in ("A.1", "B.1", "C.1") for a in ("--part", p)],
            "grade --json (with training, cpu)": grade + ["--json", out, "--device", "cpu"],
        }
        rows = {}
        for label, cmd in commands.items():
            runs = [run(cmd) for _ in range(args.runs)]
            rows[label] = (
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
                {r[2] for r in runs},
            )
        score = json.loads(Path(out).read_text())["score"]
    floor = rows["floor: import torch, torchvision"][0]
    full = rows["grade --json --no-train"][0]
    abc = rows["grade --json --no-train, A-C only"][0]
    print(f"{'command':38} {'wall s':>8} {'x floor':>8} {'peak MiB':>9} exit")
    for label, (wall, mem, codes) in rows.items():
        print(f"{label:38} {wall:8.2f} {wall / floor:8.2f} {mem:9.0f} {sorted(codes)}")
    print(
        f"Part D adds {full - abc:.2f} s (target <= 5); grading (no training) / floor = "
        f"{full / floor:.2f} (target <= 3); medians of {args.runs} runs; cpus={os.cpu_count()}; "
        f"score with training: {score:g}"
    )


if __name__ == "__main__":
    main()
