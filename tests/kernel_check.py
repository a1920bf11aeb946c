"""Run by tests/test_release.py with the student bundle's Python: check() in simulated kernels.

    python kernel_check.py NOTEBOOK...

For each notebook: a kernel that has run its cells. The definitions are executed in a fresh
__main__-like namespace, `In` holds the cells as IPython keeps them, and the notebook's last
cell, `from grader import check; check()`, runs in that namespace. Then a kernel that defines
only a wrong loss and never ran the D.1 driver cell checks some parts. Prints "REPORT <json>".
"""

import json
import sys
import time

from grader.sandbox.child import _compile
from grader.engine.harvest import harvest
from grader.engine.load import load_submission
import grader.student.selfcheck as selfcheck

PARTIAL = """
import torch
from grader import check
In = ["", "x = 1"]  # the driver cell was never run

def compute_iou_loss(pred, gt, SMOOTH=1e-6):  # the background channel: a real mistake
    p = torch.softmax(pred, 1)[:, 0]
    inter = (p * gt).sum()
    return 1 - (inter + SMOOTH) / ((p + gt - p * gt).sum() + SMOOTH)

torch.manual_seed(123)
before = torch.rand(1).item()
torch.manual_seed(123)
check("D.2")
after = torch.rand(1).item()
"""


def summary(result, seconds):
    return {
        "seconds": seconds,
        "error": result.error,
        "notes": result.notes,
        "tests": [
            {"name": c.name, "part": c.part, "status": c.status, "output": c.output} for c in result.checks
        ],
    }


def main(paths):
    report = {}
    for path in paths:
        loaded = load_submission(path)
        ns = {"__name__": "__main__", "__builtins__": __builtins__}
        for st in harvest(loaded).statements:
            try:
                exec(_compile(st.source, st.cell, st.lineno), ns)
            except Exception:
                pass
        ns["In"] = [""] + [cell.source for cell in loaded.cells]
        started = time.perf_counter()
        exec("from grader import check\ncheck()", ns)
        report[path] = summary(selfcheck.last_result, time.perf_counter() - started)
    ns = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(PARTIAL, ns)
    report["same random state"] = ns["before"] == ns["after"]
    report["D.2 only"] = summary(selfcheck.last_result, 0)
    exec("check('D.1', 'A.1')", ns)
    report["D.1 and A.1"] = summary(selfcheck.last_result, 0)
    print("REPORT " + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
