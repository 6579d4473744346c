"""The shared trainer: one plain PyTorch loop driven by schedules, over layer groups.

``Learner`` holds a model, its loaders, the task (loss + decoding), an AdamW optimizer with one
parameter group per (layer group, decay or not), and the fit recipes competitors know from
fastai: ``fit_one_cycle``, ``fit_sgdr``, ``fit`` (cosine), ``lr_find``, ``freeze_to``, TTA-style
``predict_passes``. Read ``_fit`` top to bottom: that is the whole training step.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from kitbox import distributed, schedules
from kitbox.groups import layer_groups, spread_lr
from kitbox.metrics import get_metric
from kitbox.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised instead of handing back a broken model."""


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so a rerun gives identical losses on CPU."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        # under torchrun each process drives the GPU matching its local rank
        return torch.device("cuda", int(__import__("os").environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm))


def _metric_callable(metric) -> tuple[str, Callable]:
    if isinstance(metric, str):
        m = get_metric(metric)
        return m.name, m
    return getattr(metric, "name", getattr(metric, "__name__", "metric")), metric


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]  # smoothed (EMA, debiased)
    valley: float  # fastai's default suggestion: the middle of the longest descending stretch
    steep: float  # the LR where the loss falls fastest
    minimum: float  # (LR at the minimum loss) / 10
    plot_path: Path | None = None

    def __repr__(self) -> str:
        return f"LRFinderResult(valley={self.valley:.2e}, steep={self.steep:.2e}, minimum/10={self.minimum:.2e})"


class SaveBest:
    """Save the model (safetensors) whenever ``monitor`` improves at an epoch's end."""

    def __init__(self, path, monitor: str = "valid_loss", mode: str = "min"):
        self.path, self.monitor, self.mode, self.best = Path(path), monitor, mode, None

    def after_epoch(self, learn: "Learner") -> None:
        value = learn.history[-1].get(self.monitor)
        if value is None:
            return
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best = value
            learn.save(self.path)


class EarlyStopping:
    """Stop fitting when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best, self.wait = None, 0

    def before_fit(self, learn: "Learner") -> None:
        self.best, self.wait = None, 0

    def after_epoch(self, learn: "Learner") -> None:
        value = learn.history[-1].get(self.monitor)
        if value is None:
            return
        improved = self.best is None or (
            value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        )
        if improved:
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                learn.stop_training = True


class Learner:
    """Train a model on (inputs, target) batches with schedules, layer groups and decoded predictions."""

    def __init__(
        self,
        model: nn.Module,
        train_loader: Iterable,
        valid_loader: Iterable | None = None,
        task: Task | None = None,
        metrics: Sequence = (),
        wd: float = 0.01,
        clip: float | None = None,
        accum_steps: int = 1,
        device=None,
        mixed_precision: bool | None = None,
        channels_last: bool = False,
        run_dir=None,
        progress: bool = True,
        callbacks: Sequence = (),
        seed: int | None = None,
        groups: list | None = None,
        sync_bn: bool = False,
    ):
        if seed is not None:
            seed_everything(seed)
        self.device = torch.device(device) if device is not None else default_device()
        self.channels_last = channels_last
        if sync_bn and distributed.is_distributed():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
        self.model = model.to(self.device, memory_format=torch.channels_last) if channels_last else model.to(self.device)
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.task = task or Task("regression")
        self.metrics = [_metric_callable(m) for m in metrics]
        self.wd, self.clip, self.accum_steps = wd, clip, max(1, accum_steps)
        # fp16 autocast + loss scaling on CUDA (T4s, Kaggle's GPUs, have no bf16); full precision on CPU.
        self.mixed_precision = (self.device.type == "cuda") if mixed_precision is None else mixed_precision
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.mixed_precision and self.device.type == "cuda")
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress, self.callbacks = progress and distributed.is_main(), list(callbacks)
        self.groups = [list(g) for g in groups] if groups is not None else layer_groups(self.model)
        self.opt = self._make_optimizer()
        self.history: list[dict] = []
        self.recorder: dict[str, list[float]] = {"lr": [], "mom": [], "loss": []}  # per batch, for plots
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.stop_training = False
        self.frozen_to = 0
        self._epochs_done = 0

    # ------------------------------------------------------------------ optimizer and layer groups
    def _make_optimizer(self) -> torch.optim.AdamW:
        """AdamW with two parameter groups per layer group: weight decay on weights, none on norms and biases."""
        norm_params = {id(p) for m in self.model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
        param_groups = []
        for index, group in enumerate(self.groups):
            decay = [p for p in group if p.ndim > 1 and id(p) not in norm_params]
            no_decay = [p for p in group if p.ndim <= 1 or id(p) in norm_params]
            for params, wd in ((decay, self.wd), (no_decay, 0.0)):
                if params:
                    param_groups.append({"params": params, "weight_decay": wd, "layer_group": index})
        return torch.optim.AdamW(param_groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5)

    def freeze_to(self, n: int) -> None:
        """Train only groups ``n`` onwards (negative counts from the end). Norm layers in frozen groups keep
        training, as fastai's ``train_bn`` does: their statistics must follow the new data when fine-tuning."""
        n_groups = len(self.groups)
        self.frozen_to = n % n_groups if n < 0 else min(n, n_groups)
        norm_params = {id(p) for m in self.model.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
        for index, group in enumerate(self.groups):
            for p in group:
                p.requires_grad_(index >= self.frozen_to or id(p) in norm_params)

    def freeze(self) -> None:
        """Train only the last group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    def _set_hyper(self, lrs: list[float], factor: float, mom: float | None) -> None:
        for pg in self.opt.param_groups:
            pg["lr"] = lrs[pg["layer_group"]] * factor
            if mom is not None:
                pg["betas"] = (mom, pg["betas"][1])

    # ------------------------------------------------------------------ batches
    def _to_device(self, batch):
        """Split a batch into (inputs tuple, target or None) on the device."""
        inputs, target = (batch[0], batch[1]) if len(batch) > 1 else (batch[0], None)
        inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
        moved = []
        for x in inputs:
            x = x.to(self.device, non_blocking=True)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            moved.append(x)
        if target is not None:
            target = target.to(self.device, non_blocking=True)
        return tuple(moved), target

    def _training_model(self) -> nn.Module:
        """The model to train through: wrapped in DistributedDataParallel under torchrun. Wrapped anew for each fit,
        because DDP fixes the set of trainable parameters when it is built and freeze_to changes that set."""
        if not distributed.is_distributed():
            return self.model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.mixed_precision)

    # ------------------------------------------------------------------ the training loop
    def _fit(self, epochs: int, lr, lr_factor: Callable[[float], float], mom_at: Callable[[float], float] | None = None,
             on_epoch_end: Callable[[int], None] | None = None) -> None:
        """Train ``epochs`` epochs. ``lr_factor(t)`` / ``mom_at(t)`` give the schedule at t = fractional epoch."""
        lrs = spread_lr(lr, len(self.groups))
        n_batches = len(self.train_loader)
        if n_batches == 0:
            raise ValueError("the training loader yields no batches (is drop_last on with fewer rows than batch_size?)")
        # On CUDA reading the loss every batch would stall the GPU; read it every few batches instead.
        sync_every = 1 if self.device.type == "cpu" else 20
        self.stop_training = False
        model = self._training_model()
        self._call("before_fit")
        for epoch in range(epochs):
            model.train()
            t0, data_time, pending, losses, smooth_loss = time.perf_counter(), 0.0, [], [], None
            bar = self._bar(n_batches, f"epoch {self._epochs_done + 1}")
            t_fetch = time.perf_counter()
            for i, batch in enumerate(self.train_loader):
                data_time += time.perf_counter() - t_fetch
                # the schedule's position is that of the accumulation window's first batch, so accumulating
                # k batches of size b steps with the same LRs as batches of size k*b
                t = epoch + (i - i % self.accum_steps) / n_batches
                factor, mom = lr_factor(t), (mom_at(t) if mom_at else 0.9)  # 0.9: AdamW's usual beta1
                self._set_hyper(lrs, factor, mom)
                inputs, target = self._to_device(batch)
                stepping = (i + 1) % self.accum_steps == 0 or i + 1 == n_batches
                # between optimizer steps DDP need not all-reduce gradients: they only accumulate
                no_sync = model.no_sync() if (not stepping and model is not self.model) else contextlib.nullcontext()
                with no_sync:
                    with self._autocast():
                        loss = self.task.loss(model(*inputs), target)
                    self.scaler.scale(loss / self.accum_steps).backward()
                if stepping:
                    if self.clip is not None:
                        self.scaler.unscale_(self.opt)
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
                    self.scaler.step(self.opt)
                    self.scaler.update()
                    self.opt.zero_grad(set_to_none=True)
                pending.append(loss.detach())
                if len(pending) >= sync_every or i + 1 == n_batches:
                    values = distributed.mean_across_ranks(torch.stack(pending).float()).cpu().tolist()
                    for k, v in enumerate(values):
                        if not math.isfinite(v):
                            batch_no = i - len(values) + k + 1
                            raise TrainingDiverged(
                                f"loss became {v} at epoch {self._epochs_done + 1}, batch {batch_no + 1}/{n_batches} "
                                f"(lr {lrs[-1] * factor:.2e}); lower the learning rate, check the inputs for NaN/inf, "
                                "or use gradient clipping (clip=1.0)"
                            )
                    losses.extend(values)
                    pending.clear()
                    if bar is not None:
                        smooth_loss = values[-1] if smooth_loss is None else 0.9 * smooth_loss + 0.1 * values[-1]
                        bar.set_postfix(loss=f"{smooth_loss:.4f}", lr=f"{lrs[-1] * factor:.1e}", refresh=False)
                        bar.update(len(values))
                self.recorder["lr"].append(lrs[-1] * factor)
                self.recorder["mom"].append(mom)
                self._call("after_batch")
                t_fetch = time.perf_counter()
            if bar is not None:
                bar.close()
            self.recorder["loss"].extend(losses)
            self._epochs_done += 1
            record = {"epoch": self._epochs_done, "train_loss": float(np.mean(losses))}
            if self.valid_loader is not None:
                record.update(self.validate())
            record["time"] = time.perf_counter() - t0
            record["data_time"] = data_time  # time spent waiting for batches: the loader's share of the epoch
            self.history.append(record)
            self._log_epoch(record)
            if on_epoch_end is not None:
                on_epoch_end(epoch)
            self._call("after_epoch")
            if self.stop_training:
                break
        self._call("after_fit")
        self._save_history()

    def _call(self, event: str) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self)

    def _bar(self, total: int, desc: str):
        if not self.progress:
            return None
        from tqdm.auto import tqdm  # notebook-aware bar with ETA

        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def _log_epoch(self, record: dict) -> None:
        if not self.progress:
            return
        from tqdm.auto import tqdm

        parts = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in record.items() if k != "data_time"]
        share = record["data_time"] / max(record["time"], 1e-9)
        tqdm.write("  ".join(parts) + f"  (data {share:.0%} of time)")

    # ------------------------------------------------------------------ fit recipes
    def fit(self, epochs: int, lr=1e-3, lr_min_frac: float = 0.0) -> None:
        """Cosine annealing from ``lr`` to ``lr * lr_min_frac`` over all batches."""
        self._fit(epochs, lr, lambda t: schedules.cosine_lr(t / epochs, 1.0, lr_min_frac))

    fit_cosine = fit

    def fit_one_cycle(self, epochs: int, lr=1e-3, pct_start: float = 0.25, div: float = 25.0,
                      div_final: float = 1e5, moms: tuple[float, float, float] = (0.95, 0.85, 0.95)) -> None:
        """fastai's one-cycle: LR warms up (cosine) for ``pct_start`` of the fit, then anneals; momentum mirrors it."""
        self._fit(
            epochs, lr,
            lambda t: schedules.one_cycle_lr(t / epochs, 1.0, pct_start, div, div_final),
            lambda t: schedules.one_cycle_momentum(t / epochs, moms, pct_start),
        )

    def fit_sgdr(self, n_cycles: int, cycle_len: int = 1, lr=1e-3, cycle_mult: int = 1) -> list[dict]:
        """SGDR: ``n_cycles`` cosine cycles with warm restarts; cycle c lasts ``cycle_len * cycle_mult**c`` epochs.

        The weights at each cycle's end are kept in ``self.snapshots`` (snapshot ensembles, Huang et al. 2017).
        """
        lengths = schedules.sgdr_cycle_lengths(n_cycles, cycle_len, cycle_mult)
        if any(int(length) != length for length in lengths):
            raise ValueError("cycle_len and cycle_mult must give whole epochs per cycle")
        cycle_ends = set(np.cumsum(lengths).astype(int) - 1)
        self.snapshots = []

        def keep_snapshot(epoch: int) -> None:
            if epoch in cycle_ends:
                self.snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()})

        self._fit(int(sum(lengths)), lr, lambda t: schedules.sgdr_lr(t, 1.0, n_cycles, cycle_len, cycle_mult),
                  on_epoch_end=keep_snapshot)
        return self.snapshots

    # ------------------------------------------------------------------ LR range test
    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, beta: float = 0.98,
                diverge: float = 4.0, plot: bool = True) -> LRFinderResult:
        """Leslie Smith's LR range test: raise the LR geometrically per batch, smooth the loss, stop on divergence.

        The model, the optimizer and the RNGs are restored exactly afterwards, so the fit that follows starts
        from the same weights.
        """
        model_state = copy.deepcopy(self.model.state_dict())
        opt_state = copy.deepcopy(self.opt.state_dict())
        rng_state = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        lrs_recorded, smoothed, avg, best = [], [], 0.0, math.inf
        model = self._training_model()
        model.train()
        bar = self._bar(num_it, "lr_find")
        step = 0
        try:
            while step < num_it:
                for batch in self.train_loader:
                    lr = schedules.exponential_lr(step, num_it, start_lr, end_lr)
                    self._set_hyper([lr] * len(self.groups), 1.0, None)
                    inputs, target = self._to_device(batch)
                    with self._autocast():
                        loss = self.task.loss(model(*inputs), target)
                    self.opt.zero_grad(set_to_none=True)
                    self.scaler.scale(loss).backward()
                    self.scaler.step(self.opt)
                    self.scaler.update()
                    value = distributed.mean_across_ranks(loss.detach().float()).item()
                    avg = beta * avg + (1 - beta) * value
                    smooth = avg / (1 - beta ** (step + 1))
                    step += 1
                    if bar is not None:
                        bar.update(1)
                    if not math.isfinite(smooth) or smooth > diverge * best:
                        step = num_it
                        break
                    best = min(best, smooth)
                    lrs_recorded.append(lr)
                    smoothed.append(smooth)
                    if step >= num_it:
                        break
        finally:
            if bar is not None:
                bar.close()
            self.model.load_state_dict(model_state)
            self.opt.load_state_dict(opt_state)
            self.opt.zero_grad(set_to_none=True)
            random.setstate(rng_state[0])
            np.random.set_state(rng_state[1])
            torch.set_rng_state(rng_state[2])
        result = suggest_lrs(lrs_recorded, smoothed)
        if plot and self.run_dir is not None and distributed.is_main():
            result.plot_path = plot_lr_find(result, self.run_dir / "lr_find.png")
        return result

    # ------------------------------------------------------------------ evaluation and prediction
    @torch.no_grad()
    def get_preds(self, loader=None, with_loss: bool = False):
        """Decoded predictions (numpy) and targets (numpy or None) over ``loader`` (default: the valid loader)."""
        loader = self.valid_loader if loader is None else loader
        self.model.eval()
        preds, targets, loss_sum, n_rows = [], [], 0.0, 0
        for batch in loader:
            inputs, target = self._to_device(batch)
            with self._autocast():
                out = self.model(*inputs)
            preds.append(self.task.decode(out).cpu())
            if target is not None:
                targets.append(target.cpu())
                if with_loss:
                    loss_sum += self.task.loss(out, target).item() * len(target)
                    n_rows += len(target)
        pred = torch.cat(preds).numpy()
        target = torch.cat(targets).numpy() if targets else None
        if distributed.is_distributed():
            # each rank predicted its share; put every row back in the loader's order on every rank
            rows = distributed.loader_rows(loader)
            if rows is None:
                raise ValueError("under data parallelism, predict with a TensorLoader or a DataLoader with a DistributedSampler")
            pred, target = distributed.gather_in_row_order(rows, pred, target)
            totals = distributed.mean_across_ranks(torch.tensor([loss_sum, float(n_rows)], dtype=torch.float64))
            loss_sum, n_rows = float(totals[0]), float(totals[1])
        if with_loss:
            return pred, target, loss_sum / max(n_rows, 1)
        return pred, target

    def predict(self, loader) -> np.ndarray:
        return self.get_preds(loader)[0]

    def predict_passes(self, loaders: Sequence, beta: float | None = None) -> np.ndarray:
        """Average predictions over several passes (TTA). ``loaders[0]`` is the plain pass; with ``beta`` the result is
        ``beta * plain + (1 - beta) * mean(augmented passes)`` (fastai's blend), else the mean of all passes."""
        passes = [self.predict(loader) for loader in loaders]
        if beta is None or len(passes) == 1:
            return np.mean(passes, axis=0)
        return beta * passes[0] + (1 - beta) * np.mean(passes[1:], axis=0)

    def validate(self, loader=None) -> dict[str, float]:
        pred, target, loss = self.get_preds(loader, with_loss=True)
        record = {"valid_loss": loss}
        for name, fn in self.metrics:
            record[name] = float(fn(target, pred))
        return record

    # ------------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Save the model's weights as safetensors (atomically: a crash never leaves half a file)."""
        from safetensors.torch import save_model

        path = Path(path)
        if not distributed.is_main():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_model(self.model, str(tmp))
        tmp.replace(path)
        return path

    def load(self, path) -> None:
        from safetensors.torch import load_model

        load_model(self.model, str(path), device=str(self.device))

    def load_state(self, state_dict: dict) -> None:
        self.model.load_state_dict(state_dict)

    def _save_history(self) -> None:
        if self.run_dir is None or not self.history or not distributed.is_main():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.run_dir / "history.json.tmp"
        tmp.write_text(json.dumps(self.history, indent=1))
        tmp.replace(self.run_dir / "history.json")
        columns = list(dict.fromkeys(k for record in self.history for k in record))
        lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in self.history]
        tmp = self.run_dir / "history.csv.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.run_dir / "history.csv")
        plot_training(self, self.run_dir / "training.png")


# ---------------------------------------------------------------------- LR finder suggestions and plots
def suggest_lrs(lrs: list[float], losses: list[float]) -> LRFinderResult:
    """fastai's suggestions from a range test: valley (default), steepest descent, minimum / 10."""
    if len(lrs) < 3:
        raise ValueError(f"the LR range test recorded only {len(lrs)} points before the loss diverged; give it more "
                         "batches (num_it) or a lower start_lr")
    # like fastai, ignore the first 10% (the EMA is still warming up) and the last few points (divergence),
    # when there are enough points to spare
    lo, hi = (len(lrs) // 10, len(lrs) - 5) if len(lrs) >= 20 else (0, len(lrs))
    x, y = np.asarray(lrs[lo:hi]), np.asarray(losses[lo:hi])
    grads = np.diff(y) / np.diff(np.log(x))
    steep = float(x[int(np.argmin(grads))])
    minimum = float(x[int(np.argmin(y))] / 10)
    # valley: the longest stretch of decreasing loss, and a point 2/3 of the way down it
    n = len(y)
    run = [1] * n
    best_start, best_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[best_end] < run[i]:
            best_end, best_start = i, i - run[i]
    sections = (best_end - best_start) / 3
    valley = float(x[min(n - 1, best_start + int(sections) + int(sections / 2))])
    return LRFinderResult(list(lrs), list(losses), valley=valley, steep=steep, minimum=minimum)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files, not windows: works on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_lr_find(result: LRFinderResult, path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    for name, lr, color in (("valley", result.valley, "C1"), ("steep", result.steep, "C2"), ("min/10", result.minimum, "C3")):
        ax.axvline(lr, color=color, linestyle="--", label=f"{name} {lr:.1e}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="LR range test")
    ax.legend()
    return _save_fig(fig, path)


def plot_training(learn: Learner, path) -> Path:
    """One PNG with the per-batch LR and momentum schedule and the train/valid losses per epoch."""
    plt = _pyplot()
    fig, (ax_lr, ax_mom, ax_loss) = plt.subplots(1, 3, figsize=(13, 3.5))
    ax_lr.plot(learn.recorder["lr"])
    ax_lr.set(title="learning rate (last group)", xlabel="batch")
    ax_mom.plot(learn.recorder["mom"])
    ax_mom.set(title="momentum (beta1)", xlabel="batch")
    epochs = [h["epoch"] for h in learn.history]
    ax_loss.plot(epochs, [h["train_loss"] for h in learn.history], "o-", label="train")
    if learn.history and "valid_loss" in learn.history[0]:
        ax_loss.plot(epochs, [h["valid_loss"] for h in learn.history], "o-", label="valid")
    ax_loss.set(title="loss", xlabel="epoch")
    ax_loss.legend()
    return _save_fig(fig, path)


def _save_fig(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    tmp.replace(path)
    return path
