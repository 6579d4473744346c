"""``python submit.py --new DATA_DIR``: read a downloaded competition folder, guess its shape, write a short adapter.

It infers the id column, the target column(s), the task (binary, multi-class, multi-label, regression) and the
modality (masks to segment, image folders or an image-file column, pixel columns, a long free-text column, else
tabular), writes an adapter on the ready-made bases, prints what it guessed and the one command that runs it. The
metric cannot be read from the files: pass ``--metric NAME`` or fill it in; the adapter refuses to run without
it, never silently picking one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kitbox.adapt.bases import MAX_CAT_CARD, find_file, is_text
from kitbox.errors import InputError
from kitbox.vision.data import IMAGE_SUFFIXES

TEXT_MIN_MEAN_CHARS = 30  # a column of free text: long on average ...
TEXT_MIN_UNIQUE = 0.5  # ... and mostly unique values


@dataclass
class Guess:
    """What the scaffold read from the files, and what it could not."""

    slug: str
    base: str  # TabularCompetition, TextCompetition, ImageCompetition or SegmentationCompetition
    attrs: dict = field(default_factory=dict)  # class attributes to write
    said: list[str] = field(default_factory=list)  # what was guessed, for the user
    todo: list[str] = field(default_factory=list)  # what the user must fill in


def _images_in(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES] if folder.is_dir() else []


def _label_pattern(names: list[str]) -> str | None:
    """``cat.1.jpg`` / ``dog_27.png``: a word before the first dot or underscore that repeats across files."""
    words = [re.match(r"^([A-Za-z]+)[._]", n) for n in names]
    if names and all(words) and 1 < len({w.group(1) for w in words}) <= max(2, len(names) // 5):
        return r"^([A-Za-z]+)[._]"
    return None


def _guess_images(data_dir: Path, guess: Guess) -> bool:
    train = data_dir / "train"
    if not train.is_dir():
        return False
    subdirs = [p for p in train.iterdir() if p.is_dir() and _images_in(p)]
    files = _images_in(train)
    if subdirs:
        guess.said.append(f"images in class folders: {sorted(p.name for p in subdirs)[:8]}")
    elif files and (pattern := _label_pattern([p.name for p in files])):
        guess.attrs["label_pattern"] = pattern
        labels = sorted({re.match(pattern, p.name).group(1) for p in files})
        guess.said.append(f"labels in the image file names: {labels[:8]}")
    elif not files or find_file(data_dir, "train.csv") is None:
        return False
    else:
        guess.said.append("images listed in train.csv (id column + label), files in train/")
    guess.base = "ImageCompetition"
    return True


RLE_TEXT = re.compile(r"^\s*(\d+\s+\d+(\s+\d+\s+\d+)*)?\s*$")  # "start length ..." pairs, or empty


def _looks_like_rle(values: pd.Series) -> bool:
    """Every row holds run-length encoding text: pairs of whole numbers, or nothing."""
    values = values.fillna("").astype(str)
    return bool(len(values)) and bool(values.map(lambda v: bool(RLE_TEXT.match(v))).all())


def _guess_masks(data_dir: Path, sample: pd.DataFrame, guess: Guess) -> bool:
    """A segmentation folder: the sample's one prediction column holds RLEs, and training masks are there as an RLE
    column of a CSV or as mask images beside the training images."""
    others = list(sample.columns[1:])
    rle_cols = [c for c in others if _looks_like_rle(sample[c])]
    if len(others) > 2 or len(rle_cols) != 1:
        return False
    rle_col = rle_cols[0]
    named = re.search(r"rle|encoded|mask|pixels", rle_col, re.I)
    layouts = [("train/images", "test/images"), ("train", "test")]
    found = next(((tr, te) for tr, te in layouts if _images_in(data_dir / tr)), None)
    if found is None or not (named or sample[rle_col].astype(str).str.split().map(len).max() > 2):
        return False
    guess.base = "SegmentationCompetition"
    if len(others) == 2:  # Severstal: one row per image and class
        guess.attrs["class_col"] = next(c for c in others if c != rle_col)
        guess.said.append(f"classes: one row per image and {guess.attrs['class_col']!r} (a sigmoid per class)")
    elif _key_sep(sample.iloc[:, 0]):
        guess.attrs["key_sep"] = _key_sep(sample.iloc[:, 0])
        guess.said.append(f"classes: {sample.columns[0]!r} joins the image id and the class with "
                          f"{guess.attrs['key_sep']!r} (a sigmoid per class)")
    if found != ("train/images", "test/images"):
        guess.attrs.update(train_dir=found[0], test_dir=found[1])
    mask_dirs = [d for d in ("train/masks", "train_masks", "masks") if _images_in(data_dir / d)]
    csvs = sorted((p for p in data_dir.glob("*.csv*") if not p.name.startswith("sample")),
                  key=lambda p: (not p.name.startswith("train"), p.name))  # train*.csv first
    rle_files = []
    for path in csvs:
        try:
            head = pd.read_csv(path, nrows=200, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeError, ValueError):
            continue
        if head.shape[1] >= 2 and _looks_like_rle(head.iloc[:, -1]):
            rle_files.append(path.name.removesuffix(".gz").removesuffix(".zip"))
    if rle_files:
        if rle_files[0] != "train.csv":
            guess.attrs["rle_file"] = rle_files[0]
        guess.said.append(f"masks: run-length encoded in {rle_files[0]} (column-major, Kaggle's usual order: set "
                          "rle_order = 'C' if the Data page numbers pixels row by row)")
    elif mask_dirs:
        guess.attrs["rle_file"] = None
        if mask_dirs[0] != "train/masks":
            guess.attrs["mask_dir"] = mask_dirs[0]
        guess.said.append(f"masks: images in {mask_dirs[0]}/ named like the training images")
    else:
        guess.todo.append("where the training masks are: set rle_file (a CSV of id, RLE) or mask_dir (mask images)")
    guess.said.append(f"segmentation: images in {found[0]}/, submission of RLE masks ({rle_col!r})")
    return True


def _key_sep(keys: pd.Series) -> str | None:
    """"_" when every key is "IMAGE_CLASS", every image has every one of a few classes, and the images outnumber
    the classes (Understanding Clouds' "0011165.jpg_Fish"); else None."""
    parts = keys.astype(str).str.rsplit("_", n=1)
    if not parts.map(len).eq(2).all():
        return None
    images, classes = set(parts.str[0]), set(parts.str[1])
    if 1 < len(classes) <= 20 and len(images) >= 2 * len(classes) and len(keys) == len(images) * len(classes):
        return "_"
    return None


def _text_columns(train: pd.DataFrame, skip: set) -> list[str]:
    long = []
    for c in train.columns:
        if c in skip or not is_text(train[c]):
            continue
        text = train[c].dropna().astype(str)
        if len(text) and text.str.len().mean() >= TEXT_MIN_MEAN_CHARS and text.nunique() >= TEXT_MIN_UNIQUE * len(text):
            long.append(c)
    return long


def _joinable(data_dir: Path, train: pd.DataFrame) -> dict[str, str]:
    """Other CSVs whose first column is a key of train with one row per key (store.csv on Store)."""
    joins = {}
    for path in sorted(data_dir.glob("*.csv*")):
        name = path.name.removesuffix(".gz").removesuffix(".zip")
        if name in ("train.csv", "test.csv") or name.startswith("sample"):
            continue
        try:
            head = pd.read_csv(path, nrows=5000, low_memory=False)
        except (pd.errors.ParserError, UnicodeError, ValueError):
            continue
        key = head.columns[0]
        if key in train.columns and not head[key].duplicated().any() and len(head) < 5000:
            joins[name] = key
    return joins


def guess_competition(data_dir, slug: str | None = None) -> Guess:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"--new {data_dir}: no such folder (download the competition's files there first)")
    sample_path = find_file(data_dir, "sample_submission.csv")
    if sample_path is None:
        raise InputError(f"--new {data_dir}: no sample_submission.csv there; the scaffold reads the submission's shape "
                         "from it (set sample_file in the adapter if yours is named otherwise)")
    sample = pd.read_csv(sample_path, dtype=str, nrows=1000)
    guess = Guess(slug or data_dir.name, "TabularCompetition")
    guess.said.append(f"id column {sample.columns[0]!r}, submission columns {list(sample.columns[1:])[:8]}")
    if _guess_masks(data_dir, sample, guess) or _guess_images(data_dir, guess):
        return guess
    train_path = find_file(data_dir, "train.csv")
    if train_path is None:
        raise InputError(f"--new {data_dir}: no train.csv and no train/ image folder: set train_file in the adapter")
    train = pd.read_csv(train_path, nrows=20000, low_memory=False)
    pixels = [c for c in train.columns if re.fullmatch(r"pixel\d+", c)]
    if len(pixels) >= 16:
        guess.base = "ImageCompetition"
        guess.attrs["pixel_prefix"] = "pixel"
        guess.said.append(f"{len(pixels)} pixel columns: images of {int(len(pixels) ** 0.5)}x{int(len(pixels) ** 0.5)}")
        return guess
    skip = {sample.columns[0], *[c for c in train.columns if c.lower() in {s.lower() for s in sample.columns[1:]}]}
    text = _text_columns(train, skip)
    if text:
        guess.base = "TextCompetition"
        guess.said.append(f"free text in {text} (the other text columns join as a prefix)")
        return guess
    joins = _joinable(data_dir, train)
    if joins:
        guess.attrs["join_tables"] = joins
        guess.said.append(f"joined onto train and test: {', '.join(f'{n} on {k}' for n, k in joins.items())}")
    guess.said.append(f"tabular: {train.shape[1]} columns; integer columns with more than {MAX_CAT_CARD} values are "
                      "continuous, text columns categorical")
    return guess


def _describe_task(data_dir: Path, guess: Guess, metric: str | None) -> None:
    """Load the data with the guessed base and report the target and task the base infers (or the problem)."""
    from kitbox.adapt import bases

    cls = type("Guessed", (getattr(bases, guess.base),), {"slug": guess.slug, "metric_name": metric or "", **guess.attrs})
    try:
        data = cls().load(data_dir)
    except InputError as e:
        guess.todo.append(f"the base could not load the files: {e}")
        return
    classes = f" with classes {data.classes[:10]}" if data.classes else ""
    guess.said.append(f"target {data.columns.target}: {data.task}{classes}")
    guess.attrs["_task"] = data.task


def adapter_source(guess: Guess, metric: str | None) -> str:
    class_name = "".join(w.capitalize() for w in re.split(r"[^A-Za-z0-9]+", guess.slug) if w) or "MyCompetition"
    if class_name[0].isdigit():
        class_name = "C" + class_name
    lines = [f'"""{guess.slug}: an adapter written by `python submit.py --new`; check every line against the',
             'competition\'s Data and Evaluation pages."""', f"from kitbox import {guess.base}", "", "",
             f"class {class_name}({guess.base}):", f"    slug = {guess.slug!r}"]
    if metric:
        lines.append(f"    metric_name = {metric!r}")
    else:
        lines.append('    metric_name = ""  # FILL IN from the Evaluation page: auc, log_loss, accuracy, f1, rmse, '
                     "rmsle, mae, rmspe, qwk, map@k, dice, iou ...")
    for key, value in guess.attrs.items():
        if not key.startswith("_"):
            lines.append(f"    {key} = {value!r}")
    return "\n".join(lines) + "\n"


def new_command(data_dir, target: str | None = None, metric: str | None = None, log=print) -> int:
    """Write the adapter (``target``: its file name, default ``./<slug>.py``) and say how to run it."""
    guess = guess_competition(data_dir)
    _describe_task(Path(data_dir), guess, metric)
    path = Path(target) if target and target.endswith(".py") else Path(f"{re.sub(r'[^A-Za-z0-9]+', '_', guess.slug)}.py")
    if path.exists():
        raise InputError(f"{path} exists already; name another file: python submit.py other_name.py --new {data_dir}")
    if metric:
        from kitbox.metrics import get_metric

        get_metric(metric)
    path.write_text(adapter_source(guess, metric), encoding="utf-8")
    log(f"wrote {path} ({guess.base}):")
    for line in guess.said:
        log(f"  guessed: {line}")
    for line in guess.todo:
        log(f"  could not guess: {line}")
    if not metric:
        log("  fill in metric_name: the files cannot say how the competition is scored (its Evaluation page does)")
    log(f"run it: python submit.py {path} --data {data_dir}")
    return 0
