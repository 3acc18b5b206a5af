"""Per-epoch negative undersampling: every positive, plus a fresh random subset of negatives.

With ~1 positive per 1,000 crops, a plain shuffle spends almost every step on easy negatives.
Redrawing the negatives each epoch lets a few short epochs see many different negatives while
keeping the positive share fixed; the draw depends only on ``(seed, epoch)``, so a resumed run
sees the same epochs it would have seen uninterrupted.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class BalancedEpochSampler(Sampler[int]):
    """All positives + ``round(neg_ratio * n_pos)`` negatives drawn anew each epoch, shuffled.

    ``neg_ratio <= 0`` keeps every negative (a plain seeded shuffle). Lightning calls
    :meth:`set_epoch` at the start of each epoch (also when resuming from a checkpoint).
    """

    def __init__(self, targets: Sequence[float] | np.ndarray, neg_ratio: float, seed: int = 0):
        y = np.asarray(targets).ravel()
        self.pos = np.flatnonzero(y > 0.5)
        self.neg = np.flatnonzero(y <= 0.5)
        if self.pos.size == 0:
            raise ValueError(
                "BalancedEpochSampler: no positive row in the training set; "
                "check the fold assignment (a fold without positive patients?)"
            )
        if neg_ratio > 0:
            self.n_neg = min(self.neg.size, int(round(neg_ratio * self.pos.size)))
        else:
            self.n_neg = self.neg.size
        self.neg_ratio = neg_ratio
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose negative subset and order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """The shuffled row indices of the current epoch (deterministic in ``seed, epoch``)."""
        # a (seed, epoch) seed sequence: seed=1/epoch=0 and seed=0/epoch=1 do not collide
        rng = np.random.default_rng((self.seed, self.epoch))
        neg = rng.choice(self.neg, size=self.n_neg, replace=False) if self.n_neg else self.neg[:0]
        idx = np.concatenate([self.pos, neg])
        rng.shuffle(idx)
        return idx

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return int(self.pos.size + self.n_neg)
