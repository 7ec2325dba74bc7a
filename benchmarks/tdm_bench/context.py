"""What every section needs: the device, the sizes, where rows go, and the progress bar."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .profiles import Profile
from .results import Results

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class RunContext:
    device: torch.device
    profile: Profile
    dtypes: list[torch.dtype]
    segments: int
    results: Results
    fused_backends: list[str]
    rotate_cap_bytes: int
    channels_last: bool = False             # whole-model section in channels_last
    copy_bandwidth: float | None = None     # bytes/s, measured once per run
    progress: object = None                 # a tqdm bar (or None)
    messages: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        """A line above the progress bar, kept for the end-of-run summary too."""
        self.messages.append(message)
        if self.progress is not None:
            self.progress.write(message)
        else:
            print(message)

    def advance(self, label: str, steps: int = 1) -> None:
        if self.progress is not None:
            self.progress.set_postfix_str(label[:60], refresh=False)
            self.progress.update(steps)
