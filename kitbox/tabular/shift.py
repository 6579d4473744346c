"""Adversarial validation: can a model tell the training rows from the test rows? An AUC near 0.5 says the test
looks like train (random folds then predict the leaderboard); near 1 says it does not, and the columns that give
it away are the ones to check (a date, an id-like counter, a category test holds and train lacks)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kitbox.tabular.gbm import category_levels, fit_lightgbm, gbm_frame


@dataclass
class Shift:
    auc: float  # out-of-fold ROC AUC of train (0) against test (1) rows
    shifted: list[tuple[str, float]]  # columns by their share of the classifier's gain, largest first
    rows: tuple[int, int]  # the train and test rows it used

    def note(self, top: int = 5) -> str:
        reading = ("test looks like train" if self.auc < 0.6 else
                   "train and test differ" if self.auc < 0.8 else "test is easy to tell from train")
        columns = ", ".join(f"{c} {share:.0%}" for c, share in self.shifted[:top] if share > 0)
        return (f"adversarial validation: AUC {self.auc:.3f} telling {self.rows[1]} test rows from {self.rows[0]} "
                f"train rows ({reading}; 0.5: no difference); most shifted columns: {columns or 'none'}")


def adversarial_validation(train: pd.DataFrame, test: pd.DataFrame, cat: list[str], cont: list[str],
                           seed: int = 0, max_rows: int = 20_000, n_folds: int = 3, rounds: int = 100) -> Shift:
    """LightGBM told train from test on the input columns (at most ``max_rows`` random rows of each), scored out
    of fold; the columns' shares of its total gain say what differs."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    rng = np.random.default_rng(seed)
    parts = [df.iloc[np.sort(rng.choice(len(df), min(len(df), max_rows), replace=False))] for df in (train, test)]
    rows = pd.concat([p[cat + cont] for p in parts], ignore_index=True)
    x = gbm_frame(rows, category_levels(rows, cat), cont).to_numpy(np.float32)
    y = np.r_[np.zeros(len(parts[0])), np.ones(len(parts[1]))]
    pred, gain = np.zeros(len(y)), np.zeros(x.shape[1])
    params = dict(objective="binary", learning_rate=0.1, num_leaves=31, min_data_in_leaf=20)
    for fit, held in StratifiedKFold(n_folds, shuffle=True, random_state=seed).split(x, y):
        booster = fit_lightgbm(x[fit], y[fit], params=params, num_boost_round=rounds, seed=seed, threads=1,
                               feature_names=[f"c{j}" for j in range(x.shape[1])])
        pred[held] = booster.predict(x[held])
        gain += booster.feature_importance("gain")
    shares = gain / gain.sum() if gain.sum() > 0 else gain
    order = np.argsort(-shares, kind="stable")
    names = cat + cont
    return Shift(float(roc_auc_score(y, pred)), [(names[j], float(shares[j])) for j in order],
                 (len(parts[0]), len(parts[1])))
