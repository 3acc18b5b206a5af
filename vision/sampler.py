"""Per-epoch negative undersampling: every positive, plus a fresh random subset of negatives.

With ~1 positive per 1,000 crops, a plain shuffle spends almost every step on easy negatives.
Redrawing the negatives each epoch lets a few short epochs see many different negatives while
keeping the positive share fixed; the draw depends only on ``(seed, epoch)``, so a resumed run
sees the same epochs it would have seen uninterrupted.

Under DDP the sampler shards itself (Lightning's ``DistributedSamplerWrapper`` would not pass
``set_epoch`` on, so every pass would redraw the same negatives): every rank draws the same
epoch order, and global step ``s`` is the slice ``[s*W*B, (s+1)*W*B)`` of it, dealt so that the
ranks get disjoint crops and each its share of the slice's positives (+-1). The union of the
ranks' batches in a step is the global batch a one-process run with batch ``W*B`` draws, so the
configured positive share holds per pass exactly and per step as in one process.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BalancedEpochSampler(Sampler[int]):
    """All positives + ``round(neg_ratio * n_pos)`` negatives drawn anew each epoch, shuffled.

    ``neg_ratio <= 0`` keeps every negative (a plain seeded shuffle). Lightning calls
    :meth:`set_epoch` at the start of each epoch (also when resuming from a checkpoint).
    ``num_replicas > 1``: this rank's share (see the module docstring); ``batch_size`` is the
    per-rank batch the DataLoader cuts, so that shares line up with global steps.
    """

    def __init__(self, targets: Sequence[float] | np.ndarray, neg_ratio: float, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, batch_size: int = 1) -> None:
        y = np.asarray(targets).ravel()
        self.is_pos = y > 0.5
        self.pos = np.flatnonzero(self.is_pos)
        self.neg = np.flatnonzero(~self.is_pos)
        if self.pos.size == 0:
            raise ValueError(
                "BalancedEpochSampler: no positive row in the training set; "
                "check the fold assignment (a fold without positive patients?)"
            )
        if neg_ratio > 0:
            self.n_neg = min(self.neg.size, int(round(neg_ratio * self.pos.size)))
        else:
            self.n_neg = self.neg.size
        if num_replicas < 1 or not 0 <= rank < num_replicas or batch_size < 1:
            raise ValueError(f"BalancedEpochSampler: rank {rank} of {num_replicas} replicas, "
                             f"batch_size {batch_size}")
        self.neg_ratio = neg_ratio
        self.seed = int(seed)
        self.num_replicas, self.rank, self.batch_size = int(num_replicas), int(rank), batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose negative subset and order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """The shuffled row indices of the current epoch, all ranks together (deterministic in
        ``seed, epoch``)."""
        # a (seed, epoch) seed sequence: seed=1/epoch=0 and seed=0/epoch=1 do not collide
        rng = np.random.default_rng((self.seed, self.epoch))
        neg = rng.choice(self.neg, size=self.n_neg, replace=False) if self.n_neg else self.neg[:0]
        idx = np.concatenate([self.pos, neg])
        rng.shuffle(idx)
        return idx

    def rank_indices(self) -> np.ndarray:
        """This rank's indices of the current epoch, in the order its DataLoader batches them.

        The last ``n % W`` indices of the epoch are left out so that every rank has as many
        (a rank with one batch more would wait for the others forever).
        """
        order = self.indices()
        w = self.num_replicas
        if w == 1:
            return order
        order = order[: order.size // w * w]
        parts = []
        for start in range(0, order.size, w * self.batch_size):
            chunk = order[start:start + w * self.batch_size]  # one global step
            # deal positives first, round robin, then negatives: each rank gets its share of
            # the step's positives (+-1); each rank keeps its crops in the epoch's order
            dealt = np.argsort(~self.is_pos[chunk], kind="stable")
            owner = np.empty(chunk.size, np.int64)
            owner[dealt] = np.arange(chunk.size) % w
            parts.append(chunk[owner == self.rank])
        return np.concatenate(parts)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices().tolist())

    def __len__(self) -> int:
        return int(self.pos.size + self.n_neg) // self.num_replicas
