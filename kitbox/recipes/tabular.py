"""Generic tabular recipes: LightGBM (the reference a competitor compares against) and fast.ai's entity-embedding
network, configured by the data: ``columns.cat`` / ``columns.cont``, ``task``, ``classes`` and
``extra["log_target"]`` (train on log1p(y), predict expm1).

On the refit (``ctx.is_refit``: every row trains, test is predicted) LightGBM boosts the round count its scored
folds found by early stopping, and the network repeats its fold schedule.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from kitbox.adapt.contract import FoldContext, FoldPredictions, recipe
from kitbox.adapt.options import Syntax
from kitbox.errors import InputError
from kitbox.tabular.features import GroupTrend, parse_groups, parse_trend, show_groups, show_trend

# ---------------------------------------------------------------------------------------------- shared


def model_target(ctx: FoldContext) -> np.ndarray:
    """What the models fit, for every training row: log1p(y) for a log-scored regression, else ``ctx.y``."""
    y = np.asarray(ctx.y)
    if ctx.data.task == "regression" and ctx.data.extra.get("log_target"):
        if np.nanmin(y) < 0:
            raise InputError(f"log_target is on but the target has negative values (min {np.nanmin(y)}); set "
                             "log_target = False in the adapter, or fix the rows")
        return np.log1p(y)
    return y


def original_scale(ctx: FoldContext, pred: np.ndarray) -> np.ndarray:
    """Predictions as the metric sees them: expm1 of a log target; class probabilities summing to 1 in float64
    (a float32 softmax is off by 1e-7, which scikit-learn's log loss flags)."""
    return data_scale(ctx.data, pred)


def data_scale(data, pred: np.ndarray) -> np.ndarray:
    """:func:`original_scale` for the task and ``log_target`` of ``data`` (a saved model predicting new data)."""
    pred = np.asarray(pred, dtype=np.float64)
    if data.task == "regression" and data.extra.get("log_target"):
        return np.expm1(pred)
    if data.task == "multiclass":
        return pred / pred.sum(axis=1, keepdims=True)
    return pred


def _columns(data, what: str) -> tuple[list[str], list[str]]:
    cat, cont = list(data.columns.cat), list(data.columns.cont)
    if not cat and not cont:
        raise InputError(f"the {what} recipe needs input columns: set cat_names / cont_names in the adapter "
                         "(data.columns.cat and data.columns.cont are both empty)")
    missing = [c for c in cat + cont if c not in data.train.columns or c not in data.test.columns]
    if missing:
        raise InputError(f"input column(s) {missing} are not in both train and test; fix cat_names / cont_names")
    return cat, cont


def _rows(df: pd.DataFrame, idx: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """``df.iloc[idx]`` of a few columns, without first copying every column (a million-row table's are many)."""
    return pd.DataFrame({c: df[c].to_numpy()[idx] for c in columns})


def _refit_empty(test: np.ndarray) -> np.ndarray:
    return np.zeros((0,) + np.asarray(test).shape[1:])


# ---------------------------------------------------------------------------------------------- LightGBM


# options written in a syntax of their own: parsed (and a mistake named) before any training
GroupsSpec = Annotated[tuple[tuple[str, ...], ...],
                       Syntax(parse_groups, show_groups, "GROUP;GROUP+GROUP, e.g. 'Store;Store+Promo'")]
TrendSpec = Annotated[GroupTrend, Syntax(parse_trend, show_trend, "GROUP@TIME_COLUMN, e.g. 'Store@Elapsed'")]


@dataclass(frozen=True)
class LightGBMOptions:
    rounds: int | None = None  # boosting rounds; None: early stopping on the fold's validation rows finds them
    max_rounds: int = 3000  # the most rounds early stopping may reach
    patience: int = 100  # rounds without a better validation loss before boosting stops
    lr: float = 0.05  # learning rate
    leaves: int = 63  # num_leaves
    min_leaf: int = 20  # min_data_in_leaf
    colsample: float = 0.8  # feature_fraction: share of columns each tree sees
    subsample: float = 0.8  # bagging_fraction: share of rows each tree sees
    l2: float = 1.0  # lambda_l2
    categorical: Literal["codes", "native"] = "codes"  # "codes": sorted ordinal codes; "native": LightGBM's categorical (set) splits
    extra_cont: tuple[str, ...] = ()  # "C,D": more numeric columns for the trees only, beyond data.columns.cont
    group_stats: GroupsSpec = ()  # "A;A+B": per group, mean and std of the (log) target over the fold's training rows
    stats_of: tuple[str, ...] = ()  # "C,D": columns only train has (Rossmann's Customers), averaged per group as well
    trend: TrendSpec | None = None  # "A@T": per value of A, the target's least-squares line over the time column T
    recent: float = 0.0  # with trend: also each group's mean target over its last `recent` units of T
    embed_above: int = 30  # lightgbm_embeddings: columns with more categories get the network's learned vectors
    refit_scale: bool = True  # refit rounds scaled by (all rows / a fold's training rows): more rows, more rounds
    # where early stopping looks: "valid" the fold's validation rows (their score then holds the one choice made on
    # them, the round count); "inner" the fold's last training rows (by inner_by), with statistics from the rows
    # before them, then every training row boosts that many rounds (scaled like the refit's): nothing is chosen on
    # the rows that are scored
    stop_on: Literal["valid", "inner"] = "valid"
    inner_by: str | None = None  # "inner": the column ordering the rows (a date): the inner rows are the training
    # rows in its last values, as many values as the validation rows span; None: random rows, as many as validate
    threads: int | None = None  # None: 1 below 200k rows (OpenMP spins on a busy machine), all cores above


def _check_lightgbm(data, settings, opts: LightGBMOptions) -> None:
    from kitbox.tabular.gbm import lightgbm_module

    lightgbm_module()
    missing = sorted({c for c in _statistics_columns(opts) if c not in data.train.columns})
    missing += [c for c in opts.extra_cont if c not in data.train.columns or c not in data.test.columns]
    if missing:
        raise InputError(f"lightgbm: group_stats / stats_of / trend / extra_cont name column(s) {missing} that the "
                         f"data lacks; train's columns: {list(data.train.columns)[:40]}")


def _statistics_columns(opts: LightGBMOptions) -> list[str]:
    columns = [k for group in opts.group_stats for k in group] + list(opts.stats_of)
    return columns + ([*opts.trend.keys, opts.trend.time] if opts.trend else [])


def _fold_statistics(ctx: FoldContext, y_fit: np.ndarray, train: pd.DataFrame) -> list:
    """The options' per-group statistics, fitted on this fold's training rows only (``train``): tables whose
    ``transform`` gives their columns for any frame."""
    from kitbox.tabular.features import GroupStatistics, GroupTrendTable

    opts, found = ctx.options, []
    if opts.group_stats:
        values = {"y": y_fit[ctx.train_idx]}
        values.update({c: train[c].to_numpy(np.float64) for c in opts.stats_of})
        found.append(GroupStatistics(train, values, opts.group_stats))
    if opts.trend:
        found.append(GroupTrendTable(train, y_fit[ctx.train_idx], list(opts.trend.keys), opts.trend.time, opts.recent))
    return found


@dataclass
class GBMFeatures:
    """How a fold turns a table into LightGBM's float32 matrix: category codes (levels of its training rows), the
    continuous columns, its fitted statistics and the learned embeddings. Fitted once, applied to any frame with
    the columns: the fold's rows, test, or a later test table (a saved model, ``--predict-only``)."""

    levels: dict[str, list]
    cont: list[str]
    statistics: list  # GroupStatistics / GroupTrendTable fitted on the fold's training rows
    embeddings: object | None = None  # EmbeddingColumns: the network's vectors of wide categorical columns
    categorical: list[int] = field(default_factory=list)  # positions LightGBM splits as categories ("native")

    def blocks(self, df: pd.DataFrame) -> list[pd.DataFrame]:
        from kitbox.tabular.gbm import gbm_frame

        blocks = [gbm_frame(df, self.levels, self.cont)] + [s.transform(df).set_axis(df.index) for s in self.statistics]
        return blocks + ([] if self.embeddings is None else [self.embeddings(df)])

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        from kitbox.tabular.gbm import stack_columns

        return stack_columns(self.blocks(df))

    def names(self, df: pd.DataFrame) -> list[str]:
        return [c for block in self.blocks(df.iloc[:1]) for c in block.columns]


@dataclass
class GBMInputs:
    """A fold's LightGBM inputs: its features and the float32 matrices of its training and validation rows
    (``test``: the same columns for the test rows, computed when asked for)."""

    features: GBMFeatures
    names: list[str]
    train: np.ndarray
    valid: np.ndarray
    test_frame: pd.DataFrame

    @property
    def categorical(self) -> list[int]:
        return self.features.categorical

    @property
    def test(self) -> np.ndarray:
        return self.features.matrix(self.test_frame)


def _gbm_inputs(ctx: FoldContext, y_fit: np.ndarray, embeddings=None) -> GBMInputs:
    """Codes and values of the data's columns, the fold statistics and the learned embeddings, as matrices."""
    from kitbox.tabular.gbm import category_levels

    data, opts = ctx.data, ctx.options
    cat, cont = _columns(data, "lightgbm")
    cont = cont + [c for c in opts.extra_cont if c not in cont]
    needed = list(dict.fromkeys(cat + cont + _statistics_columns(opts)))
    train, valid = _rows(data.train, ctx.train_idx, needed), _rows(data.train, ctx.valid_idx, needed)
    features = GBMFeatures(category_levels(train, cat), cont, _fold_statistics(ctx, y_fit, train), embeddings,
                           list(range(len(cat))) if opts.categorical == "native" else [])
    return GBMInputs(features, features.names(train), features.matrix(train), features.matrix(valid), data.test)


@dataclass
class LightGBMPredictor:
    """A fold's boosters and the features they read: ``predict(data)`` is its prediction of ``data.test``."""

    features: GBMFeatures
    boosters: list

    def predict(self, data) -> np.ndarray:
        return data_scale(data, _predict(self.boosters, self.features.matrix(data.test)))


def _refit_rounds(ctx: FoldContext) -> list[int]:
    """The rounds the scored folds stopped at (their mean, per label), scaled up by the refit's extra rows: the
    best count grows with the rows (a tree fits each row's residual less tightly when there are more of them)."""
    infos = [info for info in ctx.scored_info.values() if "rounds" in info]
    if not infos:
        raise InputError("lightgbm refit: the scored folds recorded no round count; give --set rounds=N")
    rounds = np.mean([np.atleast_1d(info["rounds"]) for info in infos], axis=0)
    if ctx.options.refit_scale:
        rounds = rounds * len(ctx.train_idx) / np.mean([info["train_rows"] for info in infos])
    return [max(1, int(round(r))) for r in rounds]


def _inner_split(ctx: FoldContext) -> tuple[np.ndarray, np.ndarray]:
    """The fold's training rows as (rows that train, rows that stop early) for ``stop_on="inner"``."""
    opts, train = ctx.options, ctx.train_idx
    if opts.inner_by:
        order = ctx.data.train[opts.inner_by]
        span = max(1, order.iloc[ctx.valid_idx].nunique())
        values = np.sort(order.iloc[train].unique())
        if len(values) <= span:
            raise InputError(f"lightgbm stop_on=inner: the training rows hold {len(values)} value(s) of "
                             f"{opts.inner_by!r}, not more than the {span} the validation rows span; use stop_on=valid")
        inner = order.iloc[train].to_numpy() >= values[-span]
    else:
        inner = np.zeros(len(train), dtype=bool)
        inner[np.random.default_rng(ctx.seed).choice(len(train), min(len(ctx.valid_idx), len(train) // 5),
                                                     replace=False)] = True
    return train[~inner], train[inner]


def _inner_rounds(ctx: FoldContext, y_fit: np.ndarray, embeddings=None) -> list[int]:
    """Early stopping on the fold's inner rows (statistics from the rows before them), scaled to every training
    row like the refit's rounds."""
    fit, stop = _inner_split(ctx)
    inner = replace(ctx, train_idx=fit, valid_idx=stop)
    _, rounds = _boost(inner, _gbm_inputs(inner, y_fit, embeddings), y_fit)
    scale = len(ctx.train_idx) / len(fit) if ctx.options.refit_scale else 1.0
    return [max(1, int(round(r * scale))) for r in rounds]


def _boost(ctx: FoldContext, x: GBMInputs, y_fit: np.ndarray, rounds: list[int] | None = None):
    """One booster (one per label for multilabel) with its round count: ``rounds`` given, else the options' or the
    scored folds' on a refit, else early stopping on the validation rows."""
    from kitbox.tabular.gbm import fit_lightgbm, objective

    data, opts = ctx.data, ctx.options
    y_train, y_valid = y_fit[ctx.train_idx], y_fit[ctx.valid_idx]
    columns = range(y_fit.shape[1]) if data.task == "multilabel" else [None]
    fixed = rounds or ([opts.rounds] * len(columns) if opts.rounds else (_refit_rounds(ctx) if ctx.is_refit else None))
    params = dict(objective(data.task, len(data.classes)), learning_rate=opts.lr, num_leaves=opts.leaves,
                  min_data_in_leaf=opts.min_leaf, feature_fraction=opts.colsample, bagging_fraction=opts.subsample,
                  lambda_l2=opts.l2)
    max_rounds = min(opts.max_rounds, 50) if ctx.quick else opts.max_rounds  # a smoke test: seconds
    boosters, rounds = [], []
    for j, k in enumerate(columns):
        pick = (lambda a: a) if k is None else (lambda a: a[:, k])
        booster = fit_lightgbm(x.train, pick(y_train), x.valid, pick(y_valid), params=params, seed=ctx.seed,
                               num_boost_round=fixed[j] if fixed else max_rounds, threads=opts.threads,
                               early_stopping_rounds=None if fixed else opts.patience, feature_names=x.names,
                               categorical=x.categorical, log_every=500 if ctx.settings.progress else 0)
        boosters.append(booster)
        rounds.append(fixed[j] if fixed else int(booster.best_iteration or max_rounds))
    return boosters, rounds


def _predict(boosters: list, x: np.ndarray) -> np.ndarray:
    from kitbox.tabular.gbm import predict_lightgbm

    preds = [predict_lightgbm(b, x) for b in boosters]
    return preds[0] if len(preds) == 1 else np.stack(preds, axis=1)


def _lightgbm(ctx: FoldContext, embeddings=None) -> FoldPredictions:
    y_fit = model_target(ctx)
    if ctx.data.task == "multilabel" and y_fit.ndim != 2:
        raise InputError(f"multilabel targets must be a 0/1 matrix (rows, labels), got shape {y_fit.shape}")
    opts = ctx.options
    inner = opts.stop_on == "inner" and not opts.rounds and not ctx.is_refit
    chosen = _inner_rounds(ctx, y_fit, embeddings) if inner else None
    x = _gbm_inputs(ctx, y_fit, embeddings)
    boosters, rounds = _boost(ctx, x, y_fit, chosen)
    predictor = LightGBMPredictor(x.features, boosters)
    test = predictor.predict(ctx.data)
    oof = _refit_empty(test) if ctx.is_refit else original_scale(ctx, _predict(boosters, x.valid))
    found = "early stopping on inner training rows" if inner else "early stopping"
    info = {"rounds": rounds[0] if len(rounds) == 1 else rounds, "train_rows": len(ctx.train_idx),
            "features": x.train.shape[1],
            "rounds_from": "given" if opts.rounds else ("scored folds" if ctx.is_refit else found)}
    if not ctx.is_refit and len(boosters) == 1 and len(ctx.valid_idx):
        from kitbox.tabular.gbm import permutation_importance

        shuffled = permutation_importance(boosters[0], x.valid, y_fit[ctx.valid_idx], x.names, ctx.data.task,
                                          seed=ctx.seed, max_rows=200 if ctx.quick else 2000)
        info["importance"] = {k: round(v, 6) for k, v in list(shuffled.items())[:15]}
    return FoldPredictions(oof=oof, test=test, info=info, predictor=predictor)


@recipe(options=LightGBMOptions, preflight=_check_lightgbm)
def lightgbm(ctx: FoldContext) -> FoldPredictions:
    """LightGBM on the data's categorical (as codes) and continuous columns, with the options' fold statistics."""
    return _lightgbm(ctx)


@dataclass
class EmbeddingColumns:
    """The entity-embedding network's learned vectors (of one fold, or of its refit) for the categorical columns
    with more than ``embed_above`` values, as columns of any frame: an ordinal code says least where there are many."""

    processor: object  # kitbox.tabular.processor.TabularProcessor of the network's fold
    tables: dict[str, pd.DataFrame]
    wide: list[str]

    def __call__(self, df: pd.DataFrame) -> pd.DataFrame:
        from kitbox.tabular.model import add_embeddings

        x_cat, _ = self.processor.transform(df)
        return add_embeddings(x_cat, self.tables, columns=self.wide, dtype=np.float32).set_axis(df.index)


def _embedding_columns(ctx: FoldContext) -> EmbeddingColumns:
    """The :class:`EmbeddingColumns` of ``ctx.inputs["entity_embedding"]``, the network's folder for this fold."""
    from kitbox.tabular.model import load_embeddings
    from kitbox.tabular.processor import TabularProcessor

    folder = ctx.inputs["entity_embedding"]
    if not (folder / "embeddings.json").exists():
        raise InputError(f"lightgbm_embeddings reads {folder / 'embeddings.json'}, which the entity_embedding recipe "
                         "writes: run that recipe first (it is listed in this recipe's needs)")
    tables = load_embeddings(folder / "embeddings.json")
    wide = [name for name, table in tables.items() if len(table) > ctx.options.embed_above]
    return EmbeddingColumns(TabularProcessor.load(folder / "processor.json"), tables, wide)


@recipe(options=LightGBMOptions, needs=("entity_embedding",), preflight=_check_lightgbm)
def lightgbm_embeddings(ctx: FoldContext) -> FoldPredictions:
    """LightGBM with the entity-embedding network's learned vectors as extra columns (Guo & Berkhahn's GBM +
    embeddings); reads them from ``ctx.inputs["entity_embedding"]``, the network's folder for this fold."""
    return _lightgbm(ctx, _embedding_columns(ctx))


# ---------------------------------------------------------------------------------------------- entity embeddings


@dataclass(frozen=True)
class EntityEmbeddingOptions:
    epochs: int | None = None  # None: sized from the data (enough optimizer steps on small tables, at most 20)
    lr: float = 3e-3  # one-cycle peak learning rate
    bs: int | None = None  # batch size; None: 1024 from 400k rows, 512 below, less under 16k rows (auto_batch_size)
    layers: tuple[int, ...] = ()  # hidden widths "1000,500"; "": fast.ai's 1000-500 from 400k rows, narrower below
    ps: tuple[float, ...] = (0.001, 0.01)  # dropout per hidden layer
    emb_drop: float = 0.04  # dropout on the concatenated embeddings
    wd: float = 0.2  # AdamW weight decay
    lr_find: bool = True  # run the LR range test on each scored fold and save its plot (lr_find.png)


def _listed(values) -> str:
    return ",".join(map(str, values))


def _check_entity_embedding(data, settings, opts: EntityEmbeddingOptions) -> None:
    layers, ps = opts.layers or (1000, 500), opts.ps
    if len(ps) != len(layers):
        raise InputError(f"entity_embedding: {len(ps)} dropout value(s) in ps={_listed(ps)!r} for {len(layers)} layer(s) "
                         f"in layers={_listed(layers)!r}; give one per layer")
    _columns(data, "entity_embedding")


def _nn_task(ctx: FoldContext, y_fit: np.ndarray):
    """The head: a scaled sigmoid over fast.ai's range for regression (0 to 1.2 x the largest value when no value
    is negative, else the values' span widened by a fifth on each side), the data's classes otherwise."""
    if ctx.data.task != "regression":
        return ctx.task()
    lo, hi = float(np.min(y_fit)), float(np.max(y_fit))
    y_range = (0.0, 1.2 * hi) if lo >= 0 else (lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo))
    return ctx.task(y_range=y_range)


def _fit_network(ctx: FoldContext, y_fit: np.ndarray):
    """The processor fitted on the fold's training rows and the network trained on them (one-cycle), both saved in
    the fold's folder; its LR finder plot too on scored folds."""
    from kitbox.tabular.processor import TabularProcessor
    from kitbox.tabular.training import auto_batch_size, auto_epochs, auto_layers, tabular_learner, tabular_loaders

    data, opts = ctx.data, ctx.options
    cat, cont = _columns(data, "entity_embedding")
    train, valid = _rows(data.train, ctx.train_idx, cat + cont), _rows(data.train, ctx.valid_idx, cat + cont)
    processor = TabularProcessor(cat, cont).fit(train)
    processor.save(ctx.fold_dir / "processor.json")
    y_train = y_fit[ctx.train_idx].astype(np.float32)
    bs = opts.bs or auto_batch_size(len(train))
    train_dl, valid_dl = tabular_loaders(processor, train, y_train, valid if len(valid) else None,
                                         y_fit[ctx.valid_idx].astype(np.float32), batch_size=bs, seed=ctx.seed)
    layers = opts.layers or auto_layers(len(train))
    learn = tabular_learner(processor, train_dl, valid_dl, task=_nn_task(ctx, y_fit[ctx.train_idx]), layers=layers,
                            ps=list(opts.ps), emb_drop=opts.emb_drop, wd=opts.wd, seed=ctx.seed,
                            run_dir=ctx.fold_dir, progress=ctx.settings.progress, device=ctx.settings.device)
    epochs = 1 if ctx.quick else (opts.epochs or auto_epochs(len(train), bs, base_epochs=5))
    info = {"epochs": epochs, "lr": opts.lr, "bs": bs, "layers": list(layers)}
    if opts.lr_find and not ctx.is_refit and not ctx.quick:  # the plot is for the user; the schedule uses opts.lr
        found = learn.lr_find(num_it=min(100, len(train_dl)))
        info.update(lr_valley=float(found.valley), lr_steep=float(found.steep))
    learn.fit_one_cycle(epochs, opts.lr)
    learn.save(ctx.fold_dir / "model.safetensors")
    return learn, processor, info


@dataclass
class NetworkPredictor:
    """A fold's input processor and trained network: ``predict(data)`` is its prediction of ``data.test``."""

    processor: object  # kitbox.tabular.processor.TabularProcessor
    model: object  # kitbox.tabular.model.TabularModel
    task: object  # kitbox.training.tasks.Task
    device: str | None = None

    def predict(self, data) -> np.ndarray:
        from kitbox.tabular.training import prediction_loader
        from kitbox.training.learner import predicting

        learn = predicting(self.model, self.task, self.device)
        return data_scale(data, learn.predict(prediction_loader(self.processor, data.test)))


@recipe(options=EntityEmbeddingOptions, preflight=_check_entity_embedding)
def entity_embedding(ctx: FoldContext) -> FoldPredictions:
    """fast.ai's entity-embedding MLP (Guo & Berkhahn 2016) for any task, one-cycle; saves its learned embeddings
    (``embeddings.json``) and input processor for ``lightgbm_embeddings``."""
    from kitbox.tabular.model import embedding_frames, save_embeddings
    from kitbox.tabular.training import prediction_loader

    y_fit = model_target(ctx)
    learn, processor, info = _fit_network(ctx, y_fit)
    save_embeddings(embedding_frames(learn.model, processor), ctx.fold_dir / "embeddings.json")
    predictor = NetworkPredictor(processor, learn.model, learn.task, ctx.settings.device)
    test = predictor.predict(ctx.data)
    if ctx.is_refit:
        return FoldPredictions(oof=_refit_empty(test), test=test, info=info, predictor=predictor)
    valid = _rows(ctx.data.train, ctx.valid_idx, processor.cat_names + processor.cont_names)
    oof = original_scale(ctx, learn.predict(prediction_loader(processor, valid)))
    return FoldPredictions(oof=oof, test=test, info=info, predictor=predictor)
