"""Helpers shared by the model, checkpoint and FLOPs tests."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

import pytest

# The authors' checkpoint key lists (docs/math.md §8), kept with the tests.
_KEY_LISTS = Path(__file__).resolve().parent / "data" / "reference"
REFERENCE_DIR = _KEY_LISTS if _KEY_LISTS.is_dir() else None


def official_key_shapes(depth: int) -> dict[str, tuple[int, ...]]:
    """The authors' checkpoint keys (with 'module.' prefixes) and shapes, from the key lists."""
    if REFERENCE_DIR is None:
        pytest.skip("the authors' key lists (official_tdn_resnet*_keys.txt) are not available")
    shapes = {}
    path = REFERENCE_DIR / f"official_tdn_resnet{depth}_keys.txt"
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")
        shapes[key] = tuple(ast.literal_eval(shape))
    return shapes


def official_state_dict(depth: int, num_classes: int | None = None, seed: int = 0,
                        prefix: str = "module.base_model.") -> dict[str, torch.Tensor]:
    """A random state dict in the authors' layout; ``prefix`` replaces 'module.base_model.'
    (and the classifier keeps whatever precedes 'new_fc.' in the same way)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_key_shapes(depth).items():
        if num_classes is not None and ".new_fc." in "." + key:
            shape = (num_classes,) + shape[1:]
        if key.endswith("num_batches_tracked"):
            value = torch.tensor(7)
        elif key.endswith("running_var"):
            value = torch.rand(shape, generator=gen) + 0.5
        else:
            value = torch.randn(shape, generator=gen)
        if key.startswith("module.base_model."):
            key = prefix + key[len("module.base_model."):]
        elif key.startswith("module.new_fc."):
            head = prefix[:-len("base_model.")] if prefix.endswith("base_model.") else ""
            key = head + key[len("module."):]
        state[key] = value
    return state
