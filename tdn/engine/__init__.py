"""Training, evaluation and prediction engine behind ``tdn train / evaluate / predict``.

Names are imported on first use: ``import tdn.engine`` does not pay for torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "tdn.engine.training_state": ["BEST_NAME", "CHECKPOINT_FORMAT", "LAST_NAME",
                                  "capture_rng_state", "load_training_state",
                                  "restore_rng_state"],
    "tdn.engine.distributed": ["DistributedContext", "setup_distributed",
                               "teardown_distributed"],
    "tdn.engine.evaluator": ["EvalConfig", "average_views", "collect_scores", "run_evaluation"],
    "tdn.engine.batches": ["batch_to_input"],
    "tdn.engine.metrics": ["ClassificationReport", "RunningMetrics", "classification_report",
                           "topk_correct"],
    "tdn.engine.modelio": ["load_model_for_inference"],
    "tdn.engine.optim": ["BN_MODES", "WarmupStepSchedule", "apply_batch_norm_mode",
                         "build_optimizer", "build_scheduler", "freeze_batch_norm_parameters",
                         "parameter_groups"],
    "tdn.engine.predictor": ["Prediction", "predict_videos"],
    "tdn.engine.train_config": ["TrainConfig"],
    "tdn.engine.trainer": ["run_training"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tdn.engine' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
