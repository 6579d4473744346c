"""Vectorized feature helpers for time-ordered tables: date parts, days since / until an event, event counts in a window.

Every helper works on whole columns (sorting, cumulative sums, ``searchsorted``), never a Python loop over rows,
so a million-row table takes seconds.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

DATE_PARTS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear",
              "Is_month_end", "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start")


def add_datepart(df: pd.DataFrame, column: str, prefix: str = "", drop: bool = False) -> pd.DataFrame:
    """Add calendar parts of ``column`` (a datetime) as integer columns named ``prefix + part``; ``Elapsed`` is days since 1970."""
    date = pd.to_datetime(df[column])
    parts = {
        "Year": date.dt.year, "Month": date.dt.month, "Week": date.dt.isocalendar().week.astype("int64"),
        "Day": date.dt.day, "Dayofweek": date.dt.day_of_week, "Dayofyear": date.dt.day_of_year,
        "Is_month_end": date.dt.is_month_end, "Is_month_start": date.dt.is_month_start,
        "Is_quarter_end": date.dt.is_quarter_end, "Is_quarter_start": date.dt.is_quarter_start,
        "Is_year_end": date.dt.is_year_end, "Is_year_start": date.dt.is_year_start,
    }
    for name, values in parts.items():
        df[prefix + name] = np.asarray(values, dtype=np.int64)
    df[prefix + "Elapsed"] = (date - pd.Timestamp("1970-01-01")).dt.days.astype(np.int64)
    if drop:
        del df[column]
    return df


def _group_day_keys(group, date) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per row that sorts by (group, day) and keeps groups more than any window apart."""
    group_codes = pd.factorize(pd.Series(group), sort=False)[0].astype(np.int64)
    days = (pd.to_datetime(pd.Series(date)) - pd.Timestamp("1970-01-01")).dt.days.to_numpy(np.int64)
    days = days - days.min()
    stride = int(days.max()) + 1_000_000  # wider than any window or gap we measure
    return group_codes * stride + days, np.int64(stride)


def days_since_until(group, date, event) -> tuple[np.ndarray, np.ndarray]:
    """Per row: days since the group's last event on or before this day, and days until its next one on or after.

    ``event`` is a boolean per row. NaN where the group has no such event in the data (before the first / after the last).
    """
    keys, stride = _group_day_keys(group, date)
    event = np.asarray(event, dtype=bool)
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    e = event[order]
    pos = np.arange(len(k))
    # index of the last event at or before each row, and of the next event at or after it
    last = np.maximum.accumulate(np.where(e, pos, -1))
    nxt = np.minimum.accumulate(np.where(e, pos, len(k))[::-1])[::-1]
    since = np.full(len(k), np.nan)
    until = np.full(len(k), np.nan)
    ok = last >= 0
    ok[ok] = k[last[ok]] // stride == k[ok] // stride  # the event belongs to the same group
    since[ok] = (k[ok] - k[last[ok]])
    ok = nxt < len(k)
    ok[ok] = k[nxt[ok]] // stride == k[ok] // stride
    until[ok] = (k[nxt[ok]] - k[ok])
    out_since = np.empty_like(since)
    out_until = np.empty_like(until)
    out_since[order], out_until[order] = since, until
    return out_since, out_until


def window_counts(group, date, event, days: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the group's events in the ``days`` days ending on this day (backward) and starting on it (forward)."""
    keys, _ = _group_day_keys(group, date)
    event = np.asarray(event, dtype=np.int64)
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    csum = np.concatenate([[0], np.cumsum(event[order])])
    hi = np.searchsorted(k, k, side="right")
    backward = csum[hi] - csum[np.searchsorted(k, k - (days - 1), side="left")]
    lo = np.searchsorted(k, k, side="left")
    forward = csum[np.searchsorted(k, k + (days - 1), side="right")] - csum[lo]
    out_b = np.empty(len(k), np.int64)
    out_f = np.empty(len(k), np.int64)
    out_b[order], out_f[order] = backward, forward
    return out_b, out_f


# ---------------------------------------------------------------------------------------------- fold statistics
def parse_groups(spec: str) -> tuple[tuple[str, ...], ...]:
    """``"Store;Store+DayOfWeek"`` -> ``(("Store",), ("Store", "DayOfWeek"))`` (groups of rows sharing those
    values): the syntax of the ``group_stats`` option."""
    return tuple(_parse_keys(group) for group in spec.split(";") if group.strip())


def show_groups(groups) -> str:
    return ";".join("+".join(keys) for keys in groups)


def _parse_keys(text: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in text.split("+") if key.strip())


class GroupTrend(NamedTuple):
    """Per value of the ``keys`` columns, the target's line over the ``time`` column (the ``trend`` option)."""

    keys: tuple[str, ...]
    time: str


def parse_trend(spec: str) -> GroupTrend:
    """``"Store@Elapsed"`` (or ``"Store+Promo@Elapsed"``) -> ``GroupTrend(("Store",), "Elapsed")``."""
    keys, sep, time_col = spec.partition("@")
    if not sep or not _parse_keys(keys) or not time_col.strip():
        raise ValueError(f"{spec!r} is not GROUP@TIME_COLUMN")
    return GroupTrend(_parse_keys(keys), time_col.strip())


def show_trend(trend: GroupTrend) -> str:
    return "+".join(trend.keys) + "@" + trend.time


def _keys(df: pd.DataFrame, keys) -> pd.Index:
    keys = list(keys)  # a tuple would name one column of a column MultiIndex
    return pd.Index(df[keys[0]]) if len(keys) == 1 else pd.MultiIndex.from_frame(df[keys])


class GroupStatistics:
    """Per group of rows sharing the values of some columns: the mean and std of each of ``values`` (e.g. the log
    target, row-aligned with ``train``) over ``train``'s rows, kept as tables; ``transform`` gives them as float32
    columns for any frame with the group columns (a saved model applies them to a new test table).

    Computed from training rows only, they tell a tree a store's level (and its weekday or promo level) without a
    split per store; a group not seen in ``train`` gets NaN.
    """

    def __init__(self, train: pd.DataFrame, values: dict[str, np.ndarray], groups: list[list[str]]):
        table = pd.DataFrame({name: np.asarray(v, dtype=np.float64) for name, v in values.items()})
        self.tables = [(list(keys), table.groupby(_keys(train, keys)).agg(["mean", "std"])) for keys in groups]

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = {}
        for keys, stats in self.tables:
            found = stats.reindex(_keys(frame, keys)).to_numpy(np.float32)
            for j, (name, stat) in enumerate(stats.columns):
                cols[f"{'_'.join(keys)}_{name}_{stat}"] = found[:, j]
        return pd.DataFrame(cols, index=frame.index)


def group_statistics(train: pd.DataFrame, values: dict[str, np.ndarray], groups: list[list[str]],
                     frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """:class:`GroupStatistics` of ``train`` as columns for each of ``frames``."""
    stats = GroupStatistics(train, values, groups)
    return [stats.transform(frame) for frame in frames]


class GroupTrendTable:
    """Per group: the least-squares line of ``y`` over ``time_col`` fitted on ``train``'s rows; ``transform`` evaluates
    it at each row of a frame (``trend``) and gives its slope. With ``recent`` > 0, also the mean of ``y`` over the
    group's last ``recent`` time units of ``train`` (its current level, which the mean over years lags behind)."""

    def __init__(self, train: pd.DataFrame, y: np.ndarray, keys: list[str], time_col: str, recent: float = 0.0):
        t = train[time_col].to_numpy(np.float64)
        table = pd.DataFrame({"t": t, "y": np.asarray(y, dtype=np.float64)}, index=_keys(train, keys))
        by = table.groupby(level=list(range(len(keys))))
        centred = table - by.transform("mean")
        slope = (centred["t"] * centred["y"]).groupby(by.ngroup().to_numpy()).sum() / \
            (centred["t"] ** 2).groupby(by.ngroup().to_numpy()).sum().replace(0.0, np.nan)
        means = by.mean()
        means["slope"] = slope.to_numpy()
        self.columns = ["slope"]
        if recent > 0:
            late = table[t > t.max() - recent]
            means["recent"] = late.groupby(level=list(range(len(keys))))["y"].mean().reindex(means.index)
            self.columns.append("recent")
        self.keys, self.time_col, self.means = list(keys), time_col, means

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        prefix = "_".join(self.keys)
        found = self.means.reindex(_keys(frame, self.keys))
        at = frame[self.time_col].to_numpy()
        cols = {f"{prefix}_trend": (found["y"] + found["slope"] * (at - found["t"])).to_numpy()}
        cols.update({f"{prefix}_{c}": found[c].to_numpy() for c in self.columns})
        return pd.DataFrame({k: np.asarray(v, dtype=np.float32) for k, v in cols.items()}, index=frame.index)


def group_trend(train: pd.DataFrame, y: np.ndarray, keys: list[str], time_col: str, frames: list[pd.DataFrame],
                recent: float = 0.0) -> list[pd.DataFrame]:
    """:class:`GroupTrendTable` of ``train`` evaluated at each of ``frames``."""
    trend = GroupTrendTable(train, y, keys, time_col, recent)
    return [trend.transform(frame) for frame in frames]
