"""`grade slurm SUBMISSIONS... --out RESULTS --tasks N [--submit]`: a batch as a Slurm job array.

Writes two batch scripts into RESULTS/slurm/:

    grade.sbatch    `--array=0-(N-1)`: array task K grades shard K+1 of N (`grade ... --shard`)
                    into its own folder, RESULTS/shards/<K+1>-of-<N>/
    finish.sbatch   `grade merge` of the N shard folders into RESULTS/, then `grade report`

and, with --submit, submits them, the second with `--dependency=afterok:<array>` (it runs
once every task succeeded; `--kill-on-invalid-dep=yes` cancels it when one failed).

Each task has a folder of its own because a batch holds a lock on its output folder (one
batch per folder) and rewrites the gradebook of what it graded: N tasks writing into one folder
would stop each other or overwrite each other's gradebook. `grade merge` joins them.

Resuming: a batch skips every submission whose results are up to date, so submitting again
(`grade slurm ... --submit`, or `--array K` for the failed tasks only) grades only what is
missing: a task killed mid-way loses only the submissions it was grading at that moment.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from grader.verbs import run_verb, verb_parser

SCRIPTS = "slurm"
SHARDS = "shards"
# Options the scripts set themselves: --grade-arg may not give them.
OWN_OPTIONS = ("--out", "--shard", "--jobs", "-j", "--junit")


def main(argv: list[str]) -> int:
    p = verb_parser("grade slurm", "Grade a batch as a Slurm job array, then merge and report.")
    p.add_argument("paths", nargs="+", metavar="SUBMISSIONS", help="notebooks, folders or glob patterns")
    p.add_argument(
        "--out", required=True, metavar="RESULTS", help="where the results, gradebook and report go"
    )
    p.add_argument("--tasks", type=int, required=True, metavar="N", help="array tasks (shards)")
    p.add_argument(
        "--jobs", type=int, default=1, metavar="J", help="submissions graded at once in a task (default 1)"
    )
    p.add_argument(
        "--mem",
        metavar="SIZE",
        help="memory per task (sbatch --mem; default 3G per job: a worker and its sandbox child)",
    )
    p.add_argument("--time", metavar="LIMIT", help="wall-time limit per task (sbatch --time, e.g. 2:00:00)")
    p.add_argument(
        "--sbatch-option",
        action="append",
        default=[],
        metavar="OPTION",
        help="another #SBATCH line for both scripts (repeatable), e.g. --sbatch-option=--partition=cpu",
    )
    p.add_argument(
        "--grade-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for each task's `grade` (repeatable), e.g. --grade-arg=--no-train",
    )
    p.add_argument(
        "--report-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an argument for the final `grade report` (repeatable), e.g. --report-arg=--threshold=0.9",
    )
    p.add_argument(
        "--submit", action="store_true", help="submit both scripts with sbatch (default: only write them)"
    )
    p.add_argument(
        "--array",
        metavar="INDICES",
        help="with --submit: only these array tasks (0-based, as Slurm numbers them), e.g. 2 or 1,3",
    )
    return run_verb(p, argv, slurm, expected=(ValueError,))


def slurm(args) -> int:
    from grader.batch.discover import expand_paths

    if args.tasks < 1:
        raise ValueError("--tasks must be at least 1")
    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if args.array and not args.submit:
        raise ValueError("--array goes with --submit")
    for arg in args.grade_arg:
        if arg.split("=", 1)[0] in OWN_OPTIONS:
            raise ValueError(f"--grade-arg={arg}: the scripts set {arg.split('=', 1)[0]} themselves")
    _check_grade_args(args.paths, args.grade_arg)
    for path in args.paths:
        if not glob.has_magic(path) and not os.path.lexists(path):
            raise ValueError(f"{path} does not exist")
    if not expand_paths(args.paths):
        raise ValueError("no submissions found in " + " ".join(args.paths))
    out = Path(args.out).resolve()
    folder = out / SCRIPTS
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    grade_script, finish_script = folder / "grade.sbatch", folder / "finish.sbatch"
    grade_script.write_text(grade_sbatch(args, out))
    finish_script.write_text(finish_sbatch(args, out))
    for script in (grade_script, finish_script):
        script.chmod(0o755)
    if not args.submit:
        print(f"Wrote {grade_script} and {finish_script}. Submit them with:")
        print(f"  jobid=$(sbatch --parsable {shlex.quote(str(grade_script))})")
        finish = shlex.quote(str(finish_script))
        print(f"  sbatch --dependency=afterok:$jobid --kill-on-invalid-dep=yes {finish}")
        return 0
    if shutil.which("sbatch") is None:
        raise ValueError("sbatch is not on PATH: run on a Slurm login node, or leave out --submit")
    array = ["--array", args.array] if args.array else []
    grading = _sbatch([*array, str(grade_script)])
    finishing = _sbatch([f"--dependency=afterok:{grading}", "--kill-on-invalid-dep=yes", str(finish_script)])
    print(f"grading array job: {grading} (tasks {args.array or f'0-{args.tasks - 1}'})")
    print(f"finishing job: {finishing} (merge and report into {out}/, once every task succeeded)")
    return 0


def _check_grade_args(paths: list[str], grade_args: list[str]) -> None:
    """A mistake in --grade-arg is found now, not in every task on the cluster."""
    from grader.cli import build_parser

    parser = build_parser()
    parser.exit_on_error = False
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its usage text; one line is enough
            parser.parse_args([*paths, *grade_args])
    except SystemExit as exc:
        raise ValueError(f"--grade-arg: `grade` does not accept {' '.join(grade_args)}") from exc
    except Exception as exc:  # argparse.ArgumentError
        raise ValueError(f"--grade-arg: {exc}") from exc


def _sbatch(arguments: list[str]) -> str:
    done = subprocess.run(["sbatch", "--parsable", *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"sbatch failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done.stdout.strip().split(";")[0]  # "<id>" or "<id>;<cluster>"


def _python_lines() -> list[str]:
    """How the scripts run this grader: this Python, and this checkout when it is one."""
    root = Path(__file__).resolve().parents[2]
    lines = [f"PYTHON={shlex.quote(sys.executable)}"]
    if (root / "setup.cfg").is_file() and (root / "grader").is_dir():
        lines.append(f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:$PYTHONPATH}}")
    return lines


def _header(lines: list[str], args) -> str:
    extra = [f"#SBATCH {option}" for option in args.sbatch_option]
    return "\n".join(["#!/bin/bash", *lines, *extra])


def shard_folder(out: Path, task: int, tasks: int) -> Path:
    """Where array task `task` (0-based) writes."""
    return out / SHARDS / f"{task + 1}-of-{tasks}"


def grade_sbatch(args, out: Path) -> str:
    paths = " ".join(shlex.quote(str(Path(p).resolve())) for p in args.paths)
    grade_args = " ".join(shlex.quote(a) for a in args.grade_arg)
    header = _header(
        [
            "# Written by `grade slurm`: array task K grades shard K+1 of N into its own folder.",
            "#SBATCH --job-name=grade",
            f"#SBATCH --array=0-{args.tasks - 1}",
            "#SBATCH --ntasks=1",
            f"#SBATCH --cpus-per-task={args.jobs}",
            f"#SBATCH --mem={args.mem or f'{3 * args.jobs}G'}",
            *([f"#SBATCH --time={args.time}"] if args.time else []),
            f"#SBATCH --output={out / SCRIPTS / 'logs' / 'grade-%A_%a.out'}",
        ],
        args,
    )
    shards = shlex.quote(str(out / SHARDS))
    return f"""{header}
set -euo pipefail
cd {shlex.quote(str(Path.cwd()))}
{chr(10).join(_python_lines())}
N={args.tasks}
K=${{SLURM_ARRAY_TASK_ID:?run this script with sbatch --array}}
# Up-to-date results in the task's folder are kept: a resubmitted task grades only the rest.
exec "$PYTHON" -m grader.cli {paths} --out {shards}/$((K + 1))-of-$N --shard $((K + 1))/$N \\
    --jobs {args.jobs} --quiet {grade_args}
"""


def finish_sbatch(args, out: Path) -> str:
    header = _header(
        [
            "# Written by `grade slurm`: after every array task succeeded, merge their folders and report.",
            "#SBATCH --job-name=grade-finish",
            "#SBATCH --ntasks=1",
            "#SBATCH --cpus-per-task=1",
            "#SBATCH --mem=2G",
            f"#SBATCH --output={out / SCRIPTS / 'logs' / 'finish-%j.out'}",
        ],
        args,
    )
    folders = " ".join(shlex.quote(str(shard_folder(out, k, args.tasks))) for k in range(args.tasks))
    report_args = " ".join(shlex.quote(a) for a in args.report_arg)
    quoted = shlex.quote(str(out))
    return f"""{header}
set -euo pipefail
cd {shlex.quote(str(Path.cwd()))}
{chr(10).join(_python_lines())}
"$PYTHON" -m grader.cli merge {folders} --out {quoted} --quiet
"$PYTHON" -m grader.cli report {quoted} --html {quoted}/class-report.html \\
    --json {quoted}/class-report.json {report_args}
"""
