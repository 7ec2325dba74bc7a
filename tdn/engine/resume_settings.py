"""What a resumed run follows: the settings of the command line against those of the
checkpoint it continues.

A resume restores the optimiser and the schedule, so the settings they carry come from the
checkpoint whatever the command line says; the weights come from the checkpoint too, so the
settings that would initialise them do nothing. Each such flag that differs is reported, and
the settings returned (what ``config.json`` records) are the ones the run really follows.
Inside an epoch, the settings that decide which items come next must not change at all: the
run refuses them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .train_config import TrainConfig, flag

# Carried by the restored optimiser (lr, momentum, weight decay, per-group factors) and
# schedule (milestones, factor, warm-up): the checkpoint's values stay in force.
# bn_mode and fc_lr5 decide the optimiser's parameter groups, which must match the saved ones.
FROM_CHECKPOINT = ("lr", "scale_lr", "lr_reference_batch", "momentum", "weight_decay", "fc_lr5",
                   "bn_mode", "lr_steps", "lr_gamma", "warmup_epochs")
# What would initialise the weights, which the checkpoint replaces.
UNUSED_ON_RESUME = ("pretrained", "init_from", "backbone_only")
# What decides the order and grouping of the items left in an epoch.
FIXED_INSIDE_AN_EPOCH = ("batch_size", "accumulate", "seed")


def reconcile(config: TrainConfig, recorded: dict[str, Any] | None, mid_epoch: bool,
              path: str) -> tuple[TrainConfig, list[str]]:
    """(the settings the resumed run follows, one message per flag it ignores or overrides).

    ``recorded`` is the checkpoint's ``config`` entry (:meth:`TrainConfig.as_dict`), or None
    for files that have none (then nothing can be compared). Raises ValueError when a setting
    of :data:`FIXED_INSIDE_AN_EPOCH` changes in the middle of an epoch.
    """
    notes = [f"{flag(name)} is ignored: the weights come from {path}"
             for name in UNUSED_ON_RESUME if getattr(config, name)]
    if recorded is None:
        return config, notes
    given = config.as_dict()
    if mid_epoch:
        for name in FIXED_INSIDE_AN_EPOCH:
            if name in recorded and recorded[name] != given[name]:
                raise ValueError(
                    f"{path} was saved in the middle of an epoch with {flag(name)} "
                    f"{recorded[name]}; resuming it with {flag(name)} {given[name]} would skip "
                    f"or repeat items of that epoch: resume with {flag(name)} "
                    f"{recorded[name]} (it may change at an epoch boundary)")
    kept = {}
    for name in FROM_CHECKPOINT:
        if name in recorded and recorded[name] != given[name]:
            notes.append(f"{flag(name)} {_spelled(given[name])} is ignored: the resumed "
                         f"optimiser and schedule keep the checkpoint's "
                         f"{_spelled(recorded[name])}")
            kept[name] = _as_config_value(name, recorded[name])
    return dataclasses.replace(config, **kept), notes


def _spelled(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _as_config_value(name: str, value: Any) -> Any:
    """A value of :meth:`TrainConfig.as_dict` back in the type TrainConfig holds."""
    if name == "lr_steps":
        return tuple(value)
    return value
