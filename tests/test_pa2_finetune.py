"""D.1 (freeze DeepLabV3 but a new classifier.4; two regions) and D.2 (the soft IoU loss):
real mistakes cost points in their part only, in the right checks; other correct ways of
writing them get full marks. Graded in the session's batch (see conftest.py)."""

from dataclasses import dataclass, field

import pytest

from submissions import D1_DRIVER, D1_SELECT, code

# --------------------------------------------------------------------------------------
# D.1
# --------------------------------------------------------------------------------------
D1_DRIVER_MARKERS = (
    "\n################ YOUR CODE GOES HERE ######################\n",
    "\n###########################################################\n",
)
D1_SELECT_MARKERS = (
    "    ################ Code goes here ######################\n",
    "    ######################################################\n",
)
D1_DRIVER_ANCHOR = '    "experiment_name": "finetune-segmentation",\n}\nargs.update(args_dict)\n'

# A segmentation train(args, model) defined again further down the notebook.
SHORT_TRAIN = """
def train(args, model):
    torch.manual_seed(args.seed)
    learned_parameters = []
{select}
    optimizer = torch.optim.Adam(learned_parameters, lr=args.learn_rate)
    train_loader, valid_loader = initialize_loader(args.train_batch_size, args.val_batch_size)
    for epoch in range(args.epochs):
        for images, masks in train_loader:
            optimizer.zero_grad()
            loss = nn.CrossEntropyLoss()(model(images)["out"], masks)
            loss.backward()
            optimizer.step()
    return model
"""
WEIGHT_ONLY = "    learned_parameters.append(model.classifier[4].weight)"


@dataclass
class Case:
    name: str
    spec: dict
    part: str = "D.1"
    lost: set = field(default_factory=set)
    feedback: dict = field(default_factory=dict)  # check key -> phrases (a tuple: any one of them)


D1_MUTANTS = [
    # prefix= renames the parameters, it does not select them: every one is appended
    Case(
        "d1_prefix_selects_everything",
        {
            "substitute": {
                D1_SELECT: (
                    '    for name, p in model.named_parameters(prefix="classifier.4"):\n'
                    "        learned_parameters.append(p)\n"
                )
            }
        },
        lost={"optimizer"},
        feedback={
            "optimizer": [
                "other parameters reached the optimizer",
                "`backbone.conv1.weight`",
                "only classifier.4 should be learned",
            ]
        },
    ),
    Case(
        "d1_weight_only",
        {"substitute": {D1_SELECT: WEIGHT_ONLY + "\n"}},
        lost={"optimizer"},
        feedback={"optimizer": ["`classifier.4.bias` did not reach the optimizer"]},
    ),
    Case(
        "d1_head_with_21_outputs",
        {
            "substitute": {
                D1_DRIVER: D1_DRIVER.replace(
                    "nn.Conv2d(256, 2, kernel_size=1)", "nn.Conv2d(256, 21, kernel_size=1)"
                )
            }
        },
        lost={"head", "out_shape"},
        feedback={
            "head": ["Conv2d(256 -> 21)", "must output 2 classes"],
            "out_shape": ["[2, 21, 64, 64]", "expected [2, 2, 64, 64]"],
        },
    ),
    Case(
        "d1_everything_frozen",
        {
            "substitute": {
                D1_DRIVER: code("""
            model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)
            model.requires_grad_(False)
        """)
            }
        },
        lost={"frozen"},
        feedback={"frozen": ["`classifier.4.weight`", "of the new layer are frozen"]},
    ),
    Case(
        "d1_nothing_frozen",
        {
            "substitute": {
                D1_DRIVER: code("""
            model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)
        """)
            }
        },
        lost={"frozen"},
        feedback={
            "frozen": [
                "`backbone.conv1.weight`",
                "are still trainable",
                "freeze everything but the new layer",
            ]
        },
    ),
    # The later definition of the segmentation train is the one that counts.
    Case(
        "d1_later_train_wrong",
        {"extra_cells": [SHORT_TRAIN.format(select=WEIGHT_ONLY)]},
        lost={"optimizer"},
        feedback={"optimizer": ["`classifier.4.bias` did not reach the optimizer"]},
    ),
    # the Part D train(args, model) renamed: only the colourization train(args, cnn) is left;
    # the message names what the handout asks for, never the grader's search pattern
    Case(
        "d1_segmentation_train_missing",
        {"substitute": {"def train(args, model):": "def train_segmentation(args, model):"}},
        lost={"optimizer"},
        feedback={"optimizer": ["the notebook defines no `train` for Part D", "learned_parameters"]},
    ),
]

D1_VARIANTS = [
    # freeze first with requires_grad_, replace through classifier[-1]; head parameters taken
    # from the module; every marker deleted
    Case(
        "d1_variant_last_index",
        {
            "substitute": {
                D1_DRIVER: code("""
            model.requires_grad_(False)
            model.classifier[-1] = nn.Conv2d(256, 2, kernel_size=(1, 1), stride=(1, 1))
        """),
                D1_SELECT: "    for param in model.classifier[4].parameters():\n"
                "        learned_parameters.append(param)\n",
                D1_DRIVER_MARKERS[0]: "\n",
                D1_DRIVER_MARKERS[1]: "\n",
                D1_SELECT_MARKERS[0]: "",
                D1_SELECT_MARKERS[1]: "",
            }
        },
    ),
    # _modules, a 3x3 head, freezing by name after replacing; the driver's lines moved above
    # the (now empty) markers; the selection written as a comprehension
    Case(
        "d1_variant_modules_3x3",
        {
            "substitute": {
                D1_DRIVER: "",
                D1_DRIVER_ANCHOR: D1_DRIVER_ANCHOR
                + code("""
            model._modules['classifier'][4] = nn.Conv2d(256, 2, kernel_size=3, padding=1)
            for name, param in model.named_parameters():
                if not name.startswith('classifier.4'):
                    param.requires_grad = False
        """),
                D1_SELECT: "    learned_parameters = [p for n, p in model.named_parameters()\n"
                "                          if n.startswith('classifier.4')]\n",
            }
        },
    ),
    # a substring match also selects aux_classifier.4, which the loss never reaches (only
    # model(x)["out"] is trained): those parameters get no gradient and Adam leaves them
    # alone, and the assignment ignores aux_classifier ([finetune] ignored_prefixes)
    Case(
        "d1_variant_substring_match",
        {
            "substitute": {
                D1_SELECT: (
                    "    for name, param in model.named_parameters():\n"
                    "        if 'classifier.4' in name:\n"
                    "            learned_parameters.append(param)\n"
                )
            }
        },
    ),
    # the driver reloads the model from the hub first (never run while grading)
    Case(
        "d1_variant_hub_reload",
        {
            "substitute": {
                D1_DRIVER_ANCHOR: D1_DRIVER_ANCHOR + "model = torch.hub.load('pytorch/vision:v0.6.0', "
                "'deeplabv3_resnet101', pretrained=True)\n"
            }
        },
    ),
]

# --------------------------------------------------------------------------------------
# D.2
# --------------------------------------------------------------------------------------
D2_NO_SOFTMAX = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    pred = pred[:, 1, :, :]
    gt = gt.float()
    intersection = (pred * gt).sum()
    union = (pred + gt - pred * gt).sum()
    return 1 - (intersection + SMOOTH) / (union + SMOOTH)
"""
D2_BACKGROUND = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    probs = F.softmax(pred, dim=1)
    background = probs[:, 0]
    intersection = torch.sum(background * gt)
    union = torch.sum(background + gt - background * gt)
    loss = 1 - (intersection + SMOOTH) / (union + SMOOTH)
    return loss
"""
D2_RETURNS_IOU = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    prob = torch.softmax(pred, dim=1)[:, 1]
    intersection = (prob * gt).sum()
    union = (prob + gt - prob * gt).sum()
    iou = (intersection + SMOOTH) / (union + SMOOTH)
    return iou
"""
# From a real submission: pred squeezed, gt not, so [B, W] meets [B, 1, W] when H == 1 and
# broadcasts to [B, B, W].
D2_SQUEEZE = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    sm = nn.Softmax(dim=1)
    pred1 = sm(pred)
    pred_fg = pred1[:, 1, :, :].squeeze()  # predicted foreground
    I = (pred_fg * gt).sum()
    U = (pred_fg + gt).sum() - I
    loss = 1 - (I + SMOOTH) / (U + SMOOTH)
    return loss
"""
D2_PER_IMAGE_MODULE = """
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    softmax = nn.Softmax(dim=1)
    fg = softmax(pred)[:, 1]
    gt = gt.float()
    inter = (fg * gt).sum(dim=(1, 2))
    union = (fg + gt - fg * gt).sum(dim=(1, 2))
    iou = (inter + SMOOTH) / (union + SMOOTH)
    return 1 - iou.mean()
"""
# v1.0 of the notebook named it compute_IoU_loss; SMOOTH only below the line.
D2_OLD_NAME = """
def compute_IoU_loss(pred, gt, SMOOTH=1e-6):
    probs = F.softmax(pred, dim=1)
    flower = probs[:, 1, :, :]
    intersection = torch.sum(flower * gt)
    union = torch.sum(flower) + torch.sum(gt) - intersection
    return 1 - intersection / (union + SMOOTH)
"""

D2_MUTANTS = [
    Case(
        "d2_no_softmax",
        {"replace": {"compute_iou_loss": D2_NO_SOFTMAX}},
        "D.2",
        {"values", "properties"},
        {
            "values": [
                "compute_iou_loss gives 0.000000 here; expected 0.591666 (IoU whole batch) "
                "or 0.605685 (IoU per image)",
                "Try:",
                "pred = torch.tensor(",
            ],
            "properties": ["Try:"],
        },
    ),
    Case(
        "d2_background_channel",
        {"replace": {"compute_iou_loss": D2_BACKGROUND}},
        "D.2",
        {"values", "properties"},
        {
            "values": ["(IoU whole batch)", "(IoU per image)"],
            "properties": ["confidently matches the mask gives loss", "foreground channel 1"],
        },
    ),
    Case(
        "d2_returns_iou",
        {"replace": {"compute_iou_loss": D2_RETURNS_IOU}},
        "D.2",
        {"values", "properties"},
        {"values": ["compute_iou_loss gives"], "properties": ["expected close to 0", "1 - IoU"]},
    ),
    # it gives wrong values for H == 1 and crashes for W == 1
    Case(
        "d2_squeeze",
        {"replace": {"compute_iou_loss": D2_SQUEEZE}},
        "D.2",
        {"values", "properties"},
        {
            "values": ["compute_iou_loss gives", "the reference", "Try:", "pred = torch.tensor("],
            # Either of its two bugs, whichever hypothesis's exploration meets first (it is
            # derandomized from the check's source, so a reformatted check may meet the other).
            "properties": [
                (
                    "RuntimeError: The size of tensor a",
                    "a prediction that confidently matches the mask gives loss",
                )
            ],
        },
    ),
]

D2_VARIANTS = [
    Case("d2_variant_per_image_module", {"replace": {"compute_iou_loss": D2_PER_IMAGE_MODULE}}, "D.2"),
    Case("d2_variant_old_name", {"replace": {"compute_iou_loss": D2_OLD_NAME}}, "D.2"),
]

MUTANTS = D1_MUTANTS + D2_MUTANTS
VARIANTS = D1_VARIANTS + D2_VARIANTS
# The reference notebook too (test_pa2_colourization declares it as well), so this file runs alone.
NOTEBOOKS = {"reference": {}, **{case.name: case.spec for case in MUTANTS + VARIANTS}}


@pytest.mark.parametrize("case", MUTANTS, ids=lambda c: c.name)
def test_mistake_costs_only_the_checks_that_see_it(graded, case):
    result = graded[case.name]
    result.expect({case.part: case.lost})
    for key, phrases in case.feedback.items():
        text = result.feedback(case.part, key)
        for phrase in phrases:
            alternatives = phrase if isinstance(phrase, tuple) else (phrase,)
            assert any(p in text for p in alternatives), f"{case.name} {key}: {phrase!r} not in\n{text}"


@pytest.mark.parametrize("case", VARIANTS, ids=lambda c: c.name)
def test_correct_variant_gets_full_marks(graded, case):
    graded[case.name].expect()
    assert graded[case.name].score == graded["reference"].score


def test_missing_definition_shows_no_grader_internals(graded):
    text = graded["d1_segmentation_train_missing"].feedback("D.1", "optimizer")
    assert not any(internal in text for internal in ("\\s", "\\w", "\\b", "matching", "source_pattern")), text


def test_feedback_says_which_reading_of_iou_was_found(graded):
    assert graded["reference"].feedback("D.2", "values") == "IoU is taken over the whole batch."
    assert graded["d2_variant_per_image_module"].feedback("D.2", "values") == "IoU is taken per image."


def test_try_snippet_can_be_pasted_into_python(graded):
    # The feedback offers code to paste ("Try:\npred = ...\ngt = ...\ncompute_iou_loss(pred, gt)").
    # Indented, it is an IndentationError at the prompt.
    text = graded["d2_no_softmax"].feedback("D.2", "values")
    snippet = text.split("Try:\n", 1)[1].splitlines()[:3]
    assert snippet[0].startswith("pred = torch.tensor("), text
    compile("\n".join(snippet), "<pasted>", "exec")
