"""Data-parallel helpers: who am I (rank), averaging losses across processes, gathering predictions in row order.

Everything here is a no-op in a single process, so the Learner calls it unconditionally. Under
``torchrun --nproc_per_node N`` the process group is created by :func:`init_from_env` (NCCL on GPUs,
gloo on CPUs) and each rank trains on its share of every global batch.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only rank 0 writes files and draws progress bars."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE...); False when not under torchrun."""
    if is_distributed():
        return True
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return False
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")
    return True


def shutdown() -> None:
    """Leave the process group once every rank is done: a barrier first, so no rank tears its connections down
    while another still talks over them (gloo then aborts the process: "terminate called without an active
    exception"). A no-op outside torchrun."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


def mean_across_ranks(values: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all ranks (each rank holds the loss of its equal share of the global batch)."""
    if not is_distributed():
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world_size()


def batch_share(batch: np.ndarray) -> tuple[np.ndarray, bool]:
    """This rank's rows of a global batch: every ``world``-th row starting at ``rank`` (so N processes together see
    exactly the batch one process would). A batch with fewer rows than ranks leaves some ranks nothing; they get
    the batch's first row again, flagged as padding (``True``), so every rank still takes the step."""
    if not is_distributed():
        return batch, False
    share = batch[rank()::world_size()]
    return (share, False) if len(share) else (batch[:1], True)


def rows_of_batches(batches) -> np.ndarray:
    """What :func:`loader_rows` wants from a loader that shards with :func:`batch_share`: this rank's positions,
    batch after batch, with ``-1`` where a row is padding."""
    parts = []
    for batch in batches:
        share, padded = batch_share(np.asarray(batch))
        parts.append(np.full(len(share), -1, dtype=np.int64) if padded else share.astype(np.int64))
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def loader_rows(loader) -> np.ndarray | None:
    """Where this rank's predictions go, in the order its (unshuffled) loader yields them: positions in the order
    one process would yield the rows (for a loader that does not reorder, the row ids), ``-1`` for padding;
    None when the loader does not say."""
    if hasattr(loader, "rows"):
        return np.asarray(loader.rows())
    sampler = getattr(loader, "sampler", None)
    if sampler is not None and isinstance(sampler, torch.utils.data.distributed.DistributedSampler):
        return np.asarray(list(iter(sampler)))
    return None


def gather_in_row_order(rows: np.ndarray, *arrays: np.ndarray | None) -> tuple:
    """Collect every rank's (rows, arrays) and return the arrays for all rows, sorted by row id, padding dropped:
    rows marked ``-1`` and repeated rows (a DistributedSampler pads the last ranks with rows seen before)."""
    if not is_distributed():
        return arrays
    rows = np.asarray(rows)
    for k, array in enumerate(arrays):
        if array is not None and len(array) != len(rows):
            raise ValueError(f"array {k} has {len(array)} rows but the loader says this rank yields {len(rows)}: "
                             "predict over the loader once, from its first batch to its last")
    parts = [None] * world_size()
    dist.all_gather_object(parts, (rows, arrays))
    all_rows = np.concatenate([p[0] for p in parts])
    real = np.flatnonzero(all_rows >= 0)
    _, first = np.unique(all_rows[real], return_index=True)  # sorted unique row ids, first occurrence of each
    keep = real[first]
    gathered = []
    for k in range(len(arrays)):
        if arrays[k] is None:
            gathered.append(None)
        else:
            gathered.append(np.concatenate([p[1][k] for p in parts])[keep])
    return tuple(gathered)
