"""The fold runner: trains each recipe on each fold (fold schemes: :mod:`kitbox.pipeline.splits`) and keeps
out-of-fold (OOF) and test predictions on disk one finished fold at a time, so a killed run resumes."""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kitbox.adapt.contract import CompetitionData, FoldContext, FoldPredictions, Recipe, RunSettings
from kitbox.pipeline.ensemble import RANK_METRICS, fold_mean, snapshot_mean
from kitbox.metrics import Metric, get_metric
from kitbox.io.runs import load_npy, one_time_seconds, read_json, save_npy, write_json
from kitbox.pipeline.splits import n_folds_of

# ---------------------------------------------------------------------------------------------- fold runner


@dataclass
class FinishedFold:
    """One finished (recipe, fold), as saved in its folder: predictions, score, time, the recipe's info."""

    fold: int | str  # a fold id, or "refit" (trained on every row, predicts test only)
    valid_idx: np.ndarray
    oof: np.ndarray
    test: np.ndarray  # the fold's test prediction (its snapshots' mean when it kept SGDR snapshots)
    score: float | None  # None for the refit, which has no validation rows
    seconds: float
    info: dict = field(default_factory=dict)


@dataclass
class RecipePlan:
    """One recipe in one configuration: its typed options and the folder its folds live in."""

    name: str
    recipe: Recipe
    options: object
    config: dict  # what shaped the folds (kitbox.io.fingerprint.recipe_config); its hash names ``config_dir``
    config_dir: Path
    needs: dict[str, Path] = field(default_factory=dict)  # config folders of the recipes this one reads
    forward: bool = False  # Competition.forward_folds: fold k trains on folds above k and on -1 rows only
    cache_dir: Path | None = None  # the run's content-addressed caches (backbone features), shared by recipes
    # folds finished before this run started (None: look on disk each time). Under torchrun every rank takes the
    # same snapshot, so a rank never skips a fold that rank 0 has just saved and falls out of step
    done_before: set | None = None
    pseudo: object | None = None  # kitbox.pipeline.pseudo.PseudoRows: each fold's extra training rows and labels
    # the identity of the test files (kitbox.io.fingerprint.test_identity), which the folder's hash leaves out: a
    # finished fold made for other test files predicts the new ones with its saved model, or trains again
    test_files: str | None = None

    def finished_before(self, fold) -> bool:
        return is_done(self.config_dir, fold) if self.done_before is None else fold in self.done_before


def fold_name(fold) -> str:
    return "refit" if fold == "refit" else f"fold{fold}"


def is_done(config_dir, fold) -> bool:
    # done.json is written last, so its presence means every prediction file of the fold is complete
    return (Path(config_dir) / fold_name(fold) / "done.json").exists()


def load_fold(config_dir, fold, folds: np.ndarray) -> FinishedFold:
    fdir = Path(config_dir) / fold_name(fold)
    done = read_json(fdir / "done.json")
    valid_idx = load_npy(fdir / "valid_idx.npy")
    expected = np.array([], dtype=np.int64) if fold == "refit" else np.flatnonzero(folds == fold)
    if not np.array_equal(valid_idx, expected):
        raise ValueError(f"{fdir} was trained on other validation rows than fold {fold}; move it aside with --fresh")
    return FinishedFold(fold, valid_idx, load_npy(fdir / "oof.npy"), load_npy(fdir / "test.npy"), done["score"],
                        done["seconds"], done.get("info", {}))


def _checked(result, name: str, fold, n_valid: int, n_test: int) -> tuple[np.ndarray, np.ndarray, list]:
    where = f"recipe {name!r} " + ("refit" if fold == "refit" else f"fold {fold}")
    if not isinstance(result, FoldPredictions):
        raise TypeError(f"{where} returned {type(result).__name__}; a recipe returns kitbox.FoldPredictions")
    oof, test = np.asarray(result.oof), np.asarray(result.test)
    snaps = [np.asarray(s) for s in result.snapshots_test]
    for what, arr, n in [("oof", oof, n_valid), ("test", test, n_test)] + [("snapshot", s, n_test) for s in snaps]:
        if arr.ndim == 0 or len(arr) != n:
            raise ValueError(f"{where}: {what} predictions have shape {arr.shape}, expected {n} rows")
        if np.issubdtype(arr.dtype, np.number) and not np.isfinite(arr).all():
            raise ValueError(f"{where}: {what} predictions contain NaN or inf (did training diverge?)")
    return oof, test, snaps


def fold_context(plan: RecipePlan, fold, folds: np.ndarray, data: CompetitionData, y: np.ndarray, seed: int,
                 settings: RunSettings, scored_info: dict | None = None) -> FoldContext:
    labelled = folds >= -1  # below -1: pseudo-labelled rows, trained on only where plan.pseudo says
    if fold == "refit":  # every labelled row trains; nothing is left to validate on
        valid_idx, train_idx = np.array([], dtype=np.int64), np.flatnonzero(labelled)
    else:
        valid_idx = np.flatnonzero(folds == fold)
        train_idx = np.flatnonzero((folds == -1) | (folds > fold) if plan.forward else (folds != fold) & labelled)
    if plan.pseudo is not None:
        train_idx = np.concatenate([train_idx, plan.pseudo.rows.get(fold, np.array([], dtype=np.int64))])
        y = plan.pseudo.targets(fold, y)
    fdir = plan.config_dir / fold_name(fold)
    # caches of features that cover the test rows (TF-IDF, sentence vectors, the language model) per test files
    shared = plan.config_dir / ("shared" if plan.test_files is None else f"shared-{plan.test_files}")
    return FoldContext(fold=fold, train_idx=train_idx, valid_idx=valid_idx, data=data, y=y, fold_dir=fdir,
                       shared_dir=shared, cache_dir=plan.cache_dir or shared,
                       seed=seed, options=plan.options, settings=settings,
                       inputs={dep: d / fold_name(fold) for dep, d in plan.needs.items()},
                       scored_info=dict(scored_info or {}))


def test_is_current(plan: RecipePlan, fold) -> bool:
    """Whether a finished fold's test prediction is of this run's test files (always, where they are not tracked)."""
    if plan.test_files is None:
        return True
    return read_json(plan.config_dir / fold_name(fold) / "done.json").get("test_files") == plan.test_files


def predictor_path(config_dir, fold) -> Path:
    return Path(config_dir) / fold_name(fold) / "predictor.pt"


def load_predictor(config_dir, fold, device: str | None = None, trusted: tuple[str, ...] = ()):
    """A finished fold's saved model (its ``predict(data)`` gives the prediction of ``data.test``); ``trusted``:
    modules beyond kitbox's libraries its classes may come from (the recipe's own)."""
    from kitbox.io.runs import load_object

    predictor = load_object(predictor_path(config_dir, fold), trusted)
    if hasattr(predictor, "device"):
        predictor.device = device  # where this run predicts, not where the fold trained
    return predictor


def _repredicted(plan: RecipePlan, fold, folds: np.ndarray, data: CompetitionData, settings: RunSettings,
                 log) -> FinishedFold:
    """A finished fold made for other test files, with its test prediction made again by its saved model."""
    finished = load_fold(plan.config_dir, fold, folds)
    start = time.time()
    predictor = load_predictor(plan.config_dir, fold, settings.device, (plan.recipe.fn.__module__,))
    test = np.asarray(predictor.predict(data))
    _checked(FoldPredictions(oof=finished.oof, test=test), plan.name, fold, len(finished.oof), len(data.test))
    fdir = plan.config_dir / fold_name(fold)
    save_npy(fdir / "test.npy", test)
    (fdir / "test_final.npy").unlink(missing_ok=True)
    done = read_json(fdir / "done.json")
    write_json(fdir / "done.json", {**done, "test_files": plan.test_files})
    log(f"[{plan.name}] {fold_name(fold)}: the test files changed; its saved model predicted them "
        f"({time.time() - start:.1f} s, no training)")
    finished.test = test
    return finished


def run_fold(plan: RecipePlan, fold, folds: np.ndarray, data: CompetitionData, y: np.ndarray, metric: Metric,
             seed: int = 42, settings: RunSettings = RunSettings(), scored_info: dict | None = None,
             save: bool = True, log=print) -> FinishedFold:
    """Train one recipe on one fold (or the refit) and save its predictions and its model; a finished fold is
    loaded instead (its saved model predicts test again when the test files changed; without one it retrains).

    ``save=False`` trains without writing: under torchrun every rank trains, only rank 0 saves.
    """
    if plan.finished_before(fold):
        if test_is_current(plan, fold):
            return load_fold(plan.config_dir, fold, folds)
        if predictor_path(plan.config_dir, fold).exists():
            return _repredicted(plan, fold, folds, data, settings, log)
        log(f"[{plan.name}] {fold_name(fold)}: the test files changed and the fold saved no model; it trains again")
    ctx = fold_context(plan, fold, folds, data, y, seed, settings, scored_info)
    if save:
        ctx.fold_dir.mkdir(parents=True, exist_ok=True)
        if not (plan.config_dir / "config.json").exists():
            write_json(plan.config_dir / "config.json", plan.config)
    start, one_time = time.time(), one_time_seconds()
    try:
        result = plan.recipe(ctx)
    except BaseException as err:  # the command line says which fold stopped and that finished folds are kept
        err.kitbox_fold = (plan.name, fold_name(fold), plan.config_dir)
        raise
    gc.collect()  # the recipe's model, optimizer and batches (reference cycles) go now, not during the next fold
    oof, test, snaps = _checked(result, plan.name, fold, len(ctx.valid_idx), len(data.test))
    seconds = time.time() - start
    score = float(metric(y[ctx.valid_idx], oof)) if len(ctx.valid_idx) else None
    test_pred = snapshot_mean(test, snaps)
    info = {**result.info, "snapshots": len(snaps)}
    if one_time_seconds() > one_time:  # cached for the next folds: a timed run's estimates leave it out
        info["one_time_seconds"] = round(one_time_seconds() - one_time, 3)
    finished = FinishedFold(fold, ctx.valid_idx, oof, test_pred, score, seconds, info)
    if save:
        fdir = ctx.fold_dir
        save_npy(fdir / "valid_idx.npy", ctx.valid_idx)
        save_npy(fdir / "oof.npy", oof)
        save_npy(fdir / "test.npy", test_pred)
        if snaps:
            save_npy(fdir / "test_final.npy", test)  # the last model alone, to compare with the snapshot mean
        if result.predictor is not None:
            from kitbox.io.runs import save_object

            save_object(fdir / "predictor.pt", result.predictor)
        record = {"recipe": plan.name, "fold": fold, "score": score, "seconds": seconds,
                  "n_train": len(ctx.train_idx), "n_valid": len(ctx.valid_idx), "info": info}
        if plan.test_files is not None:
            record["test_files"] = plan.test_files
        write_json(fdir / "done.json", record)
    return finished


@dataclass
class RecipeFolds:
    """A recipe's folds in one configuration: the finished ones, the ones still to run, and its refit."""

    name: str
    config_dir: Path
    n_rows: int
    finished: dict[int, FinishedFold]
    missing: list
    refit: FinishedFold | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    def oof(self) -> tuple[np.ndarray, np.ndarray]:
        """OOF predictions for every training row (NaN where no finished fold covers it) and the covered-row mask."""
        first = next(iter(self.finished.values()))
        full = np.full((self.n_rows,) + first.oof.shape[1:], np.nan)
        mask = np.zeros(self.n_rows, dtype=bool)
        for rec in self.finished.values():
            if mask[rec.valid_idx].any():
                raise ValueError(f"recipe {self.name!r}: fold {rec.fold} predicts rows another fold already covers")
            full[rec.valid_idx], mask[rec.valid_idx] = rec.oof, True
        return full, mask

    def test(self, rank: bool = False) -> np.ndarray:
        """The refit model's test prediction when there is one, else the mean of the folds' (ranks for AUC)."""
        if self.refit is not None:
            return np.asarray(self.refit.test, dtype=np.float64)
        return fold_mean([rec.test for _, rec in sorted(self.finished.items())], rank=rank)

    def fold_scores(self) -> dict[int, float]:
        return {k: rec.score for k, rec in sorted(self.finished.items())}


def train_recipe(plan: RecipePlan, folds: np.ndarray, data: CompetitionData, y, metric, seed: int = 42,
                 settings: RunSettings = RunSettings(), only_folds=None, refit: bool = False, log=print,
                 save: bool = True) -> RecipeFolds:
    """Run one recipe on every fold (or on ``only_folds``), skipping folds finished earlier; then the refit,
    once every fold has a score."""
    metric = get_metric(metric)
    y = np.asarray(y)
    n_folds = n_folds_of(folds)
    wanted = set(range(n_folds) if only_folds is None else only_folds)
    if wanted - set(range(n_folds)):
        raise ValueError(f"--folds asks for folds {sorted(wanted - set(range(n_folds)))}, the run has 0..{n_folds - 1}")
    finished, missing = {}, []
    for fold in range(n_folds):
        tag = f"[{plan.name}] fold {fold + 1}/{n_folds}"
        if plan.finished_before(fold) and test_is_current(plan, fold):
            finished[fold] = load_fold(plan.config_dir, fold, folds)
            log(f"{tag}  {metric.name} {finished[fold].score:.5f}  (finished earlier, reused)")
        elif plan.finished_before(fold) and predictor_path(plan.config_dir, fold).exists():
            finished[fold] = _repredicted(plan, fold, folds, data, settings, log)
        elif fold in wanted:
            rec = finished[fold] = run_fold(plan, fold, folds, data, y, metric, seed, settings, save=save, log=log)
            log(f"{tag}  {metric.name} {rec.score:.5f}  ({rec.seconds:.1f} s)")
        else:
            missing.append(fold)
    result = RecipeFolds(plan.name, plan.config_dir, len(folds), finished, missing)
    # the refit trains in a run of every fold; a run of some folds (or of none: Ray trained them) only loads it
    if refit and not missing and (only_folds is None or plan.finished_before("refit")):
        reused = plan.finished_before("refit")
        scored_info = {k: rec.info for k, rec in finished.items()}
        result.refit = run_fold(plan, "refit", folds, data, y, metric, seed, settings, scored_info, save=save, log=log)
        log(f"[{plan.name}] refit on all {len(folds)} rows for test  "
            f"({'finished earlier, reused' if reused else f'{result.refit.seconds:.1f} s'})")
    elif refit:
        result.missing = missing + ["refit"]
    return result


def run_cv(data: CompetitionData, folds: np.ndarray, recipes: dict, y, metric, run_dir, only_folds=None,
           seed: int = 42, settings: RunSettings = RunSettings(), options: dict | None = None, log=print,
           refit: bool = False) -> dict[str, RecipeFolds]:
    """Cross-validate recipe functions in ``run_dir/<recipe>/fold<k>`` without fingerprints (notebooks, tests):
    the pipeline (:func:`kitbox.run`) keeps each configuration in its own folder instead."""
    from kitbox.adapt.contract import as_recipe
    from kitbox.adapt.options import resolve_options

    recipes = {name: as_recipe(r) for name, r in recipes.items()}
    typed = resolve_options(recipes, options or {})
    results = {}
    for name, r in recipes.items():
        plan = RecipePlan(name, r, typed[name], {"recipe": name}, Path(run_dir) / name,
                          {dep: Path(run_dir) / dep for dep in r.needs})
        results[name] = train_recipe(plan, folds, data, y, metric, seed, settings, only_folds, refit, log)
    return results


def cv_report(results: dict[str, RecipeFolds], y, metric) -> dict:
    """Per recipe: the score of each finished fold, their mean and std, and the score of all OOF rows together."""
    metric = get_metric(metric)
    report = {}
    for name, res in results.items():
        if not res.finished:
            report[name] = {"folds": {}, "missing": res.missing}
            continue
        scores = res.fold_scores()
        oof, mask = res.oof()
        report[name] = {
            "folds": {str(k): s for k, s in scores.items()},
            "mean": float(np.mean(list(scores.values()))),
            "std": float(np.std(list(scores.values()))),
            "oof": float(metric(np.asarray(y)[mask], oof[mask])),
            "oof_rows": int(mask.sum()),
            "missing": res.missing,
            "seconds": float(sum(r.seconds for r in res.finished.values()))
            + (res.refit.seconds if res.refit is not None else 0.0),
            "test_from": "refit on all rows" if res.refit is not None else "mean of the folds' models",
        }
    return report


def recipe_test_pred(res: RecipeFolds, metric) -> np.ndarray:
    """The recipe's test prediction: the mean of its folds' (rank mean for rank metrics such as AUC)."""
    return res.test(rank=get_metric(metric).name in RANK_METRICS)


def plot_cv(report: dict, metric, path, blend_score: float | None = None) -> Path:
    """A PNG of each recipe's fold scores (dots), their OOF score (bar) and the blend's (dashed line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = get_metric(metric)
    names = [n for n, r in report.items() if "oof" in r]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.5))
    ax.bar(range(len(names)), [report[n]["oof"] for n in names], color="#9ecae1", label="OOF")
    for i, name in enumerate(names):
        scores = list(report[name]["folds"].values())
        ax.plot([i] * len(scores), scores, "o", color="#08519c", label="folds" if i == 0 else None)
    if blend_score is not None:
        ax.axhline(blend_score, color="#d95f02", ls="--", label=f"blend {blend_score:.5f}")
    scores = [s for n in names for s in report[n]["folds"].values()] + [report[n]["oof"] for n in names]
    spread = (max(scores) - min(scores)) or abs(max(scores)) * 0.01 or 1.0
    ax.set_ylim(min(scores) - spread, max(scores) + spread)  # zoom in: the differences are what matters
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(f"{metric.name} ({'higher' if metric.greater_is_better else 'lower'} is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
