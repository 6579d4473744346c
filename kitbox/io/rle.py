"""Run-length encoded masks, as Kaggle's segmentation competitions write them.

A mask is flattened to one line of pixels and written as ``"start length start length ..."``: 1-indexed starts,
runs in increasing order, the empty string for no mask. Most competitions (TGS Salt, Severstal, SIIM, HuBMAP)
number pixels top to bottom, then left to right: column-major, ``order="F"``; some (Carvana) row by row,
``order="C"``. Decoding checks every run, so a bad RLE is an error naming the run, not a silently wrong mask.
"""
from __future__ import annotations

import numpy as np


class RLEError(ValueError):
    """A run-length encoding that is not one: odd count, a start below 1, runs out of order or past the image."""


def rle_encode(mask, order: str = "F") -> str:
    """``mask`` (any shape, truthy where the object is) as Kaggle's RLE text; ``""`` for an empty mask."""
    pixels = np.asarray(mask).astype(bool).ravel(order=order)
    padded = np.concatenate([[False], pixels, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1]) + 1  # 1-indexed: where each run starts, and one past its end
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{s} {e - s}" for s, e in zip(starts.tolist(), ends.tolist()))


def rle_runs(text, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The (0-indexed starts, lengths) of ``text``, checked against an image of ``n_pixels`` pixels."""
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text).strip()
    if not text:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    try:
        numbers = np.array([int(v) for v in text.split()], dtype=np.int64)
    except ValueError:
        raise RLEError(f"RLE {_short(text)} holds something that is not a whole number") from None
    if len(numbers) % 2:
        raise RLEError(f"RLE {_short(text)} has {len(numbers)} numbers: it must be pairs of start and length")
    starts, lengths = numbers[0::2], numbers[1::2]
    _check_runs(text, starts, lengths, n_pixels)
    return starts - 1, lengths


def _check_runs(text: str, starts: np.ndarray, lengths: np.ndarray, n_pixels: int) -> None:
    for what, bad in (("starts below 1 (starts are 1-indexed)", starts < 1), ("has a length below 1", lengths < 1),
                      (f"runs past the image's {n_pixels} pixels", starts + lengths - 1 > n_pixels)):
        if bad.any():
            i = int(np.argmax(bad))
            raise RLEError(f"RLE {_short(text)}: run {i} ({starts[i]} {lengths[i]}) {what}")
    overlap = starts[1:] < starts[:-1] + lengths[:-1]
    if overlap.any():
        i = int(np.argmax(overlap)) + 1
        raise RLEError(f"RLE {_short(text)}: run {i} ({starts[i]} {lengths[i]}) starts before run {i - 1} ends: "
                       "runs must be in increasing order without overlap")


def rle_decode(text, shape: tuple[int, ...], order: str = "F") -> np.ndarray:
    """The boolean mask of ``shape`` that ``text`` encodes (``""`` or NaN: empty)."""
    n_pixels = int(np.prod(shape))
    starts, lengths = rle_runs(text, n_pixels)
    flat = np.zeros(n_pixels + 1, np.int8)  # +1: the end of a run that reaches the last pixel
    np.add.at(flat, starts, 1)
    np.add.at(flat, starts + lengths, -1)
    return np.cumsum(flat[:-1]).astype(bool).reshape(shape, order=order)


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")
