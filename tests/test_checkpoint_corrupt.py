"""A checkpoint file cut short gives one error naming the file, not a library traceback."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tdn.checkpoint_io import CheckpointError, read_state_dict


def test_a_truncated_safetensors_file_is_one_clear_error(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.randn(1000)}, str(path), metadata={"arch": "tdn_resnet50"})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors.*truncated or corrupt"):
        read_state_dict(path)
