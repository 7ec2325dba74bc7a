"""The run folder (``tdn train --output``): who may write into it, and clearing what a killed
writer left there.

A folder that holds a previous run is never replaced silently: the run continues it
(``--resume``), or ``--overwrite`` removes the previous run's files first, so that its
checkpoints and logs never mix with the new run's.
"""

from __future__ import annotations

import logging
import os

from ..fileio import remove_stale_temporaries
from . import training_state

log = logging.getLogger("tdn")

# The files a run writes (train.log is appended to, never replaced, so it is not listed).
RUN_FILES = (training_state.LAST_NAME, training_state.BEST_NAME, "log.json", "log.csv",
             "curves.png", "config.json")
# Those that show the folder holds a run's work.
PROGRESS_FILES = (training_state.LAST_NAME, training_state.BEST_NAME, "log.json")


def previous_run_files(output: str) -> list[str]:
    """The files of ``output`` that show a run has trained there."""
    return [name for name in PROGRESS_FILES if os.path.exists(os.path.join(output, name))]


def claim(output: str, resuming: bool, overwrite: bool, resume_requested: bool = False) -> None:
    """Make ``output`` this run's folder: refuse one holding a previous run unless the run
    resumes it or ``overwrite`` is set (then the previous run's files are removed).
    ``resume_requested``: --resume was given but found no checkpoint_last.pt to continue."""
    found = previous_run_files(output)
    if found and not resuming:
        if not overwrite:
            how = (f"it has no {training_state.LAST_NAME} to resume from: resume from one "
                   f"of its files with --resume PATH" if resume_requested else
                   "continue it with --resume")
            raise ValueError(
                f"--output {output} holds a previous run ({', '.join(found)}): {how}, choose "
                f"another --output, or pass --overwrite to replace it")
        for name in RUN_FILES:
            path = os.path.join(output, name)
            if os.path.exists(path):
                os.unlink(path)
        log.warning("--overwrite: removed the previous run's files from %s", output)
    clear_temporaries(output)


def clear_temporaries(output: str) -> list[str]:
    """Delete the half-written temporaries of the run's files that a killed writer (SIGKILL,
    power loss) left in ``output``; call it before this run writes anything there."""
    removed = []
    for name in RUN_FILES:
        removed += remove_stale_temporaries(os.path.join(output, name))
    if removed:
        log.warning("removed %d temporary file(s) left by an interrupted write: %s",
                    len(removed), ", ".join(os.path.basename(p) for p in removed))
    return removed
