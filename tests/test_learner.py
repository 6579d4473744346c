"""The shared trainer's promises: frozen weights stay put, lr_find changes nothing, SGDR keeps snapshots,
the NaN guard fires, seeds repeat, and a small real problem is learned."""
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from kitbox import Learner, Task, TensorLoader, TrainingDiverged, infer_task, seed_everything
from kitbox.groups import layer_groups

from conftest import SHARED_DATA


def load_digits(n_max=8000):
    """Digit Recognizer's real CSV when ../shared is here, scikit-learn's bundled 8x8 digits otherwise."""
    path = SHARED_DATA / "digit-recognizer" / "train.csv"
    if path.exists():
        df = pd.read_csv(path, nrows=n_max)
        x = df.drop(columns="label").to_numpy(np.float32) / 255.0
        y = df["label"].to_numpy()
    else:
        from sklearn.datasets import load_digits as sk_digits

        d = sk_digits()
        x, y = d.data.astype(np.float32) / 16.0, d.target
    return torch.tensor(x), torch.tensor(y)


class SmallNet(nn.Module):
    """Three declared layer groups; BatchNorm in the first so freezing can be checked against BN statistics."""

    def __init__(self, n_in, n_out, hidden=128):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
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


def make_learner(digits, seed=0, hidden=128, **kwargs):
    xt, yt, xv, yv = digits
    train = TensorLoader(xt, yt, batch_size=128, shuffle=True, seed=seed)
    valid = TensorLoader(xv, yv, batch_size=1024)
    seed_everything(seed)  # before the model exists: its initial weights come from this seed
    model = SmallNet(xt.shape[1], 10, hidden)
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
        learn = make_learner(digits, seed=7)
        learn.fit(1, 1e-3)
        runs.append(learn.recorder["loss"])
    assert runs[0] == runs[1]


def test_frozen_weights_stay_bit_identical_while_batchnorm_statistics_move(digits):
    learn = make_learner(digits)
    model = learn.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn.freeze()
    learn.fit_one_cycle(1, 1e-2)
    after = model.state_dict()
    for name in ("body.0.weight", "body.0.bias", "middle.0.weight", "middle.0.bias"):
        assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["body.1.running_mean"], after["body.1.running_mean"])
    assert not torch.equal(before["head.weight"], after["head.weight"])
    # freeze_to(1) lets the middle train too, and unfreeze everything
    learn.freeze_to(1)
    assert not model.body[0].weight.requires_grad and model.middle[0].weight.requires_grad
    learn.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


def test_differential_lrs_reach_each_group(digits):
    learn = make_learner(digits)
    learn._set_hyper([1e-4, 1e-3, 1e-2], 1.0, 0.9)
    by_group = {pg["layer_group"]: pg["lr"] for pg in learn.opt.param_groups}
    assert by_group == {0: 1e-4, 1: 1e-3, 2: 1e-2}
    # no weight decay on biases and norm parameters
    for pg in learn.opt.param_groups:
        if pg["weight_decay"] > 0:
            assert all(p.ndim > 1 for p in pg["params"])


def test_lr_find_restores_model_and_optimizer_and_saves_a_plot(digits, tmp_path):
    learn = make_learner(digits, run_dir=tmp_path)
    learn.fit(1, 1e-3)  # give the optimizer some state to restore
    model_before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = {k: v.clone() for k, v in learn.opt.state[learn.model.head.weight].items()}
    result = learn.lr_find(num_it=60)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    for k, v in learn.opt.state[learn.model.head.weight].items():
        assert torch.equal(v, opt_before[k]), k
    assert 1e-7 <= result.valley <= 10 and 1e-7 <= result.steep <= 10
    assert result.losses[-1] <= 4 * min(result.losses) + 1e-9
    png = tmp_path / "lr_find.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sgdr_restarts_and_keeps_one_snapshot_per_cycle(digits):
    learn = make_learner(digits)
    n = len(learn.train_loader)
    snaps = learn.fit_sgdr(3, cycle_len=1, lr=1e-2, cycle_mult=2)
    lrs = learn.recorder["lr"]
    assert len(lrs) == 7 * n and len(learn.history) == 7
    for restart in (1, 3):  # the LR jumps back to its maximum at each cycle start
        assert lrs[restart * n] == pytest.approx(1e-2)
        assert lrs[restart * n - 1] < 1e-3
    assert len(snaps) == 3
    assert torch.equal(snaps[-1]["head.weight"], learn.model.state_dict()["head.weight"].cpu())
    assert not torch.equal(snaps[0]["head.weight"], snaps[1]["head.weight"])
    learn2 = make_learner(digits)
    assert len(learn2.fit_sgdr(2, cycle_len=1, lr=1e-3, cycle_mult=1)) == 2  # fastai crashes on cycle_mult=1


def test_nan_loss_stops_with_epoch_and_batch_named(digits):
    xt, yt, xv, yv = digits
    xt = xt.clone()
    xt[300:] = float("nan")
    train = TensorLoader(xt, yt, batch_size=100)
    learn = Learner(SmallNet(xt.shape[1], 10), train, None, Task("multiclass", n_out=10), progress=False)
    with pytest.raises(TrainingDiverged, match=r"epoch 1, batch 4/"):
        learn.fit(1, 1e-3)


def test_gradient_accumulation_matches_the_larger_batch():
    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randn(64)
    results = []
    for bs, accum in ((32, 1), (16, 2)):
        torch.manual_seed(1)
        model = nn.Linear(5, 1)
        learn = Learner(model, TensorLoader(x, y, batch_size=bs), task=Task("regression"), accum_steps=accum, progress=False)
        learn.fit(1, 1e-2)
        results.append(model.weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-6)


def test_save_and_load_roundtrip(digits, tmp_path):
    learn = make_learner(digits)
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
    decoded = task.decode(torch.tensor([[-50.0], [0.0], [50.0]]))
    assert decoded.tolist() == pytest.approx([0.0, 6.0, 12.0])
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


def test_thresholds_are_chosen_on_validation_not_fixed():
    from kitbox.metrics import f1, fbeta_multilabel
    from kitbox.tasks import best_threshold, best_thresholds_multilabel

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    probs = np.clip(0.3 * y + rng.uniform(0, 0.6, 2000), 0, 1)  # positives sit above ~0.3, never near 0.5 alone
    threshold, score = best_threshold(y, probs, f1)
    assert 0.25 <= threshold <= 0.4 and score > f1(y, (probs >= 0.5).astype(int)) + 0.1
    y2 = np.stack([y, 1 - y], 1)
    probs2 = np.stack([probs, 1 - probs], 1)
    thresholds = best_thresholds_multilabel(y2, probs2, fbeta_multilabel)
    assert fbeta_multilabel(y2, probs2, threshold=thresholds) >= fbeta_multilabel(y2, probs2, threshold=0.5)


def test_lr_suggestions_from_a_short_range_test():
    from kitbox.learner import suggest_lrs

    result = suggest_lrs([1e-5, 1e-4, 1e-3, 1e-2], [2.3, 2.2, 1.9, 2.5])
    assert result.steep == 1e-4  # the steepest fall is from 1e-4 to 1e-3
    assert 1e-5 <= result.valley <= 1e-3
    with pytest.raises(ValueError, match="num_it"):
        suggest_lrs([1e-5, 1e-4], [2.3, 9.0])
