"""Many processes, one run: DistributedDataParallel under torchrun (gloo on the CPU, NCCL on GPUs).

`torchrun --nproc_per_node N -m elbolab train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; `setup` joins
the process group from them. The global batch `train.batch_size` is cut into N × `train.grad_accum`
micro-batches ("slots"); slot k of step n draws its images and its noise from its own stream, seeded
by (seed, n, k) alone. So a run's draws do not depend on which process holds a slot, and N processes
with grad_accum a reproduce one process with grad_accum N·a (the same micro-batches, the same noise,
gradients averaged the same way) to float tolerance; resume works with any number of processes.
Logging, evaluation and checkpoints happen on rank 0.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

if TYPE_CHECKING:
    from elbolab.model import GenerativeModel

from elbolab.errors import ConfigError
from elbolab.model import label_keywords


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process logs, evaluates and writes the run folder."""
        return self.rank == 0


def launched() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes (NCCL for CUDA, gloo for the CPU); one process: nothing to do."""
    world = launched()
    if world.size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def current() -> World:
    """The world of the initialised process group, or one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), launched().local_rank)


def local_device(device: torch.device, world: World) -> torch.device:
    """The device of this process: its own GPU (cuda:LOCAL_RANK) under torchrun, else `device`."""
    if device.type == "cuda" and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def micro_batch(batch_size: int, grad_accum: int, world: World) -> int:
    """Images per micro-batch: the global batch over N processes × grad_accum slots, exactly."""
    slots = world.size * grad_accum
    if batch_size % slots:
        raise ConfigError(
            f"train.batch_size = {batch_size} does not split into {world.size} processes × "
            f"train.grad_accum = {grad_accum} equal micro-batches"
        )
    return batch_size // slots


def slot_seed(seed: int, step: int, slot: int) -> int:
    """The seed of micro-batch `slot` of optimiser step `step`: a hash of the three, in [0, 2⁶³)."""
    digest = hashlib.blake2b(f"{seed}/{step}/{slot}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class Objective(nn.Module):
    """model.loss as a module's forward, so that DistributedDataParallel can hook its backward."""

    def __init__(self, model: GenerativeModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, step: int, total_steps: int, y: Tensor | None = None) -> Tensor:
        return self.model.loss(x, step, total_steps, **label_keywords(self.model, y))


def objective(model: GenerativeModel, world: World, device: torch.device) -> nn.Module:
    """The training objective of `model`, wrapped in DistributedDataParallel when there are several processes."""
    wrapped = Objective(model)
    if world.size == 1:
        return wrapped
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(wrapped, device_ids=ids)


def no_sync(module: nn.Module, last: bool) -> AbstractContextManager[Any]:
    """Skip DDP's gradient all-reduce on every micro-batch but the last of a step."""
    if last or not isinstance(module, nn.parallel.DistributedDataParallel):
        return nullcontext()
    return module.no_sync()


def mean_over(value: Tensor, world: World) -> Tensor:
    """The mean of a tensor over the processes (itself for one)."""
    if world.size == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world.size


def from_main(value: float, world: World, device: torch.device) -> float:
    """Rank 0's value of a float, on every process (the clock that decides the learning rate and the stop)."""
    if world.size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
