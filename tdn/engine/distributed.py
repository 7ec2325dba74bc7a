"""Process-group setup and the few collectives the engine needs.

Launch with ``torchrun --nproc-per-node=K -m tdn.cli train ...`` (or ``torchrun ... $(which
tdn) train``): torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous
address; a plain ``tdn train`` runs as a single process. NCCL is used on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this rank's GPU when CUDA is available, else CPU; ``"cuda"`` -> this
    rank's GPU; ``"cpu"``, ``"cuda:N"`` as written. A device this machine does not have is
    a ValueError naming ``--device``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {device!r} is not a device: use auto, cpu, cuda or "
                         f"cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise ValueError(f"--device {device!r}: only auto, cpu, cuda and cuda:N are supported")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: CUDA is not available on this machine (use "
                         f"--device cpu)")
    count = torch.cuda.device_count()
    if resolved.index is None:
        return torch.device("cuda", local_rank % count)
    if resolved.index >= count:
        raise ValueError(f"--device {device!r}: this machine has {count} GPU(s), "
                         f"cuda:0..cuda:{count - 1}")
    return resolved


def setup_distributed(device: str = "auto", timeout_minutes: float = 30) -> DistributedContext:
    """Join the process group described by torchrun's environment, if there is one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistributedContext(rank, world_size, local_rank, resolved)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum of ``values`` over ranks (float64 on the context's device, returned on CPU)."""
    tensor = values.detach().to(device=context.device, dtype=torch.float64)
    if context.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def all_ranks_true(flag: bool, context: DistributedContext) -> bool:
    """Whether ``flag`` holds on every rank (a MIN all-reduce)."""
    if not context.is_distributed:
        return flag
    tensor = torch.tensor([1 if flag else 0], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return bool(tensor.item())


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not context.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()


def average_gradients(module: torch.nn.Module, context: DistributedContext) -> None:
    """Average ``.grad`` over ranks outside DDP's hooks (for a step whose last backward was
    skipped). Parameters without a gradient contribute zeros."""
    if not context.is_distributed:
        return
    for parameter in module.parameters():
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad.div_(context.world_size)
