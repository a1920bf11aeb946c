"""Public checks of D.1: fine-tune DeepLabV3 with everything frozen except classifier.4.

Region 2 (the driver cell) is run against a fresh torchvision model built offline; region 1
(inside the segmentation `train(args, model)`) is run for real and stopped when it builds its
optimizer. The checks are shared with the other families that fine-tune the same way
(assignments/shared/public/finetune_checks.py); W2021 grades both regions as D.1."""

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
) = finetune.public_checks(driver="D.1", optimizer="D.1", handout_part="Part D")
