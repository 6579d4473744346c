"""Rossmann Store Sales: daily sales of 1,115 drug stores, six weeks ahead (Kaggle 2015; metric RMSPE).

The recipe card of fast.ai's Rossmann lesson after Guo & Berkhahn's entity embeddings (3rd place): date parts,
store fields, promo / holiday event distances, state weather and Google trend; log(Sales) as target; a time
holdout as long as the test period; an entity-embedding MLP, and LightGBM beside it as the reference.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.competition import Competition, CompetitionData, FoldContext, FoldResult
from kitbox.tabular.features import add_datepart, days_since_until, window_counts

log = logging.getLogger(__name__)

EXTERNAL_DIR = "rossmann-store-sales-external"  # fast.ai's extra tables, a sibling folder of the Kaggle files
TRAIN_COLUMNS = ["Store", "DayOfWeek", "Date", "Sales", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
TEST_COLUMNS = ["Id", "Store", "DayOfWeek", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"]
STORE_COLUMNS = ["Store", "StoreType", "Assortment", "CompetitionDistance", "CompetitionOpenSinceMonth",
                 "CompetitionOpenSinceYear", "Promo2", "Promo2SinceWeek", "Promo2SinceYear", "PromoInterval"]
EXTERNAL_COLUMNS = {
    "store_states.csv": ["Store", "State"],
    "state_names.csv": ["StateName", "State"],
    "weather.csv": ["file", "Date"],
    "googletrend.csv": ["file", "week", "trend"],
}
WEATHER = ["Max_TemperatureC", "Mean_TemperatureC", "Min_TemperatureC", "Max_Humidity", "Mean_Humidity",
           "Min_Humidity", "Max_Wind_SpeedKm_h", "Mean_Wind_SpeedKm_h", "CloudCover", "Precipitationmm"]
EVENTS = ["Promo", "StateHoliday", "SchoolHoliday"]
EVENT_DAYS_CAP = 60  # days since / until an event: farther than two months (or never seen) reads as "far"

CAT_NAMES = ["Store", "DayOfWeek", "Year", "Month", "Day", "Week", "StateHoliday", "CompetitionMonthsOpen",
             "Promo2Weeks", "IsPromo2Month", "StoreType", "Assortment", "PromoInterval", "CompetitionOpenSinceYear",
             "Promo2SinceYear", "State", "Events", "Promo_fw", "Promo_bw", "StateHoliday_fw", "StateHoliday_bw",
             "SchoolHoliday_fw", "SchoolHoliday_bw"]
CONT_NAMES = ["CompetitionDistance", *WEATHER, "trend", "trend_DE", "Promo", "SchoolHoliday",
              "AfterPromo", "BeforePromo", "AfterStateHoliday", "BeforeStateHoliday",
              "AfterSchoolHoliday", "BeforeSchoolHoliday"]


# ---------------------------------------------------------------------------------------------- reading the files
def _read_csv(folder: Path, name: str, columns: list[str], searched: list[Path]) -> pd.DataFrame:
    """Read ``name`` (or ``name.gz``) from ``folder``; a missing file or column is an error that says what to do."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.exists():
            df = pd.read_csv(path, dtype={"StateHoliday": str, "PromoInterval": str, "State": str}, low_memory=False)
            lacking = [c for c in columns if c not in df.columns]
            if lacking:
                raise ValueError(f"{path} lacks column(s) {lacking}; its columns are {list(df.columns)}. "
                                 "Is this Kaggle's rossmann-store-sales file?")
            return df
    where = ", ".join(str(p) for p in searched)
    raise FileNotFoundError(f"Rossmann: {name} not found (searched: {where}). Download it with "
                            "`kaggle competitions download -c rossmann-store-sales` or pass --data DIR.")


def _parse_dates(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    dates = pd.to_datetime(df[column], errors="coerce", format="%Y-%m-%d")
    bad = dates.isna() & df[column].notna()
    if bad.any() or df[column].isna().any():
        example = df.loc[bad | df[column].isna(), column].iloc[0]
        raise ValueError(f"{source}: {int(bad.sum() + df[column].isna().sum())} value(s) of {column!r} are not "
                         f"YYYY-MM-DD dates, e.g. {example!r}")
    return dates


def _external_tables(data_dir: Path) -> dict[str, pd.DataFrame] | None:
    """fast.ai's external tables from the same folder or the sibling ``rossmann-store-sales-external``; None if absent."""
    for folder in (data_dir, data_dir.parent / EXTERNAL_DIR, data_dir / EXTERNAL_DIR):
        if all((folder / n).exists() or (folder / f"{n}.gz").exists() for n in EXTERNAL_COLUMNS):
            return {n.removesuffix(".csv"): _read_csv(folder, n, cols, [folder]) for n, cols in EXTERNAL_COLUMNS.items()}
    return None


# ---------------------------------------------------------------------------------------------- features
def _join_external(df: pd.DataFrame, ext: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """State per store, then that state's daily weather and weekly Google trend (plus Germany's trend)."""
    df = df.merge(ext["store_states"][["Store", "State"]], on="Store", how="left")
    weather = ext["weather"].merge(ext["state_names"], left_on="file", right_on="StateName", how="inner")
    weather["Date"] = _parse_dates(weather, "Date", "weather.csv")
    keep = [c for c in WEATHER if c in weather.columns]
    weather = weather[["State", "Date", "Events", *keep]].drop_duplicates(["State", "Date"])
    df = df.merge(weather, on=["State", "Date"], how="left")
    trend = ext["googletrend"].copy()
    trend["State"] = trend["file"].str.split("_").str[2]
    # Lower Saxony's trend stands for the stores tagged "HB,NI" (Bremen + Lower Saxony) in store_states
    trend.loc[trend["State"] == "NI", "State"] = "HB,NI"
    trend["WeekStart"] = pd.to_datetime(trend["week"].str.split(" - ").str[0])
    # each trend row covers Sunday..Saturday: find the Sunday that starts a row's week
    week_start = df["Date"] - pd.to_timedelta((df["Date"].dt.day_of_week + 1) % 7, unit="D")
    df["WeekStart"] = week_start
    national = trend[trend["State"].isna()][["WeekStart", "trend"]].rename(columns={"trend": "trend_DE"})
    df = df.merge(trend[trend["State"].notna()][["State", "WeekStart", "trend"]], on=["State", "WeekStart"], how="left")
    df = df.merge(national.drop_duplicates("WeekStart"), on="WeekStart", how="left")
    return df.drop(columns="WeekStart")


def _store_features(df: pd.DataFrame) -> None:
    """Months since the nearest competitor opened, weeks since Promo2 started, whether this month restarts Promo2."""
    year = df["CompetitionOpenSinceYear"].fillna(1900).astype(int).clip(1900, 2100)
    month = df["CompetitionOpenSinceMonth"].fillna(1).astype(int).clip(1, 12)
    opened = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 15}))
    days_open = (df["Date"] - opened).dt.days.clip(lower=0)
    df["CompetitionMonthsOpen"] = (days_open // 30).clip(upper=24)

    week = df["Promo2SinceWeek"].fillna(1).astype(int).clip(1, 52)
    p2_year = df["Promo2SinceYear"].fillna(1900).astype(int).clip(1900, 2100)
    since = pd.to_datetime(p2_year.astype(str) + "-W" + week.astype(str).str.zfill(2) + "-1", format="%G-W%V-%u")
    promo2_days = (df["Date"] - since).dt.days
    active = (df["Promo2"] == 1) & (promo2_days >= 0)
    df["Promo2Weeks"] = np.where(active, (promo2_days // 7).clip(0, 25), -1)
    intervals = df["PromoInterval"].fillna("")
    in_month = np.zeros(len(df), dtype=bool)
    for m, abbr in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec"], 1):
        in_month |= (df["Month"].to_numpy() == m) & intervals.str.contains(abbr, regex=False).to_numpy()
    df["IsPromo2Month"] = (in_month & active).astype(np.int64)


def _event_features(df: pd.DataFrame) -> None:
    """Per store: days since the last / until the next promo, state and school holiday, and counts in +-7 days."""
    for name in EVENTS:
        event = df[name].astype(str) != "0" if name == "StateHoliday" else df[name].astype(int) == 1
        since, until = days_since_until(df["Store"], df["Date"], event)
        df[f"After{name}"] = np.nan_to_num(since, nan=EVENT_DAYS_CAP).clip(0, EVENT_DAYS_CAP)
        df[f"Before{name}"] = np.nan_to_num(until, nan=EVENT_DAYS_CAP).clip(0, EVENT_DAYS_CAP)
        df[f"{name}_bw"], df[f"{name}_fw"] = window_counts(df["Store"], df["Date"], event, days=7)


def build_features(train: pd.DataFrame, test: pd.DataFrame, store: pd.DataFrame,
                   external: dict[str, pd.DataFrame] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The joined, feature-engineered train and test tables (same columns; test keeps ``Id``).

    Train and test are processed together so that event distances in the test period see train's history.
    """
    both = pd.concat([train.assign(_is_test=False), test.assign(_is_test=True)], ignore_index=True)
    both = both.merge(store[STORE_COLUMNS], on="Store", how="left", validate="many_to_one")
    if external is not None:
        both = _join_external(both, external)
    add_datepart(both, "Date")
    _store_features(both)
    _event_features(both)
    both["StateHoliday"] = both["StateHoliday"].astype(str)
    is_test = both.pop("_is_test").to_numpy()
    train_out = both[~is_test].drop(columns=["Id"], errors="ignore").reset_index(drop=True)
    test_out = both[is_test].drop(columns=["Sales", "Customers"], errors="ignore").reset_index(drop=True)
    return train_out, test_out


# ---------------------------------------------------------------------------------------------- the adapter
class Rossmann(Competition):
    slug = "rossmann-store-sales"
    aliases = ("rossmann",)
    metric_name = "rmspe"
    title = "Rossmann Store Sales"
    default_folds = 1  # one time holdout as long as the test period; --folds K > 1 gives time-block k-fold
    sample_dir = Path(__file__).resolve().parent / "samples" / "rossmann-store-sales"
    validation = "auto"  # "auto": holdout for 1 fold, time blocks for more; "time" or "store" (store-grouped k-fold)
    holdout_weeks: int | None = None  # None: the test period's length in whole weeks

    def load(self, data_dir: Path) -> CompetitionData:
        data_dir = Path(data_dir)
        searched = [data_dir]
        train = _read_csv(data_dir, "train.csv", TRAIN_COLUMNS, searched)
        test = _read_csv(data_dir, "test.csv", TEST_COLUMNS, searched)
        store = _read_csv(data_dir, "store.csv", STORE_COLUMNS, searched)
        sample = _read_csv(data_dir, "sample_submission.csv", ["Id", "Sales"], searched)
        train["Date"] = _parse_dates(train, "Date", f"{data_dir}/train.csv")
        test["Date"] = _parse_dates(test, "Date", f"{data_dir}/test.csv")
        if (train["Sales"] < 0).any():
            bad = train[train["Sales"] < 0].iloc[0]
            raise ValueError(f"{data_dir}/train.csv: {int((train['Sales'] < 0).sum())} row(s) have negative Sales, "
                             f"e.g. store {bad['Store']} on {bad['Date'].date()} ({bad['Sales']})")
        unknown = sorted(set(test["Store"]) - set(store["Store"]))
        if unknown:
            raise ValueError(f"{data_dir}/test.csv: store(s) {unknown[:10]} are absent from store.csv; "
                             "the store table must describe every test store")
        n_missing_open = int(test["Open"].isna().sum())
        if n_missing_open:  # 11 rows in Kaggle's test: treat as open so they get a prediction rather than 0
            log.info("test.csv: %d row(s) with Open missing are treated as open", n_missing_open)
            test["Open"] = test["Open"].fillna(1)
        external = _external_tables(data_dir)
        if external is None:
            log.info("Rossmann: external tables (weather, Google trend) not found next to %s; going without them", data_dir)
        train, test = build_features(train, test, store, external)
        # closed days and zero-sales days are not scored (RMSPE skips Sales == 0) and only teach the model zeros
        n_all = len(train)
        train = train[(train["Open"] != 0) & (train["Sales"] > 0)].reset_index(drop=True)
        log.info("Rossmann: training on %d of %d train rows (closed / zero-sales days dropped)", len(train), n_all)
        cat_names = [c for c in CAT_NAMES if c in train.columns]
        cont_names = [c for c in CONT_NAMES if c in train.columns]
        extra = {"cat_names": cat_names, "cont_names": cont_names, "has_external": external is not None,
                 "test_days": int((test["Date"].max() - test["Date"].min()).days) + 1}
        is_sample = self.sample_dir is not None and data_dir.resolve() == Path(self.sample_dir).resolve()
        return CompetitionData(train=train, test=test, sample_submission=sample, data_dir=data_dir, extra=extra,
                               is_sample=is_sample)

    # ------------------------------------------------------------------------------------------ folds
    def holdout_start(self, data: CompetitionData) -> pd.Timestamp:
        """First day of the time holdout: the last ``holdout_weeks`` of train (default: the test period in weeks)."""
        weeks = self.holdout_weeks or max(1, data.extra.get("test_days", 42) // 7)
        return data.train["Date"].max() - pd.Timedelta(days=7 * weeks - 1)

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        dates = data.train["Date"]
        mode = self.validation
        if mode == "auto":
            mode = "holdout" if n_folds <= 1 else "time"
        if mode == "holdout":
            return np.where(dates >= self.holdout_start(data), 0, -1).astype(np.int64)
        if n_folds < 2:
            raise ValueError(f"validation={mode!r} needs at least 2 folds, got {n_folds}")
        if mode == "time":  # contiguous blocks of days, so each fold is a period the model did not see
            days = (dates - dates.min()).dt.days.to_numpy()
            return np.minimum(days * n_folds // (days.max() + 1), n_folds - 1).astype(np.int64)
        if mode == "store":  # whole stores held out: does the model generalize to stores it never saw?
            stores = np.sort(data.train["Store"].unique())
            rng = np.random.default_rng(seed)
            fold_of_store = pd.Series(rng.permutation(len(stores)) % n_folds, index=stores)
            return data.train["Store"].map(fold_of_store).to_numpy(np.int64)
        raise ValueError(f"Rossmann.validation must be 'auto', 'holdout', 'time' or 'store', got {mode!r}")

    def targets(self, data: CompetitionData) -> np.ndarray:
        return data.train["Sales"].to_numpy(np.float64)

    # ------------------------------------------------------------------------------------------ recipes
    def recipes(self):
        return {"entity_embedding": entity_embedding, "lightgbm": lightgbm, "lightgbm_embeddings": lightgbm_embeddings}

    def submission(self, data: CompetitionData, test_pred: np.ndarray) -> pd.DataFrame:
        pred = np.asarray(test_pred, dtype=np.float64).reshape(len(data.test))
        pred = np.where(data.test["Open"].to_numpy() == 0, 0.0, np.clip(pred, 0, None))  # closed stores sell nothing
        by_id = pd.Series(pred, index=data.test["Id"].to_numpy())
        sub = data.sample_submission[["Id"]].copy()
        sub["Sales"] = sub["Id"].map(by_id)
        if sub["Sales"].isna().any():
            missing = sub.loc[sub["Sales"].isna(), "Id"].head(5).tolist()
            raise ValueError(f"sample_submission has Id(s) {missing}... that test.csv lacks; are they from the same download?")
        return sub


# ---------------------------------------------------------------------------------------------- recipes
def _open_test_rows(data: CompetitionData) -> np.ndarray:
    return data.test["Open"].to_numpy() != 0


FULL_DATA_ROWS = 400_000  # from here on a table gets the full-data schedule and fast.ai's 1000-500 layers


def entity_embedding(ctx: FoldContext) -> FoldResult:
    """fast.ai's Rossmann network: embeddings + 1000-500 MLP on log(Sales), one-cycle from the LR finder's plot.

    Options: ``epochs`` (default: 20 from 400k rows, else 5 or more for ~600 steps), ``lr`` (2e-3; 3e-3 for short
    schedules), ``bs`` (512),
    ``quick`` (one epoch), ``refit`` (on by default; ``--set refit=false`` turns it off: after the holdout model has
    given the OOF score, train once more on every train row, holdout included, and predict test with that model.
    A model that never saw the 6 weeks before the holdout scored 0.1131 on it against 0.1029 for one that did,
    and the holdout model has not seen the 6 weeks before the test period).
    """
    from kitbox.tabular.model import embedding_frames, save_embeddings
    from kitbox.tabular.processor import TabularProcessor
    from kitbox.tabular.training import (RMSPE_OF_LOG, auto_epochs, auto_layers, log_y_range, prediction_loader,
                                         tabular_learner, tabular_loaders)
    from kitbox.tasks import Task

    data, opts = ctx.data, ctx.options
    train, valid = data.train.iloc[ctx.train_idx], data.train.iloc[ctx.valid_idx]
    bs = int(opts.get("bs", 512))
    layers = auto_layers(len(train))  # fast.ai's 1000-500 on the full data, narrower on the embedded sample
    # full data (~800k rows): 20 epochs at 2e-3 reach 0.1029 holdout RMSPE (12: 0.1060, 8 at 1e-3: 0.1097; fast.ai's
    # notebook: 0.1086 after 5); demo-sized data: enough epochs for ~600 steps at a higher peak LR, in seconds
    base_epochs = 20 if len(train) >= FULL_DATA_ROWS else 5
    epochs = int(opts.get("epochs") or (1 if opts.get("quick") else auto_epochs(len(train), bs, base_epochs)))
    lr = float(opts.get("lr") or (2e-3 if epochs * (len(train) // bs) >= 5000 else 3e-3))

    def fit(rows: pd.DataFrame, valid_rows: pd.DataFrame | None, run_dir: Path, find_lr: bool):
        processor = TabularProcessor(data.extra["cat_names"], data.extra["cont_names"]).fit(rows)
        processor.save(run_dir / "processor.json")
        y_log = np.log(rows["Sales"].to_numpy(np.float64))
        y_valid = None if valid_rows is None else np.log(valid_rows["Sales"].to_numpy(np.float64))
        train_dl, valid_dl = tabular_loaders(processor, rows, y_log, valid_rows, y_valid, batch_size=bs, seed=ctx.seed)
        learn = tabular_learner(processor, train_dl, valid_dl, task=Task("regression", y_range=log_y_range(y_log)),
                                layers=layers, metrics=(RMSPE_OF_LOG,), seed=ctx.seed, run_dir=run_dir,
                                progress=bool(opts.get("progress", True)))
        info = {}
        if find_lr:  # the plot is for the user; the schedule starts from fast.ai's 1e-3 unless --lr says otherwise
            found = learn.lr_find(num_it=min(100, len(train_dl)))
            info = {"lr_valley": float(found.valley), "lr_steep": float(found.steep)}
        learn.fit_one_cycle(epochs, lr)
        learn.save(run_dir / "model.safetensors")
        return learn, processor, info

    learn, processor, info = fit(train, valid, ctx.fold_dir, find_lr=True)
    oof = np.exp(learn.predict(prediction_loader(processor, valid)))
    save_embeddings(embedding_frames(learn.model, processor), ctx.fold_dir / "embeddings.json")
    info.update(epochs=epochs, lr=lr, layers=list(layers), test_model="holdout")
    if opts.get("refit", True) and not opts.get("quick"):  # the test period follows the holdout: its weeks matter
        learn, processor, _ = fit(data.train, None, ctx.fold_dir / "refit", find_lr=False)
        info["test_model"] = "refit on all train rows"
    test = np.exp(learn.predict(prediction_loader(processor, data.test)))
    return FoldResult(oof=oof, test=np.where(_open_test_rows(data), test, 0.0), info=info)


def _gbm_frame(processor, df: pd.DataFrame, embeddings: dict | None) -> pd.DataFrame:
    """Categorical codes as ordinal numbers and continuous columns as they are, optionally plus learned embeddings.

    All float32: LightGBM copies a frame into one array of the widest column type, and the embedding columns of the
    full data in float64 took the run's peak memory from 2 GB to 4.8 GB."""
    from kitbox.tabular.model import add_embeddings

    x_cat, x_cont = processor.transform(df)
    blocks = [pd.DataFrame(x_cat.astype(np.float32), columns=processor.all_cat_names),  # codes < 2**24: exact
              pd.DataFrame(x_cont.astype(np.float32, copy=False), columns=processor.cont_names)]
    if embeddings is not None:  # only wide columns: an ordinal code says least where there are many categories
        wide = [name for name, table in embeddings.items() if len(table) > 30]
        blocks.append(add_embeddings(x_cat, embeddings, columns=wide, dtype=np.float32))
    return pd.concat(blocks, axis=1)


def _lightgbm(ctx: FoldContext, embeddings: dict | None) -> FoldResult:
    from kitbox.tabular.gbm import fit_lightgbm, predict_lightgbm
    from kitbox.tabular.processor import TabularProcessor

    data, opts = ctx.data, ctx.options
    train, valid = data.train.iloc[ctx.train_idx], data.train.iloc[ctx.valid_idx]
    processor = TabularProcessor(data.extra["cat_names"], data.extra["cont_names"]).fit(train)
    # fewer rounds for small data: boosting 3,000 rounds on a few thousand rows only memorizes them
    rounds = int(opts.get("gbm_rounds") or min(1500, max(300, len(train) // 500)))
    x_valid = _gbm_frame(processor, valid, embeddings)  # built once: watched while boosting, then predicted
    booster = fit_lightgbm(_gbm_frame(processor, train, embeddings), np.log(train["Sales"].to_numpy(np.float64)),
                           x_valid, np.log(valid["Sales"].to_numpy(np.float64)),
                           num_boost_round=rounds, seed=ctx.seed, threads=opts.get("gbm_threads"))
    oof = np.exp(predict_lightgbm(booster, x_valid))
    test = np.exp(predict_lightgbm(booster, _gbm_frame(processor, data.test, embeddings)))
    return FoldResult(oof=oof, test=np.where(_open_test_rows(data), test, 0.0), info={"rounds": rounds})


def lightgbm(ctx: FoldContext) -> FoldResult:
    """LightGBM on the same features (categorical codes as ordinal numbers): the reference to beat."""
    return _lightgbm(ctx, None)


def lightgbm_embeddings(ctx: FoldContext) -> FoldResult:
    """LightGBM with the entity-embedding recipe's learned embeddings of this fold as extra columns (the paper's
    GBM + embeddings). Needs ``entity_embedding`` to have run on this fold first (it runs first in ``recipes``)."""
    from kitbox.tabular.model import load_embeddings

    # the fold runner's layout: RUN/<recipe>/fold<k>/
    path = ctx.fold_dir.parents[1] / "entity_embedding" / ctx.fold_dir.name / "embeddings.json"
    if not path.exists():
        raise FileNotFoundError(f"lightgbm_embeddings needs the entity_embedding recipe's {path}; "
                                "run the entity_embedding recipe on this fold first")
    return _lightgbm(ctx, load_embeddings(path))
