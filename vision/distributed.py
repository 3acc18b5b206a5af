"""What the image stage needs of DDP: who writes, how rows are shared out, how they come back.

Lightning's ``ddp`` strategy starts the other ranks by running the same command again, so every
rank runs the whole stage; only global rank 0 writes files (run dir, predictions, metrics,
tracking), the others train and predict their share. Samplers are the stage's own
(``use_distributed_sampler=False``): the training sampler shards itself
(:class:`~isicstack.vision.sampler.BalancedEpochSampler`), evaluation loaders get a
``DistributedSampler`` that pads the last ranks with repeated rows, and predictions are gathered
onto every rank and kept once per row index, so each held-out row is scored exactly once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from isicstack.conditions import launcher_rank


def initialized() -> bool:
    """Whether a process group is up (only inside and after a DDP ``fit``/``predict``)."""
    return dist.is_available() and dist.is_initialized()


def global_rank() -> int:
    """This process's global rank: the process group's, else what the launcher set in the
    environment (read as Lightning reads it: :func:`isicstack.conditions.launcher_rank`)."""
    return dist.get_rank() if initialized() else launcher_rank()


def is_rank_zero() -> bool:
    """True in the one process that writes results (always true without DDP)."""
    return global_rank() == 0


def world_of(trainer: Any) -> tuple[int, int]:
    """``(world_size, global_rank)`` of a Trainer; ``(1, 0)`` for none."""
    if trainer is None:
        return 1, 0
    return int(trainer.world_size), int(trainer.global_rank)


def eval_sampler(dataset: Dataset, trainer: Any) -> DistributedSampler | None:
    """This rank's share of an evaluation set (padded with repeats to equal length, which
    :func:`gather_rows` drops), or None in one process (the plain sequential order)."""
    world, rank = world_of(trainer)
    if world == 1:
        return None
    return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False,
                              drop_last=False)


def all_gather(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    if not initialized() or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_rows(outputs: list[dict[str, torch.Tensor]], n: int) -> dict[str, np.ndarray]:
    """Every rank's ``predict_step`` outputs as arrays over rows 0..n-1 (by ``index``).

    A row predicted twice (a padding repeat) keeps its first prediction; a row no rank
    predicted is an error, never a silent NaN.
    """
    local = {k: torch.cat([o[k] for o in outputs]).numpy() for k in outputs[0]}
    parts = all_gather(local)
    idx = np.concatenate([p["index"] for p in parts])
    rows, first = np.unique(idx, return_index=True)
    if rows.size != n or (n and (rows[0] != 0 or rows[-1] != n - 1)):
        raise RuntimeError(f"prediction covered {rows.size} of {n} rows")
    res: dict[str, np.ndarray] = {}
    for key in (k for k in local if k != "index"):
        vals = np.concatenate([p[key] for p in parts]).astype(np.float64)
        res[key] = np.empty(n)
        res[key][rows] = vals[first]
    return res


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if initialized():
        dist.barrier()
