"""Ready-made adapters for the common shapes of a Kaggle competition: a new one is a few class attributes.

``TabularCompetition``, ``TextCompetition`` and ``ImageCompetition`` read the files (ids always as text), infer
the target column(s) and the task from ``sample_submission.csv`` and ``train.csv``, split stratified folds, and
map predictions onto the sample's rows and columns, whatever its shape: one label column, one probability
column, one column per class, several target columns, space-separated tags. Their default recipes take columns
and task from the data, so they serve any competition of that shape::

    class Titanic(TabularCompetition):
        slug = "titanic"
        metric_name = "accuracy"
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kitbox import cv
from kitbox.competition import Columns, Competition, CompetitionData
from kitbox.errors import InputError
from kitbox.metrics import get_metric

MAX_CAT_CARD = 20  # integer columns with more distinct values are continuous (fastai's cont_cat_split rule)


def is_text(column: pd.Series) -> bool:
    """Strings (object or pandas' string dtype), not numbers."""
    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def _metric_kind(metric) -> str:
    from kitbox.submission import metric_kind

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


def _is_tag_column(values: pd.Series, sep: str) -> bool:
    text = values.dropna().astype(str)
    return bool(len(text)) and not pd.api.types.is_numeric_dtype(values) and text.str.contains(sep, regex=False).mean() > 0.05


def infer_task(train: pd.DataFrame, targets: list[str], metric, label_sep: str = " ") -> tuple[str, list]:
    """(task, classes) from the target columns' values and what the metric scores (values alone without one:
    whole numbers with at most MAX_CAT_CARD distinct values are classes)."""
    kind = _metric_kind(metric) if metric is not None else None
    if len(targets) > 1:
        values = train[targets]
        binary = values.isin([0, 1, 0.0, 1.0, True, False]).all().all()
        return ("multilabel", list(targets)) if binary and kind != "value" else ("regression", list(targets))
    y = train[targets[0]]
    if _is_tag_column(y, label_sep):
        return "multilabel", sorted({t for v in y.dropna().astype(str) for t in v.split(label_sep) if t})
    if kind == "value" or (pd.api.types.is_float_dtype(y) and not np.all(np.mod(y.dropna(), 1) == 0)):
        return "regression", []
    if kind is None and pd.api.types.is_numeric_dtype(y) and y.nunique() > MAX_CAT_CARD:
        return "regression", []
    classes = sorted(y.dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    if len(classes) < 2:
        raise InputError(f"target column {targets[0]!r} has {len(classes)} distinct value(s) {classes}: nothing to learn")
    return ("binary" if len(classes) == 2 else "multiclass"), classes


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
        inferred, found = infer_task(train, targets, metric, self.label_sep)
        task = task or inferred
        classes = found if task == inferred else (targets if task == "multilabel" and len(targets) > 1 else found)
        if task == "binary" and self.positive_class is not None:
            if self.positive_class not in classes:
                raise InputError(f"positive_class {self.positive_class!r} is not one of the classes {classes}")
            classes = [c for c in classes if c != self.positive_class] + [self.positive_class]
        self.loaded_task = task  # apply() turns probabilities into labels by it
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

    def split(self, data: CompetitionData, n_folds: int, seed: int) -> np.ndarray:
        y = self.targets(data)
        if data.columns.group:
            groups = data.train[data.columns.group].astype(str).to_numpy()
            if data.task in ("binary", "multiclass"):
                from sklearn.model_selection import StratifiedGroupKFold

                return cv._from_splitter(StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed), len(y), y, groups)
            return cv.group_kfold(groups, n_folds, seed)
        if data.task in ("binary", "multiclass"):
            return cv.stratified_kfold(y, n_folds, seed)
        if data.task == "multilabel":
            return cv.multilabel_stratified_kfold(y, n_folds, seed)
        return cv.kfold(len(y), n_folds, seed)

    # ------------------------------------------------------------------------------------ decisions
    @property
    def blend_metric_name(self) -> str:
        """What the blend weights are chosen by. F1: the score at the tuned cut (the labels' own score). Another
        label metric on one label (accuracy, kappa...): log loss. On a few thousand rows accuracy is a step
        function of the weights, so Caruana's picks on it follow a handful of rows; log loss is smooth and scores
        the same probabilities the labels come from (Digit Recognizer, 5 seeds: 99.318 +- 0.052 % honest against
        99.285 +- 0.070 % for weights chosen on accuracy)."""
        if self.metric_name == "f1":
            return "f1_best_cut"
        if self._scores_labels() and getattr(self, "loaded_task", self.task) in ("binary", "multiclass"):
            return "log_loss"
        return self.metric_name

    def _scores_labels(self) -> bool:
        return _metric_kind(self.metric) == "label"

    def decide(self, oof: np.ndarray, y: np.ndarray) -> dict:
        """A label metric on probabilities (binary, or tags) gets the cut that scores best on OOF (F1's is rarely 0.5)."""
        multilabel = getattr(self, "loaded_task", self.task) == "multilabel"
        if not (self._scores_labels() and (np.asarray(oof).ndim == 1 or multilabel)):
            return {}
        from kitbox.metrics import F1_CUTS, best_f1_cut

        if self.metric_name == "f1" and not multilabel:
            return {"cut": best_f1_cut(y, oof)[0]}
        scores = [self.metric(y, (oof >= c).astype(np.int64)) for c in F1_CUTS]
        best = np.flatnonzero(np.isclose(scores, max(scores) if self.metric.greater_is_better else min(scores)))
        return {"cut": float(F1_CUTS[best[len(best) // 2]])}

    def apply(self, pred: np.ndarray, decided: dict) -> np.ndarray:
        """Label metrics score labels: class indices (or 0/1 tags) from probabilities; MAP@k the k likeliest classes."""
        pred = np.asarray(pred)
        if _metric_kind(self.metric) == "ranking" and pred.ndim == 2:
            k = int(self.metric_name.split("@")[1]) if "@" in self.metric_name else 5
            return np.argsort(-pred, axis=1, kind="stable")[:, :k]
        if not self._scores_labels():
            return pred
        if pred.ndim == 1 or getattr(self, "loaded_task", self.task) == "multilabel":
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


# ---------------------------------------------------------------------------------------------- tabular


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


# ---------------------------------------------------------------------------------------------- text


class TextCompetition(TableCompetition):
    """One or more free-text columns. Default recipes: TF-IDF + logistic regression and frozen sentence vectors
    (the cheap baselines), a fine-tuned transformer and ULMFiT."""

    text_cols: list[str] | None = None  # default: every text column of train and test, the longest last

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        data = super().build_data(data_dir, train, test, sample, sample_path)
        if self.text_cols is not None:
            _require(data.train, self.text_cols, self.train_file)
            _require(data.test, self.text_cols, self.test_file)
            data.columns.text = list(self.text_cols)
        else:
            skip = {data.columns.id, *data.columns.target, *self.drop_cols}
            found = [c for c in data.train.columns if c not in skip and c in data.test.columns
                     and is_text(data.train[c])]
            if not found:
                raise InputError(f"{self.train_file} has no text column besides the id and target; set text_cols")
            lengths = {c: data.train[c].fillna("").astype(str).str.len().mean() for c in found}
            data.columns.text = sorted(found, key=lengths.get)
        from kitbox.text.tokenizer import text_notes

        for df, where in ((data.train, self.train_file), (data.test, self.test_file)):
            for c in data.columns.text:
                df[c] = df[c].astype("object").where(df[c].notna(), None)
            data.notes += text_notes(df, data.columns.text, where)  # empty, undecodable or very long texts, counted
        return data

    def recipes(self):
        from kitbox.recipes import text

        return {"tfidf": text.tfidf, "sentence_vectors": text.sentence_vectors, "transformer": text.transformer,
                "ulmfit": text.ulmfit}


# ---------------------------------------------------------------------------------------------- images


class ImageCompetition(TableCompetition):
    """Images: class folders (``train/cat/*.jpg``), labels in file names (``cat.1.jpg``), a CSV of ids and labels
    beside an image folder, or pixel columns in the CSV (Digit Recognizer). Default recipes: a linear head on
    frozen pretrained features (the cheap baseline) and a pretrained timm CNN with TTA."""

    train_dir: str = "train"  # the training images (class sub-folders, or files)
    test_dir: str = "test"  # the test images; ids are file names without their suffix
    label_pattern: str | None = None  # a regex on file names whose first group is the label, e.g. r"^(cat|dog)\."
    image_col: str | None = None  # CSV layout: the column naming each image (default: the id column)
    image_suffix: str = ""  # CSV layout: appended to the id to name the file, e.g. ".jpg"
    pixel_prefix: str | None = None  # pixel layout: columns pixel0..pixelN
    image_shape: tuple[int, int] | None = None  # pixel layout: (height, width); default: a square

    def layout(self, data_dir: Path) -> str:
        if self.pixel_prefix:
            return "pixels"
        if self.label_pattern:
            return "filenames"
        if find_file(data_dir, self.train_file) is not None:
            return "csv"
        folder = data_dir / self.train_dir
        if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()):
            return "folders"
        raise InputError(f"cannot tell how {data_dir} holds its images: no {self.train_file}, and {folder} has no class "
                         "sub-folders. Set label_pattern (labels in file names), pixel_prefix, or train_file/image_col")

    def expected_files(self) -> list[str]:
        return [self.sample_file, f"{self.train_dir}/ or {self.train_file}", f"{self.test_dir}/ or {self.test_file}"]

    def read_files(self, data_dir: Path):
        layout = self.layout(data_dir)
        if layout in ("pixels", "csv"):
            return super().read_files(data_dir)
        from kitbox.vision.data import from_filenames, from_folders, from_unlabelled

        sample = read_table(data_dir, self.sample_file, what=" (the sample submission)", all_text=True)
        sample_path = find_file(data_dir, self.sample_file)
        id_col = self.id_col or sample.columns[0]
        items = (from_filenames(data_dir / self.train_dir, self.label_pattern) if layout == "filenames"
                 else from_folders(data_dir / self.train_dir))
        target = list(sample.columns[1:])[0] if self.target is None and sample.shape[1] == 2 else (self.target or "label")
        train = pd.DataFrame({id_col: items.ids, "path": [str(p) for p in items.paths],
                              target: [items.classes[i] for i in items.labels]})
        test_items = from_unlabelled(data_dir / self.test_dir)
        test = pd.DataFrame({id_col: [str(i) for i in test_items.ids], "path": [str(p) for p in test_items.paths]})
        self._skipped = (items, test_items)
        return train, test, sample, sample_path

    def target_columns(self, train, sample):
        if "path" in train.columns and self.target is None and sample.shape[1] == 2:
            return [sample.columns[1]] if sample.columns[1] in train.columns else [c for c in train.columns
                                                                                 if c not in ("path", sample.columns[0])]
        return super().target_columns(train, sample)

    def build_data(self, data_dir, train, test, sample, sample_path) -> CompetitionData:
        data = super().build_data(data_dir, train, test, sample, sample_path)
        train_items, test_items = getattr(self, "_skipped", (None, None))
        if train_items is not None and train_items.skipped:
            data.notes.append(f"training images: {train_items.skipped_summary()}")
        if test_items is not None and test_items.skipped:
            data.notes.append(f"test images: {test_items.skipped_summary()}; their rows get the mean test prediction "
                              "(the most common label for a label metric)")
        self.attach_images(data)
        return data

    def attach_images(self, data: CompetitionData) -> None:
        from kitbox.vision.data import ImageItems, from_pixels

        if self.pixel_prefix:
            cols = [c for c in data.train.columns if c.startswith(self.pixel_prefix)]
            side = int(round(len(cols) ** 0.5))
            shape = self.image_shape or (side, side)
            wanted = [f"{self.pixel_prefix}{i}" for i in range(shape[0] * shape[1])]
            for file, table in ((self.train_file, data.train), (self.test_file, data.test)):
                missing = [c for c in wanted if c not in table.columns]
                if missing:  # a missing pixel fails here, at load, named: not inside the first fold
                    more = " and more" if len(missing) > 5 else ""
                    raise InputError(f"{data.data_dir / file} has no pixel column(s) {missing[:5]}{more}: a "
                                     f"{shape[0]}x{shape[1]} image is {len(wanted)} columns {wanted[0]}.."
                                     f"{wanted[-1]}")
            data.train_images = from_pixels(data.train, self.pixel_prefix, shape, label_col=None)
            data.test_images = from_pixels(data.test, self.pixel_prefix, shape, label_col=None)
            return
        if "path" not in data.train.columns:  # CSV layout: the image files named by a column
            folder = data.data_dir / self.train_dir
            col = self.image_col or data.columns.id
            data.train["path"] = [str(folder / f"{v}{self.image_suffix}") for v in data.train[col].astype(str)]
            test_folder = data.data_dir / self.test_dir
            data.test["path"] = [str(test_folder / f"{v}{self.image_suffix}") for v in data.test[col].astype(str)]
        data.train_images = ImageItems(paths=[Path(p) for p in data.train["path"]], ids=list(data.train[data.columns.id]))
        data.test_images = ImageItems(paths=[Path(p) for p in data.test["path"]], ids=list(data.test[data.columns.id]))

    def check_ids(self, data: CompetitionData) -> None:
        if "path" in data.test.columns:  # test images listed from the folder: unreadable ones get the prior
            return self._fill_missing_test(data)
        return super().check_ids(data)

    def _fill_missing_test(self, data: CompetitionData) -> None:
        id_col = data.columns.id
        have = set(data.test[id_col].astype(str))
        missing = [i for i in data.sample_submission[id_col] if i.strip() not in have]
        if len(missing) > 0.01 * len(data.sample_submission) + 5:
            raise InputError(f"{len(missing)} ids of {self.sample_file} have no image in {self.test_dir}/, e.g. "
                             f"{missing[:5]} (test files look like {sorted(have)[:3]})")
        data.extra["missing_test_ids"] = missing

    def recipes(self):
        from kitbox.recipes import vision

        if self.pixel_prefix:
            return {"small_cnn": vision.small_cnn}
        return {"linear_probe": vision.linear_probe, "cnn": vision.cnn}
