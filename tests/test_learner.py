"""The shared trainer's promises: the fit recipes follow their schedules step by step (pinned to torch's schedulers),
frozen weights stay put, accumulation equals the larger batch, lr_find changes nothing, the NaN guard fires, seeds
repeat, and a small real problem is learned."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from kitbox import Learner, MixUp, Task, TensorLoader, TrainingDiverged, infer_task, seed_everything
from kitbox.training.groups import layer_groups
from kitbox.training.lr_finder import suggest_lrs, valley_index

from helpers.digits import load_digits
from helpers.schedules import torch_one_cycle, torch_sgdr


class SmallNet(nn.Module):
    """Three declared layer groups; BatchNorm in the first so freezing can be checked against BN statistics."""

    def __init__(self, n_in, n_out, hidden=128, dropout=0.0):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout))
        self.middle = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x):
        return self.head(self.middle(self.body(x)))

    def layer_groups(self):
        return [self.body, self.middle, self.head]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    n_valid = len(x) // 5
    return x[n_valid:], y[n_valid:], x[:n_valid], y[:n_valid]


def make_learner(digits, seed=0, hidden=128, n_train=None, loader_seed="same", dropout=0.0, **kwargs):
    xt, yt, xv, yv = digits
    xt, yt = (xt[:n_train], yt[:n_train]) if n_train else (xt, yt)
    train = TensorLoader(xt, yt, batch_size=128, shuffle=True, seed=seed if loader_seed == "same" else loader_seed)
    valid = TensorLoader(xv, yv, batch_size=1024)
    seed_everything(seed)  # before the model exists: its initial weights come from this seed
    model = SmallNet(xt.shape[1], 10, hidden, dropout)
    return Learner(model, train, valid, Task("multiclass", n_out=10), metrics=["accuracy"], seed=seed,
                   progress=False, **kwargs)


def test_small_real_problem_is_learned(digits):
    learn = make_learner(digits, hidden=256)
    learn.fit_one_cycle(8, 1e-2)
    assert learn.history[-1]["accuracy"] > 0.95
    assert learn.history[-1]["train_loss"] < learn.history[0]["train_loss"]


def test_same_seed_gives_identical_losses(digits):
    runs = []
    for _ in range(2):
        learn = make_learner(digits, seed=7, n_train=1024)
        learn.fit(1, 1e-3)
        runs.append(learn.recorder["loss"])
    assert runs[0] == runs[1]


def test_fit_keeps_a_constant_lr_per_group_and_no_decay_on_biases(digits):
    learn = make_learner(digits, n_train=1024)
    learn.fit(2, slice(1e-4, 1e-2))
    assert learn.recorder["lr"] == [1e-2] * 16 and learn.recorder["mom"] == [0.9] * 16
    by_group = {pg["layer_group"]: pg["lr"] for pg in learn.opt.param_groups}
    assert by_group == pytest.approx({0: 1e-4, 1: 1e-3, 2: 1e-2}, rel=1e-12)
    for pg in learn.opt.param_groups:
        if pg["weight_decay"] > 0:
            assert all(p.ndim > 1 for p in pg["params"])


def test_fit_cosine_anneals_from_lr_to_its_floor(digits):
    learn = make_learner(digits, n_train=1024)
    learn.fit_cosine(2, 1e-2, lr_min_frac=0.1)
    n = 16  # 2 epochs of 8 batches
    expected = [1e-3 + (1e-2 - 1e-3) * (1 + np.cos(np.pi * i / n)) / 2 for i in range(n)]
    np.testing.assert_allclose(learn.recorder["lr"], expected, rtol=1e-12)


def test_fit_one_cycle_steps_lr_and_momentum_as_torch_one_cycle_lr(digits):
    learn = make_learner(digits, n_train=1024)
    learn.fit_one_cycle(3, 4e-3, pct_start=0.3, div=20.0, div_final=1e4, moms=(0.95, 0.85, 0.95))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = torch_one_cycle(3 * 8, 4e-3, 0.3, 20.0, 1e4, (0.95, 0.85, 0.95))
    np.testing.assert_allclose(np.c_[learn.recorder["lr"], learn.recorder["mom"]], reference, rtol=1e-12)
    # and the optimizer really received them: beta1 of the last batch
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(reference[-1, 1], rel=1e-12)


@pytest.mark.parametrize("cycle_mult,n_epochs", [(1, 3), (2, 7)])
def test_fit_sgdr_steps_as_torch_warm_restarts_and_keeps_one_snapshot_per_cycle(digits, cycle_mult, n_epochs):
    learn = make_learner(digits, n_train=512)  # 4 batches per epoch
    snaps = learn.fit_sgdr(3, cycle_len=1, lr=1e-2, cycle_mult=cycle_mult)
    assert len(learn.history) == n_epochs
    np.testing.assert_allclose(learn.recorder["lr"], torch_sgdr(4, 1, cycle_mult, 1e-2, 0.0, n_epochs * 4),
                               rtol=1e-12, atol=1e-18)
    assert len(snaps) == 3
    assert torch.equal(snaps[-1]["head.weight"], learn.model.state_dict()["head.weight"].cpu())
    assert not torch.equal(snaps[0]["head.weight"], snaps[1]["head.weight"])


def test_frozen_groups_stay_bit_identical_while_norm_layers_keep_training(digits):
    learn = make_learner(digits, n_train=2048)
    model = learn.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2)
    after = model.state_dict()
    for name in ("body.0.weight", "body.0.bias", "middle.0.weight", "middle.0.bias"):
        assert torch.equal(before[name], after[name]), name
    # the frozen group's BatchNorm still learns: its affine parameters and its statistics move
    for name in ("body.1.weight", "body.1.bias", "body.1.running_mean", "head.weight"):
        assert not torch.equal(before[name], after[name]), name
    learn.freeze_to(1)
    assert not model.body[0].weight.requires_grad and model.middle[0].weight.requires_grad
    learn.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("clip", [None, 0.05])
def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b(clip):
    """No batchnorm: then the mean gradient over 4 batches of 8 is the gradient of one batch of 32, and clipping
    applies to the accumulated gradient, so the weights after several steps agree to float round-off."""
    torch.manual_seed(0)
    x, y = torch.randn(96, 5), torch.randn(96)
    results = []
    for bs, accum in ((32, 1), (8, 4)):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 1))
        initial = [p.detach().clone() for p in model.parameters()]
        learn = Learner(model, TensorLoader(x, y, batch_size=bs), task=Task("regression"), accum_steps=accum,
                        clip=clip, progress=False)
        learn.fit_one_cycle(2, 1e-2)
        results.append([p.detach().clone() for p in model.parameters()])
        assert all((a - b).abs().max() > 1e-4 for a, b in zip(initial, results[-1]))  # six steps really moved them
    for big, accumulated in zip(*results):
        torch.testing.assert_close(accumulated, big, rtol=1e-5, atol=1e-6)


def test_lr_find_restores_model_and_optimizer_and_saves_a_plot(digits, tmp_path):
    learn = make_learner(digits, run_dir=tmp_path, n_train=2048)
    learn.fit(1, 1e-3)  # give the optimizer some state to restore
    model_before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = {k: v.clone() for k, v in learn.opt.state[learn.model.head.weight].items()}
    hyper_before = [(pg["lr"], pg["betas"]) for pg in learn.opt.param_groups]
    result = learn.lr_find(num_it=40)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    for k, v in learn.opt.state[learn.model.head.weight].items():
        assert torch.equal(v, opt_before[k]), k
    assert [(pg["lr"], pg["betas"]) for pg in learn.opt.param_groups] == hyper_before
    assert all(p.grad is None for p in learn.model.parameters())
    assert len(result.lrs) == len(result.losses) and result.lrs == sorted(result.lrs)
    assert (tmp_path / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fit_after_lr_find_is_the_fit_without_it(digits):
    """Same seed: lr_find in between leaves no trace, down to the bytes. The model has dropout (torch's RNG) and
    MixUp draws from numpy's; the loader shuffles with the global torch RNG (a seeded loader keeps its own
    generator, which lr_find does not rewind)."""
    weights = []
    for find_first in (False, True):
        learn = make_learner(digits, n_train=1024, loader_seed=None, dropout=0.2, callbacks=[MixUp(0.4)])
        if find_first:
            learn.lr_find(num_it=12, plot=False)
        learn.fit_one_cycle(2, 3e-3)
        weights.append({k: v.clone() for k, v in learn.model.state_dict().items()})
    for k in weights[0]:
        assert torch.equal(weights[0][k], weights[1][k]), k


def test_lr_find_steps_through_the_accumulation_window():
    """With accum_steps=k, each of lr_find's num_it LRs is one optimizer step over k batches, as in a fit, where an
    epoch's last window is shorter: 8 batches an epoch, k=3 -> steps of 3, 3, 2 batches; 10 steps = 27 batches."""

    class CountBatches:
        before_batch_calls = 0

        def before_batch(self, learn):
            self.before_batch_calls += 1

    counter = CountBatches()
    x, y = torch.randn(64, 3), torch.randn(64)
    learn = Learner(nn.Linear(3, 1), TensorLoader(x, y, batch_size=8), task=Task("regression"), accum_steps=3,
                    progress=False, callbacks=[counter])
    result = learn.lr_find(start_lr=1e-6, end_lr=1e-3, num_it=10, plot=False)
    assert counter.before_batch_calls == 27 and len(result.lrs) == 10


def test_nan_loss_stops_with_epoch_and_batch_named(digits):
    xt, yt, xv, yv = digits
    xt = xt.clone()
    xt[300:] = float("nan")
    train = TensorLoader(xt, yt, batch_size=100)
    learn = Learner(SmallNet(xt.shape[1], 10), train, None, Task("multiclass", n_out=10), progress=False)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 4/"):
        learn.fit(1, 1e-3)


def test_save_and_load_roundtrip(digits, tmp_path):
    learn = make_learner(digits, n_train=1024)
    learn.fit(1, 1e-3)
    path = learn.save(tmp_path / "model.safetensors")
    expected = learn.predict(learn.valid_loader)
    other = make_learner(digits, seed=3)
    assert not np.allclose(other.predict(other.valid_loader), expected)
    other.load(path)
    np.testing.assert_allclose(other.predict(other.valid_loader), expected, rtol=1e-6)


def test_timm_models_split_into_stem_stages_and_head():
    import timm

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=2)
    groups = layer_groups(model)
    assert len(groups) >= 3
    names = {id(p): n for n, p in model.named_parameters()}
    assert names[id(groups[0][0])].startswith("conv_stem")
    assert {names[id(p)] for p in groups[-1]} == {"classifier.weight", "classifier.bias"}


def test_task_head_follows_the_target():
    assert infer_task(np.array([0.5, 1.25, 3.0])).kind == "regression"
    assert infer_task(np.array([0, 1, 1, 0])).kind == "binary"
    assert infer_task(np.array([3, 1, 2, 0])).n_out == 4
    multi = infer_task(pd.Series(["haze primary", "clear", "primary water"]))
    assert multi.kind == "multilabel" and multi.n_out == 4  # haze, primary, clear, water
    with pytest.raises(ValueError, match="softmax"):
        infer_task(pd.Series(["haze primary", "clear"]), kind="multiclass")
    with pytest.raises(ValueError, match="softmax"):
        Task("multiclass", n_out=3).loss(torch.zeros(2, 3), torch.tensor([[1, 0, 1], [0, 1, 1]]))
    task = Task("regression", y_range=(0.0, 12.0))
    assert task.scale_output(torch.tensor([[-50.0], [0.0], [50.0]])).tolist() == pytest.approx([0.0, 6.0, 12.0])
    assert task.decode(torch.tensor([[0.0]])).tolist() == [6.0]
    logits = torch.tensor([[2.0, -1.0]])
    assert torch.equal(Task("multiclass", n_out=2).scale_output(logits), logits)  # logits pass through
    probs = Task("multilabel", n_out=3).decode(torch.zeros(2, 3))
    assert probs.shape == (2, 3) and torch.all(probs == 0.5)


def test_tensor_loader_covers_every_row_once_per_epoch():
    x = torch.arange(1000).float().unsqueeze(1)
    loader = TensorLoader(x, x.squeeze(1), batch_size=64, shuffle=True, seed=0)
    seen = torch.cat([target for _, target in loader])
    assert len(loader) == 16 and sorted(seen.tolist()) == list(range(1000))
    first, second = [torch.cat([t for _, t in loader]) for _ in range(2)]
    assert not torch.equal(first, second)  # a fresh shuffle each epoch
    with pytest.raises(ValueError, match="rows"):
        TensorLoader(x, x[:10])


def test_lr_suggestions_from_hand_worked_curves():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2]
    result = suggest_lrs(lrs, [2.3, 2.2, 1.9, 2.5])
    assert result.steep == 1e-4  # the steepest fall per log-LR is from 1e-4 to 1e-3
    assert result.minimum == pytest.approx(1e-4)  # the lowest loss is at 1e-3; a tenth of it
    # the longest descending run is points 0-2; fastai's index arithmetic lands on its first point
    assert result.valley == 1e-5
    # a run of only two points once made the index -1, i.e. the last, divergent LR
    assert valley_index(np.array([2.0, 1.9, 2.5, 3.0])) == 0
    assert valley_index(np.r_[np.arange(10.0, 0.0, -1.0), 5.0]) == 3  # ten falling points: 3 in
    with pytest.raises(ValueError, match="num_it"):
        suggest_lrs([1e-5, 1e-4], [2.3, 9.0])


def test_the_task_says_the_dtype_its_loss_takes_targets_in():
    """Softmax takes class indices, every other head floats: loaders and recipes ask the task, not each other."""
    assert Task("multiclass", n_out=3).target_dtype == torch.int64
    assert {Task(k, n_out=2).target_dtype for k in ("regression", "binary", "multilabel")} == {torch.float32}
    assert Task("multiclass", n_out=3).targets(np.array([0.0, 2.0])).dtype == np.int64
    assert Task("binary").targets([0, 1]).dtype == np.float32


def test_one_task_inference_for_arrays_and_target_columns():
    """The rules the table base applies to train.csv's target columns are the rules infer_task applies to arrays."""
    from kitbox.training.tasks import infer_kind

    assert infer_kind(np.array([[0, 1], [1, 1], [0, 0]]))[0] == "multilabel"
    assert infer_kind(np.array([[0.5, 2.0], [1.5, 1.0]]))[0] == "regression"  # several value columns
    many = pd.Series(np.arange(60) % 30, name="units")
    assert infer_kind(many)[0] == "regression"  # 30 whole numbers and no metric: a quantity
    assert infer_kind(many, metric_kind="label") == ("multiclass", list(range(30)))  # a label metric: classes
    assert infer_kind(pd.Series(["b a", "c", "a"]), label_sep=" ") == ("multilabel", ["a", "b", "c"])
    with pytest.raises(ValueError, match="target column 'units' has 1 distinct value"):
        infer_kind(pd.Series([3, 3, 3], name="units"))
