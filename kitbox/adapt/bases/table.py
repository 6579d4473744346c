"""The shared table base: reading ``train.csv`` / ``test.csv`` / ``sample_submission.csv`` with ids as text,
inferring targets and task, stratified folds, and mapping predictions onto the sample's shape. The three
ready-made bases (:mod:`.tabular`, :mod:`.text`, :mod:`.image`) add their inputs and default recipes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kitbox.pipeline import splits
from kitbox.adapt.contract import Columns, Competition, CompetitionData
from kitbox.errors import InputError
from kitbox.metrics import get_metric
from kitbox.training.tasks import MAX_CLASSES, infer_kind

MAX_CAT_CARD = MAX_CLASSES  # integer columns with more distinct values are continuous


def is_text(column: pd.Series) -> bool:
    """Strings (object or pandas' string dtype), not numbers."""
    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def _metric_kind(metric) -> str:
    from kitbox.io.submission import metric_kind

    return metric_kind(metric)


# ---------------------------------------------------------------------------------------------- reading


def find_file(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, or its ``.gz`` / ``.zip`` / ``.csv.zip`` form (Kaggle ships both)."""
    for candidate in (name, f"{name}.gz", f"{name}.zip", f"{Path(name).stem}.zip"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read_table(folder: Path, name: str, text_cols=(), what: str = "", all_text: bool = False) -> pd.DataFrame:
    """A CSV with ``text_cols`` read as text (ids like ``0001`` stay ``0001``), undecodable bytes replaced;
    ``all_text`` reads every column as written (the sample submission)."""
    path = find_file(Path(folder), name)
    if path is None:
        present = sorted(p.name for p in Path(folder).iterdir())[:12] if Path(folder).is_dir() else []
        raise InputError(f"{Path(folder) / name} not found{what} (the folder holds {present}); pass --data DIR with "
                         f"the competition's files, or set the file's name in the adapter")
    kwargs = dict(dtype=str, keep_default_na=False) if all_text else dict(dtype={c: str for c in text_cols})
    try:
        return pd.read_csv(path, encoding_errors="replace", low_memory=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeError, ValueError) as e:
        raise InputError(f"{path} is not a readable CSV: {' '.join(str(e).split())}") from None


def _require(df: pd.DataFrame, cols, where: str, fix: str = "") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise InputError(f"{where} has no column(s) {missing}; its columns are {list(df.columns)[:30]}{fix}")


# ---------------------------------------------------------------------------------------------- targets and task


def encode_targets(train: pd.DataFrame, targets: list[str], task: str, classes: list, label_sep: str) -> np.ndarray:
    """Targets as numbers: values (regression), class index (binary / multiclass), 0/1 matrix (multilabel)."""
    if task == "regression":
        y = train[targets].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        return y[:, 0] if len(targets) == 1 else y
    if task == "multilabel" and len(targets) > 1:
        return train[targets].astype(float).to_numpy(np.float32)
    column = train[targets[0]]
    if task == "multilabel":
        index = {t: i for i, t in enumerate(classes)}
        y = np.zeros((len(train), len(classes)), dtype=np.float32)
        for r, value in enumerate(column.fillna("").astype(str)):
            y[r, [index[t] for t in value.split(label_sep) if t]] = 1.0
        return y
    if column.isna().any():
        bad = np.flatnonzero(column.isna().to_numpy())[:5].tolist()
        raise InputError(f"target column {targets[0]!r} is empty on {int(column.isna().sum())} row(s) of train, e.g. "
                         f"rows {bad}: drop them in the adapter's load() or fill them")
    return column.map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)


# ---------------------------------------------------------------------------------------------- the table base


class TableCompetition(Competition):
    """A competition whose files are train.csv (inputs + target), test.csv (inputs + id) and a sample submission.

    Set ``slug`` and ``metric_name``; everything else has a default read from the files.
    """

    train_file: str = "train.csv"
    test_file: str = "test.csv"
    sample_file: str = "sample_submission.csv"
    id_col: str | None = None  # default: the sample submission's first column
    target: str | list[str] | None = None  # default: the sample's prediction column(s), found in train.csv
    task: str | None = None  # "binary", "multiclass", "multilabel" or "regression"; default: inferred
    positive_class = None  # binary: the class whose probability is submitted (default: the larger value)
    label_sep: str = " "  # multi-label targets written as tags in one column ("clear primary water")
    group_col: str | None = None  # rows sharing this column's value stay in one fold
    drop_cols: tuple[str, ...] = ()  # columns that are neither inputs nor targets

    # ------------------------------------------------------------------------------------ load
    def expected_files(self) -> list[str]:
        return [self.train_file, self.test_file, self.sample_file]

    def read_files(self, data_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Path]:
        sample = read_table(data_dir, self.sample_file, what=" (the sample submission)", all_text=True)
        sample_path = find_file(data_dir, self.sample_file)
        id_col = self.id_col or sample.columns[0]
        train = read_table(data_dir, self.train_file, [id_col])
        test = read_table(data_dir, self.test_file, [id_col])
        return train, test, sample, sample_path

    def target_columns(self, train: pd.DataFrame, sample: pd.DataFrame) -> list[str]:
        if self.target is not None:
            targets = [self.target] if isinstance(self.target, str) else list(self.target)
            _require(train, targets, f"{self.train_file}", " (the adapter's `target`)")
            return targets
        wanted = list(sample.columns[1:])
        by_lower = {c.lower(): c for c in train.columns}
        found = [by_lower.get(c.lower()) for c in wanted]
        if all(found):
            return found
        for col in train.columns:  # one column per class: a train column whose values are the sample's columns
            values = set(train[col].dropna().astype(str).unique())
            if len(wanted) > 1 and set(wanted) <= values | {str(v) for v in values}:
                return [col]
        raise InputError(f"cannot tell the target: the sample submission's column(s) {wanted} are not in "
                         f"{self.train_file} ({list(train.columns)[:20]}). Set `target = \"...\"` in the adapter")

    def load(self, data_dir: Path) -> CompetitionData:
        data_dir = Path(data_dir)
        train, test, sample, sample_path = self.read_files(data_dir)
        return self.build_data(data_dir, train, test, sample, sample_path)

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        id_col = self.id_col or sample.columns[0]
        targets = self.target_columns(train, sample)
        task, classes = self.task, []
        metric = get_metric(self.metric_name) if self.metric_name else None
        values = train[targets] if len(targets) > 1 else train[targets[0]]
        try:
            inferred, found = infer_kind(values, _metric_kind(metric) if metric is not None else None, self.label_sep)
        except ValueError as err:  # one distinct value: nothing to learn
            raise InputError(f"{self.train_file}: {err}") from None
        task = task or inferred
        classes = found if task == inferred else (targets if task == "multilabel" and len(targets) > 1 else found)
        if task == "binary" and self.positive_class is not None:
            if self.positive_class not in classes:
                raise InputError(f"positive_class {self.positive_class!r} is not one of the classes {classes}")
            classes = [c for c in classes if c != self.positive_class] + [self.positive_class]
        columns = Columns(id=id_col, target=targets, group=self.group_col)
        data = CompetitionData(train=train.reset_index(drop=True), test=test.reset_index(drop=True),
                               sample_submission=sample, data_dir=Path(data_dir), sample_path=sample_path, task=task,
                               classes=classes, columns=columns,
                               is_sample=self.sample_dir is not None and Path(data_dir).resolve() == Path(self.sample_dir).resolve())
        data.extra["label_sep"] = self.label_sep
        self.check_ids(data)
        return data

    def check_ids(self, data: CompetitionData) -> None:
        """Every sample id must be a test row's id, compared as text; ids like 0001 never become 1."""
        id_col = data.columns.id
        if id_col not in data.test.columns:
            if len(data.test) == len(data.sample_submission):
                data.notes.append(f"test has no {id_col!r} column: its rows are matched to the sample's in order")
                ids = pd.DataFrame({id_col: data.sample_submission[id_col].to_numpy()})
                data.test = pd.concat([ids, data.test], axis=1)
                return
            raise InputError(f"{self.test_file} has no id column {id_col!r} and {len(data.test)} rows for the sample's "
                             f"{len(data.sample_submission)}; set `id_col` in the adapter")
        test_ids = data.test[id_col].astype(str).str.strip()
        unknown = ~data.sample_submission[id_col].str.strip().isin(set(test_ids))
        if unknown.any():
            shown = data.sample_submission.loc[unknown, id_col].head(5).tolist()
            raise InputError(f"{int(unknown.sum())} id(s) of {self.sample_file} are not in {self.test_file}'s {id_col!r}, "
                             f"e.g. {shown} (test ids look like {test_ids.head(3).tolist()}): are they the same download?")

    # ------------------------------------------------------------------------------------ folds and targets
    def targets(self, data: CompetitionData) -> np.ndarray:
        return encode_targets(data.train, data.columns.target, data.task, data.classes, self.label_sep)

    def fold_groups(self, data: CompetitionData) -> np.ndarray | None:
        """One label per training row; rows sharing a label stay in one fold (None: rows are independent). Here
        ``group_col``'s values; a base may group by something it derives (TextCompetition: duplicate texts)."""
        return data.train[data.columns.group].astype(str).to_numpy() if data.columns.group else None

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        y = self.targets(data)
        groups = self.fold_groups(data)
        if groups is not None:
            if data.task in ("binary", "multiclass"):
                from sklearn.model_selection import StratifiedGroupKFold

                return splits._from_splitter(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed), len(y), y, groups)
            return splits.group_kfold(groups, n_folds, seed)
        if data.task in ("binary", "multiclass"):
            return splits.stratified_kfold(y, n_folds, seed)
        if data.task == "multilabel":
            return splits.multilabel_stratified_kfold(y, n_folds, seed)
        return splits.kfold(len(y), n_folds, seed)

    # ------------------------------------------------------------------------------------ decisions
    def blend_metric_for(self, task: str | None):
        """What the blend weights are chosen by (``blend_metric_name`` when the adapter sets one). F1: the score at
        the tuned cut (the labels' own score). Another label metric on one label (accuracy, kappa...): log loss.
        On a few thousand rows accuracy is a step function of the weights, so Caruana's picks on it follow a
        handful of rows; log loss is smooth and scores the same probabilities the labels come from (Digit
        Recognizer, 5 seeds: 99.318 +- 0.052 % honest against 99.285 +- 0.070 % for weights chosen on accuracy)."""
        if self.blend_metric_name:
            return get_metric(self.blend_metric_name)
        if self.metric_name == "f1":
            return get_metric("f1_best_cut")
        if self._scores_labels() and task in ("binary", "multiclass"):
            return get_metric("log_loss")
        return self.metric

    def _scores_labels(self) -> bool:
        return _metric_kind(self.metric) == "label"

    def decide(self, oof: np.ndarray, y: np.ndarray) -> dict:
        """A label metric on probabilities (binary, or tags) gets the cut that scores best on OOF (F1's is rarely
        0.5). Tags are told by their targets (a 0/1 matrix, where a class index is one number a row), and the
        decision says so, for :meth:`apply`."""
        multilabel = np.ndim(y) == 2
        if not (self._scores_labels() and (np.asarray(oof).ndim == 1 or multilabel)):
            return {}
        from kitbox.metrics import F1_CUTS, best_f1_cut

        if self.metric_name == "f1" and not multilabel:
            return {"cut": best_f1_cut(y, oof)[0]}
        scores = [self.metric(y, (oof >= c).astype(np.int64)) for c in F1_CUTS]
        best = np.flatnonzero(np.isclose(scores, max(scores) if self.metric.greater_is_better else min(scores)))
        return {"cut": float(F1_CUTS[best[len(best) // 2]]), **({"multilabel": True} if multilabel else {})}

    def apply(self, pred: np.ndarray, decided: dict) -> np.ndarray:
        """Label metrics score labels: class indices (or 0/1 tags) from probabilities; MAP@k the k likeliest classes."""
        pred = np.asarray(pred)
        if _metric_kind(self.metric) == "ranking" and pred.ndim == 2:
            k = int(self.metric_name.split("@")[1]) if "@" in self.metric_name else 5
            return np.argsort(-pred, axis=1, kind="stable")[:, :k]
        if not self._scores_labels():
            return pred
        if pred.ndim == 1 or decided.get("multilabel", self.task == "multilabel"):
            return (pred >= decided.get("cut", 0.5)).astype(np.int64)
        return pred.argmax(1)

    # ------------------------------------------------------------------------------------ submission
    def submission(self, data: CompetitionData, pred: np.ndarray) -> pd.DataFrame:
        """The sample's rows and columns filled from ``pred`` (rows matched by id, as text)."""
        sample, id_col = data.sample_submission, data.columns.id
        pos = self._test_positions(data)
        pred = np.asarray(pred)
        out = pd.DataFrame({id_col: sample[id_col].to_numpy()})
        cols = list(sample.columns[1:])
        values = pred[np.maximum(pos, 0)]
        if (pos < 0).any():  # ids without a test row (an unreadable image): the most common / mean prediction
            values[pos < 0] = self._prior(pred)
        if len(cols) == 1:
            out[cols[0]] = self._one_column(data, values)
        elif data.task in ("multiclass", "multilabel") and [str(c) for c in data.classes] != cols and \
                set(cols) <= {str(c) for c in data.classes}:
            order = [[str(c) for c in data.classes].index(c) for c in cols]
            for j, col in zip(order, cols):
                out[col] = self._class_column(values, j)
        else:  # one column per class (in class order) or per target
            matrix = values if values.ndim == 2 else np.eye(len(cols), dtype=np.int64)[values]
            if matrix.shape[1] != len(cols):
                raise InputError(f"{matrix.shape[1]} prediction column(s) for the sample's {len(cols)} ({cols})")
            for j, col in enumerate(cols):
                out[col] = matrix[:, j]
        return out

    def _class_column(self, values: np.ndarray, j: int):
        return values[:, j] if values.ndim == 2 else (values == j).astype(np.int64)

    def _one_column(self, data: CompetitionData, values: np.ndarray):
        if data.task == "regression" or not self._scores_labels() and data.task == "binary":
            return values if values.ndim == 1 else values[:, 0]
        if data.task == "multilabel":
            tags = np.asarray(data.classes, dtype=object)
            return [self.label_sep.join(str(t) for t in tags[row.astype(bool)]) for row in np.atleast_2d(values)]
        if _metric_kind(self.metric) == "ranking":  # the k likeliest classes, best first
            names = np.asarray(data.classes, dtype=object)
            return [" ".join(str(c) for c in names[row]) for row in np.atleast_2d(values)]
        if self._scores_labels():
            return np.asarray(data.classes, dtype=object)[values.astype(np.int64)]
        raise InputError(f"the sample submission has one prediction column but the task is {data.task} with "
                         f"{len(data.classes)} classes and the metric ({self.metric_name}) scores probabilities: "
                         "override submission() to say how to write them")

    def _test_positions(self, data: CompetitionData) -> np.ndarray:
        """Each sample row's position in test (-1: no test row with that id)."""
        id_col = data.columns.id
        test_ids = pd.Series(np.arange(len(data.test)), index=data.test[id_col].astype(str).str.strip())
        test_ids = test_ids[~test_ids.index.duplicated()]
        return test_ids.reindex(data.sample_submission[id_col].str.strip()).fillna(-1).to_numpy(np.int64)

    def _prior(self, pred: np.ndarray):
        if self._scores_labels():
            values, counts = np.unique(pred, axis=0, return_counts=True)
            return values[counts.argmax()]
        return pred.mean(0)
