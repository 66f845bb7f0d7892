"""Data-parallel training across processes started by `torchrun` (gloo on the CPU, NCCL on GPUs).

Each process computes its share of an optimiser step's samples; gradients and logged sums are added
across processes before the step, so N processes take the same steps as one with the same batch.
Without `torchrun` (WORLD_SIZE unset or 1) every method is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Ranks:
    """This process's place in the group."""

    rank: int = 0
    world: int = 1
    device: str | None = None  # the device this process must use (cuda:LOCAL_RANK), None: as asked

    @property
    def main(self) -> bool:
        """Process 0 validates, logs and writes checkpoints."""
        return self.rank == 0

    def sum_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """Add every trainable parameter's gradient across processes; a parameter without a gradient
        in every process keeps none (so AdamW skips it, as it would in one process)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        params = [p for p in params if p.requires_grad]
        if not params:
            return
        has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        for p, flag in zip(params, has.tolist(), strict=True):
            if flag:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad)

    def sum_values(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        import torch.distributed as dist

        total = torch.tensor(list(values.values()), dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(total)
        return dict(zip(values, total.tolist(), strict=True))

    def any(self, flag: bool) -> bool:
        """True in every process when it is True in any (e.g. out of time: all stop together)."""
        if self.world == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], device=self._comm_device())
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def gather(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Every process's (CPU) tensors, in rank order."""
        if self.world == 1:
            return tensors
        import torch.distributed as dist

        everyone: list[list[torch.Tensor] | None] = [None] * self.world
        dist.all_gather_object(everyone, tensors)
        return [x for part in everyone for x in (part or [])]

    def broadcast_parameters(self, params: list[torch.nn.Parameter]) -> None:
        """Start every process from process 0's weights."""
        if self.world == 1:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for p in params:
                dist.broadcast(p.data, src=0)

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()

    def _comm_device(self) -> torch.device:
        return torch.device(self.device) if self.device else torch.device("cpu")


def start_ranks(device: str | None) -> Ranks:
    """Join the process group `torchrun` set up (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch.distributed as dist

    wanted = device or ("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = torch.device(wanted).type == "cuda"
    chosen = None
    if on_gpu:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        chosen = f"cuda:{local}"
    dist.init_process_group("nccl" if on_gpu else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), chosen)
