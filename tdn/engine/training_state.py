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


# What --resume needs from the file, and the type each entry must have.
REQUIRED_FIELDS = {"epoch": int, "state_dict": dict, "optimizer": dict, "scheduler": dict,
                   "scaler": dict, "rng": list, "history": list, "best_top1": (int, float),
                   "best_epoch": int}


def load_training_state(path: str) -> dict:
    """The training state in ``path``; a missing, truncated or corrupt file, or one that is
    not a training state, raises ValueError (FileNotFoundError) with a one-line message
    naming the file (and the field)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad pickle, foreign objects: many exception types
        raise ValueError(f"cannot read the training checkpoint {path} ({type(e).__name__}: "
                         f"{_first_line(e)}); the file is truncated or corrupt: resume from "
                         f"another checkpoint (e.g. {BEST_NAME}) or start again with "
                         f"--overwrite") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a tdn training checkpoint (for --resume); model "
                         f"checkpoints start a run with --init-from instead")
    for name, kind in REQUIRED_FIELDS.items():
        if name not in state:
            raise ValueError(f"{path}: training checkpoint field {name!r} is missing")
        if not isinstance(state[name], kind) or isinstance(state[name], bool):
            raise ValueError(f"{path}: training checkpoint field {name!r} should be "
                             f"{_kind_name(kind)}, got {type(state[name]).__name__}")
    return state


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no message"


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


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
