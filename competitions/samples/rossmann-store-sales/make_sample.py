"""Rebuild this embedded mini competition from the full Kaggle files: ``python make_sample.py FULL_DIR [N_STORES]``.

Keeps N stores (default 40) drawn with a fixed seed among the test stores, over the full period: their train, test,
store and sample_submission rows (Ids unchanged), plus the external tables' rows for their states, gzip-compressed.
"""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

full = Path(sys.argv[1])
n_stores = int(sys.argv[2]) if len(sys.argv) > 2 else 40
external = full.parent / "rossmann-store-sales-external"
out = Path(__file__).resolve().parent
read = dict(dtype={"StateHoliday": str}, low_memory=False)

test = pd.read_csv(full / "test.csv", **read)
stores = np.sort(np.random.default_rng(0).choice(np.sort(test["Store"].unique()), n_stores, replace=False))
train = pd.read_csv(full / "train.csv", **read)
store = pd.read_csv(full / "store.csv")
sample = pd.read_csv(full / "sample_submission.csv")
test = test[test["Store"].isin(stores)]
tables = {
    "train.csv": train[train["Store"].isin(stores)],
    "test.csv": test,
    "store.csv": store[store["Store"].isin(stores)],
    "sample_submission.csv": sample[sample["Id"].isin(test["Id"])],
}
states = pd.read_csv(external / "store_states.csv")
states = states[states["Store"].isin(stores)]
names = pd.read_csv(external / "state_names.csv")
names = names[names["State"].isin(states["State"])]
weather = pd.read_csv(external / "weather.csv")
trend = pd.read_csv(external / "googletrend.csv")
trend_states = {s.split(",")[-1] for s in states["State"]}  # "HB,NI" is Lower Saxony's trend
tables.update({
    "store_states.csv": states,
    "state_names.csv": names,
    "weather.csv": weather[weather["file"].isin(names["StateName"])],
    "googletrend.csv": trend[trend["file"].str.split("_").str[2].isin(trend_states) | (trend["file"] == "Rossmann_DE")],
})
for name, df in tables.items():
    df.to_csv(out / f"{name}.gz", index=False, compression={"method": "gzip", "mtime": 0})
    print(f"{name}.gz: {len(df)} rows")
