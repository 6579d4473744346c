"""The run summary a competitor reads at the end: CV per recipe, the blend (in-sample and honest), what was
decided, where test predictions and weights came from, warnings, the submission's path."""
from __future__ import annotations


def elapsed(seconds: float) -> str:
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m {sec:02d}s" if minutes else f"{seconds:.1f}s"


def _recipe_lines(report) -> list[str]:
    lines = []
    blend = report.blend or {}
    at_cut = blend.get("single_scores", {})
    for name, r in report.recipes.items():
        if "mean" not in r:
            lines.append(f"  {name:22s} no finished folds")
            continue
        folds = " ".join(f"{s:.5f}" for s in r["folds"].values())
        left_out = "recipes" in blend and name not in blend["recipes"]  # a timed run dropped it (see its note)
        todo = f"  (folds {r['missing']} not run yet)" if r["missing"] else ""
        todo = "  (left out of the blend)" if left_out else todo
        cut = f"   at the submission's decision {at_cut[name]:.5f}" if blend.get("decided") and name in at_cut else ""
        lines.append(f"  {name:22s} OOF {r['oof']:.5f}   folds {r['mean']:.5f} +- {r['std']:.5f} [{folds}]{cut}{todo}")
    return lines


def _decided_text(decided: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in decided.items())


def summary_text(report) -> str:
    arrow = "higher" if report.greater_is_better else "lower"
    demo = "  [embedded sample: a demo, not the competition's data]" if report.is_sample else ""
    lines = [f"== {report.competition}: {report.metric} ({arrow} is better){demo}"]
    lines += _recipe_lines(report)
    blend = report.blend
    if blend is not None:
        weights = ", ".join(f"{n} {w:.2f}" for n, w in blend["weights"].items() if w > 0)
        unused = [n for n, w in blend["weights"].items() if w <= 0]
        by = "" if blend["metric"] == report.metric else f", weights chosen for {blend['metric']}"
        how = f"weights: {weights}"
        stacked = blend.get("method") == "stack"
        if stacked:
            held = blend.get("held_out", {})
            how = (f"stacked by a linear model on OOF (held out: stack {held.get('stack', float('nan')):.5f} vs "
                   f"Caruana {held.get('caruana', float('nan')):.5f}); weights: {weights} (shares of its coefficients)")
        lines.append(f"  {'blend':22s} OOF {blend['score']:.5f} (chosen on these rows{by})   "
                     f"honest {blend['score_honest']:.5f} (chosen on the other folds)   {how}")
        if unused:
            why = "the stacker gave it no coefficient" if stacked else "did not improve the blend on OOF"
            lines.append(f"  no blend weight: {', '.join(unused)} ({why})")
        if blend.get("decided"):
            lines.append(f"  decided on OOF: {_decided_text(blend['decided'])}")
        test_from = {r.get("test_from") for r in report.recipes.values()}
        lines.append(f"  test predictions: {' / '.join(sorted(t for t in test_from if t))}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    for warning in report.warnings:
        lines.append(f"WARNING: {warning}")
    if blend is not None:
        lines.append(f"CV score: {blend['score_honest']:.5f} honest ({blend['score']:.5f} with weights and decisions "
                     "chosen on the same rows)")
    if report.submission is not None:
        lines.append(f"submission: {report.submission}")
    if report.public_score is not None:
        lines.append(f"public score: {report.public_score}")
    lines.append(f"elapsed: {elapsed(report.seconds)}")
    return "\n".join(lines)
