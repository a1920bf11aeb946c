"""What an assignment's check files import: one front, so check authors need not know the
engine's modules. A check is a pytest test with `@pytest.mark.grade(part=..., kind=...,
points=...)` and the fixtures `submission`, `reference`, `expected`, `secret`, `assignment`,
`device`, `feedback` (grader.engine.plugin); hypothesis supplies inputs.

    from grader.checks import StudentCodeError, compare_with_stored, import_sibling
"""

from grader.checks.compare import (
    NotVerified,
    compare_with_stored,
    first_layer_difference,
    shape_text,
    sketch,
    sketch_close,
    sketch_trace,
    verified_network,
)
from grader.checks.pictures import prediction_grid
from grader.editions.assignment import import_shared, import_sibling
from grader.engine.offload import submit as offload
from grader.engine.layers import layer_config, layer_state, load_layer_states, ordered_layers, trace
from grader.engine.proxy import attrdict
from grader.engine.recipes import build as build_recipe, fresh as recipe_object, key as recipe_key
from grader.engine.reproduce import reproducible, with_reproduction
from grader.engine.training import run_training
from grader.errors import MissingDefinition, StudentCodeError, StudentCrash, StudentTimeout

__all__ = [
    "import_shared",
    "import_sibling",
    "compare_with_stored",
    "NotVerified",
    "verified_network",
    "first_layer_difference",
    "shape_text",
    "sketch",
    "sketch_close",
    "sketch_trace",
    "MissingDefinition",
    "StudentCodeError",
    "StudentCrash",
    "StudentTimeout",
    "layer_config",
    "layer_state",
    "load_layer_states",
    "ordered_layers",
    "trace",
    "prediction_grid",
    "attrdict",
    "offload",
    "build_recipe",
    "recipe_object",
    "recipe_key",
    "run_training",
    "reproducible",
    "with_reproduction",
]
