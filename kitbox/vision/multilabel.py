"""Multi-label images (Planet Amazon style): real multi-label images made from single digits (two digits side by side
carry both labels), and the per-label thresholds for an F-beta metric (kept in kitbox.metrics, re-exported here)."""
from __future__ import annotations

import numpy as np

from kitbox.metrics import best_thresholds

__all__ = ["best_thresholds", "two_digit_images"]


def two_digit_images(pixels: np.ndarray, labels: np.ndarray, n: int, seed: int = 0,
                     n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of two real digits side by side (H x 2W), labelled 0/1 with both digits (one label when the
    two digits are the same): a genuine multi-label set built from single-label data."""
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(pixels), n), rng.integers(0, len(pixels), n)
    images = np.concatenate([pixels[left], pixels[right]], axis=2)
    targets = np.zeros((n, n_classes), dtype=np.float32)
    targets[np.arange(n), labels[left]] = 1.0
    targets[np.arange(n), labels[right]] = 1.0
    return images, targets
