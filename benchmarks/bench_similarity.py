"""Measure the similarity flags on the test suite's class: planted copies against independent work.

    python benchmarks/bench_similarity.py [--threshold 0.8] [--k 5] [--window 4] [--sweep]

Writes every notebook the suite's main batch grades (the correct styles, the mutants, the
editions' re-headed notebooks, the D.1/D.2 variants, the MyConv2d editions' cases) plus the planted copies of
tests/planted_copies.py into a temporary folder, tells each one's edition as a batch does,
and scores every pair in every region with grader.classreport.similarity. Prints the planted
pairs' scores, the highest scores of independent pairs, and precision and recall of the flags
on the planted set. No grading is needed (the flags read the notebooks only).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

# Every test module that declares notebooks for the suite's main batch (tests/batches.py).
SUITE_MODULES = tuple(
    sorted(p.stem for p in (ROOT / "tests").glob("test_*.py") if "\nNOTEBOOKS = " in p.read_text())
)


def suite_notebooks(folder: Path) -> list[Path]:
    from planted_copies import NOTEBOOKS as PLANTED
    from submissions import make_notebook

    specs: dict = {}
    for name in SUITE_MODULES:
        specs.update(getattr(importlib.import_module(name), "NOTEBOOKS", {}))
    specs.update(PLANTED)
    return [make_notebook(folder, name, **spec) for name, spec in sorted(specs.items())]


def submissions_of(paths: list[Path]):
    from grader.editions.assignment import available, load_assignment
    from grader.classreport.similarity import Submission
    from grader.editions.detect import detect

    installed = [load_assignment(n) for n in available()]
    found = []
    for path in paths:
        edition = load_assignment(detect(path, installed).name)
        found.append(Submission(path.stem, path, edition.name, edition))
    return found


def measure(submissions, options) -> dict:
    from planted_copies import planted_pairs, siblings

    from grader.classreport.similarity import pair_scores, regions_compared

    planted = planted_pairs()
    scores = {}
    started = time.perf_counter()
    for region, _, own in regions_compared(submissions, options):
        for (a, b), score in pair_scores(own, options).items():
            scores[(region, a, b)] = score
    seconds = time.perf_counter() - started
    flagged = {key for key, score in scores.items() if score >= options.threshold}
    found = flagged & planted
    sibling_flags = {key for key in flagged - planted if siblings(key[1], key[2])}
    return {
        "seconds": seconds,
        "pairs": len(scores),
        "planted": {key: scores.get(key) for key in sorted(planted)},
        "independent": sorted(
            ((s, k) for k, s in scores.items() if k not in planted and not siblings(k[1], k[2])), reverse=True
        ),
        "flagged": len(flagged),
        # pairs of one mutant family are copies by construction: neither right nor wrong flags
        "precision": len(found) / len(flagged - sibling_flags) if flagged - sibling_flags else 1.0,
        "siblings flagged": sorted(sibling_flags),
        "false flags": sorted(flagged - planted - sibling_flags),
        "recall": len(found) / len(planted),
    }


def main() -> int:
    from grader.classreport.similarity import SimilarityOptions

    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=SimilarityOptions.threshold)
    parser.add_argument("--k", type=int, default=SimilarityOptions.k)
    parser.add_argument("--window", type=int, default=SimilarityOptions.window)
    parser.add_argument("--min-fingerprints", type=int, default=SimilarityOptions.min_fingerprints)
    parser.add_argument("--sweep", action="store_true", help="also try other k and window sizes")
    args = parser.parse_args()
    options = SimilarityOptions(
        threshold=args.threshold, k=args.k, window=args.window, min_fingerprints=args.min_fingerprints
    )
    with tempfile.TemporaryDirectory() as folder:
        submissions = submissions_of(suite_notebooks(Path(folder)))
        print(f"{len(submissions)} notebooks")
        result = measure(submissions, options)
        print(
            f"k={options.k} window={options.window} threshold={options.threshold}: {result['pairs']} pairs "
            f"scored in {result['seconds']:.1f} s; flagged {result['flagged']}; precision "
            f"{result['precision']:.2f}, recall {result['recall']:.2f} "
            f"on {len(result['planted'])} planted pairs"
        )
        print(f"flagged pairs of one mutant family (copies by construction): {result['siblings flagged']}")
        print(f"false flags (independent pairs): {result['false flags']}")
        print("planted pairs:")
        for (region, a, b), score in result["planted"].items():
            print(f"  {'-' if score is None else f'{score:.2f}':>5}  {region:18} {a} ~ {b}")
        print("highest independent pairs:")
        for score, (region, a, b) in result["independent"][:12]:
            print(f"  {score:5.2f}  {region:18} {a} ~ {b}")
        if args.sweep:
            for k in (4, 5, 7, 9, 12):
                for window in (1, 4, 6):
                    sweep = dataclasses.replace(options, k=k, window=window)
                    r = measure(submissions, sweep)
                    low = min((s for s in r["planted"].values() if s is not None), default=0.0)
                    missing = sum(s is None for s in r["planted"].values())
                    high = r["independent"][0][0] if r["independent"] else 0.0
                    print(
                        f"k={k:2} window={window}: lowest planted {low:.2f} ({missing} unscored), "
                        f"highest independent {high:.2f}, precision {r['precision']:.2f}, "
                        f"recall {r['recall']:.2f}"
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
