"""Which process this is when several train together, and the waits between them.

torchrun, `accelerate launch` and SLURM (through torchrun) start one process per device and tell each its
RANK, LOCAL_RANK and WORLD_SIZE in the environment. Rank 0 (the main process) alone owns the run
directory and the tokenization cache; the others wait at a barrier before reading anything it wrote.
One process (no WORLD_SIZE) is rank 0 of 1, and every wait here returns at once.

    with node_main_first():       # one process per machine tokenizes and stores the cache; then the others read it
        data = prepare_data(...)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


# The Trainer's own ddp_timeout: long enough for rank 0 to tokenize a large dataset while the others wait.
TIMEOUT = timedelta(seconds=1800)


def main_process() -> bool:
    """Under torchrun or accelerate only rank 0 owns the run directory (locks, writes, clears it)."""
    return rank() == 0


def join_process_group() -> None:
    """The process group the Trainer (through accelerate) would create later, created now so that the
    recipe can wait at barriers before the Trainer exists: NCCL on GPUs, gloo on CPUs."""
    if world_size() == 1 or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())  # NCCL collectives run on the current device
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()), timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)


def barrier() -> None:
    if world_size() > 1:
        join_process_group()
        dist.barrier()


@contextmanager
def node_main_first() -> Iterator[None]:
    """The first process of each machine (LOCAL_RANK 0) runs the block first, the others once it has
    finished: for what lives on a machine's own disk, such as the tokenization cache."""
    if local_rank() != 0:
        barrier()
    yield
    if local_rank() == 0:
        barrier()


def any_process(flag: bool) -> bool:
    """True on every process when it is true on any: so that all of them act on a signal at one step."""
    if world_size() == 1:
        return flag
    join_process_group()
    device = torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def my_share(items: list) -> list:
    """This process's share of a list (every world_size-th item); `gather_shares` puts it back in order."""
    return items[rank() :: world_size()]


def gather_shares(share: list, total: int) -> list:
    """Every process's share, back in the original order, on every process."""
    if world_size() == 1:
        return share
    join_process_group()
    shares: list = [None] * world_size()
    dist.all_gather_object(shares, share)
    ordered: list = [None] * total
    for owner, items in enumerate(shares):
        ordered[owner :: world_size()] = items
    return ordered
