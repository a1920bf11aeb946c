"""What the class report says, computed from a batch's results files: plain data (the JSON
file holds exactly this), which grader.classreport.page renders."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch.outputs import pass_rates
from grader.report.results import GradingResult
from grader.classreport import causes

TOP_CAUSES = 15
SLOWEST = 10


@dataclass
class ClassResults:
    """Every submission's results, by result name, read from one or more output folders."""

    results: dict[str, GradingResult]
    folders: list[Path]
    notes: list[str] = field(default_factory=list)


def read_folders(folders: list[Path]) -> ClassResults:
    """The results files (`<name>.json` a batch or `grade merge` wrote) of `folders`; a name
    in two folders is taken from the first, with a note."""
    from grader.batch.store import read_results
    from grader.errors import SubmissionError

    results: dict[str, GradingResult] = {}
    notes = []
    for folder in folders:
        if not folder.is_dir():
            raise SubmissionError(f"{folder} is not a folder")
        for path in sorted(folder.glob("*.json")):
            data = read_results(path)
            if data is None:
                continue
            if path.stem in results:
                notes.append(f"{path.stem} is in more than one folder; the first was used")
                continue
            results[path.stem] = GradingResult.from_dict(data)
    if not results:
        raise SubmissionError("no results files found in " + " ".join(map(str, folders)))
    return ClassResults(results, list(folders), notes)


def _mib(value) -> float | None:
    try:
        return round(int(value) / 2**20, 1) if value else None
    except (TypeError, ValueError):
        return None


def submission_rows(results: dict[str, GradingResult]) -> list[dict]:
    rows = []
    for name in sorted(results):
        r = results[name]
        timed_out = [c for c in r.checks if causes.is_timeout(c.output)]
        rows.append(
            {
                "name": name,
                "edition": r.assignment,
                "score": round(r.score, 3),
                "max_score": round(r.max_score, 3),
                "status": r.status,
                "seconds": round(r.execution_time, 2),
                "peak_memory_mib": _mib(r.peak_memory_bytes),
                "error": r.error,
                "timed_out": len(timed_out),
            }
        )
    return rows


def edition_scores(results: dict[str, GradingResult]) -> list[dict]:
    editions: dict[str, list[GradingResult]] = {}
    for name in sorted(results):
        editions.setdefault(results[name].assignment, []).append(results[name])
    out = []
    for edition, members in sorted(editions.items()):
        scores = [round(r.score, 3) for r in members]
        totals = [r.max_score for r in members]
        out.append(
            {
                "edition": edition,
                "submissions": len(members),
                "max_score": round(max(set(totals), key=totals.count), 3),
                "mean": round(statistics.fmean(scores), 3),
                "median": round(statistics.median(scores), 3),
                "complete": sum(r.status == "complete" for r in members),
                "errors": sum(r.error is not None for r in members),
                "scores": scores,
            }
        )
    return out


def part_rates(results: dict[str, GradingResult], parts: list[str]) -> list[dict]:
    """Per part (in `parts` order): of the submissions graded on it, the share that passed all
    its checks and the share of its points they earned."""
    rows: dict[str, dict] = {}
    for name in sorted(results):
        r = results[name]
        for part, (got, out_of) in r.parts().items():
            row = rows.setdefault(
                part,
                {"part": part, "editions": set(), "submissions": 0, "complete": 0, "points": 0.0, "of": 0.0},
            )
            row["editions"].add(r.assignment)
            row["submissions"] += 1
            row["complete"] += all(c.passed for c in r.checks if c.part == part)
            row["points"] += got
            row["of"] += out_of
    order = {p: i for i, p in enumerate(parts)}
    out = []
    for part in sorted(rows, key=lambda p: (order.get(p, len(order)), p)):
        row = rows[part]
        out.append(
            {
                "part": part,
                "editions": sorted(row["editions"]),
                "submissions": row["submissions"],
                "complete": row["complete"],
                "complete_rate": round(row["complete"] / row["submissions"], 4),
                "points_rate": round(row["points"] / row["of"], 4) if row["of"] else 0.0,
            }
        )
    return out


def common_causes(results: dict[str, GradingResult], top: int = TOP_CAUSES) -> list[dict]:
    """The failure causes the feedback names most often: per part and cause, how many
    submissions (each counted once, however many of its checks say it), which checks, and one
    example's message with the student's name taken out."""
    found: dict[tuple[str, str], dict] = {}
    for name in sorted(results):
        r = results[name]
        if r.error is not None:  # unusable: every check "Not graded"; the errors list has it
            continue
        for c in r.checks:
            if c.passed or causes.is_not_graded(c.output):
                continue
            key = (c.part, causes.cause_of(c.output))
            entry = found.setdefault(
                key, {"part": key[0], "cause": key[1], "submissions": [], "checks": [], "example": None}
            )
            if name not in entry["submissions"]:
                entry["submissions"].append(name)
            if c.name not in entry["checks"]:
                entry["checks"].append(c.name)
            if entry["example"] is None:
                entry["example"] = {
                    "check": c.name,
                    "message": causes.anonymise(
                        c.output.strip(), [name, r.submission, Path(r.submission).stem]
                    ),
                }
    ranked = sorted(found.values(), key=lambda e: (-len(e["submissions"]), e["part"], e["cause"]))
    return [dict(e, count=len(e.pop("submissions"))) for e in ranked[:top]]


def problems(rows: list[dict]) -> list[dict]:
    """Submissions that could not be graded, and those where some check ran out of time."""
    out = []
    for row in rows:
        if row["error"]:
            kind = "timed out" if causes.SUBMISSION_TIMEOUT_PHRASE in row["error"] else "error"
            out.append({"name": row["name"], "kind": kind, "detail": row["error"]})
        elif row["timed_out"]:
            checks = row["timed_out"]
            out.append(
                {
                    "name": row["name"],
                    "kind": "timed out",
                    "detail": f"{checks} check{'s' if checks > 1 else ''} ran out of time",
                }
            )
    return out


def slowest(rows: list[dict], count: int = SLOWEST) -> list[dict]:
    ranked = sorted(rows, key=lambda r: (-r["seconds"], r["name"]))[:count]
    return [{k: r[k] for k in ("name", "edition", "seconds", "peak_memory_mib", "status")} for r in ranked]


def report_data(found: ClassResults, parts: list[str], similarity: dict | None) -> dict:
    results = found.results
    rows = submission_rows(results)
    return {
        "folders": [str(f) for f in found.folders],
        "notes": found.notes,
        "submissions": rows,
        "editions": edition_scores(results),
        "parts": part_rates(results, parts),
        "checks": pass_rates(results, parts),
        "causes": common_causes(results),
        "slowest": slowest(rows),
        "problems": problems(rows),
        "similarity": similarity,
    }
