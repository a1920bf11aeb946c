"""Grade a whole class: one results file each, a gradebook, pass rates, resume, shards.

    grade DIR --out OUT [--jobs N] [--shard i/n] [--junit FILE] [--quiet]
    grade merge OUT1 OUT2 ... --out MERGED [--junit FILE]

Each submission gets `OUT/<name>.json` (GradingResult.to_dict: Gradescope's schema plus a
`grader` block, with the stamp that makes resuming safe), written atomically;
`OUT/gradebook.csv` is rewritten after every submission, `OUT/summary.csv` (pass rate per
check) and the JUnit file at the end. Running the same command again skips submissions whose
results are up to date: same submission bytes, grader version, assignment files and grading
options. Killing a batch at any moment loses only the submissions being graded then.

The rooms:

    discover   which files are submissions, their result names, shards
    store      results files, resume stamps, the output folder's lock
    outputs    gradebook, pass rates, JUnit, the printed summary
    scheduler  the batch command: what to grade, progress, writing as results arrive
    pool       the worker processes that grade (forked from the warm server)
    merge      `grade merge`: join the outputs of shards

Everything here but `pool`'s workers runs in the scheduler, which never imports torch: keep
torch-importing modules (engine, sandbox child, plugin) out of these modules' top level
(tests/test_import_graph.py checks it).
"""
