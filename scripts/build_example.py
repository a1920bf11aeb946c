"""Write examples/submission.ipynb: the reference notebook with three mistakes real students
make, so that `make example` shows what feedback looks like.

    python scripts/build_example.py

1. A.1 PoolUpsampleNet applies ReLU before BatchNorm in every block (equivalence fails,
   the first differing layer is named);
2. D.1 the driver cell replaces classifier[4] but freezes nothing;
3. D.2 compute_iou_loss returns the IoU instead of 1 - IoU.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from submissions import make_notebook  # noqa: E402
from test_pa2_colourization import A1_RELU_BEFORE_BN  # noqa: E402
from test_pa2_finetune import D2_RETURNS_IOU  # noqa: E402

FREEZE_AND_REPLACE = (
    "for param in model.parameters():\n    param.requires_grad = False\n"
    "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"
)
REPLACE_ONLY = "model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)\n"

if __name__ == "__main__":
    path = make_notebook(
        REPO / "examples",
        "submission",
        replace={"PoolUpsampleNet": A1_RELU_BEFORE_BN, "compute_iou_loss": D2_RETURNS_IOU},
        substitute={FREEZE_AND_REPLACE: REPLACE_ONLY},
    )
    print(f"wrote {path}")
