"""A small real competition for the CLI and pipeline tests: scikit-learn's 8x8 digits (1,797 real scans) written as
Kaggle CSVs, and an adapter file with two sub-second scikit-learn recipes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

ADAPTER = '''
"""scikit-learn's digits as a Kaggle competition: label + pixel columns, ImageId,Label submission."""
from dataclasses import dataclass

import numpy as np

from kitbox import FoldPredictions, TabularCompetition, recipe


@dataclass(frozen=True)
class LogRegOptions:
    C: float = 1.0           # inverse regularisation
    max_iter: int = 100      # solver iterations
    tag: str = "plain"       # only recorded: options shape the fingerprint


def _pixels(df):
    return df[[c for c in df.columns if c.startswith("pixel")]].to_numpy(np.float64) / 16.0


@recipe(options=LogRegOptions)
def logreg(ctx):
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x = _pixels(ctx.data.train)
    with threadpool_limits(1):
        model = LogisticRegression(C=ctx.options.C, max_iter=ctx.options.max_iter).fit(x[ctx.train_idx], ctx.y[ctx.train_idx])
    return FoldPredictions(oof=model.predict_proba(x[ctx.valid_idx]), test=model.predict_proba(_pixels(ctx.data.test)))


@recipe()
def bayes(ctx):
    from sklearn.naive_bayes import GaussianNB

    x = _pixels(ctx.data.train)
    model = GaussianNB().fit(x[ctx.train_idx], ctx.y[ctx.train_idx])
    return FoldPredictions(oof=model.predict_proba(x[ctx.valid_idx]), test=model.predict_proba(_pixels(ctx.data.test)))


class SkDigits(TabularCompetition):
    slug = "sk-digits"
    metric_name = "accuracy"
    default_folds = 3

    def recipes(self):
        return {"logreg": logreg, "bayes": bayes}
'''


def write_digits(folder: Path, id_format: str = "{}") -> Path:
    """scikit-learn's digits (1,797 real 8x8 scans) as train.csv / test.csv / sample_submission.csv."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = pd.DataFrame(digits.data.astype(np.int64), columns=[f"pixel{i}" for i in range(64)])
    n_train = 1400
    folder.mkdir(parents=True, exist_ok=True)
    train = pd.concat([pd.Series(digits.target[:n_train], name="label"), pixels[:n_train]], axis=1)
    ids = [id_format.format(i) for i in range(1, len(pixels) - n_train + 1)]
    test = pd.concat([pd.Series(ids, name="ImageId"), pixels[n_train:].reset_index(drop=True)], axis=1)
    train.to_csv(folder / "train.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"ImageId": ids, "Label": 0}).to_csv(folder / "sample_submission.csv", index=False)
    return folder
