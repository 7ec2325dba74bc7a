"""Comparing an exported model's logits with PyTorch's on the same clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# float32 logits of an exported model against PyTorch's, relative to their largest magnitude
TOLERANCE = 1e-4


@dataclass(frozen=True)
class Agreement:
    """How closely a runtime reproduced PyTorch's logits on one random clip."""

    runtime: str
    batch: int
    relative_error: float  # max |exported - torch| / max |torch|

    @property
    def ok(self) -> bool:
        return self.relative_error <= TOLERANCE

    def __str__(self) -> str:
        verdict = "ok" if self.ok else f"ABOVE the tolerance {TOLERANCE:g}"
        return (f"{self.runtime} vs PyTorch (float32, batch {self.batch}): max relative "
                f"difference of the logits {self.relative_error:.2e} ({verdict})")


def relative_error(actual, expected) -> float:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"the exported model returned shape {actual.shape}, PyTorch "
                         f"{expected.shape}")
    scale = max(float(np.abs(expected).max()), np.finfo(np.float32).tiny)
    return float(np.abs(actual - expected).max()) / scale


def compare(runtime: str, actual, expected) -> Agreement:
    return Agreement(runtime, int(np.asarray(expected).shape[0]),
                     relative_error(actual, expected))
