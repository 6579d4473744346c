"""scikit-learn's bundled 8x8 digits (1,797 real scans) as an in-memory Competition in Digit Recognizer's layout
(label + pixel0..63; ImageId,Label), with two scikit-learn recipes that train in well under a second."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.adapt.contract import Competition, CompetitionData, FoldContext, FoldPredictions
from kitbox.pipeline import splits


def _pixels(df: pd.DataFrame) -> np.ndarray:
    return df[[c for c in df.columns if c.startswith("pixel")]].to_numpy(np.float64) / 16.0


def logreg_recipe(ctx: FoldContext) -> FoldPredictions:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x, y = _pixels(ctx.data.train), ctx.data.train["label"].to_numpy()
    with threadpool_limits(1):  # BLAS threads on a busy 2-core machine turn 0.1 s into 4 s
        model = LogisticRegression(solver="newton-cg", max_iter=100).fit(x[ctx.train_idx], y[ctx.train_idx])
    return FoldPredictions(oof=model.predict_proba(x[ctx.valid_idx]), test=model.predict_proba(_pixels(ctx.data.test)))


def bayes_recipe(ctx: FoldContext) -> FoldPredictions:
    from sklearn.naive_bayes import GaussianNB

    x, y = _pixels(ctx.data.train), ctx.data.train["label"].to_numpy()
    model = GaussianNB().fit(x[ctx.train_idx], y[ctx.train_idx])
    return FoldPredictions(oof=model.predict_proba(x[ctx.valid_idx]), test=model.predict_proba(_pixels(ctx.data.test)))


class SkDigits(Competition):
    """scikit-learn's digits laid out like Kaggle's Digit Recognizer (label + pixel0..63; ImageId,Label)."""

    slug = "sk-digits"
    metric_name = "accuracy"
    default_folds = 5

    def __init__(self, recipes=None):
        self._recipes = recipes or {"logreg": logreg_recipe, "bayes": bayes_recipe}

    def load(self, data_dir) -> CompetitionData:
        from sklearn.datasets import load_digits

        digits = load_digits()
        pixels = pd.DataFrame(digits.data.astype(np.int64), columns=[f"pixel{i}" for i in range(64)])
        n_train = int(len(pixels) * 0.8)
        train = pd.concat([pd.Series(digits.target[:n_train], name="label"), pixels[:n_train]], axis=1)
        test = pixels[n_train:].reset_index(drop=True)
        sample = pd.DataFrame({"ImageId": np.arange(1, len(test) + 1), "Label": 0})
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        if not (Path(data_dir) / "sample_submission.csv").exists():  # a real file, as a downloaded competition has
            sample.to_csv(Path(data_dir) / "sample_submission.csv", index=False)
        return CompetitionData(train, test, sample, Path(data_dir), sample_path=Path(data_dir) / "sample_submission.csv")

    def split(self, data, n_folds, seed):
        return splits.stratified_kfold(data.train["label"], n_folds, seed)

    def targets(self, data):
        return data.train["label"].to_numpy()

    def recipes(self):
        return dict(self._recipes)

    def submission(self, data, pred):
        return pd.DataFrame({"ImageId": data.sample_submission["ImageId"], "Label": pred.argmax(1)})
