"""PA2-specific pieces shared by the checks: which model is which part, the hyper-parameter
domains the handout allows, and the reference networks to compare against.

Check modules import it with `grader.assignment.import_sibling(__file__, "pa2")`."""
import itertools

import pytest
import torch
from hypothesis import strategies as st

COLOUR_MODELS = {
    # name: (part, kernels the handout's fixed padding allows)
    "PoolUpsampleNet": ("A.1", (3, 5)),  # padding = kernel // 2 keeps 32x32 for odd kernels
    "ConvTransposeNet": ("B.1", (3,)),  # padding 1, output_padding 1: only kernel 3 fits
    "UNet": ("C.1", (3,)),
}


def colour_model_params():
    return [pytest.param(name, marks=pytest.mark.grade(part=part, subject=name), id=part)
            for name, (part, _) in COLOUR_MODELS.items()]


def hyper_parameters(name):
    """(kernel, num_filters, num_colours, num_in_channels), as the notebook's train() passes them."""
    return st.tuples(st.sampled_from(COLOUR_MODELS[name][1]), st.integers(1, 12),
                     st.integers(2, 24), st.sampled_from([1, 3]))


# Fixed settings for the layer, parameter and equivalence checks: the notebook's defaults
# (kernel 3, 24 colours, greyscale) with few filters, and a colour-input variant.
FIXED_SETTINGS = [(3, 4, 24, 1), (3, 7, 5, 3)]


def reference_variants(reference, name, hp):
    """Every reference network a correct solution may be equivalent to."""
    if name != "UNet":
        return [("", getattr(reference, name)(*hp))]
    out = []
    for order in itertools.product([False, True], repeat=2):
        torch.manual_seed(0)
        label = ", ".join(f"skip tensor {'first' if o else 'second'} in torch.cat {i + 1}"
                          for i, o in enumerate(order))
        out.append((label, reference.UNetSkipOrder(*hp, skip_first=order)))
    return out


def seeded_input(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def call_text(name, hp):
    return f"{name}(kernel={hp[0]}, num_filters={hp[1]}, num_colours={hp[2]}, num_in_channels={hp[3]})"
