"""Rossmann Store Sales (Kaggle 2015): daily sales of 1,115 drug stores, six weeks ahead, scored by RMSPE.

The recipe card: fast.ai's Rossmann lesson (Guo & Berkhahn's entity embeddings, 3rd place) beside LightGBM with
the top GBM solutions' per-store sales statistics. The feature engineering lives in ``rossmann_features.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from competitions import rossmann_features as features
from kitbox.pipeline import splits
from kitbox.adapt.bases import TabularCompetition, find_file
from kitbox.adapt.contract import CompetitionData
from kitbox.recipes import tabular

# per store (and store x weekday, store x promo): mean and std of log sales and customers over the training rows
# of each fold (never the days predicted), each store's sales trend, and its level over its last quarter; half the
# rows and columns per tree (as good as 0.8 on the tuning weeks, and less work), early stopping finds the rounds
GBM = dict(group_stats="Store;Store+DayOfWeek;Store+Promo", stats_of="Customers", trend="Store@Elapsed", recent=91.0,
           extra_cont=",".join(features.GBM_EXTRA), lr=0.05, subsample=0.5, colsample=0.5, max_rounds=6000)


class Rossmann(TabularCompetition):
    # ------------------------------------------------------------------------------------------ the files
    slug = "rossmann-store-sales"
    aliases = ("rossmann",)
    title = "Rossmann Store Sales"
    sample_dir = Path(__file__).resolve().parent / "samples" / "rossmann-store-sales"
    id_col, target = "Id", "Sales"  # train.csv, test.csv, store.csv (+ fast.ai's weather and trend tables)

    # ------------------------------------------------------------------------------------------ task and metric
    task = "regression"
    metric_name = "rmspe"  # root mean squared percentage error over days with sales; the models fit log1p(Sales)

    # ------------------------------------------------------------------------------------------ folds
    # one time holdout as long as the test period; --n-folds K: K such periods back from the end, each trained on
    # the days before it only (forward_folds), each scored as the test will be
    default_folds = 1
    forward_folds = True
    holdout_weeks: int | None = None  # None: the test period's length in whole weeks (6)
    refit = True  # every recipe trains again on all rows for test: the weeks just before the test period matter

    def load(self, data_dir: Path) -> CompetitionData:
        data_dir = Path(data_dir)
        train, test, store, sample, external, notes = features.read_files(data_dir)
        train, test = features.build_features(train, test, store, external)
        n_all = len(train)
        # closed days and zero-sales days are not scored (RMSPE skips Sales == 0) and only teach the model zeros
        train = train[(train["Open"] != 0) & (train["Sales"] > 0)].reset_index(drop=True)
        data = self.build_data(data_dir, train, test, sample, find_file(data_dir, self.sample_file))
        data.notes += notes + [f"training on {len(train)} of {n_all} train rows (closed and zero-sales days dropped)"]
        data.extra["test_days"] = int((test["Date"].max() - test["Date"].min()).days) + 1
        data.extra["has_external"] = external is not None
        return data

    def feature_columns(self, data: CompetitionData) -> tuple[list[str], list[str], list[str]]:
        cat, cont, _ = features.feature_names(data.train.columns)
        return cat, cont, []

    def holdout_start(self, data: CompetitionData) -> pd.Timestamp:
        weeks = self.holdout_weeks or max(1, data.extra["test_days"] // 7)
        return data.train["Date"].max() - pd.Timedelta(days=7 * weeks - 1)

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        days = (data.train["Date"].max() - self.holdout_start(data)).days + 1
        return splits.time_holdouts(data.train["Date"], n_folds, days)

    # ------------------------------------------------------------------------------------------ recipes
    def recipes(self):
        # fast.ai's network at half its width (500-250) for 14 epochs (batches of 1024 on the full data): minutes on
        # two cores. lightgbm_embeddings (trees on the network's vectors) took no blend weight on the tuning weeks.
        return {
            "entity_embedding": tabular.entity_embedding.configure(layers="500,250", epochs=14),
            "lightgbm": tabular.lightgbm.configure(**GBM),
        }

    # ------------------------------------------------------------------------------------------ decisions
    def decide(self, oof: np.ndarray, y: np.ndarray) -> dict:
        """The factor that minimizes RMSPE when multiplied into the predictions (closed form): a model of log sales
        aims at their median, RMSPE punishes over-prediction more, so the best factor is a little below 1."""
        sold = y > 0
        ratio = oof[sold] / y[sold]
        return {"scale": float(ratio.sum() / (ratio ** 2).sum())}

    def apply(self, pred: np.ndarray, decided: dict) -> np.ndarray:
        return np.asarray(pred) * decided.get("scale", 1.0)

    # ------------------------------------------------------------------------------------------ submission
    def submission(self, data: CompetitionData, pred: np.ndarray) -> pd.DataFrame:
        closed = data.test["Open"].to_numpy() == 0  # closed stores sell nothing
        return super().submission(data, np.where(closed, 0.0, np.clip(pred, 0.0, None)))
