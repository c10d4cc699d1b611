"""Files the tool needs at run time: the bundled models, the recipes, the sample data and the default
prices. They ship inside the package (`mambapoc.recipes`, `mambapoc.sample_data`; in a checkout these
are the repository's top-level `recipes/` and `sample_data/`), and are found through importlib.resources,
so a wheel installed anywhere works like a checkout.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from mambapoc.errors import UserError

RECIPES = "mambapoc.recipes"
SAMPLE_DATA = "mambapoc.sample_data"
PRICING = "pricing.yaml"


def _directory(package: str) -> Path:
    found = resources.files(package)
    if not isinstance(found, Path):
        # Models are memory-mapped and recipes name sibling folders: both need real files on disk.
        raise UserError(f"{package} is not installed as plain files (zip imports are not supported)")
    return found


def recipes_dir() -> Path:
    return _directory(RECIPES)


def sample_data_dir() -> Path:
    return _directory(SAMPLE_DATA)


def models_dir() -> Path:
    """Where `bundled:NAME` models live; `$MAMBAPOC_MODELS_DIR` points elsewhere (e.g. a shared mount)."""
    override = os.environ.get("MAMBAPOC_MODELS_DIR")
    return Path(override) if override else sample_data_dir() / "models"


def default_pricing() -> Path:
    return recipes_dir() / PRICING


def bundled_recipes() -> dict[str, Path]:
    """Recipe name (file stem) -> path, for every recipe shipped with the tool."""
    return {p.stem: p for p in sorted(recipes_dir().glob("*.yaml")) if p.name != PRICING}


def find_recipe(path: str | os.PathLike) -> Path:
    """`path` when it exists; else the bundled recipe it names (`recipes/demo.yaml`, `demo.yaml` or `demo`),
    so the commands in the docs work from any directory once the tool is installed."""
    given = Path(path)
    if given.exists():
        return given
    bundled = bundled_recipes()
    if given.parent in (Path("."), Path("recipes")) and given.suffix in ("", ".yaml"):
        match = bundled.get(given.stem)
        if match is not None:
            return match
    raise UserError(f"recipe {path} does not exist (bundled recipes: {', '.join(bundled) or 'none'})")
