"""The shared trainer: one plain PyTorch loop driven by schedules, over layer groups.

``Learner`` holds a model, its loaders, the task (loss + decoding), an AdamW optimizer with one parameter group per
(layer group, decay or not), and the fit recipes competitors know from fastai: ``fit`` (constant LR),
``fit_one_cycle``, ``fit_sgdr``, ``fit_cosine``, ``lr_find``, ``freeze_to``. ``train_step`` is the whole training
step; ``_fit`` / ``_train_epoch`` the loop around it. Everything else is a callback (kitbox.training.callbacks) at
named events, the loop's own techniques included: SGDR's snapshots are a callback of ``fit_sgdr``, and the LR range
test is a fit over an exponential schedule whose callback records the loss and cancels the fit when it diverges.
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from kitbox.training import device as devices
from kitbox.training import distributed
from kitbox.training import schedules
from kitbox.training.callbacks import CancelBatch, CancelEpoch, CancelFit, RangeTestRecorder, Snapshots
from kitbox.training.groups import layer_groups, spread_lr
from kitbox.training.lr_finder import LRFinderResult, RangeTest, suggest_lrs
from kitbox.metrics import named_metric
from kitbox.training.progress import Progress, plot_lr_find, write_history
from kitbox.io.runs import private_tmp
from kitbox.training.tasks import Task


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; raised instead of handing back a broken model."""


def _norm_params(model: nn.Module) -> set[int]:
    norms = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)
    return {id(p) for m in model.modules() if isinstance(m, norms) for p in m.parameters(recurse=False)}


class Learner:
    """Train a model on (inputs, target) batches with schedules, layer groups and decoded predictions.

    ``device``, ``precision`` ("auto", "fp32", "bf16", "fp16"), ``channels_last`` (None: on for conv nets on CUDA)
    and ``compile`` are resolved by :func:`kitbox.training.device.choose`; ``learn.device_setup.describe()`` says what won.
    """

    def __init__(self, model: nn.Module, train_loader: Iterable, valid_loader: Iterable | None = None,
                 task: Task | None = None, metrics: Sequence = (), wd: float = 0.01, clip: float | None = None,
                 accum_steps: int = 1, device=None, precision: str = "auto", channels_last: bool | None = None,
                 compile=False, run_dir=None, progress: bool = True, callbacks: Sequence = (),
                 seed: int | None = None, groups: list | None = None, sync_bn: bool = False):
        if seed is not None:
            devices.seed_everything(seed)
        if sync_bn and distributed.is_distributed():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
        self.device_setup = devices.choose(model, device, precision, channels_last, compile)
        self.device = self.device_setup.device
        self.model = self.device_setup.place_model(model)
        # compiled once: the compiled forward shares the model's parameters; save/load use the plain model
        self._compiled = devices.CompiledModel(self.model, compile) if compile else None
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.task = task or Task("regression")
        self.metrics = [named_metric(m) for m in metrics]
        self.wd, self.clip, self.accum_steps = wd, clip, max(1, accum_steps)
        self.scaler = self.device_setup.grad_scaler()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress, self.callbacks = Progress(progress and distributed.is_main()), list(callbacks)
        self.groups = [list(g) for g in groups] if groups is not None else layer_groups(self.model)
        self.opt = self._make_optimizer()
        self.history: list[dict] = []
        self.recorder: dict[str, list[float]] = {"lr": [], "mom": [], "loss": []}  # per batch, for plots
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.stop_training, self.frozen_to, self._epochs_done = False, 0, 0
        self.inputs, self.target, self.pred, self.loss = (), None, None, None  # the batch in flight (callbacks)
        self.epoch, self.iter, self.n_iter, self.stepping = 0, 0, 0, False  # where the fit is (callbacks)
        self._fit_callbacks, self._trial = (), False  # the fit in progress: its own callbacks, a trial? (see _fit)

    # ------------------------------------------------------------------ optimizer and layer groups
    def _make_optimizer(self) -> torch.optim.AdamW:
        """AdamW with two parameter groups per layer group: weight decay on weights, none on norms and biases."""
        norm_params = _norm_params(self.model)
        param_groups = []
        for index, group in enumerate(self.groups):
            decay = [p for p in group if p.ndim > 1 and id(p) not in norm_params]
            no_decay = [p for p in group if p.ndim <= 1 or id(p) in norm_params]
            for params, wd in ((decay, self.wd), (no_decay, 0.0)):
                if params:
                    param_groups.append({"params": params, "weight_decay": wd, "layer_group": index})
        return torch.optim.AdamW(param_groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-5,
                                 **self.device_setup.optimizer_options())

    def freeze_to(self, n: int) -> None:
        """Train only groups ``n`` onwards (negative counts from the end). Norm layers in frozen groups keep
        training, as fastai's ``train_bn`` does: their statistics must follow the new data when fine-tuning."""
        n_groups = len(self.groups)
        self.frozen_to = n % n_groups if n < 0 else min(n, n_groups)
        norm_params = _norm_params(self.model)
        for index, group in enumerate(self.groups):
            for p in group:
                p.requires_grad_(index >= self.frozen_to or id(p) in norm_params)

    def freeze(self) -> None:
        """Train only the last group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    def _set_group_lrs(self, lr) -> None:
        """Spread a fit's ``lr`` over the layer groups (:func:`spread_lr`) into each param group's ``group_lr``, which
        the schedule then scales batch by batch (timm's ``lr_scale``, held where the optimizer holds the rest)."""
        lrs = spread_lr(lr, len(self.groups))
        for pg in self.opt.param_groups:
            pg["group_lr"] = lrs[pg["layer_group"]]

    def _set_hyper(self, factor: float, mom: float | None) -> None:
        for pg in self.opt.param_groups:
            pg["lr"] = pg["group_lr"] * factor
            if mom is not None:
                pg["betas"] = (mom, pg["betas"][1])

    # ------------------------------------------------------------------ one training step
    def _training_model(self) -> nn.Module:
        """The module to train through: compiled if asked, wrapped in DistributedDataParallel under torchrun (anew
        for each fit: DDP fixes the set of trainable parameters when it is built, and freeze_to changes that set)."""
        model = self._compiled if self._compiled is not None else self.model
        if not distributed.is_distributed():
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def train_step(self, batch, model: nn.Module | None = None, stepping: bool = True) -> torch.Tensor:
        """One batch: ``before_batch``, forward under autocast, loss, ``after_loss``, scaled backward (the loss divided
        by ``accum_steps``: gradients add up over an accumulation window); when ``stepping``, unscale and clip, the
        optimizer step through the GradScaler, zero_grad. A callback that raises :class:`CancelBatch` in
        ``before_batch`` or ``after_loss`` skips the rest of the step (nothing is backpropagated). ``model``: the module to run (a fit's DDP wrapper; by
        default the model, compiled when the Learner was asked to compile).
        Returns the loss, detached (not read back from the device: that would wait for the GPU)."""
        model = model if model is not None else (self._compiled if self._compiled is not None else self.model)
        self.inputs, self.target = self.device_setup.place_batch(batch)
        self.pred = self.loss = None
        self._call("before_batch")
        # between optimizer steps DDP need not all-reduce gradients: they only accumulate
        in_window = not stepping and isinstance(model, nn.parallel.DistributedDataParallel)
        with model.no_sync() if in_window else contextlib.nullcontext():
            with self.device_setup.autocast():
                self.pred = model(*self.inputs)
                self.loss = self.task.loss(self.pred, self.target)
            self._call("after_loss")
            self.scaler.scale(self.loss / self.accum_steps).backward()
        if stepping:
            if self.clip is not None:
                self.scaler.unscale_(self.opt)  # clip the true gradients, not the scaled ones
                nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
        return self.loss.detach()

    def preserving_state(self):
        """A context in which training changes nothing that lasts: see :func:`kitbox.training.device.restored_afterwards`."""
        return devices.restored_afterwards(self.model, self.opt, self.scaler)

    # ------------------------------------------------------------------ the training loop
    def _fit(self, epochs: int, lr, lr_factor: Callable[[float], float], mom_at: Callable[[float], float] | None = None,
             callbacks: Sequence = (), trial: bool = False) -> None:
        """Train ``epochs`` epochs. ``lr_factor(t)`` / ``mom_at(t)`` give the schedule at t = fractional epoch.

        ``callbacks`` belong to this fit (``fit_sgdr``'s snapshots) and hear each event before the Learner's own. A
        ``trial`` fit (the LR range test) is heard by its own callbacks alone, but for the step's events
        (``before_batch``, ``after_loss``) that reach every callback so the test trains as a fit will; it validates
        nothing and leaves no history. A callback stops the loop with ``learn.stop_training = True`` (after this
        epoch's events) or at once with :class:`CancelBatch`, :class:`CancelEpoch` or :class:`CancelFit`."""
        self._check_train_loader()
        self._set_group_lrs(lr)
        self.stop_training = False
        self._fit_callbacks, self._trial = tuple(callbacks), trial
        model = self._training_model()
        if not self.history and not trial:
            self.progress.write(f"training on {self.device_setup.describe()}")
        try:
            self._call("before_fit")
            for epoch in range(epochs):
                self.epoch = epoch
                self._fit_epoch(model, epoch, lr_factor, mom_at, trial)
                self._call("after_epoch")
                if self.stop_training:
                    break
            self._call("after_fit")
        except CancelFit:
            self._call("after_fit")
        finally:
            self._fit_callbacks, self._trial = (), False
        if self.run_dir is not None and distributed.is_main() and not trial:
            write_history(self.recorder, self.history, self.run_dir)

    def _fit_epoch(self, model: nn.Module, epoch: int, lr_factor, mom_at, trial: bool) -> None:
        """One epoch's batches, then (unless ``trial``) its record: train loss, validation, times."""
        t0 = time.perf_counter()
        losses, data_time = self._train_epoch(model, epoch, lr_factor, mom_at, trial)
        if trial:
            return
        self.recorder["loss"].extend(losses)
        self._epochs_done += 1
        record = {"epoch": self._epochs_done, "train_loss": float(np.mean(losses)) if losses else math.nan}
        if self.valid_loader is not None:
            record.update(self.validate())
        record["time"] = time.perf_counter() - t0
        record["data_time"] = data_time  # time spent waiting for batches: the loader's share of the epoch
        self.history.append(record)
        self.progress.epoch(record)

    def _train_epoch(self, model: nn.Module, epoch: int, lr_factor: Callable[[float], float],
                     mom_at: Callable[[float], float] | None, trial: bool = False) -> tuple[list[float], float]:
        """One pass over the training loader: the per-batch losses, and the seconds spent waiting for batches."""
        n_batches = self.n_iter = len(self.train_loader)
        # On CUDA reading the loss every batch would stall the GPU; read it every few batches instead.
        sync_every = 1 if self.device.type == "cpu" else 20
        model.train()
        data_time, pending, losses = 0.0, [], []
        self.progress.start(n_batches, "lr_find" if trial else f"epoch {self._epochs_done + 1}")
        try:
            t_fetch = time.perf_counter()
            for i, batch in enumerate(self.train_loader):
                data_time += time.perf_counter() - t_fetch
                self.iter = i
                # the schedule's position is that of the accumulation window's first batch, so accumulating
                # k batches of size b steps with the same LRs as batches of size k*b
                t = epoch + (i - i % self.accum_steps) / n_batches
                factor, mom = lr_factor(t), (mom_at(t) if mom_at else 0.9)  # 0.9: AdamW's usual beta1
                self._set_hyper(factor, mom)
                lr = self.opt.param_groups[-1]["lr"]  # the last group's: the head's
                self.stepping = (i + 1) % self.accum_steps == 0 or i + 1 == n_batches
                try:
                    pending.append(self.train_step(batch, model, self.stepping))
                except CancelBatch:
                    pass
                if pending and (len(pending) >= sync_every or i + 1 == n_batches):
                    values = self._read_losses(pending, i, n_batches, lr)
                    losses.extend(values)
                    pending.clear()
                    self.progress.advance(values, lr)
                if not trial:
                    self.recorder["lr"].append(lr)
                    self.recorder["mom"].append(mom)
                self._call("after_batch")
                t_fetch = time.perf_counter()
        except CancelEpoch:
            if pending:
                losses.extend(self._read_losses(pending, self.iter, n_batches, self.opt.param_groups[-1]["lr"]))
        finally:
            self.progress.close()
        return losses, data_time

    def _read_losses(self, pending: list[torch.Tensor], i: int, n_batches: int, lr: float) -> list[float]:
        """The pending batch losses as floats (averaged over ranks); raise on the first that is not finite."""
        values = distributed.mean_across_ranks(torch.stack(pending).float()).cpu().tolist()
        for k, v in enumerate(values):
            if not math.isfinite(v):
                batch_no = i - len(values) + k + 2
                raise TrainingDiverged(
                    f"loss became {v} at epoch {self._epochs_done + 1}, batch {batch_no}/{n_batches} (lr {lr:.2e}); "
                    "lower the learning rate, check the inputs for NaN/inf, or use gradient clipping (clip=1.0)")
        return values

    def _check_train_loader(self) -> None:
        if len(self.train_loader) == 0:
            raise ValueError("the training loader yields no batches (is drop_last on with fewer rows than batch_size?)")

    def _call(self, event: str) -> None:
        """``event`` on the callbacks that hear it: the fit's own first, then the Learner's, except in a trial fit
        (:meth:`_fit`), whose fit, epoch and ``after_batch`` events only its own callbacks hear."""
        step_event = event in ("before_batch", "after_loss")
        listeners = self._fit_callbacks if self._trial and not step_event else (*self._fit_callbacks, *self.callbacks)
        for cb in listeners:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self)

    # ------------------------------------------------------------------ fit recipes
    def fit(self, epochs: int, lr=1e-3) -> None:
        """A constant ``lr`` for ``epochs`` epochs, as fastai's ``fit``; momentum (AdamW's beta1) stays 0.9."""
        self._fit(epochs, lr, lambda t: 1.0)

    def fit_cosine(self, epochs: int, lr=1e-3, lr_min_frac: float = 0.0) -> None:
        """Cosine annealing from ``lr`` to ``lr * lr_min_frac`` over all batches."""
        self._fit(epochs, lr, lambda t: schedules.cosine_lr(t / epochs, 1.0, lr_min_frac))

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
        snapshots = Snapshots(np.cumsum(lengths).astype(int) - 1)  # each cycle's last epoch
        self._fit(int(sum(lengths)), lr, lambda t: schedules.sgdr_lr(t, 1.0, n_cycles, cycle_len, cycle_mult),
                  callbacks=[snapshots])
        self.snapshots = snapshots.states
        return self.snapshots

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100, beta: float = 0.98,
                diverge: float = 4.0, plot: bool = True) -> LRFinderResult:
        """Leslie Smith's LR range test: a trial fit of ``num_it`` optimizer steps at geometrically rising LRs (every
        group the same LR), each step a fit's step (``accum_steps`` batches, clipped); its callback smooths the loss
        and cancels the fit when it diverges. Everything the test changes is put back afterwards
        (:meth:`preserving_state`), so the fit that follows is the same fit."""
        self._check_train_loader()
        recorder = RangeTestRecorder(RangeTest(beta, diverge), start_lr, end_lr, num_it)
        steps_per_epoch = -(-len(self.train_loader) // self.accum_steps)  # an epoch's last window steps too
        with self.preserving_state():
            try:
                self._fit(-(-num_it // steps_per_epoch), 1.0, recorder.lr_factor, callbacks=[recorder], trial=True)
            except TrainingDiverged:  # a loss no longer finite ends the test, as divergence does (the point not kept)
                pass
        result = suggest_lrs(recorder.test.lrs, recorder.test.losses)
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
            inputs, target = self.device_setup.place_batch(batch)
            with self.device_setup.autocast():
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
        tmp = private_tmp(path)
        save_model(self.model, str(tmp))
        tmp.replace(path)
        return path

    def load(self, path) -> None:
        from safetensors.torch import load_model

        load_model(self.model, str(path), device=str(self.device))

    def load_state(self, state_dict: dict) -> None:
        self.model.load_state_dict(state_dict)



def predicting(model: nn.Module, task: Task, device=None) -> Learner:
    """A Learner that only predicts (no data, no training): how a saved fold's model predicts a new test table,
    on ``device`` (None: CUDA when present) in the precision and memory layout training used there."""
    return Learner(model, None, task=task, device=device, progress=False)
