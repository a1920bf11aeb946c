"""Reference solution for the PA2 family: every graded student part as importable Python.

Made by `grade assign reference/pa2-w2021/master.ipynb` from the W2021 master notebook (see
docs/master-notebooks.md): edit the master, not this file. The other editions' masters
(W2022, W2023, F2024, W2025) reuse W2021's model classes; `grade assign` checks theirs
against the ones here.

The grader imports this module in the trusted parent process only; it is never sent to the
sandboxed child. Besides the graded definitions it holds the master's grader-side extras:
`UNetSkipOrder` and `compute_iou_loss_per_image` (the other accepted readings of the
handout), and `select_learned_parameters` / `replace_head_and_freeze`, which wrap the two
D.1 regions (inside `train(args, model)`, and in the driver cell) so that checks can call
them; their code is the master's region code itself.
"""
import torch
import torch.nn as nn


# --- A.1 -------------------------------------------------------------------------------
class PoolUpsampleNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()

        # Useful parameters
        padding = kernel // 2

        ############### YOUR CODE GOES HERE ###############
        def block(cin, cout, resample):
            return nn.Sequential(
                nn.Conv2d(cin, cout, kernel_size=kernel, padding=padding),
                resample,
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )

        self.down1 = block(num_in_channels, num_filters, nn.MaxPool2d(2))
        self.down2 = block(num_filters, 2 * num_filters, nn.MaxPool2d(2))
        self.up1 = block(2 * num_filters, num_filters, nn.Upsample(scale_factor=2))
        self.up2 = block(num_filters, num_colours, nn.Upsample(scale_factor=2))
        self.final = nn.Conv2d(num_colours, num_colours, kernel_size=kernel, padding=padding)
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
        ###################################################


# --- B.1 -------------------------------------------------------------------------------
class ConvTransposeNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()

        # Useful parameters
        stride = 2
        padding = kernel // 2
        output_padding = 1

        ############### YOUR CODE GOES HERE ###############
        self.down1 = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
        )
        self.down2 = nn.Sequential(
            nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU(),
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(num_filters, num_colours, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.BatchNorm2d(num_colours),
            nn.ReLU(),
        )
        self.final = nn.Conv2d(num_colours, num_colours, kernel, padding=padding)
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        return self.final(self.up2(self.up1(self.down2(self.down1(x)))))
        ###################################################


# --- C.1 -------------------------------------------------------------------------------
class UNet(nn.Module):
    def __init__(self, kernel, num_filters, num_colours, num_in_channels):
        super().__init__()

        # Useful parameters
        stride = 2
        padding = kernel // 2
        output_padding = 1

        ############### YOUR CODE GOES HERE ###############
        self.down1 = nn.Sequential(
            nn.Conv2d(num_in_channels, num_filters, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
        )
        self.down2 = nn.Sequential(
            nn.Conv2d(num_filters, 2 * num_filters, kernel, stride=stride, padding=padding),
            nn.BatchNorm2d(2 * num_filters),
            nn.ReLU(),
        )
        self.up1 = nn.Sequential(
            nn.ConvTranspose2d(2 * num_filters, num_filters, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(),
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(2 * num_filters, num_colours, kernel, stride=stride,
                               padding=padding, output_padding=output_padding),
            nn.BatchNorm2d(num_colours),
            nn.ReLU(),
        )
        self.final = nn.Conv2d(num_colours + num_in_channels, num_colours, kernel,
                               padding=padding)
        ###################################################

    def forward(self, x):
        ############### YOUR CODE GOES HERE ###############
        d1 = self.down1(x)
        d2 = self.down2(d1)
        u1 = self.up1(d2)
        u2 = self.up2(torch.cat([u1, d1], dim=1))
        return self.final(torch.cat([u2, x], dim=1))
        ###################################################


class UNetSkipOrder(UNet):
    """UNet with a chosen order of the tensors in each `torch.cat`.

    The handout leaves the order to the student; both are correct, but they wire the weights
    of the layer after the concatenation differently, so the equivalence check tries each.
    `skip_first` says, per concatenation, whether the skip tensor comes first.
    """

    def __init__(self, kernel, num_filters, num_colours, num_in_channels,
                 skip_first=(False, False)):
        super().__init__(kernel, num_filters, num_colours, num_in_channels)
        self.skip_first = tuple(skip_first)

    @staticmethod
    def _cat(main, skip, skip_first):
        return torch.cat([skip, main] if skip_first else [main, skip], dim=1)

    def forward(self, x):
        d1 = self.down1(x)
        u1 = self.up1(self.down2(d1))
        u2 = self.up2(self._cat(u1, d1, self.skip_first[0]))
        return self.final(self._cat(u2, x, self.skip_first[1]))


# --- D.1 -------------------------------------------------------------------------------
def select_learned_parameters(model):
    """Region 1, inside the segmentation `train(args, model)`."""
    learned_parameters = []
    ################ Code goes here ######################
    for name, param in model.named_parameters():
        if name.startswith("classifier.4."):
            learned_parameters.append(param)
    ######################################################
    return learned_parameters


def replace_head_and_freeze(model):
    """Region 2, the module-level driver cell (it runs with `model` as a global)."""
    ################ YOUR CODE GOES HERE ######################
    for param in model.parameters():
        param.requires_grad = False
    model.classifier[4] = nn.Conv2d(256, 2, kernel_size=1)
    ###########################################################
    return model


# --- D.2 -------------------------------------------------------------------------------
def compute_iou_loss(pred, gt, SMOOTH=1e-6):
    """Soft IoU loss for flower segmentation.

    pred: logits [B, 2, H, W] (channel 1 is the flower); gt: long [B, H, W] of 0/1.
    Turn the logits into probabilities with a softmax over the classes, compute a soft
    intersection and union of the flower probability with gt, and return 1 - IoU.
    SMOOTH keeps the division defined when both are empty.
    """
    ################ YOUR CODE GOES HERE ######################
    prob = torch.softmax(pred, dim=1)[:, 1]
    gt = gt.float()
    intersection = (prob * gt).sum()
    union = (prob + gt - prob * gt).sum()
    loss = 1 - (intersection + SMOOTH) / (union + SMOOTH)
    ###########################################################
    return loss


def compute_iou_loss_per_image(pred, gt, SMOOTH=1e-6):
    """The other reading of the handout: IoU per image, then the mean over the batch."""
    prob = torch.softmax(pred, dim=1)[:, 1]
    gt = gt.float()
    intersection = (prob * gt).sum(dim=(1, 2))
    union = (prob + gt - prob * gt).sum(dim=(1, 2))
    return (1 - (intersection + SMOOTH) / (union + SMOOTH)).mean()
