"""Public checks of W2020's Part C: C.1 hands only classifier.4's parameters to the optimizer
inside `train(args, model)`; C.2 replaces classifier[4] in the driver cell and freezes the
rest. W2021's D.1 checks, shared (assignments/shared/public/finetune_checks.py): only the
parts they report under differ. The driver has no "loss" key; the optimizer check stops the
student's `train` when it builds its optimizer, before the starter's `best_iou = None`."""

import pytest

from grader.checks import import_shared

finetune = import_shared("finetune_checks")

pytestmark = pytest.mark.grade(visibility="visible")

spec = finetune.spec
(
    test_head_replaced,
    test_only_head_trainable,
    test_segmentation_output_shape,
    test_optimizer_gets_only_head,
) = finetune.public_checks(driver="head", optimizer="learned_parameters", handout_part="Part C")
