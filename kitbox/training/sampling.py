"""What every loader shares (the image, text and tensor loaders): how many batches an epoch has, the seed a shuffled
loader needs under data parallelism, and an epoch's order drawn from (seed, epoch); each rank's share of a batch
and the rows it yields are :mod:`kitbox.training.distributed`'s ``batch_share`` and ``rows_of_batches``.

And :class:`TensorLoader`, batches as slices of pre-built tensors, the fast path for tabular (and any in-memory)
data: a per-row ``Dataset`` + ``DataLoader`` calls Python once per row and collates; here one shuffled index is
drawn per epoch and each batch is ``tensor[index[i:i+bs]]``, a single gather per tensor.
"""
from __future__ import annotations

import numpy as np
import torch

from kitbox.training import distributed


def n_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Batches of an epoch over ``n`` rows (the short last one counted unless ``drop_last``)."""
    return n // batch_size if drop_last else -(-n // batch_size)


def require_seed(shuffle: bool, seed: int | None, loader: str) -> None:
    """Under data parallelism every rank must draw the same shuffled order, so a shuffled loader needs a seed."""
    if shuffle and seed is None and distributed.is_distributed():
        raise ValueError(f"a shuffled {loader} under data parallelism needs a seed, so every rank draws the same "
                         "order: pass seed=")


def seed_sequence(*values: int) -> np.random.SeedSequence:
    """numpy's seed sequence of several integers (a loader's seed, the epoch, a stream number)."""
    return np.random.SeedSequence([int(v) % 2**63 for v in values])


def epoch_batches(n: int, batch_size: int, shuffle: bool, seed: int, epoch: int, drop_last: bool) -> list[np.ndarray]:
    """The global batches of one epoch, as row ids: a permutation drawn from (seed, epoch) when shuffling, so
    epoch e of seed s is the same order in every run and on every rank."""
    order = np.random.default_rng(seed_sequence(seed, epoch)).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


class TensorLoader:
    """Iterate ``((inputs...), target)`` batches over tensors that share their first dimension.

    ``TensorLoader(x_cat, x_cont, y, batch_size=512, shuffle=True)`` yields ``((x_cat[i], x_cont[i]), y[i])``;
    with ``has_target=False`` every tensor is an input and batches are ``((x_cat[i], x_cont[i]),)``.

    Under data parallelism (torch.distributed initialised) ``batch_size`` is the global batch: every rank draws
    the same shuffled index (same seed) and takes rows ``rank::world_size`` of each batch, so N processes see
    exactly the batches one process would. A last batch with fewer rows than ranks is padded on the ranks left
    without a row (see :func:`kitbox.training.distributed.batch_share`), so no rank steps on an empty batch.
    """

    def __init__(self, *tensors: torch.Tensor, batch_size: int = 512, shuffle: bool = False,
                 drop_last: bool = False, has_target: bool = True, seed: int | None = None):
        if not tensors:
            raise ValueError("TensorLoader needs at least one tensor")
        n = len(tensors[0])
        bad = [i for i, t in enumerate(tensors) if len(t) != n]
        if bad:
            raise ValueError(f"tensors {bad} have {[len(tensors[i]) for i in bad]} rows, tensor 0 has {n}")
        self.tensors, self.n = tensors, n
        self.batch_size, self.shuffle, self.drop_last, self.has_target = batch_size, shuffle, drop_last, has_target
        require_seed(shuffle, seed, "TensorLoader")
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return n_batches(self.n, self.batch_size, self.drop_last)

    def rows(self) -> np.ndarray:
        """The row ids this process yields, in order (all rows in a single process; its share under DDP, ``-1``
        where a rank whose share of the last batch is empty repeats a row to keep in step)."""
        stop = len(self) * self.batch_size if self.drop_last else self.n
        return distributed.rows_of_batches(np.arange(s, min(s + self.batch_size, stop))
                                           for s in range(0, stop, self.batch_size))

    def __iter__(self):
        index = torch.randperm(self.n, generator=self.generator) if self.shuffle else None
        stop = len(self) * self.batch_size if self.drop_last else self.n
        world = distributed.world_size()
        for start in range(0, stop, self.batch_size):
            if index is None and world == 1:  # contiguous slices are views: no copy at all
                batch = [t[start:start + self.batch_size] for t in self.tensors]
            else:
                rows = index[start:start + self.batch_size] if index is not None else torch.arange(start, min(start + self.batch_size, stop))
                rows, _ = distributed.batch_share(rows)
                batch = [t[rows] for t in self.tensors]
            if self.has_target:
                yield tuple(batch[:-1]), batch[-1]
            else:
                yield (tuple(batch),)
