"""Batches of token ids: length-bucketed padded batches for classifiers, a token stream for language models.

Sequences are padded once into one tensor; a batch is a slice through an index, trimmed to its longest
row, so no per-row Python runs while training. Under torchrun each rank takes every world-th row of each
global batch, as ``kitbox.training.sampling.TensorLoader`` does.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from kitbox.training import distributed
from kitbox.training.sampling import n_batches, require_seed


def pad_sequences(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad at the end into a (n, longest) int64 tensor; also return the lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), max(int(lengths.max()), 1) if len(seqs) else 1), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out, lengths


class BucketLoader:
    """Padded batches of similar length (fastai's "sortish" sampling when shuffling).

    Yields ``((ids, lengths), target)`` with ``mode="lengths"`` (LSTM) or ``((ids, attention_mask), target)``
    with ``mode="mask"`` (transformers); ``(inputs,)`` when there are no targets.
    ``sort=True`` without shuffling orders rows by length for fast prediction: undo it with ``unsort``.

    Under torchrun ``batch_size`` is the global batch: every rank draws the same batches (the same ``seed``) and
    keeps every world-th row of each, trimmed to its own longest row; ``rows()`` says which positions of the
    one-process order this rank predicts, so gathered predictions come back in that order and ``unsort`` applies
    unchanged.
    """

    def __init__(self, seqs: list[list[int]], targets=None, batch_size: int = 32, shuffle: bool = False,
                 seed: int | None = None, pad_id: int = 1, mode: str = "lengths", sort: bool = False,
                 bucket_factor: int = 50):
        if mode not in ("lengths", "mask"):
            raise ValueError(f"BucketLoader mode must be 'lengths' or 'mask', got {mode!r}")
        if not len(seqs):
            raise ValueError("BucketLoader got no sequences")
        self.ids, self.lengths = pad_sequences(seqs, pad_id)
        self.targets = None if targets is None else torch.as_tensor(np.asarray(targets))
        if self.targets is not None and len(self.targets) != len(seqs):
            raise ValueError(f"BucketLoader: {len(seqs)} sequences but {len(self.targets)} targets")
        self.batch_size, self.shuffle, self.mode = batch_size, shuffle, mode
        self.bucket_factor = bucket_factor
        require_seed(shuffle, seed, "BucketLoader")
        self.rng = np.random.default_rng(seed)
        self.order = np.argsort(-self.lengths.numpy(), kind="stable") if sort and not shuffle else None

    def __len__(self) -> int:
        return n_batches(len(self.ids), self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        n, bs = len(self.ids), self.batch_size
        if not self.shuffle:
            idx = self.order if self.order is not None else np.arange(n)
            return [idx[i : i + bs] for i in range(0, n, bs)]
        # shuffle, sort within chunks of bucket_factor batches, then shuffle the batches' order
        idx = self.rng.permutation(n)
        lengths = self.lengths.numpy()
        chunk = bs * self.bucket_factor
        idx = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in np.split(idx, range(chunk, n, chunk))])
        batches = [idx[i : i + bs] for i in range(0, n, bs)]
        return [batches[i] for i in self.rng.permutation(len(batches))]

    def rows(self) -> np.ndarray:
        """Positions (in the order one process yields rows) that this rank yields, ``-1`` marking padding."""
        if self.shuffle:
            raise ValueError("a shuffled BucketLoader has no fixed row order: predict with shuffle=False")
        n, bs = len(self.ids), self.batch_size
        return distributed.rows_of_batches(np.arange(s, min(s + bs, n)) for s in range(0, n, bs))

    def __iter__(self):
        for b in self._batches():
            b, _ = distributed.batch_share(b)
            b = torch.from_numpy(b)
            lengths = self.lengths[b]
            ids = self.ids[b, : int(lengths.max())]
            second = lengths if self.mode == "lengths" else (torch.arange(ids.shape[1]) < lengths[:, None]).long()
            if self.targets is None:
                yield ((ids, second),)
            else:
                yield (ids, second), self.targets[b]

    def unsort(self, preds: np.ndarray) -> np.ndarray:
        """Predictions made in this loader's order -> the original row order."""
        if self.order is None:
            return preds
        out = np.empty_like(preds)
        out[self.order] = preds
        return out


class LMLoader:
    """Language-model batches: all texts (shuffled each epoch) joined into one stream, cut into ``batch_size``
    rows, read ``bptt`` tokens at a time. Yields ``(x, y)`` with ``y`` the next tokens, flattened to match
    the flattened logits of :class:`~kitbox.text.awd_lstm.LanguageModel`."""

    def __init__(self, seqs: list[list[int]], batch_size: int = 64, bptt: int = 70, shuffle: bool = True,
                 seed: int | None = None):
        self.seqs = [torch.as_tensor(s, dtype=torch.long) for s in seqs if len(s)]
        self.n_tokens = sum(len(s) for s in self.seqs)
        if self.n_tokens < batch_size * 2:
            raise ValueError(f"LMLoader: {self.n_tokens} tokens are too few for batch_size={batch_size}")
        self.batch_size, self.bptt, self.shuffle = batch_size, bptt, shuffle
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return math.ceil((self.n_tokens // self.batch_size - 1) / self.bptt)

    def __iter__(self):
        order = self.rng.permutation(len(self.seqs)) if self.shuffle else range(len(self.seqs))
        stream = torch.cat([self.seqs[i] for i in order])
        per_row = len(stream) // self.batch_size
        rows = stream[: per_row * self.batch_size].view(self.batch_size, per_row)
        for i in range(0, per_row - 1, self.bptt):
            n = min(self.bptt, per_row - 1 - i)
            yield rows[:, i : i + n], rows[:, i + 1 : i + 1 + n].reshape(-1)
