"""Adversarial validation on real rows (the embedded Rossmann sample): a random split of one table cannot be told
apart, a split by date can, and the date's columns are named; the run's summary prints the figure."""
from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.tabular.shift import adversarial_validation

SAMPLE = Path(__file__).resolve().parents[1] / "competitions" / "samples" / "rossmann-store-sales"
CAT, CONT = ["Store", "DayOfWeek", "Promo", "StateHoliday"], ["Day", "Month"]


def _rows() -> pd.DataFrame:
    df = pd.read_csv(SAMPLE / "train.csv.gz", dtype={"StateHoliday": str})
    df = df[df["Store"].isin(sorted(df["Store"].unique())[:8])].reset_index(drop=True)
    dates = pd.to_datetime(df["Date"])
    return df.assign(Day=dates.dt.day, Month=dates.dt.month, when=dates)


def test_a_random_split_looks_alike_and_a_date_split_does_not():
    df = _rows()
    shuffled = df.sample(frac=1.0, random_state=0)
    alike = adversarial_validation(shuffled.iloc[: len(df) // 2], shuffled.iloc[len(df) // 2:], CAT, CONT)
    assert 0.4 < alike.auc < 0.6, alike
    later = df["when"] >= df["when"].quantile(0.8)  # the last fifth of the days: other months
    shifted = adversarial_validation(df[~later], df[later], CAT, CONT)
    assert shifted.auc > 0.9, shifted
    assert shifted.shifted[0][0] == "Month" and np.isclose(sum(s for _, s in shifted.shifted), 1.0)
    assert shifted.rows == (int((~later).sum()), int(later.sum()))
    note = shifted.note()
    assert note.startswith(f"adversarial validation: AUC {shifted.auc:.3f}") and "Month" in note


def test_the_run_summary_prints_it(tmp_path):
    import kitbox

    report = kitbox.run("rossmann", recipes="lightgbm", options={"max_rounds": 50}, run_dir=tmp_path / "run",
                        out=tmp_path / "sub.csv", progress=False, log=lambda *a, **k: None)
    (note,) = [n for n in report.notes if n.startswith("adversarial validation")]
    assert "AUC" in note and "most shifted columns" in note
    assert "adversarial validation: AUC" in report.summary()
