"""The default recipe of :class:`kitbox.adapt.bases.SegmentationCompetition`: a U-Net on a pretrained timm encoder.

Images and masks are held as tensors (uint8 images at ``size``), so a batch is a slice, not a per-image Python
loop. Training follows fastai's ``unet_learner`` recipe: the decoder alone (encoder frozen, its norm layers still
learning) with one-cycle, then every layer with one-cycle and differential LRs (the encoder 10x slower); random
left-right / up-down flips; BCE + soft Dice. Predictions are pixel probabilities at the competition's
``mask_shape``, averaged with the mirrored pass; the cut and the smallest component kept are chosen on OOF by
the adapter's ``decide``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kitbox.adapt.contract import FoldContext, FoldPredictions, recipe
from kitbox.errors import InputError
from kitbox.metrics import dice
from kitbox.training.device import seed_everything
from kitbox.training.learner import Learner
from kitbox.training.sampling import TensorLoader
from kitbox.recipes.vision import DEFAULT_ARCH


@dataclass(frozen=True)
class UNetOptions:
    arch: str = DEFAULT_ARCH  # timm encoder (its features_only form); the classifier's weights file serves
    size: int | None = None  # the side images are trained at (a multiple of 32); None: the mask's side, rounded
    #                          up to a multiple of 32, at least 128
    bs: int = 16
    freeze_epochs: int = 2  # decoder only (encoder frozen)
    epochs: int = 12  # every layer, one-cycle
    lr: float = 3e-3  # decoder's peak LR; the unfrozen phase's encoder gets lr / 10 / 10, decoder lr / 10
    dice_weight: float = 1.0  # soft Dice's share of the loss beside BCE (0: BCE only)
    tta: bool = True  # average with the left-right mirrored pass


def unet_preflight(data, settings, options) -> None:
    """segmentation_models_pytorch importable, the size usable, and weights here unless downloads are allowed."""
    try:
        import segmentation_models_pytorch  # noqa: F401
    except ImportError:
        raise InputError("the unet recipe needs segmentation_models_pytorch: pip install segmentation-models-pytorch "
                         "(offline: pip download it elsewhere and install the wheel)") from None
    if options.size is not None and options.size % 32:
        raise InputError(f"--set unet.size={options.size}: a U-Net's side must be a multiple of 32 (e.g. "
                         f"{32 * max(1, round(options.size / 32))})")
    from kitbox.recipes.vision import weights_preflight

    weights_preflight(data, settings, options)


def _size(ctx: FoldContext) -> int:
    if ctx.options.size:
        return int(ctx.options.size)
    side = max(ctx.data.extra["mask_shape"])
    return 64 if ctx.quick else max(128, -(-side // 32) * 32)


@recipe(options=UNetOptions, preflight=unet_preflight, pretrained=True)
def unet(ctx: FoldContext) -> FoldPredictions:
    """A U-Net (segmentation_models_pytorch) on a timm encoder: decoder first, then every layer; flip TTA."""
    from kitbox.vision.segmentation import FlipLoader, MaskTask, UNet, image_tensor, mask_tensor, predict_masks

    opts, data, settings = ctx.options, ctx.data, ctx.settings
    size, shape = _size(ctx), tuple(data.extra["mask_shape"])
    train_x = image_tensor(data.train["path"], size)
    fit_idx, valid_idx = ctx.train_idx, ctx.valid_idx
    seed_everything(ctx.seed)  # the decoder's initial weights come from the seed, not from what ran before
    classes = ctx.y.shape[1] if np.ndim(ctx.y) == 4 else 1  # (images, classes, H, W): a sigmoid per class
    model = UNet(opts.arch, weights=settings.weights, pretrained=not settings.from_scratch,
                 download=settings.download_weights, classes=classes)
    y = mask_tensor(ctx.y, size)
    bs = min(opts.bs, len(fit_idx))
    train_dl = FlipLoader(train_x[fit_idx], y[fit_idx], bs, ctx.seed)
    valid_dl = (TensorLoader(train_x[valid_idx], y[valid_idx], batch_size=32) if len(valid_idx) else None)
    learn = Learner(model, train_dl, valid_dl, task=MaskTask(opts.dice_weight, classes), seed=ctx.seed,
                    run_dir=ctx.fold_dir, **ctx.learner_options())
    freeze_epochs, epochs = (1, 1) if ctx.quick else (opts.freeze_epochs, opts.epochs)
    if freeze_epochs and not settings.from_scratch:
        learn.freeze()
        learn.fit_one_cycle(freeze_epochs, opts.lr)
    learn.unfreeze()
    learn.fit_one_cycle(epochs, opts.lr if settings.from_scratch else slice(opts.lr / 100, opts.lr / 10))
    learn.save(ctx.fold_dir / "model.safetensors")
    empty = (0,) + ((classes,) if classes > 1 else ()) + shape
    oof = predict_masks(learn, train_x[valid_idx], shape, opts.tta) if len(valid_idx) else np.zeros(empty)
    info = {"size": size, "weights": model.weights_source}
    if len(valid_idx) and opts.tta:
        info["dice_without_tta"] = dice(ctx.y[valid_idx], predict_masks(learn, train_x[valid_idx], shape, False))
    predictor = UNetPredictor(learn.model, learn.task, size, opts.tta, settings.device)
    return FoldPredictions(oof=oof.astype(np.float32), test=predictor.predict(data), info=info, predictor=predictor)


@dataclass
class UNetPredictor:
    """A fold's trained U-Net, the side its images are resized to and whether it flips (TTA): ``predict(data)``
    is its mask probabilities for ``data.test``'s images, at the masks' shape."""

    model: object
    task: object  # kitbox.vision.segmentation.MaskTask
    size: int
    tta: bool
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        from kitbox.training.learner import predicting
        from kitbox.vision.segmentation import image_tensor, predict_masks

        learn = predicting(self.model, self.task, self.device)
        return predict_masks(learn, image_tensor(data.test["path"], self.size), tuple(data.extra["mask_shape"]),
                             self.tta)
