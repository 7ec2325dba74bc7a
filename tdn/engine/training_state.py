"""Training state on disk (``tdn train --resume``): read with ``weights_only=True``.

The trainer writes it with :func:`tdn.fileio.atomic_torch_save`.

A training checkpoint is a plain dict (tensors, numbers, strings, lists, dicts only, so the
safe unpickler reads it)::

    format        "tdn-training-state"
    epoch         epochs completed
    step_in_epoch micro-batches of the next epoch already trained (0 at epoch ends)
    partial_metrics  per rank, the loss/accuracy sums of those micro-batches (or None)
    state_dict    the network's parameters and buffers (no DDP ``module.`` prefix); the same
                  key that the authors' checkpoints use, so ``tdn.load_checkpoint`` reads it
    model         {"arch", "num_classes", "num_segments", "dropout", "input_size"}
    metadata      the same as strings, in tdn.checkpoint_io's format (``tdn.load_model`` reads it)
    optimizer, scheduler, scaler   their ``state_dict()``
    rng           one entry per rank: torch CPU / CUDA, Python ``random`` and NumPy states
    history       one dict of metrics per epoch (for the logs and curves)
    best_top1, best_epoch, config, class_names
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

CHECKPOINT_FORMAT = "tdn-training-state"
LAST_NAME = "checkpoint_last.pt"
BEST_NAME = "checkpoint_best.pt"


def load_training_state(path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tdn training checkpoint (for --resume); model-only "
                         f"checkpoints can be used with --init-from instead")
    return state


def capture_rng_state() -> dict:
    """All random generators this process uses, as tensors and plain values."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"],
                         numpy_state["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available():
        saved = state["cuda"]
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)
        else:  # a different GPU count: restore the generator of this process's device
            torch.cuda.set_rng_state(saved[torch.cuda.current_device() % len(saved)])
