"""Trusted library objects described as data: a "recipe" is a nested call of library callables,
so that an assignment can say in its TOML which model its checks hand to student code (a
torchvision model, or a smaller one with the same module tree), and the child and the parent
build exactly the same object from it.

    {"call": "torchvision.models.resnet:ResNet",
     "args": [{"object": "torchvision.models.resnet:Bottleneck"}, [3, 4, 23, 3]],
     "width_per_group": 4}

A recipe is a table with `call` (the callable, "module:attribute"), optional `args` (positional
arguments) and keyword arguments. An argument is plain data (numbers, strings, booleans, lists,
tables), another recipe (a table with `call`), or a library object itself, uncalled, as
{"object": "module:attribute"} (a block class handed to a network's constructor). A plain table
argument therefore has no `call` key. Keyword arguments are evaluated in sorted order, so
that a recipe read back from JSON with sorted keys builds the same object from the same seed.

Names are looked up under LIBRARIES only, through public names (no part starting with "_"),
and what they name must live there too: a recipe names library code and reaches nothing else.

An assignment may list recipes its checks build in `[checks] prebuild` (grader/editions/prebuild.py):
the warm sandbox server builds them once, before it forks anything (grader/sandbox/warm.py), and
every process started from it (sandbox children, batch workers, the grader's helper) copies that
object (`pristine`, `fresh`) instead of building its own: a tenth of the time, and the tensors'
pages are shared, not duplicated in each process. Only a speed-up: a recipe the server did not
build is built where it is needed, to the same object.
"""

from __future__ import annotations

import collections
import copy
import importlib
import inspect
import json

LIBRARIES = ("torch", "torchvision")
CALL, ARGS, OBJECT = "call", "args", "object"


class RecipeError(ValueError):
    """A recipe that does not name library code, or has the wrong form."""


def library_object(name: str):
    """The object "module:attribute" names, under LIBRARIES only."""
    if not isinstance(name, str) or name.count(":") != 1:
        raise RecipeError(f"{name!r} is not a library name of the form module:attribute")
    module_name, attr = name.split(":")
    parts = module_name.split(".") + [attr]
    if parts[0] not in LIBRARIES:
        raise RecipeError(f"{name!r} is not under {' or '.join(LIBRARIES)}")
    if not all(p.isidentifier() and not p.startswith("_") for p in parts):
        raise RecipeError(f"{name!r} is not a public library name")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"{name!r} names nothing ({exc})") from None
    home = found.__name__ if inspect.ismodule(found) else getattr(found, "__module__", None)
    if not isinstance(home, str) or home.split(".")[0] not in LIBRARIES:
        raise RecipeError(f"{name!r} reaches outside {' and '.join(LIBRARIES)}")
    return found


def as_recipe(factory, kwargs: dict | None = None) -> dict:
    """A recipe from what a build request names: a recipe (with `kwargs` added to its top
    call) or "module:attribute" called with `kwargs`."""
    if isinstance(factory, dict):
        return {**factory, **(kwargs or {})}
    return {CALL: factory, **(kwargs or {})}


def build(recipe: dict):
    """Evaluate a recipe (the caller seeds torch's generator first: initial weights are drawn
    in evaluation order)."""
    if not isinstance(recipe, dict) or not isinstance(recipe.get(CALL), str):
        raise RecipeError(f"a recipe is a table with a `{CALL}` name, not {type(recipe).__name__}")
    function = library_object(recipe[CALL])
    if not callable(function):
        raise RecipeError(f"{recipe[CALL]!r} cannot be called")
    args = recipe.get(ARGS, [])
    if not isinstance(args, list):
        raise RecipeError(f"`{ARGS}` of {recipe[CALL]} must be a list")
    positional = [_value(a) for a in args]
    keywords = {k: _value(recipe[k]) for k in sorted(recipe) if k not in (CALL, ARGS)}
    return function(*positional, **keywords)


# (recipe key, seed) -> (the object, torch's random state right after building it)
_PREBUILT: dict[tuple[str, int], tuple[object, object]] = {}


def prebuild(recipe_list: list, seed: int = 0) -> None:
    """Build each recipe from `seed`, on one thread, and keep it for `pristine` and `fresh`
    (the warm server, before it forks). A recipe that does not build is left to the process
    that needs it, which then reports why."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # no thread pool in a process that then forks
    try:
        for recipe in recipe_list:
            try:
                torch.manual_seed(seed)
                built = build(recipe)
            except Exception:
                continue
            _PREBUILT[(key(recipe), seed)] = (built, torch.get_rng_state())
    finally:
        torch.set_num_threads(threads)


def pristine(recipe: dict, seed: int = 0):
    """The object `recipe` builds after torch.manual_seed(seed), to be copied, never changed:
    the prebuilt one when there is one, else built now. Either way torch's random state is
    left as building it leaves it."""
    prebuilt = _PREBUILT.get((key(recipe), seed))
    import torch

    if prebuilt is None:
        torch.manual_seed(seed)
        return build(recipe)
    built, state = prebuilt
    torch.set_rng_state(state)
    return built


def fresh(recipe: dict, seed: int = 0):
    """A new object, as `recipe` builds it after torch.manual_seed(seed) (a copy of the
    prebuilt one when there is one), torch's random state left as building it leaves it."""
    if (key(recipe), seed) in _PREBUILT:
        return copy_of(pristine(recipe, seed))
    return pristine(recipe, seed)


def copy_of(original):
    """A deep copy of `original` (a pristine object) whose parameters and buffers share their
    bytes with the original's until either side writes to them: torch's copy-on-write clones
    (torch._lazy_clone). Whatever the copy's user writes (an optimizer step, batch norm's
    running statistics, a mutant training the frozen backbone) first gets a copy of its own,
    so the original stays pristine for the next copy, as with a plain deep copy; what nobody
    writes (PA2's frozen stand-in, 86 MB) is neither copied nor held twice. A copy took 0.07 s,
    now 0.02 s. Tensors that share storage with each other, carry a gradient or attributes of
    their own, or live off the CPU are deep-copied as before, and so is everything where torch
    has no lazy clone."""
    import torch

    lazy_clone = getattr(torch, "_lazy_clone", None)
    if lazy_clone is None or not isinstance(original, torch.nn.Module):
        return copy.deepcopy(original)
    tensors = {}
    for module in original.modules():
        for table in (module._parameters, module._buffers):
            for value in table.values():
                if value is not None:
                    tensors[id(value)] = value
    storage = {key: t.untyped_storage()._cdata for key, t in tensors.items()}
    users = collections.Counter(storage.values())
    memo: dict = {}
    for key, value in tensors.items():
        if (
            type(value) not in (torch.Tensor, torch.nn.Parameter)
            or value.device.type != "cpu"
            or value.grad is not None
            or value.__dict__
            or users[storage[key]] > 1
        ):
            continue
        clone = lazy_clone(value.detach())
        if isinstance(value, torch.nn.Parameter):
            clone = torch.nn.Parameter(clone, requires_grad=value.requires_grad)
        memo[key] = clone
    memo[id(memo)] = list(tensors.values())  # deepcopy's rule: keep what the memo names alive
    return copy.deepcopy(original, memo)


def _value(value):
    if isinstance(value, dict):
        if CALL in value:
            return build(value)
        if set(value) == {OBJECT}:
            return library_object(value[OBJECT])
        return {k: _value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise RecipeError(f"a recipe holds only data, recipes and library objects, not {type(value).__name__}")


def key(recipe: dict) -> str:
    """The recipe as canonical text: equal recipes, equal keys (a cache key, hashable)."""
    return json.dumps(recipe, sort_keys=True, separators=(",", ":"))


def label(factory) -> str:
    """How feedback names what a recipe builds: its outermost callable's name."""
    name = factory.get(CALL, "") if isinstance(factory, dict) else str(factory)
    return name.split(":")[-1]
