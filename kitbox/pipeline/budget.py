"""A run that must end in time (``--time-limit MINUTES``, AutoGluon's ``time_limit``).

The run trains the first fold of every recipe, and uses those folds to estimate what each recipe still needs
(its other folds and its refit). It then completes recipes in the order of their first-fold scores, best first,
as long as the estimated cost fits in the time that is left. A recipe that would fit without its refit predicts
test with the mean of its folds' models. Every other recipe is dropped from the blend, and the note says so.

A fold, once started, runs to its end. Before each fold starts, the run checks that the estimate still fits.
A recipe stopped part-way is left out of the blend. If no recipe finishes every fold, the submission comes from
the best recipe's finished folds: their models predict test, and its CV is scored on their validation rows.
Folds finished by an earlier run are reused and cost nothing, so the same command again goes further."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from kitbox.errors import InputError
from kitbox.pipeline import cv
from kitbox.pipeline.splits import n_folds_of
from kitbox.pipeline.summary import elapsed

RESERVE = 0.05  # share of the limit kept for the blend and the submission
MIN_RESERVE = 5.0  # seconds


@dataclass
class Clock:
    """The time a run has left, counted from the start of ``prepare``."""

    limit: float  # seconds
    started: float

    @property
    def reserve(self) -> float:
        return max(MIN_RESERVE, RESERVE * self.limit)

    def left(self) -> float:
        """Seconds left for training (the blend's reserve set aside)."""
        return self.limit - self.reserve - (time.time() - self.started)


@dataclass
class Outcome:
    """What a timed run trained: every recipe's folds, the ones the blend uses, and what was decided."""

    results: dict[str, cv.RecipeFolds]
    blended: list[str]
    notes: list[str] = field(default_factory=list)


def _train_rows(folds: np.ndarray, fold, forward: bool) -> int:
    if fold == "refit":
        return len(folds)
    return int(((folds == -1) | (folds > fold)).sum() if forward else (folds != fold).sum())


def _per_row(rp: cv.RecipePlan, res: cv.RecipeFolds, folds: np.ndarray) -> float:
    """Seconds per training row in the recipe's finished folds: a fold's and the refit's time are taken as
    proportional to their training rows. Work a fold cached for the others (features, a language model) is left
    out: the next folds reuse it."""
    done = list(res.finished.values())
    seconds = sum(max(0.0, f.seconds - f.info.get("one_time_seconds", 0.0)) for f in done)
    return seconds / max(1, sum(_train_rows(folds, f.fold, rp.forward) for f in done))


def _fold_cost(rp: cv.RecipePlan, res: cv.RecipeFolds, folds: np.ndarray, fold) -> float:
    return _per_row(rp, res, folds) * _train_rows(folds, fold, rp.forward)


def _estimates(rp: cv.RecipePlan, res: cv.RecipeFolds, folds: np.ndarray, refit: bool) -> tuple[float, float]:
    """(seconds for the folds still to run, seconds for the refit), from the finished folds' times."""
    todo = [k for k in range(n_folds_of(folds)) if k not in res.finished]
    fold_cost = sum(_fold_cost(rp, res, folds, k) for k in todo)
    refit_cost = _fold_cost(rp, res, folds, "refit") if refit and not cv.is_done(rp.config_dir, "refit") else 0.0
    return fold_cost, refit_cost


def _first_score(res: cv.RecipeFolds, greater_is_better: bool) -> float:
    scores = [f.score for f in res.finished.values() if f.score is not None]
    if not scores:
        return float("inf")
    mean = float(np.mean(scores))
    return -mean if greater_is_better else mean  # lower sorts first


def train_in_time(plan, minutes: float) -> Outcome:
    """Train ``plan`` within ``minutes`` (see the module's text); ``plan`` is a :class:`kitbox.pipeline.stages.Plan`."""
    if minutes <= 0:
        raise InputError(f"--time-limit {minutes:g}: give the minutes the run may take, e.g. --time-limit 30")
    if plan.only_folds is not None:
        raise InputError("--time-limit plans every fold itself: leave out --folds LIST (a number of folds is fine)")
    clock = Clock(minutes * 60.0, plan.started)
    comp, metric, log = plan.competition, plan.metric, plan.log
    folds = plan.folds
    n_folds = n_folds_of(folds)
    first = int(np.min(folds[folds >= 0]))

    def fit(rp, only, refit=False):
        return cv.train_recipe(rp, folds, plan.data, plan.y, metric, plan.seed, plan.settings, only, refit, log)

    notes: list[str] = []

    def say(note: str) -> None:
        notes.append(note)
        log(f"[time limit] {note}")

    say(f"time limit {minutes:g} min ({elapsed(clock.limit)}, of which {elapsed(clock.reserve)} kept for "
        "the blend and the submission)")
    results: dict[str, cv.RecipeFolds] = {}
    dropped: dict[str, str] = {}
    for name, rp in plan.recipes.items():  # 1. every recipe's first fold, to learn what a fold costs
        rp.done_before = None  # folds this run finishes are reused by the later steps: look on disk
        lost = [d for d in rp.recipe.needs if d in dropped]
        if lost:
            dropped[name] = f"it needs {lost[0]}, which was dropped"
        elif cv.is_done(rp.config_dir, first) or clock.left() > 0:
            results[name] = fit(rp, [first])
        else:
            dropped[name] = "no time was left for its first fold"

    # 2. complete the recipes whose estimates fit, best first fold first
    order = sorted(results, key=lambda n: _first_score(results[n], metric.greater_is_better))
    chosen: dict[str, bool] = {}  # name -> with its refit
    budget = clock.left()
    for name in order:
        group = [d for d in plan.recipes[name].recipe.needs if d not in chosen] + [name]
        if any(g not in results for g in group):
            continue
        costs = [_estimates(plan.recipes[g], results[g], folds, comp.refit) for g in group]
        lean, full = sum(c[0] for c in costs), sum(c[0] + c[1] for c in costs)
        if full <= budget:
            chosen.update({g: True for g in group})
            budget -= full
        elif lean <= max(budget, 0.0):  # (0 when every fold has finished)
            chosen.update({g: False for g in group})
            budget -= lean
            say(f"{name}: test from its folds' models (its refit, about {elapsed(full - lean)}, does not fit)")
        else:
            dropped[name] = f"its other folds need about {elapsed(lean)} and {elapsed(max(budget, 0))} was left"

    # 3. train them, checking before each fold that it still fits
    for name, rp in plan.recipes.items():
        if name not in chosen:
            continue
        lost = [d for d in rp.recipe.needs if d in dropped]
        if lost:  # its inputs stop part-way
            dropped[name] = f"it needs {lost[0]}, which was stopped"
            continue
        for k in range(n_folds):
            if k in results[name].finished:
                continue
            if clock.left() < _fold_cost(rp, results[name], folds, k):
                dropped[name] = f"stopped after {len(results[name].finished)} of {n_folds} folds: the next would " \
                                "not finish in time"
                break
            results[name] = fit(rp, [k])
        if name in dropped:
            continue
        refit_cost = _estimates(rp, results[name], folds, comp.refit)[1]
        refit = comp.refit and (refit_cost == 0.0 or (chosen[name] and clock.left() >= refit_cost))
        if comp.refit and chosen[name] and not refit:
            say(f"{name}: test from its folds' models (no time was left for its refit)")
        results[name] = fit(rp, None, refit)

    for name, why in dropped.items():
        say(f"{name}: left out of the blend ({why})")
    blended = [n for n in plan.recipes if n in results and n not in dropped and results[n].complete]
    if not blended:  # nothing finished every fold: the best recipe's finished folds make the submission
        partial = [n for n in results if results[n].finished]
        if not partial:
            raise InputError(f"--time-limit {minutes:g}: no fold finished in time; give the run more minutes")
        best = min(partial, key=lambda n: (-len(results[n].finished),
                                           _first_score(results[n], metric.greater_is_better)))
        rows = sum(len(f.valid_idx) for f in results[best].finished.values())
        say(f"no recipe finished every fold: the submission is {best}'s {len(results[best].finished)} "
            f"finished fold(s) (their models predict test; CV on their {rows} validation rows only)")
        blended = [best]
    say(f"blended: {', '.join(blended)}; training took {elapsed(time.time() - plan.started)}")
    return Outcome(results, blended, notes)
