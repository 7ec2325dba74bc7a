"""Training, evaluation and prediction engine behind ``tdn train / evaluate / predict``."""

from .checkpoint import (BEST_NAME, CHECKPOINT_FORMAT, LAST_NAME, atomic_torch_save,
                         capture_rng_state, load_training_state, restore_rng_state)
from .distributed import DistributedContext, setup_distributed, teardown_distributed
from .evaluator import EvalConfig, average_views, collect_scores, run_evaluation
from .inputs import batch_to_input
from .metrics import ClassificationReport, RunningMetrics, classification_report, topk_correct
from .modelio import load_model_for_inference
from .optim import (BN_MODES, WarmupStepSchedule, apply_batch_norm_mode, build_optimizer,
                    build_scheduler, freeze_batch_norm_parameters, parameter_groups)
from .predictor import Prediction, predict_videos
from .trainer import TrainConfig, run_training

__all__ = [
    "BEST_NAME", "CHECKPOINT_FORMAT", "LAST_NAME", "atomic_torch_save", "capture_rng_state",
    "load_training_state", "restore_rng_state", "DistributedContext", "setup_distributed",
    "teardown_distributed", "EvalConfig", "average_views", "collect_scores", "run_evaluation",
    "batch_to_input", "ClassificationReport", "RunningMetrics", "classification_report",
    "topk_correct", "load_model_for_inference", "BN_MODES", "WarmupStepSchedule",
    "apply_batch_norm_mode", "build_optimizer", "build_scheduler",
    "freeze_batch_norm_parameters", "parameter_groups", "Prediction", "predict_videos",
    "TrainConfig", "run_training",
]
