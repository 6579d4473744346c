"""Dogs vs. Cats Redux (Kaggle): P(dog) for each test photo, scored by log loss.

The article's recipe on a pretrained timm CNN: features of the frozen backbone computed once (``precompute``),
the head fitted on them from lr_find's LR, then (optionally) every layer unfrozen with differential LRs
``slice(lr / 100, lr)`` over SGDR cycles, with progressive resizing; TTA (mirror + zooms) on validation and test.
Probabilities are clipped: log loss makes one confident mistake cost more than a hundred right answers gain.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.competition import Competition, CompetitionData, FoldContext, FoldResult

CLASSES = ["cat", "dog"]  # label 1 = dog: the submission's column is P(dog)


class DogsVsCats(Competition):
    slug = "dogs-vs-cats-redux-kernels-edition"
    aliases = ("dogs-vs-cats",)
    metric_name = "log_loss"
    title = "Dogs vs. Cats Redux: Kernels Edition"
    default_folds = 5
    sample_dir = Path(__file__).resolve().parent / "samples" / "dogs-vs-cats-redux-kernels-edition"

    def load(self, data_dir: Path) -> CompetitionData:
        from kitbox.vision.data import from_filenames, from_unlabelled

        data_dir = Path(data_dir)
        train_items = from_filenames(data_dir / "train", r"^(cat|dog)\.", classes=CLASSES)
        test_items = from_unlabelled(data_dir / "test")
        sample = pd.read_csv(_one_of(data_dir, "sample_submission.csv"))
        train = pd.DataFrame({"id": train_items.ids, "path": [str(p) for p in train_items.paths],
                              "label": train_items.labels})
        test = pd.DataFrame({"id": [int(i) if str(i).isdigit() else i for i in test_items.ids],
                             "path": [str(p) for p in test_items.paths]})
        return CompetitionData(
            train=train, test=test, sample_submission=sample, data_dir=data_dir,
            extra={"train_items": train_items, "test_items": test_items, "skipped_test": test_items.skipped},
            is_sample=self.sample_dir is not None and data_dir.resolve() == self.sample_dir.resolve(),
        )

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        from kitbox.cv import stratified_kfold

        return stratified_kfold(data.train["label"].to_numpy(), n_folds, seed)

    def targets(self, data: CompetitionData) -> np.ndarray:
        return data.train["label"].to_numpy()

    def recipes(self):
        return {"pretrained_cnn": pretrained_cnn}

    def submission(self, data: CompetitionData, test_pred: np.ndarray) -> pd.DataFrame:
        sub = data.sample_submission.copy()
        by_id = dict(zip(data.test["id"], np.asarray(test_pred, dtype=np.float64).ravel()))
        missing = [i for i in sub["id"] if i not in by_id]
        if missing:  # unreadable test photos were skipped at load: the prior is the least costly guess
            warnings.warn(f"{len(missing)} test ids have no prediction (unreadable images, e.g. {missing[:5]}): "
                          "submitting 0.5 for them", stacklevel=2)
        sub["label"] = [by_id.get(i, 0.5) for i in sub["id"]]
        return sub


def _one_of(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{folder} has no {name}: is it a {DogsVsCats.slug} data folder?")


def _model(ctx: FoldContext):
    """The backbone named by ``arch`` with weights from --weights / $KITBOX_WEIGHTS / /kaggle/input, or random
    weights with --from-scratch. A missing weights file stops the run with instructions, never a download."""
    from kitbox.vision.models import create_model

    opts = ctx.options
    arch = opts.get("arch", "efficientnet_lite0")
    if _from_scratch(opts):
        return create_model(arch, 1, pretrained=False, ps=float(opts.get("ps", 0.25)))
    return create_model(arch, 1, weights=opts.get("weights"), ps=float(opts.get("ps", 0.25)))


def _from_scratch(opts: dict) -> bool:
    # $KITBOX_FROM_SCRATCH=1 asks for it where the command line has no --from-scratch flag (notebooks, CI)
    return bool(opts.get("from_scratch")) or os.environ.get("KITBOX_FROM_SCRATCH", "") == "1"


def pretrained_cnn(ctx: FoldContext) -> FoldResult:
    """lr_find -> head on cached features -> optional unfrozen SGDR with progressive resizing -> TTA.

    Options: ``weights`` (file or folder), ``from_scratch`` (or $KITBOX_FROM_SCRATCH=1), ``arch`` (timm name, default efficientnet_lite0),
    ``size`` (features and prediction size; 224, 128 on the embedded sample), ``head_epochs`` (8),
    ``ft_sizes`` (sizes of the unfrozen phase, one SGDR cycle each, e.g. ``"128,224"``; default none on the
    full data, since on 2 CPU cores the frozen features already score ~98%), ``lr`` (head LR; default lr_find's
    valley), ``tta`` (augmented passes, 2), ``beta`` (weight of the plain pass, 0.4), ``clip`` (0.005), ``bs`` (32).
    """
    import torch

    from kitbox.tasks import Task
    from kitbox.vision.features import cached_features
    from kitbox.vision.finetune import clip_probs, head_predict, train_head, unfrozen_learner
    from kitbox.vision.data import image_loader
    from kitbox.vision.transforms import flip_tfms, norm_of, train_tfms, tta_tfms, valid_tfms
    from kitbox.vision.tta import blend, predict_tta, resize_and_fit

    data, opts = ctx.data, ctx.options
    torch.manual_seed(ctx.seed)
    progress = bool(opts.get("progress", True))
    task = Task("binary")
    model = _model(ctx)
    norm = norm_of(model)
    size = int(opts.get("size") or (128 if data.is_sample else 224))
    bs, eps = int(opts.get("bs", 32)), float(opts.get("clip", 0.005))
    n_tta, beta = int(opts.get("tta", 2)), float(opts.get("beta", 0.4))
    ft_sizes = [int(s) for s in str(opts.get("ft_sizes") or "").split(",") if s.strip()]
    scratch = _from_scratch(opts)
    if scratch and not ft_sizes:
        ft_sizes = [size] * (1 if opts.get("quick") else 3)
    train_items, test_items = data.extra["train_items"], data.extra["test_items"]
    y = data.train["label"].to_numpy()
    y_train, y_valid = y[ctx.train_idx], y[ctx.valid_idx]
    info: dict = {"size": size, "weights": getattr(model, "weights_file", None)}

    # 1. frozen phase on cached features: every fold of the run shares one cache (RUN/cache)
    lr = float(opts.get("lr") or 3e-3)
    if not scratch:  # random features are useless frozen: from scratch, the whole network learns from step 2 on
        cache = ctx.fold_dir.parents[1] / "cache"
        views = {"plain": valid_tfms(size, norm), "flip": flip_tfms(size, norm)}
        feats = {v: (cached_features(model, train_items, t, cache, f"{v}{size}"),
                     cached_features(model, test_items, t, cache, f"{v}{size}")) for v, t in views.items()}
        tr, va = torch.as_tensor(ctx.train_idx), torch.as_tensor(ctx.valid_idx)
        _, lr = train_head(
            model, [feats[v][0][tr] for v in views], y_train, task, feats["plain"][0][va], y_valid,
            epochs=int(opts.get("head_epochs") or (3 if opts.get("quick") else _head_epochs(len(tr) * len(views), 64))),
            lr=opts.get("lr") and float(opts["lr"]), metrics=("accuracy",), seed=ctx.seed,
            run_dir=ctx.fold_dir / "head", progress=False,  # seconds of work: its history.json/PNG say enough
        )
        # TTA on cached features: the mirrored view is the one augmented pass that costs nothing here
        oof_passes = [head_predict(model, feats[v][0][va], task) for v in views]
        test_passes = [head_predict(model, feats[v][1], task) for v in views]
        oof_plain, oof, test = oof_passes[0], blend(oof_passes, beta), blend(test_passes, beta)
        info.update(head_lr=lr, head_log_loss_plain=_log_loss(y_valid, clip_probs(oof_plain, eps)),
                    head_log_loss_tta=_log_loss(y_valid, clip_probs(oof, eps)),
                    head_accuracy_tta=float(((oof > 0.5) == y_valid).mean()))

    # 2. unfrozen phase: differential LRs over the layer groups, one SGDR cycle per size (progressive resizing)
    if ft_sizes:
        tr_items, va_items = train_items.subset(ctx.train_idx), train_items.subset(ctx.valid_idx)
        train_dl = image_loader(tr_items, train_tfms(ft_sizes[0], norm), batch_size=bs, shuffle=True, seed=ctx.seed,
                                target_dtype=torch.float32, drop_last=True, num_workers=int(opts.get("workers", 0)))
        valid_dl = image_loader(va_items, valid_tfms(ft_sizes[0], norm), batch_size=64, target_dtype=torch.float32)
        learn = unfrozen_learner(model, train_dl, valid_dl, task, metrics=("accuracy",), seed=ctx.seed,
                                 run_dir=ctx.fold_dir / "unfrozen", progress=progress)
        ft_lr = float(opts.get("ft_lr") or (lr if scratch else lr / 10))
        # pretrained: early layers move 100x slower than the head (slice); from scratch every layer learns alike
        group_lr = ft_lr if scratch else slice(ft_lr / 100, ft_lr)
        for s in ft_sizes:
            resize_and_fit(learn, s, lambda s: train_tfms(s, norm), lambda s: valid_tfms(s, norm),
                           lambda learn: learn.fit_sgdr(1, 1, group_lr))
        aug = tta_tfms(size, norm, n=n_tta)
        oof, oof_plain = predict_tta(learn, va_items, valid_tfms(size, norm), aug, beta)
        test, _ = predict_tta(learn, test_items, valid_tfms(size, norm), aug, beta)
        learn.save(ctx.fold_dir / "model.safetensors")
        info.update(ft_sizes=ft_sizes, ft_lr=ft_lr, data_share=[round(h["data_time"] / h["time"], 3)
                                                                for h in learn.history])
    info["log_loss_plain"] = _log_loss(y_valid, clip_probs(oof_plain, eps))
    info["log_loss_tta"] = _log_loss(y_valid, clip_probs(oof, eps))
    info["accuracy_plain"] = float(((oof_plain > 0.5) == y_valid).mean())
    info["accuracy_tta"] = float(((oof > 0.5) == y_valid).mean())
    return FoldResult(oof=clip_probs(oof, eps), test=clip_probs(test, eps), info=info)


def _head_epochs(n_rows: int, bs: int, steps: int = 300) -> int:
    """Enough epochs for ~300 optimizer steps (at least 8): a head on 200 photos needs many more epochs than on
    20,000 to see as many batches, and an epoch on cached features costs milliseconds."""
    return max(8, -(-steps * bs // n_rows))


def _log_loss(y, p) -> float:
    from kitbox.metrics import log_loss

    return float(log_loss(y, p))
