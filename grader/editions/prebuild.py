"""Which library objects the warm sandbox server builds before it forks anything: every
installed assignment's `[checks] prebuild`, a list of dotted paths to recipe tables in its
own data (grader/engine/recipes.py), e.g. `prebuild = ["finetune.model"]` for the model its
fine-tuning checks hand to student code and rebuild in the grader's helper.

Read straight from the TOML files, without loading an edition: the server's start waits for
this (a few milliseconds; loading every edition takes a fifth of a second). An edition's own
table wins whole over its family's (loading merges the two key by key). A mistake here costs
only speed: a recipe the server did not build is built where it is needed, and the edition's
real loading reports what is wrong with its files."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from grader.editions.roots import data_root

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


def prebuild_recipes() -> list[dict]:
    """The distinct recipes every installed edition asks to prebuild, in a stable order."""
    root = data_root("assignments")
    if root is None:
        return []
    found: dict[str, dict] = {}
    for edition_file in sorted(root.glob("*/assignment.toml")):
        edition = _read(edition_file)
        family_name = edition.get("family")
        family = _read(root / family_name / "family.toml") if isinstance(family_name, str) else {}
        paths = _lookup(edition, "checks.prebuild") or _lookup(family, "checks.prebuild") or []
        for dotted in paths if isinstance(paths, list) else []:
            recipe = _lookup(edition, dotted) or _lookup(family, dotted)
            if isinstance(recipe, dict):
                found.setdefault(json.dumps(recipe, sort_keys=True), recipe)
    return list(found.values())


@functools.cache
def _read(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _lookup(data: dict, dotted) -> object:
    if not isinstance(dotted, str):
        return None
    for key in dotted.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
