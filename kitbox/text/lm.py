"""Language-model evaluation (perplexity, next-token accuracy) and saving / loading encoder weights."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate_lm(model: torch.nn.Module, loader) -> dict[str, float]:
    """Mean cross-entropy, perplexity and next-token accuracy over ``loader``'s (x, y) batches, streamed
    (a batch's logits are never kept, so a large vocabulary costs no memory)."""
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct, count = 0.0, 0, 0
    for x, y in loader:
        logits = model(x.to(device))
        y = y.to(device)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        count += y.numel()
    if count == 0:
        raise ValueError("evaluate_lm: the loader yielded no tokens")
    loss = total_loss / count
    return {"loss": loss, "perplexity": math.exp(loss), "accuracy": correct / count, "tokens": count}


def save_state(state: dict[str, torch.Tensor], path) -> Path:
    """Write a state dict as safetensors, atomically (a half-written file is never left under ``path``)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
    return path


def load_state(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
