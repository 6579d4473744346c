"""A small real competition for the Ray tests (importable by Ray workers): scikit-learn's digits, a torch recipe."""
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from kitbox import Learner, Task, TensorLoader, seed_everything
from kitbox.adapt.contract import Competition, CompetitionData, FoldPredictions, recipe
from kitbox.pipeline.splits import kfold


class SmallDigits(Competition):
    slug = "small-digits"
    metric_name = "accuracy"
    default_folds = 2

    def load(self, data_dir):
        from sklearn.datasets import load_digits

        d = load_digits()
        train = pd.DataFrame(d.data[:1200].astype(np.float32) / 16)
        train["label"] = d.target[:1200]
        test = pd.DataFrame(d.data[1200:].astype(np.float32) / 16)
        sample = pd.DataFrame({"ImageId": np.arange(1, len(test) + 1), "Label": 0})
        return CompetitionData(train, test, sample, Path(data_dir))

    def split(self, data, n_folds, seed):
        return kfold(len(data.train), n_folds, seed)

    def targets(self, data):
        return data.train["label"].to_numpy()

    def recipes(self):
        return {"mlp": mlp_recipe, "stacked": stacked_recipe}

    def submission(self, data, test_pred):
        return pd.DataFrame({"ImageId": data.sample_submission["ImageId"], "Label": test_pred.argmax(1)})


def mlp_recipe(ctx):
    if (ctx.fold_dir.parent / f"fail_fold{ctx.fold}").exists():
        raise RuntimeError(f"fold {ctx.fold} told to fail")
    x = torch.tensor(ctx.data.train.drop(columns="label").to_numpy(np.float32))
    y = torch.tensor(ctx.data.train["label"].to_numpy())
    seed_everything(ctx.seed + (ctx.fold if not ctx.is_refit else 99))
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    t, v = ctx.train_idx, ctx.valid_idx
    learn = Learner(model, TensorLoader(x[t], y[t], batch_size=64, shuffle=True, seed=ctx.seed), None,
                    Task("multiclass", n_out=10), progress=False)
    learn.fit_one_cycle(3, 1e-2)
    test = torch.tensor(ctx.data.test.to_numpy(np.float32))
    oof = np.zeros((0, 10)) if ctx.is_refit else learn.predict(TensorLoader(x[v], batch_size=512, has_target=False))
    return FoldPredictions(oof=oof,
                      test=learn.predict(TensorLoader(test, batch_size=512, has_target=False)))


@recipe(needs=("mlp",))
def stacked(ctx):
    """Reads the mlp recipe's predictions of the same fold (or its refit): a recipe that needs another."""
    source = ctx.inputs["mlp"]
    test = np.load(source / "test.npy")
    oof = np.load(source / "oof.npy")
    return FoldPredictions(oof=oof, test=test, info={"read_from": str(source)})


stacked_recipe = stacked
