"""Benchmark standalone gradings against the floor of importing torch (issue 22's table).

    python benchmarks/bench_grade.py [--runs 3] [--editions] [--batch] [--selfcheck] [--all]
                                     [--write-readme]

Each run measures, back to back, the floor (`python -c "import torch, torchvision"`) and each
grading of a reference submission (`grade --json`, without and with the training checks, on
the CPU), so every ratio is taken against a floor measured under the same load; the tables
give medians over the runs. Memory, measured in one more pass (sampling it slows what is sampled), is
the peak over the grading of the proportional set size (PSS, /proc/PID/smaps_rollup) summed over
the process tree (grader, warm server, resource
tracker, sandbox children): a page shared between processes counts once in all, split among
them. The load average before and after is printed: on a shared machine the ratios still hold
(the floor is as slow as the rest), the seconds do not.

--editions adds the MyConv2d editions (W2020 with its fine-tuning, W2019) and W2022 (the
notebook and its YOLOv3 files); --batch the marginal cost of a submission in a `--jobs 2`
batch against a standalone run (benchmarks/bench_batch.py's class, --no-train: a batch of
--batch-count against one of --batch-small, so that what a batch pays once is left out); --selfcheck
`check()` in a warm kernel (benchmarks/bench_selfcheck.py); --all all three. --write-readme
puts the tables into README.md's performance section (between its bench_grade markers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
README_BEGIN = "<!-- bench_grade: begin (python benchmarks/bench_grade.py --all --write-readme) -->"
README_END = "<!-- bench_grade: end -->"
SAMPLE_SECONDS = 0.1


# -- the process tree ---------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    found[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    return found


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pss_kib(pid: int) -> int:
    """Proportional set size: private pages, plus each shared page divided by the number of
    processes that map it."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def role(pid: int, root: int, parents: dict[int, int]) -> str:
    """What a process of a grading is: the grader, the warm server (multiprocessing's
    forkserver), its resource tracker, a sandbox child (forked from the server), other."""
    if pid == root:
        return "grader"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "forkserver" in cmdline:
        parent_line = ""
        try:
            with open(f"/proc/{parents.get(pid, 0)}/cmdline", "rb") as f:
                parent_line = f.read().decode(errors="replace")
        except OSError:
            pass
        return "sandbox child" if "forkserver" in parent_line else "warm server"
    return "other"


class Sampler:
    """Samples the PSS of a process tree every SAMPLE_SECONDS: the peak of the sum, and each
    role's largest share at that peak."""

    def __init__(self, root: int):
        self.root = root
        self.peak_kib = 0
        self.at_peak: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._done.is_set():
            parents = _parents()
            sizes = {pid: pss_kib(pid) for pid in tree_pids(self.root)}
            total = sum(sizes.values())
            if total > self.peak_kib:
                self.peak_kib = total
                roles: dict[str, int] = {}
                for pid, kib in sizes.items():
                    name = role(pid, self.root, parents)
                    roles[name] = roles.get(name, 0) + kib
                self.at_peak = roles
            time.sleep(SAMPLE_SECONDS)

    def stop(self):
        self._done.set()
        self._thread.join()


# The checkout whose engine is measured (--checkout: another one, e.g. the commit before a
# change, measured with this script).
CHECKOUT = ROOT


def run(cmd: list[str], sample: bool = False) -> dict:
    """Wall seconds, exit status, stdout of one command; with `sample`, also the peak PSS (MiB)
    summed over its process tree. Reading smaps_rollup costs about 15 ms per torch process, so
    sampling a grading's five processes every 0.1 s takes most of a core from it (and next to
    nothing from the floor's one process): the seconds come from runs that are not sampled."""
    cwd = CHECKOUT
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    env.pop("PYTEST_ADDOPTS", None)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid) if sample else None
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    if sampler is not None:
        sampler.stop()
    return {
        "wall": wall,
        "pss_mib": sampler.peak_kib / 1024 if sampler else None,
        "roles": {k: v / 1024 for k, v in sampler.at_peak.items()} if sampler else {},
        "code": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- what is measured -----------------------------------------------------------------------------
FLOOR = 'floor: `python -c "import torch, torchvision"`'


def w2022_folder(folder: Path) -> Path:
    """The W2022 reference: its notebook with the reference's train.py and utils/loss.py."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the checkout, not an installed grader
    from yolo_files import correct_loss_py, correct_train_py, w2022_folder as make

    return make(folder, train=correct_train_py(), loss=correct_loss_py())


def gradings(tmp: Path, editions: bool) -> dict[str, list[str]]:
    """label -> command line; the floor first."""
    grade = [sys.executable, "-m", "grader.cli"]
    out = str(tmp / "results.json")
    report = ["--json", out] + (["--verbose"] if knows_verbose() else [])
    w2021 = str(CHECKOUT / "reference" / "pa2-w2021" / "a2-cnn.ipynb")
    rows = {
        FLOOR: [sys.executable, "-c", "import torch, torchvision"],
        "W2021 `grade --json --no-train`, all parts": grade
        + [w2021, "--json", out, "--no-train", "--verbose"],
        "W2021 `grade --json` with training (CPU)": grade
        + [w2021, "--json", out, "--device", "cpu", "--verbose"],
    }
    if editions:
        for edition, path in (
            ("W2020 (MyConv2d)", CHECKOUT / "reference" / "pa2-w2020" / "a2-cnn.ipynb"),
            ("W2019 (MyConv2d)", CHECKOUT / "reference" / "pa2-w2019" / "colourization.ipynb"),
            ("W2022 (YOLOv3 files)", w2022_folder(tmp / "w2022")),
        ):
            rows[f"{edition} `--no-train`"] = grade + [str(path), *report, "--no-train"]
            rows[f"{edition} with training (CPU)"] = grade + [str(path), *report, "--device", "cpu"]
    return rows


def knows_verbose() -> bool:
    """Whether the measured checkout's `grade` has --verbose (where the time went)."""
    env = dict(os.environ, PYTHONPATH=str(CHECKOUT))
    usage = subprocess.run(
        [sys.executable, "-m", "grader.cli", "--help"], cwd=CHECKOUT, env=env, capture_output=True, text=True
    )
    return "--verbose" in usage.stdout


def measure_gradings(runs: int, editions: bool) -> tuple[dict, list[str]]:
    """Each run measures the floor and every grading back to back, unsampled (medians per
    row); one more pass, sampled, measures the peak PSS of each."""
    notes = [f"load average before: {load_average()}"]
    with tempfile.TemporaryDirectory(prefix="bench-grade-") as tmp:
        commands = gradings(Path(tmp), editions)
        samples: dict[str, list[dict]] = {label: [] for label in commands}
        memory: dict[str, dict] = {}
        for number in range(runs + 1):
            sample = number == runs  # the last pass measures memory only
            for label, cmd in commands.items():
                result = run(cmd, sample=sample)
                if label != FLOOR and result["code"] not in (0, 1):
                    raise SystemExit(f"{label}: exit {result['code']}\n{result['stderr'][-3000:]}")
                if label != FLOOR:
                    data = json.loads(Path(tmp, "results.json").read_text())
                    result["score"] = f"{data['score']:g}/{sum(t['max_score'] for t in data['tests']):g}"
                    # `grade --verbose` prints where the time went (results.json for Gradescope
                    # has no `grader` block).
                    result["timings"] = re.findall(r"^time: (.*)$", result["stdout"], re.M)
                    result["failed"] = [t["name"] for t in data["tests"] if t["status"] != "passed"]
                if sample:
                    memory[label] = result
                else:
                    samples[label].append(result)
    notes.append(f"load average after: {load_average()}")
    rows = {}
    for label, results in samples.items():
        rows[label] = {
            "wall": statistics.median(r["wall"] for r in results),
            "walls": [r["wall"] for r in results],
            "pss_mib": memory[label]["pss_mib"],
            "roles": memory[label]["roles"],
            "score": ", ".join(sorted({r.get("score", "") for r in results + [memory[label]]})),
            "timings": results[-1].get("timings", []),
            "failed": sorted({n for r in results + [memory[label]] for n in r.get("failed", [])}),
        }
    return rows, notes


def measure_batch(count: int, small: int = 4, runs: int = 2) -> dict:
    """A `--jobs 2` batch of bench_batch.py's class (no training) against standalone runs.

    The marginal cost of a submission is what one more submission adds to a batch: the
    difference between a batch of `count` and one of `small` (the same mix of notebooks, three
    quarters reference variants, one quarter template copies), divided by the difference in
    size. It leaves out what every batch pays once whatever its size (the scheduler, the warm
    server's start, listing the checks, writing the class's outputs), which `wall / count`, also
    reported, spreads over the submissions. Medians of `runs` batches of each size."""
    sys.path.insert(0, str(BENCH))
    import bench_batch

    bench_batch.ROOT = CHECKOUT  # grade with that checkout's engine and notebooks
    bench_batch.REFERENCE = CHECKOUT / "reference" / "pa2-w2021" / "a2-cnn.ipynb"
    bench_batch.TEMPLATE = CHECKOUT / "student_template" / "pa2-w2021" / "a2-cnn.ipynb"
    grade = [sys.executable, "-m", "grader.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-grade-batch-") as tmp:
        tmp = Path(tmp)
        mix = bench_batch.make_class(tmp / "class", count)
        bench_batch.make_class(tmp / "small", small)
        alone = {}
        for label, notebook in (("reference", bench_batch.REFERENCE), ("template", bench_batch.TEMPLATE)):
            walls = [
                bench_batch.timed(grade + [str(notebook), "--json", str(tmp / "one.json"), "--no-train"])[0]
                for _ in range(3)
            ]
            alone[label] = statistics.median(walls)
        standalone = sum(alone[k] * n for k, n in mix.items()) / count
        walls: dict[str, list[float]] = {"class": [], "small": []}
        for run in range(runs):
            for folder in walls:  # interleaved, so that both sizes see the same load
                out = tmp / f"out-{folder}-{run}"
                wall, _, proc = bench_batch.timed(
                    grade + [str(tmp / folder), "--out", str(out), "--jobs", "2", "--quiet", "--no-train"]
                )
                if proc.returncode != 0:
                    raise SystemExit(f"batch: exit {proc.returncode}\n{proc.stderr[-3000:]}")
                walls[folder].append(wall)
    wall, wall_small = statistics.median(walls["class"]), statistics.median(walls["small"])
    return {
        "count": count,
        "small": small,
        "wall": wall,
        "wall_small": wall_small,
        "per_submission": wall / count,
        "marginal": (wall - wall_small) / (count - small),
        "standalone": standalone,
    }


def measure_selfcheck() -> list[float]:
    """Seconds of check()'s calls in a simulated warm kernel (the first, then later ones)."""
    proc = subprocess.run(
        [sys.executable, str(CHECKOUT / "benchmarks" / "bench_selfcheck.py"), "--calls", "4"],
        cwd=CHECKOUT,
        env=dict(os.environ, PYTHONPATH=str(CHECKOUT)),
        capture_output=True,
        text=True,
        check=True,
    )
    return [float(m) for m in re.findall(r"check\(\) call \d+: ([0-9.]+) s", proc.stdout)]


# -- the report -----------------------------------------------------------------------------------
def table(rows: dict, runs: int) -> list[str]:
    floor = rows[FLOOR]["wall"]
    lines = [
        "| command | wall s (median) | x floor | peak PSS MiB (tree) "
        "| of which grader / server / children | score |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        roles = row["roles"]
        split = (
            " / ".join(f"{roles.get(k, 0):.0f}" for k in ("grader", "warm server", "sandbox child"))
            if label != FLOOR
            else ""
        )
        lines.append(
            f"| {label} | {row['wall']:.2f} | {row['wall'] / floor:.2f} | {row['pss_mib']:.0f} | {split} | "
            f"{row['score']} |"
        )
    return lines


def stage_lines(rows: dict) -> list[str]:
    """Where the time of the W2021 gradings went (`grade --verbose`, the last run)."""
    out = []
    for label, row in rows.items():
        if row.get("timings"):
            out.append(f"- {label}: {row['timings'][0]}")
        if row.get("failed"):
            out.append(f"  - checks that failed in some run: {'; '.join(row['failed'])}")
    return out


def report(rows, notes, runs, batch, selfcheck) -> list[str]:
    floor = rows[FLOOR]["wall"]
    no_train = rows["W2021 `grade --json --no-train`, all parts"]["wall"] / floor
    training = rows["W2021 `grade --json` with training (CPU)"]
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {os.cpu_count()} CPUs "
        f"({'; '.join(notes)}), medians of {runs} runs, each run the floor and every grading back to back; "
        "peak PSS from one more, sampled, pass.",
        "",
        *table(rows, runs),
        "",
        "| target (issue 22) | measured | target |",
        "|---|---|---|",
        f"| `grade --no-train`, W2021 reference, all parts | {no_train:.2f}x floor | <= 2x |",
        f"| `grade` with training (CPU) | {training['wall'] / floor:.2f}x floor | <= 4x |",
        f"| peak PSS summed over the process tree, with training | {training['pss_mib'] / 1024:.2f} GiB "
        "| <= 1.5 GiB |",
    ]
    if batch:
        alone = batch["standalone"]
        whole, marginal = batch["per_submission"], batch["marginal"]
        lines.append(
            f"| batch `--jobs 2`, marginal cost of a submission vs a standalone run (a batch of "
            f"{batch['count']} against one of {batch['small']}, no training; the whole batch's wall "
            f"time per submission: {whole:.2f} s = {whole / alone:.0%}) "
            f"| {marginal:.2f} s / {alone:.2f} s = {marginal / alone:.0%} | <= 20% |"
        )
    if selfcheck:
        later = statistics.median(selfcheck[1:]) if len(selfcheck) > 1 else selfcheck[0]
        lines.append(
            f"| `check()` in a warm kernel (later calls; the first {selfcheck[0]:.2f} s) | {later:.2f} s "
            "| < 0.5 s |"
        )
    lines += ["", "Where the time went (the last run's `grade --verbose`):", ""]
    lines += stage_lines(rows)
    return lines


def write_readme(lines: list[str]) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_BEGIN} ... {README_END} section")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_BEGIN + "\n" + "\n".join(lines) + "\n" + README_END + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--editions", action="store_true", help="also the MyConv2d and W2022 editions")
    parser.add_argument("--batch", action="store_true", help="also a --jobs 2 batch's cost per submission")
    parser.add_argument("--batch-count", type=int, default=16, help="submissions in that batch")
    parser.add_argument(
        "--batch-small", type=int, default=4, help="submissions in the smaller batch it is compared with"
    )
    parser.add_argument("--selfcheck", action="store_true", help="also check() in a warm kernel")
    parser.add_argument("--all", action="store_true", help="--editions --batch --selfcheck")
    parser.add_argument("--write-readme", action="store_true", help="put the tables into README.md")
    parser.add_argument(
        "--checkout", metavar="DIR", help="measure the engine of another checkout (e.g. an earlier commit)"
    )
    args = parser.parse_args()
    if args.checkout:
        global CHECKOUT
        CHECKOUT = Path(args.checkout).resolve()
    if args.all:
        args.editions = args.batch = args.selfcheck = True
    rows, notes = measure_gradings(args.runs, args.editions)
    batch = measure_batch(args.batch_count, args.batch_small) if args.batch else None
    selfcheck = measure_selfcheck() if args.selfcheck else None
    lines = report(rows, notes, args.runs, batch, selfcheck)
    print("\n".join(lines))
    walls = (f"{label}: {', '.join(f'{w:.2f}' for w in row['walls'])}" for label, row in rows.items())
    print("\nseconds of every run: " + "; ".join(walls))
    try:
        import torch

        cuda = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:
        cuda = None
    print(
        f"CUDA: {cuda} (run benchmarks/bench_training.py --device cuda for the training checks on it)"
        if cuda
        else "CUDA: no GPU on this machine; the training checks on CUDA are still to be measured "
        "(benchmarks/bench_training.py --device cuda)"
    )
    if args.write_readme:
        write_readme(lines)


if __name__ == "__main__":
    main()
