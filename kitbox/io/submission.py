"""Checking a submission CSV against the competition's ``sample_submission.csv`` and writing it atomically.

The check reads both files as text, exactly as Kaggle's scorer sees them, and stops at the first
problem with a message naming the column, row or id: header, column order, row count, the id set
(each id exactly once), then each value's type, NaN/inf and range.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.io.runs import atomic_write_text


class SubmissionError(ValueError):
    """The submission does not match the sample; the message names the first problem."""


def _read_text_table(source, what: str) -> pd.DataFrame:
    """A CSV (path, text buffer or DataFrame) as strings, so '007' or '1.0' are compared as written."""
    if isinstance(source, pd.DataFrame):
        source = io.StringIO(source.to_csv(index=False))
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SubmissionError(f"{what} is empty: expected a header line and one row per id") from None
    except FileNotFoundError:
        raise SubmissionError(f"{what} does not exist") from None
    except pd.errors.ParserError as e:
        raise SubmissionError(f"{what} is not a readable CSV: {e}") from None


def _parse_numbers(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values.str.strip(), errors="coerce")


def _is_integer_text(values: pd.Series) -> bool:
    return bool(values.str.strip().str.fullmatch(r"[+-]?\d+").all())


def check_submission(submission, sample, ranges: dict | None = None, name: str = "submission",
                     whole_numbers=(), allowed: dict | None = None, tag_sep: str | None = None,
                     rle: dict | None = None, key: tuple[str, ...] | list[str] | None = None) -> None:
    """Raise :class:`SubmissionError` naming the first way ``submission`` differs from ``sample``.

    ``submission`` and ``sample`` are paths or DataFrames; the first column is the id. ``ranges`` maps a
    column to ``(low, high)`` allowed values, e.g. ``{"label": (0, 1)}`` for probabilities;
    ``whole_numbers`` names columns that must hold integers (class labels); ``allowed`` maps a column to the
    values it may hold (the classes seen in train). :func:`rules_for_metric` and :func:`submission_rules` derive
    them from the competition's metric and data. ``rle`` maps a column of run-length encoded masks to the pixels
    of each image (one number, or a mapping id -> pixels): every RLE is decoded and checked (empty: no mask).
    ``key``: the columns that together name a row, when the first alone does not (Severstal's ImageId and
    ClassId: one row per image and class); each key must be the sample's and appear once.
    """
    sub = _read_text_table(submission, name)
    ref = _read_text_table(sample, "sample submission")
    cols, ref_cols = list(sub.columns), list(ref.columns)
    if cols != ref_cols:
        if sorted(cols) == sorted(ref_cols):
            raise SubmissionError(f"{name}: columns are in the order {cols}, the sample's order is {ref_cols}")
        missing, extra = [c for c in ref_cols if c not in cols], [c for c in cols if c not in ref_cols]
        raise SubmissionError(f"{name}: header is {cols}, expected {ref_cols} (missing {missing}, unexpected {extra})")
    if len(sub) != len(ref):
        raise SubmissionError(f"{name} has {len(sub)} rows, the sample has {len(ref)} "
                              f"({'short by' if len(sub) < len(ref) else 'too many by'} {abs(len(sub) - len(ref))})")
    id_col = ref_cols[0]
    key_cols = list(key) if key else [id_col]
    ids = sub[id_col].str.strip()
    for col in key_cols:
        blank = sub[col].str.strip() == ""
        if blank.any():
            raise SubmissionError(f"{name}: row {int(np.argmax(blank))} has an empty {col}")
    keys, ref_keys = _row_keys(sub, key_cols), _row_keys(ref, key_cols)
    what = " + ".join(key_cols)
    dup = keys[keys.duplicated()]
    if len(dup):
        raise SubmissionError(f"{name}: {what} {dup.iloc[0]!r} appears more than once "
                              f"({keys.duplicated().sum()} duplicates)")
    unknown = keys[~keys.isin(set(ref_keys))]
    if len(unknown):
        raise SubmissionError(f"{name}: {what} {unknown.iloc[0]!r} is not in the sample submission "
                              f"({len(unknown)} unknown ids)")
    for col in ref_cols[1:]:
        if col in key_cols:
            continue
        if rle and col in rle:
            _check_rle(sub[col], ids, id_col, col, rle[col], name)
            continue
        if allowed and col in allowed:  # the classes seen in train are the stronger rule than the sample's look
            _check_allowed(sub[col], ids, id_col, col, allowed[col], name, tag_sep)
            continue
        _check_column(sub[col], ref[col], ids, id_col, col, (ranges or {}).get(col), col in whole_numbers, name)


def _row_keys(table: pd.DataFrame, columns: list[str]) -> pd.Series:
    """What names each row: its id, or its key columns' stripped values joined by " / "."""
    if len(columns) == 1:
        return table[columns[0]].str.strip()
    return table[columns].apply(lambda c: c.str.strip()).agg(" / ".join, axis=1)


def _check_allowed(values: pd.Series, ids: pd.Series, id_col: str, col: str, allowed, name: str,
                   tag_sep: str | None = None) -> None:
    allowed = {str(a) for a in allowed}
    if tag_sep:  # "clear primary water": every tag a known one (no tag at all is allowed)
        bad = values.str.strip().map(lambda v: not set(t for t in v.split(tag_sep) if t) <= allowed)
    else:
        bad = ~values.str.strip().isin(allowed)
    if bad.any():
        i = int(np.argmax(bad.to_numpy()))
        shown = sorted(allowed)[:20]
        raise SubmissionError(f"{name}: column {col!r} holds {values.iloc[i]!r} at row {i} ({id_col} {ids.iloc[i]}), "
                              f"which is not a class seen in train ({len(allowed)} classes: {shown})")


def _check_rle(values: pd.Series, ids: pd.Series, id_col: str, col: str, pixels, name: str) -> None:
    from kitbox.io.rle import RLEError, rle_runs

    for i, (text, row_id) in enumerate(zip(values, ids)):
        n_pixels = pixels if isinstance(pixels, (int, np.integer)) else pixels.get(row_id)
        if n_pixels is None:
            raise SubmissionError(f"{name}: no image size known for {id_col} {row_id} (column {col!r}, row {i})")
        try:
            rle_runs(text, int(n_pixels))
        except RLEError as e:
            raise SubmissionError(f"{name}: column {col!r} at row {i} ({id_col} {row_id}): {e}") from None


def _check_column(values: pd.Series, ref_values: pd.Series, ids: pd.Series, id_col: str, col: str, value_range,
                  whole: bool, name: str):
    def where(mask) -> str:
        i = int(np.argmax(np.asarray(mask)))
        return f"{values.iloc[i]!r} at row {i} ({id_col} {ids.iloc[i]})"

    blank = values.str.strip().isin(["", "nan", "NaN", "NA", "null", "None"])
    if blank.any():
        raise SubmissionError(f"{name}: column {col!r} has a missing value {where(blank)}")
    ref_numbers = _parse_numbers(ref_values)
    if ref_numbers.isna().any():
        return  # a text column (labels, tags, run-length masks): any non-empty text may be right
    numbers = _parse_numbers(values)
    if numbers.isna().any():
        raise SubmissionError(f"{name}: column {col!r} must be numeric like the sample's, found {where(numbers.isna())}")
    if not np.isfinite(numbers).all():
        raise SubmissionError(f"{name}: column {col!r} has an infinite value {where(~np.isfinite(numbers))}")
    if whole and (numbers != np.round(numbers)).any():
        raise SubmissionError(f"{name}: column {col!r} must hold whole numbers (class labels), "
                              f"found {where(numbers != np.round(numbers))}")
    if value_range is not None:
        low, high = value_range
        bad = (numbers < low) | (numbers > high)
        if bad.any():
            raise SubmissionError(f"{name}: column {col!r} must lie in [{low}, {high}], found {where(bad)}")


def write_submission(df: pd.DataFrame, path, sample, ranges: dict | None = None, whole_numbers=(),
                     float_format: str | None = None, allowed: dict | None = None) -> Path:
    """Check the exact text that will be written, then write it atomically; return the path."""
    text = df.to_csv(index=False, float_format=float_format)
    check_submission(io.StringIO(text), sample, ranges, name=f"submission for {path}", whole_numbers=whole_numbers,
                     allowed=allowed)
    return atomic_write_text(path, text)


LABEL_METRICS = {"accuracy", "f1", "f1_macro", "f1_micro", "qwk", "f2_multilabel"}  # scored on labels (or tags)
PROBABILITY_METRICS = {"log_loss", "auc", "mean_auc", "mean_log_loss"}  # scored on probabilities in [0, 1]


def metric_kind(metric) -> str:
    """What a metric scores: "label", "probability", "value" or "ranking" (``Metric.kind`` when it says)."""
    kind = getattr(metric, "kind", None)
    if kind:
        return kind
    name = getattr(metric, "name", metric)
    try:
        from kitbox.metrics import get_metric

        return get_metric(name).kind
    except KeyError:
        pass
    if name in LABEL_METRICS:
        return "label"
    if name in PROBABILITY_METRICS:
        return "probability"
    return "ranking" if str(name).startswith("map") else "value"


def rules_for_metric(metric_name: str, sample) -> dict:
    """``check_submission`` keyword arguments a metric implies for the sample's prediction columns.

    Regression samples often show ``0`` as a placeholder, so integer-looking sample values only require
    integers when the metric scores labels.
    """
    ref = _read_text_table(sample, "sample submission")
    cols = list(ref.columns[1:])
    kind = metric_kind(metric_name)
    if kind == "probability":
        return {"ranges": {c: (0.0, 1.0) for c in cols}}
    if kind == "label":
        return {"whole_numbers": [c for c in cols if len(ref) and _is_integer_text(ref[c])]}
    return {}


def sample_path(data):
    """The sample submission file on disk for a loaded competition (what every written CSV is checked against);
    an adapter that builds its sample in memory (tests, synthetic competitions) is checked against that table."""
    if getattr(data, "sample_path", None):
        return Path(data.sample_path)
    try:
        return find_sample_submission(data.data_dir)
    except SubmissionError:
        return data.sample_submission


def submission_rules(competition, data) -> dict:
    """The metric's rules for the sample's columns, plus the classes seen in train for a label column."""
    rules = rules_for_metric(competition.metric_name, sample_path(data))
    ref_cols = list(_read_text_table(sample_path(data), "sample submission").columns[1:])
    kind = metric_kind(competition.metric)
    if kind == "mask" and data.extra.get("rle_pixels"):  # every RLE decoded against its own image's pixels
        return {"rle": data.extra["rle_pixels"], **({"key": data.extra["submission_key"]}
                                                     if data.extra.get("submission_key") else {})}
    if kind in ("label", "ranking") and data.classes and len(ref_cols) == 1:
        rules["allowed"] = {ref_cols[0]: [str(c) for c in data.classes]}
        if data.task == "multilabel" or kind == "ranking":  # tags, or the k likeliest classes: each one checked
            rules["tag_sep"] = data.extra.get("label_sep", " ")
            rules.pop("whole_numbers", None)
    return rules


def write_checked(table: pd.DataFrame, paths, data, rules: dict, adapter: str = "the adapter") -> list[Path]:
    """Check ``table`` exactly as ``--check`` checks a file, against the sample file on disk (ids as text), then
    write it atomically to every path. A table that fails is never written anywhere."""
    text = table.to_csv(index=False)
    sample = sample_path(data)
    try:
        check_submission(io.StringIO(text), sample, name="the submission", **rules)
    except SubmissionError as e:
        from kitbox.errors import InputError

        raise InputError(f"{adapter}.submission() built a table that fails the check against {sample}: {e}") from None
    written = []
    for path in paths:
        path = Path(path)
        if written and path.resolve() == written[0].resolve():
            continue
        written.append(atomic_write_text(path, text))
    return written


def degenerate_warnings(path, data, metric, rules: dict) -> list[str]:
    """Loud warnings for a submission that passes the check but is probably not what was meant."""
    sub = _read_text_table(path, str(path))
    ref = _read_text_table(sample_path(data), "sample submission")
    warnings = []
    for col in sub.columns[1:]:
        values = sub[col].str.strip()
        if len(values) > 1 and values.nunique() == 1:
            same = values.iloc[0]
            placeholder = ref[col].str.strip().nunique() == 1 and ref[col].str.strip().iloc[0] == same
            warnings.append(f"every row of column {col!r} is {same!r}" + (" (the sample submission's placeholder)"
                                                                            if placeholder else "")
                            + ": the models predicted nothing useful, or the ids did not match")
    if getattr(metric, "name", metric) in {"auc"}:
        warnings.append("AUC is scored on order only, so the blend averages ranks: the submitted values are ranks "
                        "in (0, 1], not probabilities; do not reuse them where probabilities are scored")
    return warnings


def find_sample_submission(data_dir) -> Path:
    """``sample_submission.csv`` (or ``.csv.gz``/``.zip``) in a competition's data folder."""
    data_dir = Path(data_dir)
    found = sorted(data_dir.glob("sample_submission*.csv*")) + sorted(data_dir.glob("sample*submission*.csv*"))
    if not found:
        raise SubmissionError(f"no sample_submission.csv in {data_dir}: the check needs the competition's sample file")
    return found[0]
