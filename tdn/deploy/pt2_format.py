"""Writing an exported program as a ``torch.export`` archive or an AOTInductor package.

Both keep the fused operators as ``torch.ops.tdn_ops.*`` calls: loading them needs
``import tdn_ops`` (which registers the operators) before ``torch.export.load`` or
``torch._inductor.aoti_load_package``. A program traced from the reference decomposition holds
only ATen operators and loads with torch alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..fileio import atomic_write


def write_pt2(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    def write(temporary: str) -> None:
        # The archive writer wants its own suffix on the name.
        torch.export.save(program, temporary + ".pt2")
        os.replace(temporary + ".pt2", temporary)

    return atomic_write(path, write)


def load_pt2(path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    import tdn_ops  # noqa: F401  (the program may call its operators)

    return torch.export.load(str(path)).module()


def write_aoti(program: torch.export.ExportedProgram, path: str | os.PathLike) -> Path:
    """An AOTInductor package: the program compiled ahead of time to a C++ shared library
    (needs a C++ compiler at export time, not at load time)."""
    from torch._inductor import aoti_compile_and_package

    def write(temporary: str) -> None:
        # The package writer picks its format from the suffix.
        aoti_compile_and_package(program, package_path=temporary + ".pt2")
        os.replace(temporary + ".pt2", temporary)

    return atomic_write(path, write)


def load_aoti(path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    import tdn_ops  # noqa: F401
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))
