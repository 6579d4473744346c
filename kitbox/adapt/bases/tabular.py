"""Rows of numbers and categories (Rossmann, Titanic, House Prices): ``TabularCompetition``."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from kitbox.adapt.bases.table import MAX_CAT_CARD, TableCompetition, _require, is_text, read_table
from kitbox.adapt.contract import CompetitionData
from kitbox.errors import InputError


class TabularCompetition(TableCompetition):
    """Rows of numbers and categories. Default recipes: LightGBM (the baseline) and an entity-embedding network."""

    cat_names: list[str] | None = None  # default: text/bool columns and integer columns with few values
    cont_names: list[str] | None = None  # default: the other numeric columns
    log_target: bool | None = None  # train on log1p(y); default: on for RMSLE / RMSPE
    join_tables: dict[str, str] = {}  # other CSVs joined on a key column, e.g. {"store.csv": "Store"}
    date_cols: list[str] | None = None  # expanded into calendar parts; default: columns that hold YYYY-MM-DD dates

    def read_files(self, data_dir: Path):
        train, test, sample, sample_path = super().read_files(data_dir)
        for name, key in self.join_tables.items():
            table = read_table(data_dir, name, what=f" (joined on {key!r})")
            _require(table, [key], name)
            if table[key].duplicated().any():
                raise InputError(f"{name}: {key!r} repeats ({table[key][table[key].duplicated()].iloc[0]!r}); a joined "
                                 "table needs one row per key")
            extra = [c for c in table.columns if c == key or c not in train.columns]
            train = train.merge(table[extra], on=key, how="left")
            test = test.merge(table[extra], on=key, how="left")
        return train, test, sample, sample_path

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        data = super().build_data(data_dir, train, test, sample, sample_path)
        for col in self.date_cols if self.date_cols is not None else _date_columns(data.train):
            from kitbox.tabular.features import add_datepart

            for df in (data.train, data.test):
                add_datepart(df, col, prefix=f"{col}_", drop=True)
        cat, cont, dropped = self.feature_columns(data)
        data.columns.cat, data.columns.cont = cat, cont
        if dropped:
            data.notes.append(f"not used as inputs (nearly every value unique, like names or ids): {dropped}; "
                              "list them in cat_names to use them")
        _require(data.test, cat + cont, self.test_file)
        log = self.log_target if self.log_target is not None else self.metric_name in ("rmsle", "rmspe")
        data.extra["log_target"] = bool(log and data.task == "regression")
        return data

    def feature_columns(self, data: CompetitionData) -> tuple[list[str], list[str], list[str]]:
        skip = {data.columns.id, *data.columns.target, *self.drop_cols}
        candidates = [c for c in data.train.columns if c not in skip and c in data.test.columns]
        if self.cat_names is not None or self.cont_names is not None:
            return list(self.cat_names or []), list(self.cont_names or []), []
        cat, cont, dropped = [], [], []
        keys = set(self.join_tables.values())  # a join key (Store) names an entity: a category, however many
        for c in candidates:
            col = data.train[c]
            if c in keys:
                cat.append(c)
            elif pd.api.types.is_float_dtype(col) or (pd.api.types.is_integer_dtype(col) and col.nunique() > MAX_CAT_CARD):
                cont.append(c)
            elif is_text(col) and col.nunique() > 0.5 * len(col) and col.nunique() > MAX_CAT_CARD:
                dropped.append(c)
            else:
                cat.append(c)
        return cat, cont, dropped

    def recipes(self):
        from kitbox.recipes import tabular

        return {"lightgbm": tabular.lightgbm, "entity_embedding": tabular.entity_embedding}


def _date_columns(df: pd.DataFrame) -> list[str]:
    """Text columns whose values look like dates (2015-07-31, 2015/07/31 12:00)."""
    found = []
    for c in df.columns:
        if not is_text(df[c]):
            continue
        head = df[c].dropna().astype(str).head(200)
        if len(head) and head.str.fullmatch(r"\d{4}[-/]\d{2}[-/]\d{2}([ T].*)?").mean() > 0.95:
            found.append(c)
    return found
