"""Multi-process training under `torchrun`: process-group set-up from its environment, and collectives.

A single process (no `WORLD_SIZE` in the environment, or 1) needs none of this, and every helper here is a
no-op for it. CUDA ranks use NCCL on their `LOCAL_RANK` device; CPU ranks use gloo.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from titans_cli.model_registry import pick_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def join(device: str = "auto") -> World:
    """This process's place in the run; joins the process group when launched with several ranks."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    where = torch.device(pick_device(device))
    if where.type == "cuda":
        where = torch.device("cuda", local_rank if size > 1 else (where.index or 0))
        torch.cuda.set_device(where)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo", rank=rank, world_size=size)
    return World(rank, size, where)


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean(world: World, values: list[float]) -> list[float]:
    """Element-wise mean over ranks."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=world.device)
    dist.all_reduce(t)
    return (t / world.size).tolist()


def any_rank(world: World, flag: bool) -> bool:
    """True on every rank when it is true on any: ranks must stop at the same step."""
    if not world.distributed:
        return flag
    t = torch.tensor([float(flag)], device=world.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
