"""Callbacks: small objects the Learner calls at named events, so a technique (mixup, early stopping, SGDR's
snapshots, the LR range test) needs no edit of the loop. The events and what a callback may change at each are
listed on :class:`Callback`; the three Cancel exceptions let a callback end a batch, an epoch or the fit at once."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

from kitbox.training import distributed
from kitbox.training.lr_finder import RangeTest
from kitbox.training.schedules import exponential_lr

if TYPE_CHECKING:
    from kitbox.training.learner import Learner


class CancelBatch(Exception):
    """Raised by a callback in ``before_batch`` or ``after_loss``: the rest of this training step is skipped (nothing
    is backpropagated, the batch adds no loss); ``after_batch`` still fires."""


class CancelEpoch(Exception):
    """Raised by a callback during an epoch's batches: the epoch ends now; its record and ``after_epoch`` follow."""


class CancelFit(Exception):
    """Raised by a callback at any event of a fit: the fit ends now; ``after_fit`` fires and the history is written."""


class Callback:
    """Override the events you need; each receives the Learner. Any object with some of these methods works too.

    Per fit: ``before_fit``, then per epoch the batches, then ``after_epoch`` (``learn.history[-1]`` is the epoch's
    record; set ``learn.stop_training = True`` to stop once this epoch's callbacks have run, or raise
    :class:`CancelFit` to stop at once), and ``after_fit``. ``learn.epoch`` (within this fit), ``learn.iter`` /
    ``learn.n_iter`` (the batch within the epoch) and ``learn.stepping`` (this batch ends an optimizer step) say
    where the fit is. Per batch, in ``Learner.train_step``:

    - ``before_batch``: ``learn.inputs`` (a tuple of tensors) and ``learn.target`` are on the device; a callback may
      assign new ones, and the step feeds whatever they hold then to the model and the loss;
    - ``after_loss``: ``learn.pred`` (the raw output) and ``learn.loss`` are set; a callback may assign a new
      ``learn.loss``, which is what gets backpropagated;
    - ``after_batch``: after the optimizer step (fits only).

    ``before_batch`` and ``after_loss`` belong to the step, so they fire in ``lr_find`` too: the range test measures
    the training a fit will do. The other events of that trial fit go to the range test's own callback alone, and
    none fire when predicting.
    """

    def before_fit(self, learn: "Learner") -> None: ...
    def before_batch(self, learn: "Learner") -> None: ...
    def after_loss(self, learn: "Learner") -> None: ...
    def after_batch(self, learn: "Learner") -> None: ...
    def after_epoch(self, learn: "Learner") -> None: ...
    def after_fit(self, learn: "Learner") -> None: ...


def _improves(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


class SaveBest(Callback):
    """Save the model (safetensors) whenever ``monitor`` improves at an epoch's end."""

    def __init__(self, path, monitor: str = "valid_loss", mode: str = "min"):
        self.path, self.monitor, self.mode, self.best = Path(path), monitor, mode, None

    def after_epoch(self, learn: "Learner") -> None:
        value = learn.history[-1].get(self.monitor)
        if value is not None and _improves(value, self.best, self.mode):
            self.best = value
            learn.save(self.path)


class EarlyStopping(Callback):
    """Stop fitting when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor: str = "valid_loss", mode: str = "min", patience: int = 3, min_delta: float = 0.0):
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, patience, min_delta
        self.best, self.wait = None, 0

    def before_fit(self, learn: "Learner") -> None:
        self.best, self.wait = None, 0

    def after_epoch(self, learn: "Learner") -> None:
        value = learn.history[-1].get(self.monitor)
        if value is None:
            return
        if _improves(value, self.best, self.mode, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                learn.stop_training = True


class _MixBatch(Callback):
    """Shared by MixUp and CutMix: draw lambda ~ Beta(alpha, alpha) and a permutation of the batch, mix the inputs
    (subclasses say how), and score the output against both targets: ``lam * loss(y) + (1 - lam) * loss(y[perm])``.

    ``generator`` is a numpy Generator; by default the global numpy RNG, which ``seed_everything`` seeds, so a seeded
    run repeats. ``alpha=0`` means lambda = 1: the batch is left as it is.
    """

    def __init__(self, alpha: float, generator: np.random.Generator | None = None):
        self.alpha, self.generator = alpha, generator
        self.lam, self.perm, self.shuffled_target = 1.0, None, None

    def before_batch(self, learn: "Learner") -> None:
        rng = np.random if self.generator is None else self.generator
        lam = float(rng.beta(self.alpha, self.alpha)) if self.alpha > 0 else 1.0
        self.perm = torch.as_tensor(rng.permutation(len(learn.target)), device=learn.target.device)
        learn.inputs = self.mix(learn.inputs, lam, self.perm, rng)
        self.shuffled_target = learn.target[self.perm]

    def mix(self, inputs: tuple, lam: float, perm: torch.Tensor, rng) -> tuple:
        raise NotImplementedError

    def after_loss(self, learn: "Learner") -> None:
        other = learn.task.loss(learn.pred, self.shuffled_target)
        learn.loss = self.lam * learn.loss + (1 - self.lam) * other


class MixUp(_MixBatch):
    """mixup (Zhang et al. 2018): each input is ``lam * x + (1 - lam) * x[perm]``, one lambda per batch, taken as
    max(lam, 1 - lam) as fastai does so each mixed row stays closest to its own target. Inputs must be floats."""

    def __init__(self, alpha: float = 0.4, generator: np.random.Generator | None = None):
        super().__init__(alpha, generator)

    def mix(self, inputs: tuple, lam: float, perm: torch.Tensor, rng) -> tuple:
        if not all(x.is_floating_point() for x in inputs):
            raise TypeError("MixUp mixes floating-point inputs; this batch has integer inputs (category codes?)")
        self.lam = max(lam, 1 - lam)
        return tuple(self.lam * x + (1 - self.lam) * x[perm] for x in inputs)


class CutMix(_MixBatch):
    """CutMix (Yun et al. 2019): a box of about (1 - lam) of the image, centred at random, is pasted from ``x[perm]``;
    lambda is then the share of each image left as it was (the box is clipped at the borders)."""

    def __init__(self, alpha: float = 1.0, generator: np.random.Generator | None = None):
        super().__init__(alpha, generator)

    def mix(self, inputs: tuple, lam: float, perm: torch.Tensor, rng) -> tuple:
        if len(inputs) != 1 or inputs[0].ndim != 4:
            raise TypeError("CutMix needs one image batch (N, C, H, W) as the input")
        x = inputs[0]
        height, width = x.shape[-2:]
        cut = np.sqrt(1.0 - lam)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        top, bottom = int(np.clip(cy - height * cut / 2, 0, height)), int(np.clip(cy + height * cut / 2, 0, height))
        left, right = int(np.clip(cx - width * cut / 2, 0, width)), int(np.clip(cx + width * cut / 2, 0, width))
        x = x.clone()  # the loader's tensor may be a view of the whole data set (TensorLoader)
        x[..., top:bottom, left:right] = x[perm][..., top:bottom, left:right]
        self.lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        return (x,)


class Snapshots(Callback):
    """A CPU copy of the weights at the end of each of ``epochs`` (indices within the fit): SGDR's cycle ends, for
    snapshot ensembles (Huang et al. 2017). ``fit_sgdr`` adds one to its fit; ``states`` holds the copies."""

    def __init__(self, epochs: Iterable[int]):
        self.epochs = {int(e) for e in epochs}
        self.states: list[dict[str, torch.Tensor]] = []

    def before_fit(self, learn: "Learner") -> None:
        self.states = []

    def after_epoch(self, learn: "Learner") -> None:
        if learn.epoch in self.epochs:
            self.states.append({k: v.detach().to("cpu", copy=True) for k, v in learn.model.state_dict().items()})


class RangeTestRecorder(Callback):
    """The LR range test as a callback of ``lr_find``'s trial fit: :meth:`lr_factor` is the fit's schedule (``num_it``
    optimizer steps from ``start_lr`` to ``end_lr``, geometrically); after each step the step's loss (the mean over
    its accumulation window, across ranks) goes to ``test``, and the fit is cancelled once ``test`` says the loss
    diverged or ``num_it`` steps are done."""

    def __init__(self, test: RangeTest, start_lr: float, end_lr: float, num_it: int):
        self.test, self.start_lr, self.end_lr, self.num_it = test, start_lr, end_lr, num_it
        self.step, self.window = 0, []

    def lr_factor(self, t: float) -> float:
        """The LR of the step in progress (the fit's LR is 1.0, so the factor is the LR)."""
        return exponential_lr(self.step, self.num_it, self.start_lr, self.end_lr)

    def after_batch(self, learn: "Learner") -> None:
        if learn.loss is not None:
            self.window.append(learn.loss.detach())
        if not learn.stepping or not self.window:
            return
        loss = distributed.mean_across_ranks(torch.stack(self.window).float().mean()).item()
        lr = self.lr_factor(0.0)
        self.window, self.step = [], self.step + 1
        if not self.test.record(lr, loss) or self.step >= self.num_it:
            raise CancelFit
