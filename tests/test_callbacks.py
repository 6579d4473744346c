"""Callbacks through the Learner's events: what before_batch / after_loss may replace, MixUp and CutMix mixing inputs
and targets with one permutation, SaveBest and EarlyStopping, the Cancel exceptions, and lr_find's trial fit that the
Learner's own callbacks only hear the steps of."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kitbox import CutMix, EarlyStopping, Learner, MixUp, SaveBest, Task, TensorLoader
from kitbox.training.callbacks import CancelBatch, CancelEpoch, CancelFit


class Spy:
    """Records what the step holds after the callbacks before it in the list have run."""

    def before_batch(self, learn):
        self.inputs, self.target = learn.inputs, learn.target

    def after_loss(self, learn):
        self.pred, self.loss = learn.pred, learn.loss


def one_step_learner(x, y, model, callbacks, task=None):
    return Learner(model, TensorLoader(x, y, batch_size=len(x)), task=task or Task("regression"), progress=False,
                   callbacks=callbacks)


def test_mixup_at_alpha_0_is_the_plain_step():
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    losses, weights = [], []
    for callbacks in ([], [MixUp(alpha=0.0, generator=np.random.default_rng(0))]):
        torch.manual_seed(1)
        learn = one_step_learner(x, y, nn.Linear(4, 3), callbacks, Task("multiclass", n_out=3))
        losses.append(learn.train_step(next(iter(learn.train_loader))))
        weights.append(learn.model.weight.detach().clone())
    assert losses[0].item() == losses[1].item()
    assert torch.equal(weights[0], weights[1])


def test_mixup_mixes_inputs_and_targets_with_the_same_permutation():
    n = 12
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i: the mix can be read back
    y = torch.arange(n, dtype=torch.float32)
    mixup, spy = MixUp(alpha=1.0, generator=np.random.default_rng(7)), Spy()
    learn = one_step_learner(x, y, nn.Linear(3, 1), [mixup, spy])
    learn.train_step(next(iter(learn.train_loader)))

    reference = np.random.default_rng(7)  # the same draws, in the same order: lambda, then the permutation
    lam = reference.beta(1.0, 1.0)
    perm = reference.permutation(n)
    assert mixup.lam == pytest.approx(max(lam, 1 - lam)) and mixup.lam < 1
    np.testing.assert_array_equal(mixup.shuffled_target.numpy(), y.numpy()[perm])
    # the rows mixed into the inputs are the rows whose targets are mixed into the loss
    partner = (spy.inputs[0][:, 0] - mixup.lam * y) / (1 - mixup.lam)
    torch.testing.assert_close(partner, mixup.shuffled_target, rtol=0, atol=1e-4)
    # after_loss: the loss backpropagated is lam * loss(y) + (1 - lam) * loss(y[perm])
    pred = spy.pred.squeeze(-1)
    expected = mixup.lam * F.mse_loss(pred, y) + (1 - mixup.lam) * F.mse_loss(pred, y[perm])
    assert spy.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_mixup_refuses_integer_inputs():
    x, y = torch.randint(0, 5, (8, 2)), torch.randn(8)
    learn = one_step_learner(x, y, nn.Sequential(nn.Embedding(5, 2), nn.Flatten(), nn.Linear(4, 1)), [MixUp(0.4)])
    with pytest.raises(TypeError, match="floating-point"):
        learn.train_step(next(iter(learn.train_loader)))


@pytest.mark.parametrize("seed", range(6))
def test_cutmix_lambda_is_the_share_of_each_image_left_as_it_was(seed):
    n, height, width = 8, 12, 20
    x = torch.arange(n, dtype=torch.float32)[:, None, None, None].repeat(1, 2, height, width)  # image i is all i
    y = torch.arange(n, dtype=torch.float32)
    cutmix, spy = CutMix(alpha=1.0, generator=np.random.default_rng(seed)), Spy()
    model = nn.Sequential(nn.Conv2d(2, 1, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    learn = one_step_learner(x, y, model, [cutmix, spy])
    learn.train_step(next(iter(learn.train_loader)))
    mixed = spy.inputs[0]
    perm = cutmix.perm
    assert 0 < cutmix.lam < 1  # a box was pasted
    for i in range(n):
        if perm[i] == i:
            continue
        pasted = (mixed[i] != i).float().mean().item()
        assert cutmix.lam == pytest.approx(1 - pasted)
        # what was pasted is the partner whose target is mixed in
        assert set(mixed[i][mixed[i] != i].tolist()) <= {float(cutmix.shuffled_target[i])}
    assert torch.equal(x, torch.arange(n, dtype=torch.float32)[:, None, None, None].repeat(1, 2, height, width))


def test_before_batch_may_replace_the_target_and_after_loss_the_loss():
    class HalveTargets:
        def before_batch(self, learn):
            learn.target = learn.target / 2

    class DoubleLoss:
        def after_loss(self, learn):
            learn.loss = 2 * learn.loss

    torch.manual_seed(0)
    x, y = torch.randn(10, 3), torch.randn(10)
    model = nn.Linear(3, 1)
    with torch.no_grad():
        expected = 2 * F.mse_loss(model(x).squeeze(-1), y / 2)
    learn = one_step_learner(x, y, model, [HalveTargets(), DoubleLoss()])
    assert learn.train_step(next(iter(learn.train_loader))).item() == pytest.approx(expected.item(), rel=1e-6)


def make_regression_learner(callbacks):
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    return Learner(nn.Linear(3, 1), TensorLoader(x, y, batch_size=16), TensorLoader(x, y, batch_size=64),
                   task=Task("regression"), progress=False, callbacks=callbacks)


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    learn = make_regression_learner([stopper])
    learn.fit(10, 0.0)  # lr 0: the valid loss never improves after the first epoch
    assert len(learn.history) == 3 and stopper.wait == 2


def test_save_best_saves_only_when_the_monitored_value_improves(tmp_path):
    from safetensors.torch import load_file

    saver = SaveBest(tmp_path / "best.safetensors")
    learn = make_regression_learner([saver])
    learn.fit(3, 5e-2)
    losses = [h["valid_loss"] for h in learn.history]
    assert losses == sorted(losses, reverse=True) and saver.best == losses[-1]
    best_weight = learn.model.weight.detach().clone()
    learn.fit(1, 10.0)  # a step far too large: the valid loss gets worse, so the file keeps the best weights
    assert learn.history[-1]["valid_loss"] > saver.best
    saved = load_file(tmp_path / "best.safetensors")
    assert torch.equal(saved["weight"], best_weight) and not torch.equal(saved["weight"], learn.model.weight)
    learn.callbacks = [SaveBest(tmp_path / "other.safetensors", monitor="accuracy")]
    learn.fit(1, 1e-3)
    assert not (tmp_path / "other.safetensors").exists()  # a metric the Learner does not record saves nothing


class Events:
    """Records every event it hears; raises ``error`` at ``event`` when the fit reaches (epoch, iter) ``at``."""

    def __init__(self, error=None, event=None, at=(0, 0)):
        self.heard, self.error, self.event, self.at = [], error, event, at

    def __getattr__(self, event):
        if event not in ("before_fit", "before_batch", "after_loss", "after_batch", "after_epoch", "after_fit"):
            raise AttributeError(event)

        def hear(learn):
            self.heard.append(event)
            if event == self.event and (learn.epoch, learn.iter) == self.at:
                raise self.error
        return hear


def eight_batch_learner(callbacks, run_dir=None):
    torch.manual_seed(0)
    x, y = torch.randn(64, 3), torch.randn(64)
    return Learner(nn.Linear(3, 1), TensorLoader(x, y, batch_size=8), task=Task("regression"), progress=False,
                   callbacks=callbacks, run_dir=run_dir)


def test_cancel_batch_skips_the_step_and_the_weights_stay_unchanged():
    events = Events(CancelBatch(), "after_loss", at=(0, 0))
    learn = eight_batch_learner([events])
    learn.train_loader = TensorLoader(torch.randn(8, 3), torch.randn(8), batch_size=8)  # one batch: its step cancelled
    before = learn.model.weight.detach().clone()
    learn.fit(1, 1e-1)
    assert torch.equal(learn.model.weight, before)
    assert events.heard == ["before_fit", "before_batch", "after_loss", "after_batch", "after_epoch", "after_fit"]
    assert np.isnan(learn.history[0]["train_loss"])  # no batch added a loss


def test_cancel_epoch_ends_the_epoch_and_the_next_one_runs(tmp_path):
    events = Events(CancelEpoch(), "after_batch", at=(0, 2))  # epoch 0 ends after its third batch
    learn = eight_batch_learner([events])
    learn.fit(2, 1e-2)
    assert events.heard.count("after_batch") == 3 + 8 and events.heard.count("after_epoch") == 2
    assert len(learn.recorder["loss"]) == 3 + 8 and [h["epoch"] for h in learn.history] == [1, 2]


def test_cancel_fit_ends_the_fit_at_once_and_after_fit_still_runs_and_the_history_is_written(tmp_path):
    events = Events(CancelFit(), "after_batch", at=(1, 4))
    learn = eight_batch_learner([events], run_dir=tmp_path)
    learn.fit(3, 1e-2)
    assert events.heard.count("after_batch") == 8 + 5 and events.heard[-1] == "after_fit"
    assert len(learn.history) == 1 and (tmp_path / "history.json").exists()  # epoch 2 never got its record


def test_lr_find_is_a_trial_fit_the_learners_callbacks_only_hear_the_steps_of(tmp_path):
    events = Events()
    saver = SaveBest(tmp_path / "best.safetensors", monitor="train_loss")
    learn = eight_batch_learner([events, saver], run_dir=tmp_path)
    result = learn.lr_find(num_it=12, plot=False)
    assert len(result.lrs) <= 12 and set(events.heard) == {"before_batch", "after_loss"}
    # one batch a step; a step whose loss diverged ran but is not kept
    assert events.heard.count("before_batch") in (len(result.lrs), len(result.lrs) + 1)
    assert learn.history == [] and not (tmp_path / "history.json").exists() and not saver.path.exists()
    assert learn.recorder == {"lr": [], "mom": [], "loss": []}
