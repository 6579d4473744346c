"""Generic image recipes for any :class:`kitbox.adapt.bases.ImageCompetition`, configured by ``data.task`` alone:

- ``linear_probe``: logistic regression (ridge for regression) on the pooled features of a frozen pretrained
  backbone, plain and mirrored views averaged, C chosen by inner CV on the fold's training rows. The cheap
  baseline every image blend includes.
- ``cnn``: a pretrained timm CNN the fastai way: the head on cached features from lr_find's LR, then optionally
  every layer with ``slice(lr / 100, lr)`` over SGDR cycles and progressive resizing (``ft_sizes``), TTA.
  ``--from-scratch`` trains every layer from random weights instead (the run calls it ``cnn_from_scratch``).
- ``small_cnn``: a small VGG-style CNN from scratch for small pixel images (``data.train_images.pixels``).

Probabilities are calibrated on training rows only (inner CV for the head, held-out training rows for a
trained network) by :mod:`kitbox.vision.calibration`: a weak model (from scratch on 1,280 photos) submits about the
training prior instead of scoring several times worse.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.model_selection import KFold, train_test_split
from sklearn.preprocessing import StandardScaler

from kitbox.adapt.contract import FoldContext, FoldPredictions, recipe
from kitbox.errors import InputError
from kitbox.recipes.linear import LinearHead
from kitbox.training.learner import Learner, predicting
from kitbox.vision.calibration import Calibration, class_prior, fit_calibration
from kitbox.vision.data import DeviceImageLoader, ImageItems, image_loader
from kitbox.vision.features import cached_features, compute_features
from kitbox.vision.finetune import head_predict, train_head, unfrozen_learner
from kitbox.vision.models import SmallConvNet, WeightsNotFound, create_model, find_weights
from kitbox.vision.transforms import (
    digit_train_tfms, digit_tta_tfms, digit_valid_tfms, flip_tfms, norm_of, train_tfms, tta_tfms, valid_tfms,
)
from kitbox.vision.tta import predict_tta, resize_and_fit

DEFAULT_ARCH = "efficientnet_lite0"

# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class LinearProbeOptions:
    arch: str = DEFAULT_ARCH  # timm backbone; "a,b" concatenates several backbones' features
    size: int | None = None  # image side the features see; None: 224 (128 on the embedded sample)
    cs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # logistic regression's C (ridge: alpha = 1 / C),
    #                                                           tried by inner CV
    inner_folds: int = 3  # inner CV folds on the fold's training rows that choose C


@dataclass(frozen=True)
class CNNOptions:
    arch: str = DEFAULT_ARCH  # timm backbone
    size: int | None = None  # features and prediction side; None: 224 (128 on the embedded sample)
    head_epochs: int | None = None  # None: enough for ~300 optimizer steps, at least 8 (~100, 3 with --quick)
    lr: float | None = None  # head LR; None: lr_find's valley (from scratch: 3e-3)
    ft_sizes: Literal["auto"] | tuple[int, ...] = "auto"  # unfrozen phase, one SGDR cycle per size ("128,224");
    #   "": head only (from scratch: size x3); "auto": on a GPU progressive resizing to full size (size/2, size),
    #   on the CPU ""
    ft_lr: float | None = None  # unfrozen LR of the last group; None: head LR / 10 (from scratch: the head LR)
    calib_frac: float = 0.15  # unfrozen phase: training rows held out to calibrate on (the head uses inner CV)
    tta: int = 2  # augmented TTA passes after the unfrozen phase (the head's is the cached mirrored view)
    bs: int = 32  # batch size of the unfrozen phase
    ps: float = 0.25  # dropout before the classifier
    workers: int | None = None  # DataLoader workers of the unfrozen phase; None: 0 on the CPU, cores - 1 on a GPU


@dataclass(frozen=True)
class SmallCNNOptions:
    epochs: int | None = None  # None: about 52k images seen per fold (8 epochs of 6,400), 4 to 15 (2 with --quick)
    lr: float = 5e-3  # one-cycle peak LR (where lr_find's valley lands for this net)
    find_lr: bool = False  # run lr_find first (on 2 CPU cores it costs about an epoch)
    bs: int | None = None  # None: 128, fewer on small data (enough optimizer steps)
    widths: tuple[int, ...] = (16, 32, 64)  # channels of the three stages
    ps: float = 0.25  # dropout before the classifier
    tta: int = 4  # shifted / rotated TTA views
    beta: float = 0.4  # weight of the plain pass in TTA
    device_loader: Literal["auto", "on", "off"] = "auto"  # "on": pixels held and augmented on the model's device
    #                              a batch at a time (airbench);
    #                              "off": DataLoader with albumentations; "auto": on with a GPU, off on the CPU


# ---------------------------------------------------------------------------------- backbones, views, loaders


def _archs(options) -> list[str]:
    return [a.strip() for a in options.arch.split(",") if a.strip()]


def _weights_arg(arch: str, first: bool, weights: str | None) -> str | None:
    """``--weights``: a folder serves every backbone (files named ``ARCH*``), a file only the first one."""
    if weights is None or first or Path(weights).is_dir():
        return weights
    return None


def _find_weights(arch: str, first: bool, settings):
    try:
        return find_weights(arch, _weights_arg(arch, first, settings.weights))
    except WeightsNotFound as err:  # an explicit --weights path that does not exist
        raise InputError(f"--weights {settings.weights}: {err}") from None


def weights_preflight(data, settings, options) -> None:
    """Before any training: every backbone the recipe loads has weights here, or the run may download them."""
    if settings.from_scratch or settings.download_weights:
        return
    archs = _archs(options)
    missing = [a for i, a in enumerate(archs) if _find_weights(a, i == 0, settings) is None]
    if missing:
        names = ", ".join(missing)
        raise InputError(
            f"no pretrained weights for {names} (looked at --weights, $KITBOX_WEIGHTS, /kaggle/input and timm's hub "
            f"cache). Offline: pass --weights PATH (the weights file, or a folder holding {missing[0]}*.safetensors) "
            f"or set KITBOX_WEIGHTS=PATH; on Kaggle attach a dataset holding {missing[0]}*.safetensors (found "
            f"anywhere under /kaggle/input). Online: add --download-weights. Or train from random weights with "
            f"--from-scratch (much worse).")


def _backbone(arch: str, first: bool, n_out: int, settings, ps: float = 0.25):
    """A timm model with a fresh ``n_out`` head: pretrained weights found offline, downloaded when allowed, or
    random with --from-scratch."""
    if settings.from_scratch:
        return create_model(arch, n_out, pretrained=False, ps=ps)
    return create_model(arch, n_out, weights=_weights_arg(arch, first, settings.weights), ps=ps,
                        download=settings.download_weights)


def _weights_text(arch: str, model) -> str:
    source = getattr(model, "weights_source", None)  # kitbox.vision's own wording, where it gives one
    if source is None:
        file = getattr(model, "weights_file", None)
        source = ("random (from scratch)" if file is None else "downloaded from the hub" if file == "timm-hub"
                  else f"file {file}")
    return f"{arch} weights: {source}"


def _views(model, size: int) -> dict:
    """The deterministic views whose features are cached: the plain centre crop and its mirror image."""
    norm = norm_of(model)
    return {"plain": valid_tfms(size, norm), "flip": flip_tfms(size, norm)}


def _metrics(task) -> tuple[str, ...]:
    """What each epoch reports beside the loss: accuracy for a classifier."""
    return ("accuracy",) if task.kind in ("binary", "multiclass") else ()


def _head_fit(model, views: list, y, task, epochs: int, lr: float | None, seed: int, run_dir: Path | None):
    """The model's head fitted on cached features (several views stacked); returns the LR used."""
    _, lr = train_head(model, views, y, task, epochs=epochs, lr=lr, metrics=_metrics(task), seed=seed, run_dir=run_dir,
                       progress=False)  # seconds of work: its history.json says enough
    return lr


def _seeded(pipeline, seed: int):
    """An albumentations pipeline drawing its augmentations from ``seed`` (the same run twice, the same images)."""
    pipeline.set_random_seed(seed)
    return pipeline


def _image_pipelines(model, size: int, n_tta: int, seed: int) -> dict:
    norm = norm_of(model)
    return {"train": lambda s: _seeded(train_tfms(s, norm), seed + s), "valid": lambda s: valid_tfms(s, norm),
            "tta": tta_tfms(size, norm, n=n_tta, seed=seed) if n_tta else [], "plain": valid_tfms(size, norm)}


def _loader(items, transform, bs: int, seed: int | None, device: str | None, target_dtype=None, train: bool = False,
            workers: int | None = None):
    """image_loader for the run's device: its workers and pinned memory follow that device unless ``workers``."""
    return image_loader(items, transform, batch_size=bs, shuffle=train, seed=seed, target_dtype=target_dtype,
                        drop_last=train, num_workers=workers, device=device)


def _unfrozen(model, train_dl, valid_dl, task, seed: int, run_dir: Path, learner_options: dict):
    return unfrozen_learner(model, train_dl, valid_dl, task, metrics=_metrics(task), seed=seed, run_dir=run_dir,
                            **learner_options)


def _tta_passes(learn, items, pipes: dict, bs: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """(plain pass, mean of the augmented passes or None): calibration chooses their weights."""
    augmented, plain = predict_tta(learn, items, pipes["plain"], pipes["tta"], beta=0.0, batch_size=bs)
    return plain, (augmented if pipes["tta"] else None)


def _digit_pipelines(mean: float, std: float, side: int, n_tta: int, seed: int) -> dict:
    return {"train": _seeded(digit_train_tfms(side, mean, std), seed), "plain": digit_valid_tfms(side, mean, std),
            "tta": digit_tta_tfms(side, n=n_tta, seed=seed, mean=mean, std=std)}


def _with_labels(images, idx, y=None):
    """The images at ``idx`` as :class:`kitbox.vision.ImageItems`, carrying ``y[idx]`` as labels."""
    sub = images.subset(idx)
    return ImageItems(paths=sub.paths, pixels=sub.pixels, labels=None if y is None else y[idx], ids=sub.ids)


# ---------------------------------------------------------------------------------------------- saved folds


@dataclass
class ProbePredictor:
    """A fold's frozen backbones (each with the views its features are averaged over), scaler and linear head:
    ``predict(data)`` is its prediction of ``data.test_images``."""

    backbones: list  # (model, {view: transform}) per backbone
    scaler: StandardScaler
    head: LinearHead
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        blocks = [np.mean([compute_features(model, data.test_images, t, device=self.device).numpy()
                           for t in views.values()], axis=0) for model, views in self.backbones]
        return self.head.predict(self.scaler.transform(np.concatenate(blocks, 1)))


@dataclass
class HeadPredictor:
    """A fold's pretrained backbone with its trained head, the views (plain, mirrored) its features are taken
    through, and its calibration: ``predict(data)`` is its prediction of ``data.test_images``."""

    model: torch.nn.Module
    task: object
    views: dict
    calibration: Calibration
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        feats = [compute_features(self.model, data.test_images, t, device=self.device) for t in self.views.values()]
        return self.calibration.apply(*[head_predict(self.model, f, self.task) for f in feats])


@dataclass
class TTAPredictor:
    """A fold's trained network, its plain and TTA pipelines and their calibration (or TTA blend):
    ``predict(data)`` is its prediction of ``data.test_images``."""

    model: torch.nn.Module
    task: object
    plain: object  # the plain pass's pipeline
    tta: list  # the augmented passes' pipelines
    calibration: Calibration
    batch_size: int = 64
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        learn = predicting(self.model, self.task, self.device)
        passes = _tta_passes(learn, data.test_images, {"plain": self.plain, "tta": self.tta}, self.batch_size)
        return self.calibration.apply(*passes)


# ---------------------------------------------------------------------------------------------- linear probe


def probe_features(data, archs: list[str], size: int, settings, cache_dir: Path) -> tuple[list, list, list, list]:
    """Per backbone: the mean of the plain and mirrored pooled features of the train rows and of the test rows,
    cached in ``cache_dir``; where each backbone's weights came from; and (backbone, views) for a saved fold."""
    blocks_train, blocks_test, sources, backbones = [], [], [], []
    for i, arch in enumerate(archs):
        model = _backbone(arch, i == 0, 1, settings)
        sources.append(_weights_text(arch, model))
        views = _views(model, size)
        backbones.append((model, views))
        for images, blocks in ((data.train_images, blocks_train), (data.test_images, blocks_test)):
            feats = [cached_features(model, images, t, cache_dir, f"{arch}-{v}{size}", device=settings.device).numpy()
                     for v, t in views.items()]
            blocks.append(np.mean(feats, axis=0))
    return blocks_train, blocks_test, sources, backbones


def _size(ctx: FoldContext, options) -> int:
    return int(options.size or (128 if ctx.data.is_sample else 224))


def fit_probe(x_fit, y_fit, x_pred: list, kind: str, n_out: int, cs: list[float], inner: int, seed: int):
    """Standardised features -> :class:`LinearHead` (logistic regression, one per label for multi-label, or ridge),
    C by warm-started inner CV on ``x_fit``'s rows. Returns the predictions for each array of ``x_pred``, the
    chosen C, and the fitted (scaler, head)."""
    scaler = StandardScaler().fit(x_fit)
    head = LinearHead(kind, n_out, seed=seed, inner_folds=inner, cs=cs, warm_start=True)
    head.fit(scaler.transform(x_fit), y_fit)
    return [head.predict(scaler.transform(x)) for x in x_pred], {"C": head.chosen_C}, (scaler, head)


@recipe(options=LinearProbeOptions, preflight=weights_preflight, pretrained=True)
def linear_probe(ctx: FoldContext) -> FoldPredictions:
    """Frozen pretrained features (plain + mirrored, averaged), logistic regression / ridge, C by inner CV."""
    opts, kind = ctx.options, ctx.data.task or "regression"
    # every fold of this configuration shares the features: computed by the first, read by the others
    blocks_train, blocks_test, sources, backbones = probe_features(ctx.data, _archs(opts), _size(ctx, opts),
                                                                   ctx.settings, ctx.cache_dir / "features")
    x_train, x_test = np.concatenate(blocks_train, 1), np.concatenate(blocks_test, 1)  # backbones side by side
    tr, va = ctx.train_idx, ctx.valid_idx
    n_out = len(ctx.data.classes) if kind in ("multiclass", "multilabel") else 1
    (oof, test), chosen, (scaler, head) = fit_probe(x_train[tr], ctx.y[tr], [x_train[va], x_test], kind, n_out,
                                                    opts.cs, opts.inner_folds, ctx.seed)
    info = {"weights": "; ".join(sources), "features": int(x_train.shape[1]), "size": _size(ctx, opts), **chosen}
    return FoldPredictions(oof=oof, test=test, info=info,
                           predictor=ProbePredictor(backbones, scaler, head, ctx.settings.device))


# ---------------------------------------------------------------------------------------------- cnn


def _head_epochs(n_rows: int, quick: bool, given: int | None, bs: int = 64) -> int:
    """Enough epochs for ~300 optimizer steps (100 with --quick), at least 8 (3): a head on 200 photos needs many
    more epochs than on 20,000 to see as many batches, and an epoch on cached features costs milliseconds."""
    if given:
        return int(given)
    steps, least = (100, 3) if quick else (300, 8)
    return max(least, -(-steps * bs // max(n_rows, 1)))


def _head_phase(ctx: FoldContext, model, task, fit_idx: np.ndarray, feats: dict) -> float:
    """The head fitted on the cached plain and mirrored features of ``fit_idx``; returns its LR (lr_find's
    valley unless ``lr`` is set)."""
    views = [train[fit_idx] for train, _ in feats.values()]
    epochs = _head_epochs(len(fit_idx) * len(views), ctx.quick, ctx.options.head_epochs)
    return _head_fit(model, views, ctx.y[fit_idx], task, epochs, ctx.options.lr, ctx.seed, ctx.fold_dir / "head")


def _head_calibration(ctx: FoldContext, pristine, task, feats: dict, lr: float, prior: np.ndarray):
    """Calibration fitted on the fold's training rows: each inner fold's head predicts the rows it did not see."""
    tr, held, plain, flip = ctx.train_idx, [], [], []
    for fit_pos, held_pos in KFold(3, shuffle=True, random_state=ctx.seed).split(tr):
        head = copy.deepcopy(pristine)
        views = [train[tr[fit_pos]] for train, _ in feats.values()]
        epochs = _head_epochs(len(fit_pos) * len(views), ctx.quick, ctx.options.head_epochs)
        _head_fit(head, views, ctx.y[tr[fit_pos]], task, epochs, lr, ctx.seed, None)
        held.append(held_pos)
        plain.append(head_predict(head, feats["plain"][0][tr[held_pos]], task))
        flip.append(head_predict(head, feats["flip"][0][tr[held_pos]], task))
    order = np.argsort(np.concatenate(held))  # back to the order of the training rows
    plain, flip = np.concatenate(plain)[order], np.concatenate(flip)[order]
    cal = fit_calibration(plain, flip, ctx.y[tr], task.kind, prior)
    return cal, cal.report(plain, flip, ctx.y[tr])


def _cnn_head_only(ctx: FoldContext, model, task, info: dict) -> FoldPredictions:
    """The frozen backbone's cached features -> the head; calibrated on the training rows by inner CV."""
    pristine = copy.deepcopy(model)  # the inner-CV heads start where the fold's head starts
    feats = _head_features(ctx, model)
    lr = _head_phase(ctx, model, task, ctx.train_idx, feats)
    prior = class_prior(task.kind, ctx.y[ctx.train_idx], task.n_out)
    cal, report = _head_calibration(ctx, pristine, task, feats, lr, prior)
    va = torch.as_tensor(ctx.valid_idx)
    oof = cal.apply(*[head_predict(model, train[va], task) for train, _ in feats.values()])
    test = cal.apply(*[head_predict(model, test, task) for _, test in feats.values()])
    predictor = HeadPredictor(model, task, _views(model, _size(ctx, ctx.options)), cal, ctx.settings.device)
    return FoldPredictions(oof=oof, test=test, info={**info, "head_lr": lr, **report}, predictor=predictor)


def _head_features(ctx: FoldContext, model) -> dict:
    """{view: (train features, test features)} of the plain and mirrored views, cached for every fold."""
    size, data, cache = _size(ctx, ctx.options), ctx.data, ctx.cache_dir / "features"
    arch = _archs(ctx.options)[0]
    return {v: tuple(cached_features(model, images, t, cache, f"{arch}-{v}{size}", device=ctx.settings.device)
                     for images in (data.train_images, data.test_images))
            for v, t in _views(model, size).items()}


def _calibration_rows(ctx: FoldContext) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training rows split into rows to train on and rows to calibrate on (stratified by class)."""
    y = ctx.y[ctx.train_idx]
    stratify = y if ctx.data.task in ("binary", "multiclass") else None
    return train_test_split(ctx.train_idx, test_size=ctx.options.calib_frac, random_state=ctx.seed, stratify=stratify)


def _ft_sizes(ctx: FoldContext) -> list[int]:
    sizes = list(ctx.options.ft_sizes)
    if ctx.options.ft_sizes == "auto":  # a GPU trains every layer at full size in minutes; a CPU would take hours
        full = _size(ctx, ctx.options)
        sizes = [full // 2, full] if ctx.settings.device == "cuda" else []
    if ctx.settings.from_scratch and not sizes:  # random features are useless frozen: every layer must learn
        sizes = [_size(ctx, ctx.options)] * (1 if ctx.quick else 3)
    return sizes


def _cnn_unfrozen(ctx: FoldContext, model, task, info: dict, sizes: list[int]) -> FoldPredictions:
    """(Head on cached features, unless from scratch) -> every layer, one SGDR cycle per size -> TTA passes,
    calibrated on held-out training rows."""
    opts, data, scratch = ctx.options, ctx.data, ctx.settings.from_scratch
    fit_idx, calib_idx = _calibration_rows(ctx)
    lr = float(opts.lr or 3e-3) if scratch else _head_phase(ctx, model, task, fit_idx, _head_features(ctx, model))
    ft_lr = float(opts.ft_lr or (lr if scratch else lr / 10))
    pipes = _image_pipelines(model, sizes[-1], opts.tta, ctx.seed)
    dtype = task.target_dtype
    bs = min(opts.bs, len(fit_idx))  # a tiny training set still makes one batch
    device = ctx.settings.device
    train_dl = _loader(_with_labels(data.train_images, fit_idx, ctx.y), pipes["train"](sizes[0]), bs, ctx.seed,
                       device, dtype, train=True, workers=opts.workers)
    calib_items = _with_labels(data.train_images, calib_idx, ctx.y)
    learn = _unfrozen(model, train_dl, _loader(calib_items, pipes["valid"](sizes[0]), 64, None, device, dtype), task,
                      ctx.seed, ctx.fold_dir / "unfrozen", ctx.learner_options())
    # pretrained: early layers move 100x slower than the head; from scratch every layer learns alike
    group_lr = ft_lr if scratch else slice(ft_lr / 100, ft_lr)
    for size in sizes:
        resize_and_fit(learn, size, pipes["train"], pipes["valid"], lambda learn: learn.fit_sgdr(1, 1, group_lr))
    learn.save(ctx.fold_dir / "model.safetensors")
    calib_passes = _tta_passes(learn, calib_items, pipes)
    prior = class_prior(task.kind, ctx.y[fit_idx], task.n_out)
    cal = fit_calibration(*calib_passes, ctx.y[calib_idx], task.kind, prior)
    oof = cal.apply(*_tta_passes(learn, _with_labels(data.train_images, ctx.valid_idx), pipes))
    test = cal.apply(*_tta_passes(learn, data.test_images, pipes))
    info.update(head_lr=None if scratch else lr, ft_lr=ft_lr, ft_sizes=sizes,
                data_share=[round(h["data_time"] / h["time"], 3) for h in learn.history],
                **cal.report(*calib_passes, ctx.y[calib_idx]))
    predictor = TTAPredictor(learn.model, task, pipes["plain"], pipes["tta"], cal, device=ctx.settings.device)
    return FoldPredictions(oof=oof, test=test, info=info, predictor=predictor)


@recipe(options=CNNOptions, preflight=weights_preflight, pretrained=True)
def cnn(ctx: FoldContext) -> FoldPredictions:
    """A timm CNN: head on cached pretrained features, optionally every layer (SGDR, progressive resizing) and TTA;
    with --from-scratch every layer from random weights. Probabilities calibrated on training rows only."""
    torch.manual_seed(ctx.seed)
    task, opts = ctx.task(), ctx.options
    model = _backbone(_archs(opts)[0], True, task.n_out, ctx.settings, opts.ps)
    info = {"weights": _weights_text(_archs(opts)[0], model), "size": _size(ctx, opts)}
    sizes = _ft_sizes(ctx)
    if not sizes:
        return _cnn_head_only(ctx, model, task, info)
    return _cnn_unfrozen(ctx, model, task, info, sizes)


# ---------------------------------------------------------------------------------------------- small cnn


def small_cnn_preflight(data, settings, options) -> None:
    images = data.train_images
    if images is None or getattr(images, "pixels", None) is None:
        raise InputError("small_cnn trains on pixel arrays (a CSV of pixel columns: set pixel_prefix in the adapter, "
                         "e.g. pixel_prefix = 'pixel'); for image files use the recipes linear_probe or cnn")


def _pixel_norm(pixels: np.ndarray) -> tuple[float, float]:
    """Mean and std of the training pixels on a 0..1 scale (one pair for every channel)."""
    values = pixels.astype(np.float32) / 255.0
    return float(values.mean()), float(values.std() + 1e-6)


def _pixel_loaders(ctx: FoldContext, pipes: dict, bs: int, dtype, norm: tuple[float, float]):
    """(train, valid) loaders of the fold's pixel images: on the model's device with per-batch affine augmentation
    (``device_loader``; the default on a GPU), else DataLoaders through the albumentations pipelines."""
    opts, images = ctx.options, ctx.data.train_images
    train_items = _with_labels(images, ctx.train_idx, ctx.y)
    valid_items = _with_labels(images, ctx.valid_idx, ctx.y)
    device = ctx.settings.device
    if opts.device_loader == "off" or (opts.device_loader == "auto" and device != "cuda"):
        return (_loader(train_items, pipes["train"], bs, ctx.seed, device, dtype, train=True),
                _loader(valid_items, pipes["plain"], 512, None, device, dtype))
    mean, std = (norm[0],), (norm[1],)
    return (DeviceImageLoader(train_items, bs, shuffle=True, seed=ctx.seed, device=device, augment=True, mean=mean,
                              std=std, drop_last=True, target_dtype=dtype),
            DeviceImageLoader(valid_items, 512, device=device, mean=mean, std=std, target_dtype=dtype))


def _small_cnn_learner(ctx: FoldContext, pipes: dict, task, norm: tuple[float, float]):
    """SmallConvNet and its Learner over the fold's pixel images: batches sized to the data, seeded."""
    opts, images, tr = ctx.options, ctx.data.train_images, ctx.train_idx
    bs = int(opts.bs or np.clip(len(tr) // 20, 32, 128))  # small data: smaller batches, enough optimizer steps
    train_dl, valid_dl = _pixel_loaders(ctx, pipes, bs, task.target_dtype, norm)
    torch.manual_seed(ctx.seed)
    in_chans = 1 if images.pixels.ndim == 3 else images.pixels.shape[3]
    model = SmallConvNet(task.n_out, in_chans=in_chans, widths=opts.widths, ps=opts.ps)
    return Learner(model, train_dl, valid_dl, task=task, metrics=_metrics(task), seed=ctx.seed, run_dir=ctx.fold_dir,
                   **ctx.learner_options())


@recipe(options=SmallCNNOptions, preflight=small_cnn_preflight)
def small_cnn(ctx: FoldContext) -> FoldPredictions:
    """SmallConvNet from scratch: fit_one_cycle with shifts / rotations / zooms (never flips), TTA."""
    opts, data, task = ctx.options, ctx.data, ctx.task()
    pixels = data.train_images.pixels
    mean, std = _pixel_norm(pixels[ctx.train_idx])
    pipes = _digit_pipelines(mean, std, pixels.shape[1], opts.tta, ctx.seed)
    learn = _small_cnn_learner(ctx, pipes, task, (mean, std))
    epochs = int(opts.epochs or (2 if ctx.quick else np.clip(52_000 // len(ctx.train_idx), 4, 15)))
    lr = opts.lr
    if opts.find_lr:  # the valley of a short range test is noisy: keep it sane
        found = learn.lr_find(start_lr=1e-5, end_lr=1.0, num_it=min(100, 3 * len(learn.train_loader)))
        lr = float(np.clip(found.valley, 1e-3, 1e-2))
    learn.fit_one_cycle(epochs, lr)
    learn.save(ctx.fold_dir / "model.safetensors")
    tta = Calibration(task.kind, np.zeros(1), beta=opts.beta)  # TTA's blend only: beta is an option, not tuned here
    plain, augmented = _tta_passes(learn, _with_labels(data.train_images, ctx.valid_idx), pipes, bs=512)
    info = {"epochs": epochs, "lr": lr, "bs": learn.train_loader.batch_size,
            "data_share": [round(h["data_time"] / h["time"], 3) for h in learn.history]}
    if task.kind == "multiclass" and augmented is not None:  # what TTA changed on the scored rows (a report only)
        y = ctx.y[ctx.valid_idx]
        info.update(accuracy_plain=float((plain.argmax(1) == y).mean()),
                    accuracy_tta=float((tta.apply(plain, augmented).argmax(1) == y).mean()))
    test = tta.apply(*_tta_passes(learn, data.test_images, pipes, bs=512))
    predictor = TTAPredictor(learn.model, task, pipes["plain"], pipes["tta"], tta, 512, ctx.settings.device)
    return FoldPredictions(oof=tta.apply(plain, augmented), test=test, info=info, predictor=predictor)
