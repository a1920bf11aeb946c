"""`grade report RESULTS... --html class.html [--json class.json]`: the class report of one or
more batch output folders (or `grade merge`'s), with every student's own feedback page next to
it, and the pairs of submissions whose code is alike."""

from __future__ import annotations

import json
import time
from urllib.parse import quote
from pathlib import Path

from grader.verbs import run_verb, verb_parser
from grader.classreport.similarity import IGNORABLE, SimilarityOptions

DEFAULT_HTML = "class-report.html"


def add_similarity_options(p) -> None:
    defaults = SimilarityOptions()
    g = p.add_argument_group("similar code (see docs/class-report.md)")
    g.add_argument("--no-similarity", action="store_true", help="leave the similarity flags out")
    g.add_argument(
        "--threshold",
        type=float,
        default=defaults.threshold,
        metavar="SHARE",
        help=f"flag pairs whose own code is at least this alike, 0-1 (default {defaults.threshold})",
    )
    g.add_argument(
        "--min-fingerprints",
        type=int,
        default=defaults.min_fingerprints,
        metavar="N",
        help="judge a pair only when the smaller side has this many fingerprints of its own "
        f"(default {defaults.min_fingerprints})",
    )
    g.add_argument(
        "--common",
        type=float,
        default=defaults.common_share,
        metavar="SHARE",
        help="code found in more than this share of an edition's submissions is no evidence "
        f"(default {defaults.common_share}; never fewer than {defaults.common_floor + 1} submissions)",
    )
    g.add_argument(
        "--ignore",
        default=",".join(IGNORABLE),
        metavar="WHAT",
        help="what is no evidence, comma-separated among " + ", ".join(IGNORABLE) + ", or none "
        "(default: all three)",
    )
    g.add_argument(
        "--across-editions", action="store_true", help="compare submissions of different editions too"
    )
    g.add_argument(
        "--region-source",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="another source of regions to compare (repeatable; see grader.classreport.similarity)",
    )
    g.add_argument(
        "--submissions",
        metavar="DIR",
        help="where the notebooks are now, when they moved since grading (found by result name)",
    )


def similarity_options(args) -> SimilarityOptions:
    ignore = {w.strip() for w in args.ignore.split(",") if w.strip()} - {"none"}
    unknown = ignore - set(IGNORABLE)
    if unknown:
        raise ValueError(
            f"--ignore: unknown {', '.join(sorted(unknown))}; choose among {', '.join(IGNORABLE)}, none"
        )
    if not 0 < args.threshold <= 1:
        raise ValueError(f"--threshold wants a share between 0 and 1, got {args.threshold:g}")
    if not 0 <= args.common <= 1:
        raise ValueError(f"--common wants a share between 0 and 1, got {args.common:g}")
    if args.min_fingerprints < 1:
        raise ValueError("--min-fingerprints must be at least 1")
    return SimilarityOptions(
        threshold=args.threshold,
        min_fingerprints=args.min_fingerprints,
        common_share=args.common,
        ignore=frozenset(ignore),
        across_editions=args.across_editions,
    )


def main(argv: list[str]) -> int:
    p = verb_parser("grade report", "The class report of graded batches: scores, causes, similar code.")
    p.add_argument(
        "results", nargs="+", metavar="RESULTS", help="output folders of `grade ... --out` or `grade merge`"
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        help=f"write the page here, the feedback pages next to it (default: RESULTS/{DEFAULT_HTML})",
    )
    p.add_argument("--json", metavar="FILE", help="write the same data as JSON (similar pairs included)")
    p.add_argument("--title", default="Class report", help="the page's title")
    add_similarity_options(p)
    return run_verb(p, argv, _report, expected=(ValueError,))


def _report(args) -> int:
    folders = [Path(f) for f in args.results]
    missing = [str(f) for f in folders if not f.exists()]
    if missing:
        raise ValueError(f"{missing[0]} does not exist")
    html = Path(args.html) if args.html else (None if args.json else folders[0] / DEFAULT_HTML)
    options = None if args.no_similarity else similarity_options(args)
    sources = _sources(args.region_source)
    started = time.perf_counter()
    data = write_class_report(
        folders,
        html,
        Path(args.json) if args.json else None,
        options,
        submissions=Path(args.submissions) if args.submissions else None,
        sources=sources,
        title=args.title,
    )
    pairs = len(data["similarity"]["pairs"]) if data["similarity"] else 0
    written = " and ".join(str(p) for p in (html, args.json) if p)
    print(
        f"Class report of {len(data['submissions'])} submissions ({pairs} similar pairs) in "
        f"{time.perf_counter() - started:.1f} s: {written}"
    )
    return 0


def _sources(specs: list[str]):
    from grader.classreport.similarity import REGION_SOURCES, load_region_source

    extra = [load_region_source(spec) for spec in specs]
    return [*REGION_SOURCES, *extra] if extra else None


def write_class_report(
    folders: list[Path],
    html: Path | None,
    json_path: Path | None,
    options: SimilarityOptions | None = None,
    submissions: Path | None = None,
    sources=None,
    title: str = "Class report",
) -> dict:
    """Read the results in `folders` and write the report (and, with `html`, each student's
    feedback page in `<html stem>-feedback/`); return its data. `options` None: no similarity
    flags."""
    from grader.report.writers import atomic_write, write_html
    from grader.classreport import build, page

    found = build.read_folders(folders)
    editions = _editions({r.assignment for r in found.results.values()})
    parts = list(dict.fromkeys(p.id for a in editions.values() if a for p in a.parts))
    similarity = None
    if options is not None:
        from grader.classreport.similarity import compare

        located = _submissions(found.results, editions, submissions)
        similarity = compare(located, options, sources).to_dict()
    data = build.report_data(found, parts, similarity)
    links = {}
    if html is not None:
        pages = html.parent / f"{html.stem}-feedback"
        for name, result in sorted(found.results.items()):
            write_html(result, pages / f"{name}.html")
            links[name] = f"{quote(pages.name)}/{quote(name)}.html"
        for row in data["submissions"]:
            row["feedback"] = links.get(row["name"])
        atomic_write(html, page.render(data, links, title))
    if json_path is not None:
        atomic_write(json_path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def _editions(names: set[str]) -> dict:
    from grader.editions.assignment import load_assignment
    from grader.errors import SubmissionError

    found = {}
    for name in sorted(n for n in names if n):
        try:
            found[name] = load_assignment(name)
        except SubmissionError:  # graded elsewhere, with an edition not installed here
            found[name] = None
    return found


def _submissions(results: dict, editions: dict, folder: Path | None) -> list:
    """Where each graded notebook is: by result name in `folder` (when the notebooks moved), else
    the path its results file recorded."""
    from grader.batch.discover import expand_paths, result_names
    from grader.classreport.similarity import Submission

    moved = {}
    if folder is not None:
        moved = {name: path for path, name in result_names(expand_paths([str(folder)])).items()}
    located = []
    for name, result in sorted(results.items()):
        path = moved.get(name) or Path(result.submission)
        located.append(Submission(name, path, result.assignment, editions.get(result.assignment)))
    return located
