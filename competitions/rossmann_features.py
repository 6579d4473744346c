"""Rossmann's files and feature engineering: reading and checking Kaggle's tables (and fast.ai's external ones),
then date parts, store fields, competition and Promo2 durations, event distances and state weather / Google trend.

Everything here is fixed per row: nothing depends on the sales of the days being predicted. Statistics of the
sales themselves (per-store means, trends) depend on which rows train, so the recipes compute them per fold
(``kitbox.tabular.features.group_statistics``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.adapt.bases import find_file, read_table
from kitbox.errors import InputError
from kitbox.tabular.features import add_datepart, days_since_until, window_counts

EXTERNAL_DIR = "rossmann-store-sales-external"  # fast.ai's extra tables, a sibling folder of the Kaggle files
TEXT_COLUMNS = ["StateHoliday", "PromoInterval", "State", "Id"]  # read as written ("0" and 0 are one holiday code)
COLUMNS = {
    "train.csv": ["Store", "DayOfWeek", "Date", "Sales", "Customers", "Open", "Promo", "StateHoliday", "SchoolHoliday"],
    "test.csv": ["Id", "Store", "DayOfWeek", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"],
    "store.csv": ["Store", "StoreType", "Assortment", "CompetitionDistance", "CompetitionOpenSinceMonth",
                  "CompetitionOpenSinceYear", "Promo2", "Promo2SinceWeek", "Promo2SinceYear", "PromoInterval"],
    "sample_submission.csv": ["Id", "Sales"],
}
EXTERNAL_COLUMNS = {
    "store_states.csv": ["Store", "State"],
    "state_names.csv": ["StateName", "State"],
    "weather.csv": ["file", "Date"],
    "googletrend.csv": ["file", "week", "trend"],
}
WEATHER = ["Max_TemperatureC", "Mean_TemperatureC", "Min_TemperatureC", "Max_Humidity", "Mean_Humidity",
           "Min_Humidity", "Max_Wind_SpeedKm_h", "Mean_Wind_SpeedKm_h", "CloudCover", "Precipitationmm"]
EVENTS = ["Promo", "StateHoliday", "SchoolHoliday", "Closed"]
EVENT_DAYS_CAP = 60  # days since / until an event: farther than two months (or never seen) reads as "far"
CALENDAR = ["Store", "Date", "Open", "Promo", "StateHoliday", "SchoolHoliday"]  # what the event features read
CALENDAR_DAYS = 14  # promos run in a two-week cycle and stores close on the same weekdays: two weeks repeat

CAT_NAMES = ["Store", "DayOfWeek", "Year", "Month", "Day", "Week", "StateHoliday", "CompetitionMonthsOpen",
             "Promo2Weeks", "IsPromo2Month", "StoreType", "Assortment", "PromoInterval", "CompetitionOpenSinceYear",
             "Promo2SinceYear", "State", "Events", "Promo_fw", "Promo_bw", "StateHoliday_fw", "StateHoliday_bw",
             "SchoolHoliday_fw", "SchoolHoliday_bw"]
CONT_NAMES = ["CompetitionDistance", *WEATHER, "trend", "trend_DE", "Promo", "SchoolHoliday",
              "AfterPromo", "BeforePromo", "AfterStateHoliday", "BeforeStateHoliday",
              "AfterSchoolHoliday", "BeforeSchoolHoliday"]
# the gradient-boosted models also get what a tree splits on directly: the calendar day, uncapped durations,
# distances to closures (a store reopening after weeks of refurbishment sells more) and event counts
GBM_EXTRA = ["Dayofyear", "Elapsed", "CompetitionDaysOpen", "Promo2Days", "AfterClosed", "BeforeClosed",
             "Closed_fw", "Closed_bw", "DayInPromoMonth"]


# ---------------------------------------------------------------------------------------------- reading the files
def read_csv(folder: Path, name: str, columns: list[str]) -> pd.DataFrame:
    """``name`` (or ``name.gz``) from ``folder`` with its expected ``columns``; else an error naming what lacks.
    The sample submission is read as written (all text), as the submission check reads it."""
    df = read_table(folder, name, TEXT_COLUMNS, all_text=name == "sample_submission.csv")
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise InputError(f"{find_file(folder, name)} lacks column(s) {lacking}; its columns are {list(df.columns)}. "
                         "Is this Kaggle's rossmann-store-sales file?")
    return df


def parse_dates(df: pd.DataFrame, column: str, source: str) -> pd.Series:
    dates = pd.to_datetime(df[column], errors="coerce", format="%Y-%m-%d")
    bad = dates.isna()
    if bad.any():
        raise InputError(f"{source}: {int(bad.sum())} value(s) of column {column!r} are not YYYY-MM-DD dates, "
                         f"e.g. {df.loc[bad, column].iloc[0]!r}; fix or drop those rows")
    return dates


def check_values(train: pd.DataFrame, test: pd.DataFrame, store: pd.DataFrame, data_dir: Path) -> None:
    """Negative sales and stores without a store.csv row stop the run here, with the file, column and value."""
    negative = train["Sales"] < 0
    if negative.any():
        bad = train[negative].iloc[0]
        raise InputError(f"{data_dir / 'train.csv'}: column 'Sales' is negative on {int(negative.sum())} row(s), e.g. "
                         f"{bad['Sales']} for store {bad['Store']} on {bad['Date'].date()}; sales cannot be negative")
    for name, df in (("train.csv", train), ("test.csv", test)):
        unknown = sorted(set(df["Store"]) - set(store["Store"]))
        if unknown:
            raise InputError(f"{data_dir / name}: column 'Store' has value(s) {unknown[:10]} that store.csv does not "
                             "describe; every store needs its row in store.csv")


def external_tables(data_dir: Path) -> dict[str, pd.DataFrame] | None:
    """fast.ai's external tables from the same folder or the sibling ``rossmann-store-sales-external``; None when
    absent."""
    for folder in (data_dir, data_dir.parent / EXTERNAL_DIR, data_dir / EXTERNAL_DIR):
        if all(find_file(folder, name) is not None for name in EXTERNAL_COLUMNS):
            return {n.removesuffix(".csv"): read_csv(folder, n, cols) for n, cols in EXTERNAL_COLUMNS.items()}
    return None


def read_files(data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict | None, list[str]]:
    """train, test (with every feature), the sample submission, the external tables (or None) and notes."""
    train, test, store, sample = (read_csv(data_dir, name, cols) for name, cols in COLUMNS.items())
    train["Date"] = parse_dates(train, "Date", f"{data_dir / 'train.csv'}")
    test["Date"] = parse_dates(test, "Date", f"{data_dir / 'test.csv'}")
    check_values(train, test, store, data_dir)
    notes = []
    if test["Open"].isna().any():  # 11 rows in Kaggle's test: treated as open, so they get a prediction rather than 0
        notes.append(f"test.csv: {int(test['Open'].isna().sum())} row(s) without 'Open' are treated as open")
        test["Open"] = test["Open"].fillna(1)
    external = external_tables(data_dir)
    if external is None:
        notes.append(f"external tables (weather, Google trend) not found beside {data_dir}: going without them")
    return train, test, store, sample, external, notes


# ---------------------------------------------------------------------------------------------- features
def join_external(df: pd.DataFrame, ext: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """State per store, then that state's daily weather and weekly Google trend (plus Germany's trend)."""
    df = df.merge(ext["store_states"][["Store", "State"]], on="Store", how="left")
    weather = ext["weather"].merge(ext["state_names"], left_on="file", right_on="StateName", how="inner")
    weather["Date"] = parse_dates(weather, "Date", "weather.csv")
    keep = [c for c in WEATHER if c in weather.columns]
    weather = weather[["State", "Date", "Events", *keep]].drop_duplicates(["State", "Date"])
    df = df.merge(weather, on=["State", "Date"], how="left")
    trend = ext["googletrend"].copy()
    trend["State"] = trend["file"].str.split("_").str[2]
    # Lower Saxony's trend stands for the stores tagged "HB,NI" (Bremen + Lower Saxony) in store_states
    trend.loc[trend["State"] == "NI", "State"] = "HB,NI"
    trend["WeekStart"] = pd.to_datetime(trend["week"].str.split(" - ").str[0])
    # each trend row covers Sunday..Saturday: find the Sunday that starts a row's week
    df["WeekStart"] = df["Date"] - pd.to_timedelta((df["Date"].dt.day_of_week + 1) % 7, unit="D")
    national = trend[trend["State"].isna()][["WeekStart", "trend"]].rename(columns={"trend": "trend_DE"})
    df = df.merge(trend[trend["State"].notna()][["State", "WeekStart", "trend"]], on=["State", "WeekStart"], how="left")
    df = df.merge(national.drop_duplicates("WeekStart"), on="WeekStart", how="left")
    return df.drop(columns="WeekStart")


def store_features(df: pd.DataFrame) -> None:
    """Days (and capped months) since the nearest competitor opened; days (capped weeks) since Promo2 started;
    whether this month restarts Promo2."""
    known = df["CompetitionOpenSinceYear"].notna()
    year = df["CompetitionOpenSinceYear"].fillna(1900).astype(int).clip(1900, 2100)
    month = df["CompetitionOpenSinceMonth"].fillna(1).astype(int).clip(1, 12)
    opened = pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": 15}))
    days_open = (df["Date"] - opened).dt.days
    df["CompetitionDaysOpen"] = days_open.where(known)  # unknown opening: missing, not "since 1900"
    df["CompetitionMonthsOpen"] = (days_open.clip(lower=0) // 30).clip(upper=24)

    week = df["Promo2SinceWeek"].fillna(1).astype(int).clip(1, 52)
    p2_year = df["Promo2SinceYear"].fillna(1900).astype(int).clip(1900, 2100)
    since = pd.to_datetime(p2_year.astype(str) + "-W" + week.astype(str).str.zfill(2) + "-1", format="%G-W%V-%u")
    promo2_days = (df["Date"] - since).dt.days
    active = (df["Promo2"] == 1) & (promo2_days >= 0)
    df["Promo2Days"] = promo2_days.where(df["Promo2"] == 1)
    df["Promo2Weeks"] = np.where(active, (promo2_days // 7).clip(0, 25), -1)
    intervals = df["PromoInterval"].fillna("")
    in_month = np.zeros(len(df), dtype=bool)
    for m, abbr in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sept", "Oct", "Nov", "Dec"], 1):
        in_month |= (df["Month"].to_numpy() == m) & intervals.str.contains(abbr, regex=False).to_numpy()
    df["IsPromo2Month"] = (in_month & active).astype(np.int64)
    df["DayInPromoMonth"] = np.where(df["IsPromo2Month"] == 1, df["Day"], 0)  # Promo2 coupons wear off in a month


def extend_calendar(df: pd.DataFrame, days: int = CALENDAR_DAYS) -> pd.DataFrame:
    """Each store's last ``days`` days of the calendar (open, promo, school holiday) repeated once after the data's
    end, without state holidays (those fall on dates, not in cycles): the days the look-ahead features of the last
    test days read. Without them the last test week sees no next Sunday and no next promo ("none in sight"), which
    no training day ever does, since every training day has the test period after it."""
    end = df["Date"].max()
    pad = df.loc[df["Date"] > end - pd.Timedelta(days=days), CALENDAR].copy()
    pad["Date"] += pd.Timedelta(days=days)
    pad["StateHoliday"] = "0"
    return pad


def event_features(df: pd.DataFrame, after: pd.DataFrame | None = None) -> None:
    """Per store: days since the last / until the next promo, holiday and closed day, and their counts in +-7 days.
    ``after``: calendar rows past the data's end (``extend_calendar``), read by the look-ahead only."""
    n = len(df)
    calendar = df[CALENDAR] if after is None else pd.concat([df[CALENDAR], after], ignore_index=True)
    closed = (calendar["Open"] == 0).to_numpy()
    df["Closed"] = closed[:n].astype(np.int64)
    for name in EVENTS:
        if name == "Closed":
            event = closed
        elif name == "StateHoliday":
            event = (calendar[name].astype(str) != "0").to_numpy()
        else:
            event = (calendar[name].astype(int) == 1).to_numpy()
        since, until = days_since_until(calendar["Store"], calendar["Date"], event)
        df[f"After{name}"] = np.nan_to_num(since[:n], nan=EVENT_DAYS_CAP).clip(0, EVENT_DAYS_CAP)
        df[f"Before{name}"] = np.nan_to_num(until[:n], nan=EVENT_DAYS_CAP).clip(0, EVENT_DAYS_CAP)
        backward, forward = window_counts(calendar["Store"], calendar["Date"], event, days=7)
        df[f"{name}_bw"], df[f"{name}_fw"] = backward[:n], forward[:n]


def build_features(train: pd.DataFrame, test: pd.DataFrame, store: pd.DataFrame,
                   external: dict[str, pd.DataFrame] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The joined, feature-engineered train and test tables (test keeps ``Id``, train ``Sales`` and ``Customers``).

    Train and test are processed together, closed days included, so that event distances in the test period see
    train's history and a closure counts as an event.
    """
    both = pd.concat([train.assign(_is_test=False), test.assign(_is_test=True)], ignore_index=True)
    both = both.merge(store[COLUMNS["store.csv"]], on="Store", how="left", validate="many_to_one")
    if external is not None:
        both = join_external(both, external)
    both["StateHoliday"] = both["StateHoliday"].astype(str)
    add_datepart(both, "Date")
    store_features(both)
    event_features(both, after=extend_calendar(both))
    compact(both)
    is_test = both.pop("_is_test").to_numpy()
    train_out = both[~is_test].drop(columns=["Id"]).reset_index(drop=True)
    test_out = both[is_test].drop(columns=["Sales", "Customers"]).reset_index(drop=True)
    return train_out, test_out


def compact(df: pd.DataFrame) -> None:
    """64-bit numbers to 32 bits in place (a day count or a temperature needs no more): the run keeps these tables
    in memory from start to end, at half the size."""
    for c in df.columns:
        if pd.api.types.is_float_dtype(df[c]) and df[c].dtype != np.float32:
            df[c] = df[c].astype(np.float32)
        elif pd.api.types.is_integer_dtype(df[c]) and df[c].dtype.itemsize > 4:
            if df[c].between(np.iinfo(np.int32).min, np.iinfo(np.int32).max).all():
                df[c] = df[c].astype(np.int32)


def feature_names(columns) -> tuple[list[str], list[str], list[str]]:
    """(categorical, continuous, GBM-only continuous) names among ``columns`` (without the external tables,
    their columns are absent)."""
    present = set(columns)
    return ([c for c in CAT_NAMES if c in present], [c for c in CONT_NAMES if c in present],
            [c for c in GBM_EXTRA if c in present])
