"""Benchmark batch grading: 40 submissions with --jobs 1 and --jobs 2, against standalone runs.

    python benchmarks/bench_batch.py [--count 40] [--jobs 1 2] [--runs 2] [--training]

Makes a class of `count` notebooks (three quarters variants of the reference: copies with a
comment changed, or with ReLU and batch norm swapped; one quarter copies of the template),
grades it with each --jobs value into a fresh output folder, and times standalone
`grade NOTEBOOK --json` runs of the reference and of the template (medians of --runs).

Reports submissions per minute, the speed-up over --jobs 1, and the cost of one submission
in a batch (wall time / count) against a standalone run of the same mix of notebooks. By
default the training checks are left out (--no-train), as in the tests; --training keeps them.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "reference" / "pa2-w2021" / "a2-cnn.ipynb"
TEMPLATE = ROOT / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"
SWAP = (
    "                nn.BatchNorm2d(cout),\n                nn.ReLU(),\n",
    "                nn.ReLU(),\n                nn.BatchNorm2d(cout),\n",
)


def make_class(folder: Path, count: int) -> dict[str, int]:
    """Write `count` notebooks; returns how many are reference-like and template copies."""
    folder.mkdir(parents=True)
    reference = nbformat.read(str(REFERENCE), as_version=4)
    templates = count // 4
    for i in range(count - templates):
        nb = nbformat.from_dict(reference)
        nb = nbformat.reads(nbformat.writes(nb), as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code" and SWAP[0] in cell.source and i % 3 == 2:
                cell.source = cell.source.replace(*SWAP)
        nb.cells.append(nbformat.v4.new_code_cell(f"# variant {i}"))
        nb.cells[-1]["id"] = f"variant-{i}"
        nbformat.write(nb, str(folder / f"student_{i:03d}.ipynb"))
    for i in range(templates):
        shutil.copyfile(TEMPLATE, folder / f"template_{i:03d}.ipynb")
    return {"reference": count - templates, "template": templates}


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                found.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def timed(cmd: list[str], cwd: Path = ROOT) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the whole process tree, the process). CPU time is sampled
    from /proc every 50 ms per process (a process's last 50 ms can be missed)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTEST_ADDOPTS", None)
    cpu: dict[int, float] = {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            tree, todo = _children(), [proc.pid]
            while todo:
                pid = todo.pop()
                cpu[pid] = max(cpu.get(pid, 0.0), _cpu_seconds(pid))
                todo.extend(tree.get(pid, []))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    return wall, sum(cpu.values()), subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=2, help="standalone runs per notebook (median)")
    parser.add_argument("--training", action="store_true", help="keep the training checks")
    args = parser.parse_args()
    grade = [sys.executable, "-m", "grader.cli"]
    extra = [] if args.training else ["--no-train"]
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        mix = make_class(tmp / "class", args.count)
        standalone = {}
        for label, notebook in (("reference", REFERENCE), ("template", TEMPLATE)):
            walls = []
            for _ in range(args.runs):
                wall, cpu, proc = timed(grade + [str(notebook), "--json", str(tmp / "single.json"), *extra])
                assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
                walls.append((wall, cpu))
            standalone[label] = (
                statistics.median(w for w, _ in walls),
                statistics.median(c for _, c in walls),
            )
        per_standalone = sum(standalone[k][0] * n for k, n in mix.items()) / args.count
        cpu_standalone = sum(standalone[k][1] * n for k, n in mix.items()) / args.count
        batches = {}
        for jobs in args.jobs:
            out = tmp / f"out-jobs{jobs}"
            load = load_average()
            wall, cpu, proc = timed(
                grade + [str(tmp / "class"), "--out", str(out), "--jobs", str(jobs), "--quiet", *extra]
            )
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            rows = list(csv.DictReader((out / "gradebook.csv").read_text().splitlines()))
            assert len(rows) == args.count, len(rows)
            batches[jobs] = (wall, cpu, load, sum(r["status"] == "error" for r in rows))
    base = batches[args.jobs[0]][0]
    print(
        f"{args.count} submissions ({mix['reference']} reference variants, {mix['template']} "
        f"template copies), {'with' if args.training else 'without'} training checks; "
        f"cpus={len(os.sched_getaffinity(0))}; niceness {os.nice(0)}"
    )
    print(
        f"standalone `grade --json`: reference {standalone['reference'][0]:.1f} s "
        f"({standalone['reference'][1]:.1f} CPU s), template {standalone['template'][0]:.1f} s "
        f"({standalone['template'][1]:.1f} CPU s), medians of {args.runs}; the class's mix: "
        f"{per_standalone:.1f} s and {cpu_standalone:.1f} CPU s per submission, "
        f"{60 / per_standalone:.1f} per minute"
    )
    print(
        f"{'jobs':>4} {'wall s':>7} {'subs/min':>8} {'speed-up':>8} {'s/sub':>6} {'vs alone':>8} "
        f"{'CPU s/sub':>9} {'vs alone':>8} {'cores busy':>10} {'errors':>6}  load avg before"
    )
    for jobs, (wall, cpu, load, errors) in batches.items():
        per = wall / args.count
        print(
            f"{jobs:>4} {wall:7.1f} {60 * args.count / wall:8.1f} {base / wall:8.2f} {per:6.2f} "
            f"{per / per_standalone:8.0%} {cpu / args.count:9.2f} {cpu / args.count / cpu_standalone:8.0%} "
            f"{cpu / wall:10.2f} {errors:>6}  {load}"
        )


if __name__ == "__main__":
    main()
