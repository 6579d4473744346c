"""U-Net parts: a segmentation_models_pytorch U-Net on a timm encoder (``features_only``, so the classifier's
weights file serves), its loss, flip augmentation on tensor batches, and flip-TTA prediction at the mask's size."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kitbox.errors import InputError
from kitbox.training.sampling import TensorLoader
from kitbox.training.tasks import Task
from kitbox.vision.models import _ported_norm, locate_weights, no_weights_message


class UNet(nn.Module):
    """``smp.Unet`` with a timm encoder, fed uint8 images (batch, 3, H, W): it scales them by the encoder's own
    mean/std, so loaders move bytes, not floats. ``layer_groups``: the encoder, then decoder and mask head."""

    def __init__(self, arch: str, weights: str | Path | None = None, pretrained: bool = True,
                 download: bool = False, classes: int = 1):
        super().__init__()
        import segmentation_models_pytorch as smp

        overlay, self.weights_source = None, "random (from scratch)"
        if pretrained:
            found = locate_weights(arch, weights)
            if found is None and not download:
                raise InputError(no_weights_message(arch))
            if found is not None:
                overlay = dict(file=str(found.path), **_ported_norm(arch, found.path))
                self.weights_source = found.source
            else:
                self.weights_source = "downloaded from the hub"
        kwargs = {"pretrained_cfg_overlay": overlay} if overlay else {}
        with _timm_quiet():  # timm lists the classifier keys features_only drops: expected, and not the user's problem
            self.net = smp.Unet(f"tu-{arch}", encoder_weights=True if pretrained else None, classes=classes,
                                **kwargs)
        cfg = self.net.encoder.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg.get("mean", (0.485, 0.456, 0.406))).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(cfg.get("std", (0.229, 0.224, 0.225))).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.float() - self.mean) / self.std)

    def layer_groups(self) -> list[nn.Module]:
        return [self.net.encoder, nn.ModuleList([self.net.decoder, self.net.segmentation_head])]


@contextmanager
def _timm_quiet():
    log = logging.getLogger("timm")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


class MaskTask(Task):
    """One logit per pixel (and class): BCE plus soft Dice (``dice_weight``), the pair Kaggle's segmentation
    winners train with; decodes to pixel probabilities of shape (batch, H, W), or (batch, classes, H, W) when
    ``classes`` > 1 (one sigmoid per class, each with its own soft Dice)."""

    def __init__(self, dice_weight: float = 1.0, classes: int = 1):
        super().__init__("binary")
        self.dice_weight, self.classes = dice_weight, classes

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per = 2 if self.classes > 1 else 1  # Dice per (image, class) pair, or per image
        logit, target = out.float().flatten(per), target.float().flatten(per)
        bce = F.binary_cross_entropy_with_logits(logit, target)
        if not self.dice_weight:
            return bce
        p = torch.sigmoid(logit)
        soft_dice = (2 * (p * target).sum(-1) + 1) / (p.sum(-1) + target.sum(-1) + 1)
        return bce + self.dice_weight * (1 - soft_dice.mean())

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float() if self.classes > 1 else out.float()[:, 0])


class FlipLoader:
    """A shuffled :class:`TensorLoader` of (image, mask) batches, each image flipped left-right and up-down at
    random (the mask with it), drawn from ``seed``: the same seed gives the same batches."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, batch_size: int, seed: int):
        self.loader = TensorLoader(images, masks, batch_size=batch_size, shuffle=True, seed=seed)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for (x,), y in self.loader:
            x, y = x.clone(), y.clone()  # the loader's rows may be views of the held tensors
            for dim in (-1, -2):
                flip = torch.rand(len(x), generator=self.generator) < 0.5
                x[flip], y[flip] = x[flip].flip(dim), y[flip].flip(dim)
            yield (x,), y


def image_tensor(paths, size: int) -> torch.Tensor:
    """The images as one uint8 tensor (n, 3, size, size)."""
    from kitbox.vision.data import read_image
    import cv2

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        out[i] = cv2.resize(read_image(Path(p)), (size, size), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def mask_tensor(masks: np.ndarray, size: int) -> torch.Tensor:
    """(n, H, W) 0/1 masks as floats at (n, 1, size, size), area-averaged: a soft target where resizing blurs;
    (n, classes, H, W) masks at (n, classes, size, size)."""
    m = torch.from_numpy(np.asarray(masks, np.float32))
    m = m if m.ndim == 4 else m[:, None]
    return F.interpolate(m, size=(size, size), mode="area") if m.shape[-2:] != (size, size) else m


def predict_masks(learn, images: torch.Tensor, shape: tuple[int, int], tta: bool, bs: int = 32) -> np.ndarray:
    """Pixel probabilities (n, *shape), or (n, classes, *shape): the plain pass, averaged with the left-right
    mirrored one when ``tta``, resized (bilinear) to the competition's mask shape."""
    passes = [learn.predict(TensorLoader(images, batch_size=bs, has_target=False))]
    if tta:
        flipped = learn.predict(TensorLoader(images.flip(-1), batch_size=bs, has_target=False))
        passes.append(flipped[..., ::-1])
    p = torch.from_numpy(np.ascontiguousarray(np.mean(passes, axis=0)))
    single = p.ndim == 3
    p = p[:, None] if single else p
    if p.shape[-2:] != tuple(shape):
        p = F.interpolate(p, size=tuple(shape), mode="bilinear", align_corners=False)
    return (p[:, 0] if single else p).numpy().astype(np.float32)
